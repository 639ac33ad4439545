"""From a validated job to a laid-out working directory and the command that runs it.

The one sequence both `sparkrunner run` and the service follow, so they cannot drift apart:
build the command line (which refuses settings the job may not choose), look at HDFS (missing
inputs fail here, before any JVM), lay out the working directory, stage it.
"""

from __future__ import annotations

from pathlib import Path

from .command import build_argv
from .config import Settings
from .hdfs import Hdfs, needs_hdfs
from .jobspec import JobSpec
from .workdir import render


def prepare(settings: Settings, spec: JobSpec, workdir: Path, job_id: str, spark_submit: str,
            hdfs: Hdfs) -> list[str]:
    """Lays out ``workdir`` for ``spec`` and returns spark-submit's argv.

    Raises JobInvalid (a refused setting), HdfsCheckFailed (a missing input, an existing output
    under the "fail" policy, a staging failure) or WorkdirError; nothing is written before the
    first two have been ruled out.
    """
    argv = build_argv(settings, spec, workdir, spark_submit)
    if needs_hdfs(spec):
        hdfs.check(spec)
    render(spec, workdir, job_id)
    hdfs.stage(workdir, job_id)
    return argv
