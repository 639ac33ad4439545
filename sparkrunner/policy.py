"""The policy: which Spark settings a job may choose, and where its data may live.

Pure: nothing is opened, resolved over the network or run. :mod:`sparkrunner.admission` applies
it to every job, whatever route the job came by.

Settings. A job's ``jobParameters`` (flag form, as ModelOp clients send them),
``targetEngine.sparkConf`` (Spark properties, flag-form keys too) and
``targetEngine.executorMemory`` become one set of Spark properties. Each property is

- *the operator's* (where and how the job runs: master, deploy mode, addresses and ports): a job
  may name it, as ModelOp's documents do (``"--master": "yarn"``); the same value as the
  configuration's is accepted, another is overridden by the configuration and the job carries a
  warning;
- *refused*: what would load code into the JVMs or Python workers, change security, or write
  files outside the job's directory; unless the configuration's ``policy.allow`` lists it;
- otherwise *the job's*: resources, Spark SQL settings and the like.

Locations. A fileUrl sparkrunner only hands over (S3/MinIO ``http(s)``, ``s3a``, ``gs``,
``abfs``, …) passes unless its scheme is denied. Everywhere, metadata and link-local addresses
are refused; in the service, local paths only under ``policy.local_roots`` and never inside the
data directory. URLs sparkrunner reads itself (HDFS checks, the scoring path's data) must also
use a scheme it can read.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .config import PolicySettings, Settings
from .errors import FieldError

#: spark-submit flags a job may send in ``jobParameters``, and the Spark property each one sets.
FLAG_PROPERTIES: Mapping[str, str] = {
    "--name": "spark.app.name",
    "--executor-memory": "spark.executor.memory",
    "--driver-memory": "spark.driver.memory",
    "--executor-cores": "spark.executor.cores",
    "--driver-cores": "spark.driver.cores",
    "--total-executor-cores": "spark.cores.max",
    "--num-executors": "spark.executor.instances",
    "--queue": "spark.yarn.queue",
    # Flags the policy refuses by default; mapped so the refusal names the real setting.
    "--master": "spark.master",
    "--deploy-mode": "spark.submit.deployMode",
    "--jars": "spark.jars",
    "--packages": "spark.jars.packages",
    "--exclude-packages": "spark.jars.excludes",
    "--repositories": "spark.jars.repositories",
    "--py-files": "spark.submit.pyFiles",
    "--files": "spark.files",
    "--archives": "spark.archives",
    "--driver-java-options": "spark.driver.extraJavaOptions",
    "--driver-class-path": "spark.driver.extraClassPath",
    "--driver-library-path": "spark.driver.extraLibraryPath",
    "--proxy-user": "spark.submit.proxyUser",
    "--principal": "spark.kerberos.principal",
    "--keytab": "spark.kerberos.keytab",
    "--properties-file": "spark.submit.propertiesFile",
    "--class": "spark.submit.mainClass",
    "--supervise": "spark.driver.supervise",
}
#: Flags that take no value (ModelOp sends them as ``"-v": ""``).
VALUELESS_FLAGS: Mapping[str, str] = {"-v": "--verbose", "--verbose": "--verbose"}

#: Spark properties a job may not set, unless ``policy.allow`` lets jobs choose them: what the
#: JVMs and Python workers load, as whom the job runs, the cluster's security, files written
#: outside the working directory.
REFUSED_PROPERTIES: tuple[str, ...] = (
    "spark.submit.*",
    "spark.*.extraClassPath",
    "spark.*.extraJavaOptions",
    "spark.*.defaultJavaOptions",
    "spark.*.extraLibraryPath",
    "spark.*.userClassPathFirst",
    "spark.jars",
    "spark.jars.*",
    "spark.files",
    "spark.archives",
    "spark.plugins",
    "spark.local.dir",
    "spark.pyspark.python",
    "spark.pyspark.driver.python",
    "spark.executorEnv.*",
    "spark.yarn.appMasterEnv.*",
    "spark.yarn.dist.*",
    "spark.yarn.principal",
    "spark.yarn.keytab",
    "spark.kerberos.*",
    "spark.kubernetes.*",
    "spark.authenticate",
    "spark.authenticate.*",
    "spark.network.crypto.*",
    "spark.io.encryption.*",
    "spark.ssl.*",
    "spark.redaction.*",
    "spark.sql.redaction.*",
    # Code the JVMs or Python workers would load despite the class-path rules.
    "spark.plugins.*",
    "spark.extraListeners",
    "spark.sql.extensions",
    "spark.sql.queryExecutionListeners",
    "spark.sql.streaming.streamingQueryListeners",
    "spark.sql.catalog.*",
    "spark.sql.hive.metastore.jars*",
    "spark.repl.*",
    "spark.*.resource.*.discoveryScript",
    "spark.python.daemon.module",
    "spark.python.worker.module",
    "spark.metrics.conf*",
    # Which cluster, file system and credentials the job talks to.
    "spark.hadoop.yarn.*",
    "spark.hadoop.hadoop.*",
    "spark.hadoop.*.impl",
    "spark.yarn.*",
    "spark.security.credentials.*",
    # The UI (filters load code) and access control.
    "spark.ui.*",
    "spark.acls.enable",
    "spark.*acls*",
    "spark.user.groups.mapping",
    # Files written outside the working directory.
    "spark.eventLog.*",
    "spark.driver.log.*",
    "spark.sql.warehouse.dir",
    "spark.python.profile.dump",
    "spark.checkpoint.dir",
    "spark.history.*",
)
#: The operator's properties: where and how the job runs. A job naming one is not refused: the
#: configuration's value wins, and the job carries a warning when its own differed. Checked
#: before REFUSED_PROPERTIES (``spark.submit.deployMode`` is the operator's; the rest of
#: ``spark.submit.*`` is refused).
OPERATOR_PROPERTIES: tuple[str, ...] = (
    "spark.master",
    "spark.submit.deployMode",
    "spark.driver.supervise",
    "spark.driver.host",
    "spark.driver.bindAddress",
    "spark.driver.port",
    "spark.blockManager.port",
    "spark.driver.blockManager.port",
    "spark.ui.port",
    "spark.hadoop.fs.defaultFS",
)
#: Refused patterns a job may use all the same: its YARN queue, and turning its UI off.
ALWAYS_ALLOWED: tuple[str, ...] = ("spark.yarn.queue", "spark.ui.enabled", "spark.ui.showConsoleProgress")

#: Properties whose values are sizes: ModelOp's "512MB" becomes Spark's "512m".
SIZE_PROPERTIES: tuple[str, ...] = (
    "spark.executor.memory",
    "spark.driver.memory",
    "spark.executor.memoryOverhead",
    "spark.driver.memoryOverhead",
    "spark.executor.pyspark.memory",
    "spark.driver.maxResultSize",
    "spark.python.worker.memory",
)

_SIZE = re.compile(r"^\s*(\d+)\s*(?:([kmgtp])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PROPERTY = re.compile(r"^spark\.[A-Za-z0-9_.\-]+$")


def normalize_size(value: str) -> str:
    """Spark's form of a size: ``512MB`` → ``512m``, ``2 GiB`` → ``2g``, ``1024`` → ``1024``.

    Raises ValueError for anything that is not a whole number with an optional unit.
    """
    match = _SIZE.match(value)
    if not match:
        raise ValueError(value)
    number, unit = match.groups()
    return number + (unit or "").lower()



@dataclass(frozen=True)
class ResolvedSettings:
    """What spark-submit gets for one job: every Spark property, the operator's and the job's."""

    conf: Mapping[str, str]
    verbose: bool
    #: Settings of the job the configuration overrode, one sentence each.
    warnings: tuple[str, ...]
    #: The properties the job itself chose (and the policy let it), part of ``conf``.
    chosen: Mapping[str, str] = field(default_factory=dict)


def operator_value(prop: str, settings: Settings) -> str | None:
    """The configuration's value of an operator-owned property; None when it leaves it to Spark."""
    if prop == "spark.master":
        return settings.spark.master
    if prop == "spark.submit.deployMode":
        return settings.spark.deploy_mode
    return settings.spark.conf.get(prop)


def resolve_settings(job_parameters: Mapping[str, str], spark_conf: Mapping[str, str],
                     executor_memory: str | None, settings: Settings, app_name: str, *,
                     flag_paths: Mapping[str, str] | None = None,
                     conf_path: str = "$.targetEngine.sparkConf",
                     ) -> tuple[ResolvedSettings | None, list[FieldError]]:
    """The job's Spark properties under the policy, merged over the configuration's; or the
    problems with them (then the first item is None).

    Problems and warnings name ``$.jobParameters[flag]`` and ``$.targetEngine.sparkConf[key]``,
    or, for a job whose options come from other fields (a script job's ``driverMemory``), the
    path ``flag_paths`` gives a flag and ``conf_path[key]``.

    Precedence, lowest first: ``spark.app.name``, the configuration's ``spark.conf``,
    ``targetEngine.executorMemory``, ``jobParameters``, ``targetEngine.sparkConf``; the
    operator's properties always keep the configuration's value.
    """
    allow = settings.policy.allow
    errors: list[FieldError] = []
    warnings: list[str] = []
    chosen: dict[str, str] = {}
    verbose = False

    def add(path: str, prop: str, value: str) -> None:
        if not _PROPERTY.match(prop):
            errors.append(FieldError(path, f"{prop!r} is not a Spark property name: it must start with "
                                           "'spark.' and hold only letters, digits, '_', '-' and '.'"))
            return
        if _BAD_VALUE.search(value):
            errors.append(FieldError(path, "the value may not contain newlines or other control characters"))
            return
        allowed = _matches(prop, (*ALWAYS_ALLOWED, *allow))
        if not allowed and _matches(prop, OPERATOR_PROPERTIES):
            ours = operator_value(prop, settings)
            if value != ours:
                kept = (f"the configuration's {ours!r} is used" if ours is not None
                        else "the configuration leaves it to Spark, so the job's value is not used")
                warnings.append(f"{path}: {value!r} is overridden: {prop} is chosen by the operator, "
                                f"and {kept}")
            return
        if not allowed and _matches(prop, REFUSED_PROPERTIES):
            errors.append(FieldError(path, f"{prop!r} is chosen by the operator, not by a job "
                                           "(the configuration's policy.allow can permit it)"))
            return
        if prop in SIZE_PROPERTIES:
            try:
                value = normalize_size(value)
            except ValueError:
                errors.append(FieldError(path, f"{value!r} is not a size: use a whole number with "
                                               "an optional unit k, m, g or t (e.g. 512m, 512MB, 2g)"))
                return
        chosen[prop] = value

    def add_flag(path: str, flag: str, value: str) -> None:
        nonlocal verbose
        if flag in VALUELESS_FLAGS:
            if value not in ("", "true"):
                errors.append(FieldError(path, f"{flag} takes no value; send it as \"{flag}\": \"\""))
            verbose = True
        elif flag == "--conf":
            prop, sep, prop_value = value.partition("=")
            if not sep or not prop.strip():
                errors.append(FieldError(path, f"{value!r} is not of the form 'spark.some.property=value'"))
            else:
                add(path, prop.strip(), prop_value)
        elif flag in FLAG_PROPERTIES:
            add(path, FLAG_PROPERTIES[flag], value)
        else:
            accepted = ", ".join(sorted([*FLAG_PROPERTIES, *VALUELESS_FLAGS, "--conf"]))
            errors.append(FieldError(path, f"{flag!r} is not a spark-submit option sparkrunner "
                                           f"knows; accepted: {accepted}"))

    if executor_memory is not None:
        add("$.targetEngine.executorMemory", "spark.executor.memory", executor_memory)
    for flag, value in job_parameters.items():
        add_flag((flag_paths or {}).get(flag) or f"$.jobParameters[{flag!r}]", flag, value)
    for key, value in spark_conf.items():
        path = f"{conf_path}[{key!r}]"
        if key.startswith("-"):
            add_flag(path, key, value)
        else:
            add(path, key, value)
    if errors:
        return None, errors
    # The operator's own settings go last but for the job's: spark.master and the deploy mode
    # travel as spark-submit flags, not here.
    conf = {"spark.app.name": f"sparkrunner-{app_name}", **settings.spark.conf, **chosen}
    return ResolvedSettings(conf=conf, verbose=verbose, warnings=tuple(warnings), chosen=chosen), []


def _matches(prop: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(prop, p) for p in patterns)


# -- locations ------------------------------------------------------------------------------

#: Cloud metadata services: never a data source, whatever the scheme.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
#: Schemes refused whatever the configuration says: each reads a file of this machine, or of
#: any node, past the local-roots rule (``local:`` is a file on every node; ``har:`` and
#: ``jar:`` wrap another URL).
ALWAYS_DENIED_SCHEMES = frozenset({"local", "har", "jar", "data", "javascript"})
#: Schemes of the URLs sparkrunner reads or writes itself: the HDFS checks and the scoring
#: path's inputs and outputs (read by Spark here, with the service's rights).
READ_SCHEMES = ("file", "hdfs", "webhdfs")
#: What the scoring path ships with SparkContext.addFile, which also fetches http(s).
ATTACHMENT_READ_SCHEMES = (*READ_SCHEMES, "http", "https")


@dataclass(frozen=True)
class Location:
    """One EXTERNAL_FILE asset's fileUrl, where it stands in the document."""

    path: str  # JSON path of the fileUrl
    url: str
    #: The schemes accepted because sparkrunner reads or writes this URL itself; None: any.
    read_schemes: tuple[str, ...] | None = None


def location_problems(locations: list[Location], policy: PolicySettings,
                      data_dir: Path | None = None, local: bool = True) -> list[FieldError]:
    """Every location ``policy`` does not accept, with why.

    ``local=False`` (``sparkrunner run``, which runs as its own user) skips the local-roots rule.
    """
    errors = []
    for where in locations:
        problem = url_problem(where.url, policy, data_dir, local, where.read_schemes)
        if problem:
            errors.append(FieldError(where.path, f"{where.url!r} {problem}"))
    return errors


def url_problem(url: str, policy: PolicySettings, data_dir: Path | None, local: bool,
                read_schemes: tuple[str, ...] | None = None) -> str | None:
    if "\0" in url or any(ord(c) < 32 for c in url):
        return "holds a NUL or another control character"
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if len(scheme) == 1:  # C:\data is a Windows drive, not a scheme
        scheme = ""
    named = scheme or "file"
    if named in ALWAYS_DENIED_SCHEMES or named in policy.denied_url_schemes:
        denied = ", ".join(sorted({*ALWAYS_DENIED_SCHEMES, *policy.denied_url_schemes}))
        return f"uses the scheme {scheme + ':'!r}, which the service refuses (refused: {denied})"
    if policy.file_url_schemes and named not in policy.file_url_schemes:
        allowed = ", ".join(policy.file_url_schemes)
        return f"uses the scheme {scheme + ':'!r}, which the service does not accept (accepted: {allowed})"
    if read_schemes is not None and named not in read_schemes:
        return (f"uses the scheme {scheme + ':'!r}, which sparkrunner cannot read or write itself "
                f"here (it can: {', '.join(read_schemes)})")
    if scheme in ("", "file"):
        if scheme == "file" and parsed.netloc not in ("", "localhost"):
            return f"names the host {parsed.netloc!r}; a file: URL may only name this machine"
        return _local_problem(url if not scheme else parsed.path, policy, data_dir) if local else None
    return _host_problem(parsed.hostname)


def local_path(url: str) -> str | None:
    """The local path a fileUrl names (a plain path, or a ``file:`` URL, %-escapes decoded as
    Spark decodes them), or None for another scheme."""
    parsed = urllib.parse.urlsplit(url)
    if len(parsed.scheme) <= 1:  # no scheme, or a Windows drive
        return url
    if parsed.scheme.lower() == "file" and parsed.netloc in ("", "localhost"):
        return urllib.parse.unquote(parsed.path)
    return None


def _local_problem(path: str, policy: PolicySettings, data_dir: Path | None) -> str | None:
    roots = ", ".join(policy.local_roots) or "none are configured"
    if not policy.local_roots:
        return f"is a local path, and the service accepts local paths only under policy.local_roots ({roots})"
    # Spark decodes %-escapes in paths (%2e%2e is ..): both readings must stay inside a root.
    for reading in {path, urllib.parse.unquote(path)}:
        if not os.path.isabs(reading):
            return "is a relative path; local paths must be absolute"
        resolved = Path(os.path.realpath(reading))  # resolves .., and links that exist
        if data_dir is not None and resolved.is_relative_to(Path(os.path.realpath(data_dir))):
            return "lies inside the service's data directory, which holds other jobs"
        for hidden in policy.hidden:
            if resolved.is_relative_to(os.path.realpath(hidden)):
                return f"lies inside {hidden!r}, which policy.hidden keeps from every job"
        if not any(resolved.is_relative_to(os.path.realpath(root)) for root in policy.local_roots):
            return f"resolves to {str(resolved)!r}, which is outside policy.local_roots ({roots})"
    return None


def _host_problem(host: str | None) -> str | None:
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: the cluster resolves it
    if address in METADATA_ADDRESSES or address.is_link_local or address.is_multicast or address.is_unspecified:
        return f"names the address {host}, a metadata, link-local, multicast or unspecified address (never a data source)"
    return None
