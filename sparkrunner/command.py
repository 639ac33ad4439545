"""Builds the spark-submit command line and its environment, and masks secrets for logs.

:func:`build_argv` is pure: it turns the configuration, an admitted job (whose Spark properties
:mod:`sparkrunner.admission` already resolved under :mod:`sparkrunner.policy`) and a working
directory into the argv list, touching no file and no process.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .config import Settings
from .errors import SparkNotFound
from .script import ScriptSpec
from .workdir import DRIVER_FILENAME, SCORING_FILENAME

if TYPE_CHECKING:
    from .admission import AdmittedJob

_SECRET_KEY = re.compile(r"(?i)secret|password|token|access[.]?key|account[.]key|credential|[.]sas[.]")
MASK = "******"


def build_argv(settings: Settings, job: AdmittedJob, workdir: Path, spark_submit: str) -> list[str]:
    """The whole spark-submit command line for ``job`` laid out in ``workdir``.

    Only formats what admission resolved: it cannot refuse the job.
    """
    spec, conf = job.spec, dict(job.settings.conf)
    workdir = Path(workdir)
    argv = [spark_submit, "--master", settings.spark.master,
            "--deploy-mode", settings.spark.deploy_mode]
    # spark-submit reads no property for impersonation, only its option (the policy refuses
    # it unless the operator allows it).
    proxy_user = conf.pop("spark.submit.proxyUser", None)
    if proxy_user is not None:
        argv += ["--proxy-user", proxy_user]
    for key in sorted(conf):
        argv += ["--conf", f"{key}={conf[key]}"]
    if isinstance(spec, ScriptSpec):
        # The script's locations as the job named them: Spark fetches them.
        for option, locations in spec.shipped().items():
            if locations:
                argv += [option, ",".join(locations)]
    else:
        py_files = [SCORING_FILENAME] if spec.scoring else []
        py_files += [m.filename for m in spec.modules]
        if py_files:
            argv += ["--py-files", ",".join(str(workdir / name) for name in py_files)]
        if spec.files:
            argv += ["--files", ",".join(str(workdir / f.filename) for f in spec.files)]
    if job.settings.verbose:
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
