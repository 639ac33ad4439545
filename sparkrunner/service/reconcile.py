"""On start, takes over whatever the last run of the service left unfinished.

Queued jobs are left to the scheduler. A job with a live spark-submit (pid *and* process start
time match) is followed again; one whose process is gone ends with the exit status its
supervisor recorded, or as lost. A job saved as WAITING whose spark-submit never started is
launched now, or ends CANCELLED if a cancel had come for it.
"""

from __future__ import annotations

import logging
import time

from .. import proc
from ..workdir import EXIT_FILENAME
from ..launcher import CANCELLED_REASON, Launcher, started_by_supervisor
from ..states import JobStatus
from ..store import JobStore
from .reader import JobFiles
from .runner import Runner

log = logging.getLogger(__name__)


def reconcile(store: JobStore, runner: Runner, files: JobFiles) -> None:
    """Re-attaches live runs of unfinished jobs, ends those whose process is gone and launches
    those that never started."""
    never_started = []
    for record in store.unfinished():
        if record.status is JobStatus.CREATED:
            continue  # the scheduler starts it in turn
        workdir = files.workdir(record)
        if record.pid is None:
            # The last run died between saving WAITING and saving the pid: the supervisor,
            # if it got as far as starting, says who it is; if not, nothing ever ran.
            started = started_by_supervisor(workdir / EXIT_FILENAME)
            if started is None:
                never_started.append(record)
                continue
            record = store.update(record.id, pid=started[0], pid_start=started[1])
        # An unknown start time cannot prove the pid is still ours: then exit.json decides.
        alive = (record.pid is not None and record.pid_start is not None
                 and proc.is_running(record.pid, record.pid_start))
        run = Launcher.attach(record.pid if alive else None, record.pid_start, workdir)
        log.info("Job %s was %s; its process is %s.", record.id, record.status,
                 "alive: re-attaching" if alive else "gone")
        if record.cancel_requested:
            run.cancel()
        runner.follow(record, run)
    for record in never_started:
        if record.cancel_requested:
            store.move(record.id, JobStatus.CANCELLED, CANCELLED_REASON, ended=time.time())
            continue
        log.info("Job %s was %s, but its spark-submit never started: starting it now.",
                 record.id, record.status)
        runner.launch(record)
