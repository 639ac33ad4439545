"""Builds the spark-submit command line: the settings policy, size normalization, secret masking.

:func:`build_argv` is pure: it turns the configuration, a validated job and a working directory
into the argv list, touching no file and no process. The job's ``jobParameters`` (flag form, as
ModelOp clients send them) and ``targetEngine.sparkConf`` (Spark properties) become one set of
Spark properties, filtered by a policy of what a job may choose.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .config import Settings
from .errors import FieldError, JobInvalid, SparkNotFound
from .jobspec import DRIVER_FILENAME, SCORING_FILENAME, JobSpec

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

#: Spark properties only the operator sets, unless ``policy.allow`` lets jobs choose them:
#: where the job runs and as whom, what the JVMs load, and the cluster's security.
REFUSED_PROPERTIES: tuple[str, ...] = (
    "spark.master",
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
    "spark.driver.supervise",
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
    "spark.hadoop.fs.defaultFS",
    "spark.hadoop.yarn.*",
    "spark.hadoop.hadoop.*",
    "spark.hadoop.*.impl",
    "spark.yarn.*",
    "spark.security.credentials.*",
    # Addresses, ports and access control: the driver and its UI stay where the operator put them.
    "spark.driver.bindAddress",
    "spark.driver.host",
    "spark.driver.port",
    "spark.blockManager.*port",
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
_SECRET_KEY = re.compile(r"(?i)secret|password|token|access[.]?key|account[.]key|credential|[.]sas[.]")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PROPERTY = re.compile(r"^spark\.[A-Za-z0-9_.\-]+$")
MASK = "******"


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
class JobSettings:
    """What a job chose, after the policy: Spark properties, and whether spark-submit is verbose."""

    conf: Mapping[str, str]
    verbose: bool = False


def job_settings(spec: JobSpec, allow: tuple[str, ...] = ()) -> JobSettings:
    """The job's settings, or :class:`JobInvalid` naming every refused or malformed one.

    ``allow`` holds glob patterns of properties the operator lets jobs set although
    :data:`REFUSED_PROPERTIES` refuses them.
    """
    errors: list[FieldError] = []
    conf: dict[str, str] = {}
    verbose = False

    def add(path: str, prop: str, value: str) -> None:
        if not _PROPERTY.match(prop):
            errors.append(FieldError(path, f"{prop!r} is not a Spark property name: it must start with "
                                           "'spark.' and hold only letters, digits, '_', '-' and '.'"))
            return
        if _refused(prop, allow):
            errors.append(FieldError(path, f"{prop!r} is chosen by the operator, not by a job "
                                           "(the configuration's policy.allow can permit it)"))
            return
        if _BAD_VALUE.search(value):
            errors.append(FieldError(path, "the value may not contain newlines or other control characters"))
            return
        if prop in SIZE_PROPERTIES:
            try:
                value = normalize_size(value)
            except ValueError:
                errors.append(FieldError(path, f"{value!r} is not a size: use a whole number with "
                                               "an optional unit k, m, g or t (e.g. 512m, 512MB, 2g)"))
                return
        conf[prop] = value

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

    for flag, value in spec.job_parameters.items():
        add_flag(f"$.jobParameters[{flag!r}]", flag, value)
    for key, value in spec.spark_conf.items():
        path = f"$.targetEngine.sparkConf[{key!r}]"
        if key.startswith("-"):
            add_flag(path, key, value)
        else:
            add(path, key, value)
    if errors:
        raise JobInvalid(errors)
    return JobSettings(conf=conf, verbose=verbose)


def _refused(prop: str, allow: tuple[str, ...]) -> bool:
    matches = lambda patterns: any(fnmatch.fnmatchcase(prop, p) for p in patterns)  # noqa: E731
    return matches(REFUSED_PROPERTIES) and not matches((*ALWAYS_ALLOWED, *allow))


def build_argv(settings: Settings, spec: JobSpec, workdir: Path, spark_submit: str) -> list[str]:
    """The whole spark-submit command line for ``spec`` laid out in ``workdir``.

    Operator properties are defaults; the job's own override them where the policy lets it.
    Raises :class:`JobInvalid` when the job sets something it may not.
    """
    chosen = job_settings(spec, settings.policy.allow)
    conf = {"spark.app.name": f"sparkrunner-{spec.name}", **settings.spark.conf, **chosen.conf}
    workdir = Path(workdir)
    argv = [spark_submit, "--master", settings.spark.master,
            "--deploy-mode", settings.spark.deploy_mode]
    for key in sorted(conf):
        argv += ["--conf", f"{key}={conf[key]}"]
    py_files = [SCORING_FILENAME] if spec.scoring else []
    py_files += [m.filename for m in spec.modules]
    if py_files:
        argv += ["--py-files", ",".join(str(workdir / name) for name in py_files)]
    if spec.files:
        argv += ["--files", ",".join(str(workdir / f.filename) for f in spec.files)]
    if chosen.verbose:
        argv.append("--verbose")
    argv.append(str(workdir / DRIVER_FILENAME))
    return argv


def mask_argv(argv: list[str]) -> list[str]:
    """A copy of ``argv`` fit for a log: values of secret-looking properties replaced by a mask."""
    masked = []
    for arg in argv:
        key, sep, _ = arg.partition("=")
        masked.append(f"{key}={MASK}" if sep and key.startswith("spark.") and _SECRET_KEY.search(key) else arg)
    return masked


def spark_home(settings: Settings) -> Path:
    """The Spark installation to use: the configured one, or the pyspark wheel's."""
    if settings.spark.home:
        home = Path(settings.spark.home).expanduser()
    else:
        found = importlib.util.find_spec("pyspark")
        if found is None or not found.submodule_search_locations:
            raise SparkNotFound("pyspark is not installed and spark.home is not configured; "
                                "install sparkrunner's dependencies (pip install pyspark==4.3.0)")
        home = Path(list(found.submodule_search_locations)[0])
    if not (home / "bin" / "spark-submit").is_file():
        raise SparkNotFound(f"no bin/spark-submit under {str(home)!r}; set spark.home to a Spark installation")
    return home


def spark_submit_path(settings: Settings) -> str:
    return str(spark_home(settings) / "bin" / "spark-submit")


def child_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment spark-submit runs in: Spark's home and Python pinned, the operator's extras."""
    env = dict(os.environ if base is None else base)
    python = settings.spark.python or sys.executable
    env["SPARK_HOME"] = str(spark_home(settings))  # never another Spark that SPARK_HOME points at
    env["PYSPARK_PYTHON"] = python
    env["PYSPARK_DRIVER_PYTHON"] = python
    env.pop("PYSPARK_DRIVER_PYTHON_OPTS", None)  # a Jupyter setting here would hijack the driver
    if settings.spark.conf_dir:
        env["SPARK_CONF_DIR"] = str(Path(settings.spark.conf_dir).expanduser())
    env.update(settings.spark.env)
    return env
