"""The runner: slots, launch, follow, finish and cancel for the service's jobs.

At most ``slots`` cold jobs and ``warm_slots`` warm ones hold a slot at once, first come first
served within each kind (a quick warm job does not queue behind long cold ones). A job takes its
slot when the runner claims it and keeps it until its run ends; each claimed job has a thread of
its own for its whole trip:

1. *prepare*, outside the lock: lay out the working directory, check HDFS, stage (network calls
   of up to 30 s, which must not hold up a cancel or another job); a warm job gets its user's
   warm server (started if need be), or runs cold when none can be had;
2. *start*, under the lock: unless a cancel came meanwhile, save WAITING, start spark-submit,
   save its pid;
3. *follow* the run to its end, then *finish*: save how it ended.

A cancel takes the same lock, so it either comes before the start (the job ends CANCELLED and
spark-submit never starts) or after it (the run is signalled and ends CANCELLED).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from ..admission import AdmittedJob
from ..errors import EnvironmentFailed, HdfsCheckFailed, IllegalMove
from ..launcher import CANCELLED_REASON, Launcher, LogWatcher, Outcome, SparkSubmit
from ..prepare import WARNING_PREFIX
from ..states import ACTIVE_STATES, JobStatus
from ..store import JobRecord, JobStore
from ..warm.pool import WarmPool
from ..warm.run import WarmRun, session_key

log = logging.getLogger(__name__)

#: How long the scheduler sleeps when nothing wakes it; a safety net, not the way it learns of work.
IDLE_SECONDS = 1.0
#: How many queued jobs the scheduler looks at each time.
QUEUE_LOOKAHEAD = 200


class Runner:
    """Runs the store's queued jobs within ``slots`` and follows them to their end; thread-safe.

    ``admit`` admits a stored job again (after a restart, its admitted form is gone).
    """

    def __init__(self, store: JobStore, launcher: Launcher, jobs_dir: Path, slots: int,
                 admit: Callable[[JobRecord], AdmittedJob], warm: WarmPool | None = None,
                 warm_slots: int = 0):
        self.store = store
        self.launcher = launcher
        self.jobs_dir = Path(jobs_dir)
        self.slots = slots
        self.warm = warm
        self.warm_slots = warm_slots if warm is not None else 0
        self._admit = admit
        self._lock = threading.Lock()  # guards the three dicts below and every start or cancel
        #: Jobs running (or re-attached): their spark-submit, or their warm run.
        self._runs: dict[str, SparkSubmit] = {}
        #: Jobs claimed and being prepared, and whether they hold a warm slot: nothing runs for
        #: them yet.
        self._launching: dict[str, bool] = {}
        #: Jobs admitted by this service run and not yet launched.
        self._admitted: dict[str, AdmittedJob] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Starts taking queued jobs."""
        self._scheduler = threading.Thread(target=self._schedule, name="scheduler", daemon=True)
        self._scheduler.start()
        self.wake()

    def stop(self) -> None:
        """Stops taking jobs and starting spark-submits. Runs go on; the next start re-attaches
        them, and starts the jobs this one had claimed but not started."""
        self._stopping.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)

    def wake(self) -> None:
        """Tells the scheduler there may be a job to start or a slot free."""
        self._wake.set()

    # -- what the service asks ----------------------------------------------------------------

    def queue(self, job_id: str, job: AdmittedJob) -> None:
        """Keeps the admitted form of a job just stored, for its launch, and wakes the scheduler."""
        with self._lock:
            self._admitted[job_id] = job
        self.wake()

    def cancel(self, job_id: str) -> JobRecord:
        """Cancels a job; repeatable, and a finished job is left as it is."""
        with self._lock:
            record = self.store.get(job_id)
            if record.status is JobStatus.CREATED:
                # Queued, or being prepared: then its thread sees this before it would start.
                self._admitted.pop(job_id, None)
                return self.store.move(job_id, JobStatus.CANCELLED, CANCELLED_REASON, ended=time.time()) or record
            if record.status in ACTIVE_STATES:
                run = self._runs.get(job_id)
                if run is None:  # nothing runs for it (being started again, or it could not): end it here
                    return self.store.move(job_id, JobStatus.CANCELLED, CANCELLED_REASON,
                                           ended=time.time(), cancel_requested=True) or record
                if not record.cancel_requested:
                    record = self.store.update(job_id, cancel_requested=True)
                run.cancel()
            return record

    def launch(self, record: JobRecord) -> None:
        """Launches ``record`` now, slot or not: a job the last service run had started."""
        with self._lock:
            self._claim(record)

    def follow(self, record: JobRecord, run: SparkSubmit) -> None:
        """Follows a run started earlier (re-attached after a restart) to its end."""
        with self._lock:
            self._runs[record.id] = run
        threading.Thread(target=self._follow, args=(record, run), name=f"job-{record.id}",
                         daemon=True).start()

    # -- scheduling ---------------------------------------------------------------------------

    def _schedule(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=IDLE_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._claim_queued()
            except Exception:  # the scheduler must outlive any one job's trouble
                log.exception("Scheduling failed; trying again.")
                time.sleep(IDLE_SECONDS)

    def _claim_queued(self) -> None:
        """Claims queued jobs, oldest first, while slots of their kind are free. A job that ends
        as it starts wakes the scheduler again, so its slot goes to the next at once."""
        with self._lock:
            warm_held = (sum(isinstance(run, WarmRun) for run in self._runs.values())
                         + sum(self._launching.values()))
            free = {True: self.warm_slots - warm_held,
                    False: self.slots - (len(self._runs) + len(self._launching) - warm_held)}
            if max(free.values()) <= 0:
                return
            # Enough to find the oldest of each kind behind a queue of the other.
            queued, _ = self.store.list(status=[JobStatus.CREATED], limit=QUEUE_LOOKAHEAD, oldest_first=True)
            for record in queued:
                warm = self._runs_warm(record)
                if record.id not in self._launching and free[warm] > 0:
                    self._claim(record, warm)
                    free[warm] -= 1

    def _runs_warm(self, record: JobRecord) -> bool:
        return self.warm is not None and record.execution_mode == "warm"

    def _claim(self, record: JobRecord, warm: bool | None = None) -> None:
        """Gives ``record`` a slot and a thread to launch it (called with the lock held)."""
        self._launching[record.id] = self._runs_warm(record) if warm is None else warm
        threading.Thread(target=self._launch, args=(record,), name=f"job-{record.id}", daemon=True).start()

    # -- one job's trip -----------------------------------------------------------------------

    def _launch(self, record: JobRecord) -> None:
        """Prepares, starts and follows one claimed job."""
        try:
            run = self._prepare(record)
            started = self._start(record, run) if run is not None else None
        except Exception:  # never leave a slot taken by a job nobody launches
            log.exception("Launching job %s failed.", record.id)
            with self._lock:
                self._launching.pop(record.id, None)
            self.wake()
            return
        if started is not None:
            self._follow(started, run)

    def _prepare(self, record: JobRecord) -> SparkSubmit | None:
        """The job's spark-submit, ready to start; None when the job ended instead (outside the lock)."""
        workdir = self.jobs_dir / record.id
        with self._lock:
            job = self._admitted.pop(record.id, None)
        try:
            job = job or self._admit(record)
            if workdir.exists():
                shutil.rmtree(workdir)  # a layout the last service run left before starting
            run = self.launcher.prepare(job, workdir, record.id)
            if job.execution.warm and self.warm is not None:
                return self._warm_or_cold(record, run, session_key(job))
            return run
        except HdfsCheckFailed as exc:
            log.warning("Job %s fails its HDFS checks: %s", record.id, exc)
            self._end_unstarted(record.id, f"before spark-submit: {exc}")
        except EnvironmentFailed as exc:  # the installer's own lines say why; the log has all
            log.warning("Job %s: %s", record.id, exc)
            self._end_unstarted(record.id, str(exc))
        except Exception as exc:  # one job's trouble must never wedge the queue behind it
            log.warning("Job %s cannot start: %s", record.id, exc)
            self._end_unstarted(record.id, f"cannot start: {exc}")
        return None

    def _warm_or_cold(self, record: JobRecord, cold: SparkSubmit, key: str | None = None) -> SparkSubmit:
        """The warm run of a prepared job on its owner's warm server (in a session an earlier job
        of kind ``key`` left, if any); the ``cold`` one when no server can be had (the job's
        record and log say why)."""
        server, why = self.warm.acquire(record.owner)
        if server is not None:
            return WarmRun(server, cold.cwd, record.id, release=self.warm.release, session_key=key)
        reason = f"meant to run warm, it ran cold: {why}"
        log.warning("Job %s %s.", record.id, reason)
        self.store.update(record.id, execution_mode="cold", execution_reason=reason)
        with open(cold.log_path, "a", encoding="utf-8") as out:
            out.write(f"{WARNING_PREFIX}{reason}\n")
        return cold

    def _end_unstarted(self, job_id: str, reason: str) -> None:
        """Ends as ERROR a claimed job that could not be prepared, and frees its slot."""
        with self._lock:
            self._launching.pop(job_id, None)
            self._admitted.pop(job_id, None)  # admitted again meanwhile by a racing submit
            if self._stopping.is_set():
                return  # still queued: the next start tries it again
            try:
                self.store.move(job_id, JobStatus.ERROR, reason, ended=time.time())
            except IllegalMove:
                pass  # cancelled while it was being prepared: that stands
        self.wake()

    def _start(self, record: JobRecord, run: SparkSubmit) -> JobRecord | None:
        """Starts the prepared run unless the job was cancelled meanwhile; the job as saved
        with its pid, or None when nothing was started."""
        job_id = record.id
        with self._lock:
            self._launching.pop(job_id, None)
            self._admitted.pop(job_id, None)
            if self._stopping.is_set():
                run.release()
                return None  # still CREATED (or WAITING, never started): the next start launches it
            if self.store.get(job_id).status.is_terminal:
                run.release()
                log.info("Job %s was cancelled while it was prepared; spark-submit is not started.", job_id)
                shutil.rmtree(run.cwd, ignore_errors=True)  # as a queued job, it leaves no directory
                self.wake()
                return None
            # WAITING is saved before the process starts, and the supervisor writes its pid first
            # thing: after a crash in between, the next start re-attaches the run or, if nothing
            # ever started, starts it. No job runs unrecorded, and none is lost.
            started = {"started": time.time(), "workdir": str(run.cwd)}
            waiting = (self.store.move(job_id, JobStatus.WAITING, **started)
                       or self.store.update(job_id, **started))  # already WAITING: a restart
            try:
                pid = run.start()
            except Exception as exc:
                run.release()
                self.store.move(job_id, JobStatus.ERROR, f"cannot start spark-submit: {exc}", ended=time.time())
                self.wake()
                return None
            self._runs[job_id] = run
            # A warm job's progress is read from its server's UI, told by its session's tag.
            seen = ({"session_id": run.session_id, "ui_url": run.server.ui_url}
                    if isinstance(run, WarmRun) else {})
            try:
                return self.store.update(job_id, pid=pid, pid_start=run.start_time, **seen)
            except Exception:  # it runs: follow it; after a restart, supervisor.json names it
                log.exception("Job %s: saving the pid of its spark-submit failed.", job_id)
                return waiting

    def _follow(self, record: JobRecord, run: SparkSubmit) -> None:
        """Follows one run to its end and records how it ended."""
        job_id = record.id

        def on_line(watcher: LogWatcher, line: str) -> None:
            if watcher.application and line.startswith("sparkrunner: application: "):
                try:
                    # A warm job's driver has no UI of its own: its server's, saved at start, stays.
                    self.store.move(job_id, JobStatus.RUNNING, running=time.time(),
                                    app_id=watcher.application, ui_url=watcher.ui_url or record.ui_url)
                except IllegalMove:
                    pass  # already ended (or re-reading the log of a job that ran on)

        try:
            outcome = run.wait(timeout=record.timeout_seconds or None, on_line=on_line,
                               started_at=record.started)
        except Exception as exc:
            if self._stopping.is_set():  # the store closed under us: the next start re-attaches it
                log.info("Stopped following job %s: the service is closing.", job_id)
                return
            log.exception("Following job %s failed.", job_id)
            run.terminate()  # never leave a spark-submit running that nobody follows
            outcome = Outcome(JobStatus.ERROR, f"lost: following the job failed: {exc}")
        try:
            self._finish(job_id, outcome)
        except Exception:
            if not self._stopping.is_set():
                raise
            # The store closed under us: the next start reads the end from exit.json.
            log.info("Job %s ended %s as the service closed.", job_id, outcome.status)

    def _finish(self, job_id: str, outcome: Outcome) -> None:
        with self._lock:
            self._runs.pop(job_id, None)
            self._admitted.pop(job_id, None)  # kept by a submit that lost a race with its launch
            # A cancel that came too late to stop a job that succeeded does not undo it.
            if self.store.get(job_id).cancel_requested and outcome.status is JobStatus.ERROR:
                outcome = Outcome(JobStatus.CANCELLED, CANCELLED_REASON, outcome.exit_code,
                                  outcome.signal, outcome.tail)
            try:
                self.store.move(job_id, outcome.status, outcome.reason, ended=time.time(),
                                exit_code=outcome.exit_code, signal=outcome.signal)
            except IllegalMove as exc:
                log.warning("Job %s ended, but %s.", job_id, exc)
            log.info("Job %s ended %s: %s", job_id, outcome.status, outcome.reason)
        self.wake()
