"""A warm job's run: started by a warm server's fork server, followed as a cold run is.

:class:`WarmRun` is a :class:`~sparkrunner.launcher.SparkSubmit` whose process is not a child of
ours: the fork server starts the job's supervisor, which writes the same ``supervisor.json`` and
``exit.json`` as a cold run's. Following, timeouts, cancel (SIGTERM to the supervisor's process
group; the job interrupts its Connect session) and re-attaching after a restart are the same.
Only the end differs: a job whose server dies is ended (its Connect client would retry for
minutes) and ends ERROR saying the server died.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import uuid
from pathlib import Path

from .. import proc
from ..admission import AdmittedJob
from ..jobspec import JobSpec
from ..launcher import Outcome, SparkSubmit, _REPORT
from ..states import JobStatus
from ..workdir import DIR_MODE, EXIT_FILENAME, LOG_FILENAME, SCRATCH_DIRNAME, SUPERVISOR_FILENAME
from .server import WarmServer


#: How often a running warm job looks at its server.
SERVER_CHECK_SECONDS = 1.0


def session_key(job: AdmittedJob) -> str | None:
    """What makes a warm job's session fit for the next job of the same kind, or None when the job
    needs a session of its own.

    Starting a session's Python workers takes seconds, more than scoring a small batch; so jobs
    that differ only in their data may share one, one after the other: scoring jobs of one
    registered model version (the same source, files and attachments, added again as they are)
    with the same SQL settings, whose data lies in their own working directories (bulk scoring:
    nothing of theirs is added to the session).
    """
    spec = job.spec
    source = spec.document.get("registeredModel")
    if not isinstance(spec, JobSpec) or spec.scoring is None or not isinstance(source, dict):
        return None
    if not all(a.in_workdir for a in spec.scoring.inputs):
        return None
    model_files = {a.get("filename") or a.get("name") for a in spec.document["model"]["storedModel"]["modelAssets"]
                   if a.get("assetType") == "FILE"}
    if any(f.filename not in model_files for f in spec.shipped_files):
        return None
    sql = sorted((k, v) for k, v in job.settings.conf.items() if k.startswith("spark.sql."))
    # The model itself too: registeredModel is only carried, a document could name any.
    digest = hashlib.sha256(json.dumps([spec.document["model"], sql], sort_keys=True).encode()).hexdigest()
    return f"{source.get('name')}:{source.get('version')}:{digest[:16]}"


class WarmRun(SparkSubmit):
    """One warm job on ``server``; :meth:`start` asks its fork server. With ``session_key``, its
    session is one an earlier job of that kind left (:func:`session_key`), and it is left for the
    next one when the job completes."""

    def __init__(self, server: WarmServer, workdir: Path, job_id: str, release=None,
                 session_key: str | None = None):
        workdir = Path(workdir)
        super().__init__([], workdir, {}, workdir / LOG_FILENAME, workdir / EXIT_FILENAME)
        self.server = server
        self.job_id = job_id
        self._release = release
        self._server_checked = 0.0
        self.session_key = session_key
        #: Its Spark Connect session: the server's Spark jobs for it carry it in their tags.
        self.session_id = server.take_session(session_key) if session_key else str(uuid.uuid4())

    def start(self) -> int:
        scratch = self.cwd / SCRATCH_DIRNAME
        os.mkdir(scratch, DIR_MODE)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "ab") as out:
            out.write(f"{_REPORT}warm: runs on the warm Spark Connect server of this user "
                      f"(127.0.0.1:{self.server.port}, its job {self.server.jobs_started + 1})\n".encode())
        files = {"log": self.log_path, "exit": self.exit_file,
                 "supervisor": self.exit_file.with_name(SUPERVISOR_FILENAME)}
        self.pid = self.server.fork(self.job_id, self.cwd, files, scratch, self.session_id,
                                    keep_session=self.session_key is not None)
        started = proc.start_time(self.pid)
        self.start_time = None if started is None else str(started)
        return self.pid

    def is_running(self) -> bool:
        running = super().is_running()
        now = time.monotonic()
        if running and now - self._server_checked > SERVER_CHECK_SECONDS:
            self._server_checked = now
            if not self.server.alive():
                self.terminate()
        return running

    def release(self) -> None:
        """Gives the server back (once): the run ended, or will not start."""
        if self._release is not None:
            release, self._release = self._release, None
            release(self.server)

    def wait(self, *args, **kwargs) -> Outcome:
        try:
            outcome = super().wait(*args, **kwargs)
            if self.pid is not None:  # whatever the job left running in its group goes too
                proc.signal_group(self.pid, signal.SIGKILL)
        finally:
            self.release()
        if outcome.status is JobStatus.COMPLETE and self.session_key is not None:
            self.server.keep_session(self.session_key, self.session_id)  # any other end: never again
        if outcome.status is JobStatus.ERROR and not self.server.alive():
            return Outcome(JobStatus.ERROR, f"{self.server.ended} while the job ran", outcome.exit_code,
                           outcome.signal, outcome.tail)
        return outcome
