"""Builds the spark-submit command line, its properties file and its environment, and masks
secrets for logs.

:func:`build_argv` and :func:`spark_properties` are pure: they turn the configuration, an
admitted job (whose Spark properties :mod:`sparkrunner.admission` already resolved under
:mod:`sparkrunner.policy`) and a working directory into the argv list and the properties,
touching no file and no process.

Every Spark property travels in the run's properties file (:data:`PROPERTIES_FILENAME`, 0600 in
the working directory), never as ``--conf`` on the command line, which every user of the host
can read in ``/proc/<pid>/cmdline``. spark-submit given ``--properties-file`` no longer reads
``$SPARK_CONF_DIR/spark-defaults.conf`` (unless told ``--load-spark-defaults``, which we never
say): the operator's defaults there, the cluster's secret among them, are copied into the file
instead, under the configuration's and the job's properties, as Spark would rank them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .config import Settings
from .environments import ARCHIVE_LINK, EXECUTOR_PYTHON, PythonEnv
from .errors import SparkNotFound
from .script import ScriptSpec
from .workdir import DAEMON_FILENAME, DAEMON_MODULE, DRIVER_FILENAME, PROPERTIES_FILENAME, SCORING_FILENAME

if TYPE_CHECKING:
    from .admission import AdmittedJob

_SECRET_KEY = re.compile(r"(?i)secret|password|token|access[.]?key|account[.]key|credential|[.]sas[.]")
MASK = "******"


def build_argv(settings: Settings, job: AdmittedJob, workdir: Path, spark_submit: str) -> list[str]:
    """The whole spark-submit command line for ``job`` laid out in ``workdir``.

    Only formats what admission resolved: it cannot refuse the job.
    """
    spec = job.spec
    workdir = Path(workdir)
    argv = [spark_submit, "--master", settings.spark.master,
            "--deploy-mode", settings.spark.deploy_mode,
            "--properties-file", str(workdir / PROPERTIES_FILENAME)]
    # spark-submit reads no property for impersonation, only its option (the policy refuses
    # it unless the operator allows it); it stays out of the properties file.
    proxy_user = job.settings.conf.get(PROXY_USER_PROPERTY)
    if proxy_user is not None:
        argv += ["--proxy-user", proxy_user]
    daemon = [str(workdir / DAEMON_FILENAME)] if ships_daemon(settings, job) else []
    if isinstance(spec, ScriptSpec):
        # The script's locations as the job named them: Spark fetches them.
        for option, locations in spec.shipped().items():
            if option == "--py-files":
                locations = (*daemon, *locations)
            if locations:
                argv += [option, ",".join(locations)]
    else:
        py_files = [SCORING_FILENAME] if spec.scoring else []
        py_files += [m.filename for m in spec.modules]
        py_files = daemon + [str(workdir / name) for name in py_files]
        if py_files:
            argv += ["--py-files", ",".join(py_files)]
        if spec.shipped_files:
            argv += ["--files", ",".join(str(workdir / f.filename) for f in spec.shipped_files)]
    if job.settings.verbose:
        argv.append("--verbose")
    argv.append(str(workdir / DRIVER_FILENAME))
    return argv


def spark_properties(settings: Settings, job: AdmittedJob,
                     defaults: Mapping[str, str] | None = None,
                     python_env: PythonEnv | None = None) -> dict[str, str]:
    """Every Spark property of ``job``'s run, sorted: ``defaults`` (the operator's
    spark-defaults.conf) under what admission resolved (the configuration's and the job's), on
    a cluster the executors' Python daemon (:func:`ships_daemon`), and the job's own Python
    environment when its model brings packages (:func:`environment_properties`)."""
    merged = {**(defaults or {}), **job.settings.conf}
    merged.pop(PROXY_USER_PROPERTY, None)  # an option of spark-submit's (build_argv), not a property
    if ships_daemon(settings, job):
        merged[DAEMON_PROPERTY] = DAEMON_MODULE
    if python_env is not None:
        merged.update(environment_properties(python_env, merged.get(ARCHIVES_PROPERTY)))
    return {key: merged[key] for key in sorted(merged)}


ARCHIVES_PROPERTY = "spark.archives"


def environment_properties(python_env: PythonEnv, archives: str | None) -> dict[str, str]:
    """The properties that run a job's driver and Python workers on its own environment: its
    interpreter here; on a cluster (the environment packed), the archive shipped with
    ``spark.archives`` and unpacked as ``./environment`` beside each executor."""
    properties = {"spark.pyspark.driver.python": python_env.python,
                  "spark.pyspark.python": python_env.python}
    if python_env.archive is not None:
        shipped = f"{python_env.archive}#{ARCHIVE_LINK}"
        properties[ARCHIVES_PROPERTY] = f"{archives},{shipped}" if archives else shipped
        properties["spark.pyspark.python"] = EXECUTOR_PYTHON
    return properties


#: Impersonation: spark-submit's --proxy-user, which no property sets.
PROXY_USER_PROPERTY = "spark.submit.proxyUser"
#: The Python module an executor starts to fork its Python workers.
DAEMON_PROPERTY = "spark.python.daemon.module"


def ships_daemon(settings: Settings, job: AdmittedJob) -> bool:
    """Whether the run ships :data:`DAEMON_FILENAME` to its executors as their Python daemon:
    on a cluster (any master but local), where an executor's environment may hold the cluster's
    secret, unless the operator named a daemon module of their own."""
    return not settings.spark.master.startswith("local") and DAEMON_PROPERTY not in job.settings.conf


def properties_text(properties: Mapping[str, str]) -> str:
    """``properties`` as a Java properties file, every character that could end a key or a line
    escaped: a value holding a newline stays one value, never a second property."""
    lines = ["# Written by sparkrunner: spark-submit's --properties-file for this run."]
    lines += [f"{_escape(key, key=True)}={_escape(value)}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f",
            "=": "\\=", ":": "\\:", "#": "\\#", "!": "\\!"}


def _escape(text: str, key: bool = False) -> str:
    """As java.util.Properties.store writes it, non-ASCII as UTF-16 \\u escapes."""
    out = []
    for i, ch in enumerate(text):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            units = ch.encode("utf-16-be")
            out += [f"\\u{units[j]:02x}{units[j + 1]:02x}" for j in range(0, len(units), 2)]
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """The properties of a Java properties file (spark-defaults.conf), as java.util.Properties
    reads them: ``key value``, ``key=value`` or ``key: value``; comments; continued lines;
    escapes. Values are stripped, as Spark strips them."""
    properties: dict[str, str] = {}
    lines = re.split(r"\r\n|\r|\n", text)  # Java's line ends only
    i = 0
    while i < len(lines):
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while _continues(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        if _continues(line):
            line = line[:-1]
        key, rest = _split_key(line)
        properties[_unescape(key)] = _unescape(rest).strip()
    return properties


def _continues(line: str) -> bool:
    """Whether a line ends in an odd number of backslashes (the next line continues it)."""
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _split_key(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=: \t\f":
            break
        i += 1
    key, rest = line[:i], line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return key, rest


def _unescape(text: str) -> str:
    out, i = [], 0
    named = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2:i + 6]):
            out.append(chr(int(text[i + 2:i + 6], 16)))
            i += 6
            continue
        out.append(named.get(nxt, nxt))
        i += 2
    # \\u escapes of a character beyond the BMP come as a surrogate pair.
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")


def mask_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``properties`` fit for a log: secret-looking values replaced by a mask."""
    return {key: MASK if _SECRET_KEY.search(key) else value for key, value in properties.items()}


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


def child_env(settings: Settings, base: Mapping[str, str] | None = None,
              python_env: PythonEnv | None = None) -> dict[str, str]:
    """The environment spark-submit runs in: Spark's home and Python pinned (the job's own
    environment's, when its model brings packages), the operator's extras."""
    env = dict(os.environ if base is None else base)
    python = python_env.python if python_env else (settings.spark.python or sys.executable)
    env["SPARK_HOME"] = str(spark_home(settings))  # never another Spark that SPARK_HOME points at
    env["PYSPARK_PYTHON"] = EXECUTOR_PYTHON if python_env and python_env.archive else python
    env["PYSPARK_DRIVER_PYTHON"] = python
    env.pop("PYSPARK_DRIVER_PYTHON_OPTS", None)  # a Jupyter setting here would hijack the driver
    if settings.spark.conf_dir:
        env["SPARK_CONF_DIR"] = str(Path(settings.spark.conf_dir).expanduser())
    env.update(settings.spark.env)
    return env
