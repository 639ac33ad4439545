"""From an admitted job to a laid-out working directory and the command that runs it.

Build the command line, look at HDFS (missing inputs fail here, before any JVM), lay out the
working directory with the job's warnings at the top of its log, stage it. It is the first half
of the launch sequence `sparkrunner run` and the service share (:class:`sparkrunner.launcher.Launcher`),
so they cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from .admission import AdmittedJob
from .command import build_argv
from .config import Settings
from .hdfs import Hdfs, needs_hdfs
from .jobspec import JobSpec
from .workdir import LOG_FILENAME
from .workdir import FILE_MODE, render

#: How a warning line starts in driver.log.
WARNING_PREFIX = "sparkrunner: warning: "


def prepare(settings: Settings, job: AdmittedJob, workdir: Path, job_id: str, spark_submit: str,
            hdfs: Hdfs) -> list[str]:
    """Lays out ``workdir`` for ``job`` and returns spark-submit's argv.

    Raises HdfsCheckFailed (a missing input, an existing output under the "fail" policy, a
    staging failure) or WorkdirError; nothing is written before the HDFS checks pass.
    """
    argv = build_argv(settings, job, workdir, spark_submit)
    if isinstance(job.spec, JobSpec) and needs_hdfs(job.spec):  # a script job's files: Spark's
        hdfs.check(job.spec)
    render(job.spec, workdir, job_id)
    if job.warnings:
        log = Path(workdir) / LOG_FILENAME
        with open(log, "a", encoding="utf-8", opener=lambda p, f: _open_private(p, f)) as out:
            out.writelines(f"{WARNING_PREFIX}{warning}\n" for warning in job.warnings)
    hdfs.stage(workdir, job_id)
    return argv


def _open_private(path: str, flags: int) -> int:
    import os

    return os.open(path, flags | os.O_NOFOLLOW, FILE_MODE)
