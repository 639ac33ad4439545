"""From an admitted job to a laid-out working directory and the command that runs it.

Build the command line, look at HDFS (missing inputs fail here, before any JVM), lay out the
working directory with the job's warnings at the top of its log and its Spark properties in a
private file, stage it. It is the first half of the launch sequence `sparkrunner run` and the
service share (:class:`sparkrunner.launcher.Launcher`), so they cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .admission import AdmittedJob
from .command import build_argv, parse_properties, properties_text, ships_daemon, spark_properties
from .config import Settings
from .environments import PythonEnv
from .errors import WorkdirError
from .hdfs import Hdfs, needs_hdfs
from .jobspec import JobSpec
from .workdir import (DAEMON_FILENAME, FILE_MODE, LOG_FILENAME, PROPERTIES_FILENAME, daemon_source, render,
                      write_file)

#: How a warning line starts in driver.log.
WARNING_PREFIX = "sparkrunner: warning: "
#: The operator's Spark defaults in spark.conf_dir, as spark-submit would have read them.
DEFAULTS_FILENAME = "spark-defaults.conf"


@dataclass(frozen=True)
class Prepared:
    """A laid-out job: spark-submit's argv and the Spark properties its file holds."""

    argv: list[str]
    properties: dict[str, str]


def prepare(settings: Settings, job: AdmittedJob, workdir: Path, job_id: str, spark_submit: str,
            hdfs: Hdfs, python_env: PythonEnv | None = None) -> Prepared:
    """Lays out ``workdir`` for ``job`` and returns spark-submit's argv and properties.

    ``python_env`` is the job's own environment (its model's packages), built already: its
    lines head the job's log, under the warnings. Raises HdfsCheckFailed (a missing input, an
    existing output under the "fail" policy, a staging failure) or WorkdirError; nothing is
    written before the HDFS checks pass.
    """
    argv = build_argv(settings, job, workdir, spark_submit)
    properties = spark_properties(settings, job, spark_defaults(settings), python_env)
    if isinstance(job.spec, JobSpec) and needs_hdfs(job.spec):  # a script job's files: Spark's
        hdfs.check(job.spec)
    render(job.spec, workdir, job_id, job.settings.conf)
    if ships_daemon(settings, job):
        write_file(Path(workdir), DAEMON_FILENAME, daemon_source().encode("utf-8"))
    lines = [f"{WARNING_PREFIX}{warning}" for warning in job.warnings]
    lines += python_env.log_lines if python_env is not None else ()
    if lines:
        append_log(Path(workdir) / LOG_FILENAME, lines)
    hdfs.stage(workdir, job_id)
    # After staging: the properties may hold the cluster's secret, which never leaves this host.
    write_file(Path(workdir), PROPERTIES_FILENAME, properties_text(properties).encode("utf-8"))
    return Prepared(argv, properties)


def spark_defaults(settings: Settings) -> dict[str, str]:
    """The properties of ``spark.conf_dir``'s spark-defaults.conf; none without one."""
    if not settings.spark.conf_dir:
        return {}
    path = Path(settings.spark.conf_dir).expanduser() / DEFAULTS_FILENAME
    try:
        return parse_properties(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkdirError(f"cannot read the Spark defaults {str(path)!r} (spark.conf_dir): {exc}") from exc


def append_log(path: Path, lines) -> None:
    """Appends ``lines`` to a job's log (a private file, never through a link)."""
    with open(path, "a", encoding="utf-8", opener=_open_private) as out:
        out.writelines(f"{line}\n" for line in lines)


def _open_private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, FILE_MODE)
