"""The job service: the one owner of a job's trip from submit to its end.

It validates and stores a job before acknowledging it, starts queued jobs first come first
served within ``max_concurrent_jobs``, follows each spark-submit to its end, cancels, ends
overrunning jobs, and on start reconciles whatever the last run of the service left unfinished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

from .admission import AdmittedJob, Origin, admit
from .command import child_env, spark_submit_path
from .config import Settings
from .errors import SparkRunnerError
from .hdfs import Hdfs, HdfsCheckFailed
from .jobspec import EXIT_FILENAME, LOG_FILENAME, RESULT_FILENAME
from .launcher import LogWatcher, Outcome, SparkSubmit, process_start_time, started_by_supervisor
from .states import ACTIVE_STATES, JobStatus
from .store import IllegalMove, JobRecord, JobStore
from .prepare import prepare
from .workdir import DIR_MODE

log = logging.getLogger(__name__)

CANCELLED_REASON = "cancelled by user"


def _lock_data_dir(data_dir: Path):
    """Holds an exclusive lock on the data directory: two services there would run jobs twice."""
    import fcntl

    handle = os.fdopen(os.open(data_dir / "service.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise SparkRunnerError(f"another sparkrunner service is using {str(data_dir)!r}") from exc
    return handle


def tail_lines(path: Path, count: int, block: int = 8192) -> list[str]:
    """The last ``count`` lines of a file, reading backwards in blocks (logs grow large)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, 2)
            data, position = b"", end
            while position > 0 and data.count(b"\n") <= count:
                step = min(block, position)
                position -= step
                f.seek(position)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-count:]


class JobService:
    """Submit, schedule, follow, cancel and recover jobs; thread-safe."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = Path(settings.data_dir).expanduser()
        self.jobs_dir = self.data_dir / "jobs"
        for directory in (self.data_dir, self.jobs_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            directory.chmod(DIR_MODE)
        self._lock_file = _lock_data_dir(self.data_dir)
        self.store = JobStore(self.data_dir / "jobs.db")
        self.max_running = settings.service.max_concurrent_jobs  # at least 1: config checks it
        self._spark_submit = spark_submit_path(settings)
        self._env = child_env(settings)
        self._hdfs = Hdfs(settings.hdfs)
        self._runs: dict[str, SparkSubmit] = {}
        #: Jobs admitted by this service run and not yet launched; after a restart a queued job
        #: is admitted again from its stored document, under the configuration in force then.
        self._admitted: dict[str, AdmittedJob] = {}
        self._lock = threading.RLock()  # guards _runs and every launch or cancel decision
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> "JobService":
        """Reconciles unfinished jobs, then starts scheduling."""
        self.reconcile()
        self._scheduler = threading.Thread(target=self._schedule, name="scheduler", daemon=True)
        self._scheduler.start()
        self._wake.set()
        return self

    def close(self) -> None:
        """Stops scheduling. Running spark-submits go on; the next start re-attaches them."""
        self._stopping.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)
        self.store.close()
        self._lock_file.close()

    def reconcile(self) -> None:
        """Re-attaches live runs of unfinished jobs and ends those whose process is gone."""
        never_started = []
        for record in self.store.unfinished():
            if record.status is JobStatus.CREATED:
                continue  # the scheduler starts it in turn
            workdir = self.workdir(record)
            if record.pid is None:
                # The last run died between saving WAITING and saving the pid: the supervisor,
                # if it got as far as starting, says who it is; if not, nothing ever ran.
                started = started_by_supervisor(workdir / EXIT_FILENAME)
                if started is None:
                    never_started.append(record)
                    continue
                record = self.store.update(record.id, pid=started[0], pid_start=started[1])
            # An unknown start time cannot prove the pid is still ours: then exit.json decides.
            alive = (record.pid is not None and record.pid_start is not None
                     and process_start_time(record.pid) == record.pid_start)
            run = SparkSubmit.attach(record.pid if alive else None, record.pid_start, workdir,
                                     workdir / LOG_FILENAME, workdir / EXIT_FILENAME)
            log.info("Job %s was %s; its process is %s.", record.id, record.status,
                     "alive: re-attaching" if alive else "gone")
            with self._lock:
                if record.cancel_requested:
                    run.cancel()
                self._follow_in_background(record, run)
        for record in never_started:
            if record.cancel_requested:
                self.store.move(record.id, JobStatus.CANCELLED, CANCELLED_REASON, ended=time.time())
                continue
            log.info("Job %s was %s, but its spark-submit never started: starting it now.",
                     record.id, record.status)
            with self._lock:
                self._launch(record)

    # -- requests ---------------------------------------------------------------------------

    def submit(self, document: dict, owner: str = "", idempotency_key: str | None = None
               ) -> tuple[JobRecord, bool]:
        """Validates and stores a job; returns (job, created). Raises JobInvalid.

        With an idempotency key already used by ``owner``, the earlier job is returned and
        nothing new is stored or run.
        """
        job = admit(document, self.settings, Origin.SERVICE, self.data_dir)
        spec = job.spec
        timeout = spec.timeout_seconds or self.settings.service.default_timeout_seconds or None
        record, created = self.store.create(
            id=str(uuid.uuid4()), owner=owner, idempotency_key=idempotency_key,
            job_type=spec.job_type, name=spec.name, document=dict(spec.document),
            timeout_seconds=timeout, warnings=job.warnings)
        if created:
            log.info("Job %s (%s %r) stored and queued.", record.id, spec.job_type, spec.name)
            with self._lock:
                self._admitted[record.id] = job
            self._wake.set()
        return record, created

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def workdir(self, record: JobRecord) -> Path:
        return Path(record.workdir) if record.workdir else self.jobs_dir / record.id

    def cancel(self, job_id: str) -> JobRecord:
        """Cancels a job; repeatable, and a finished job is left as it is."""
        with self._lock:
            record = self.store.get(job_id)
            if record.status is JobStatus.CREATED:
                self._admitted.pop(job_id, None)
                return self.store.move(job_id, JobStatus.CANCELLED, CANCELLED_REASON, ended=time.time()) or record
            if record.status in ACTIVE_STATES:
                run = self._runs.get(job_id)
                if run is None:  # nothing runs for it (it could not start): end it here
                    return self.store.move(job_id, JobStatus.CANCELLED, CANCELLED_REASON,
                                           ended=time.time(), cancel_requested=True) or record
                if not record.cancel_requested:
                    record = self.store.update(job_id, cancel_requested=True)
                run.cancel()
            return record

    def read_log(self, record: JobRecord, start: int | None, size: int) -> tuple[int, int, list[str]]:
        """(from, total, lines) of the job's driver log, Livy-style: with no ``start``, the
        last ``size`` lines. A last line still being written counts once the job has ended."""
        try:
            with open(self.workdir(record) / LOG_FILENAME, "rb") as f:
                lines = f.read().decode("utf-8", "replace").split("\n")
        except FileNotFoundError:
            lines = [""]
        if lines[-1] == "" or not record.status.is_terminal:
            lines.pop()  # empty after the last newline, or not finished yet
        total = len(lines)
        begin = max(0, total - size) if start is None else min(max(0, start), total)
        return begin, total, lines[begin:begin + size]

    def result(self, record: JobRecord):
        """The job's result.json, parsed; None when it has none."""
        try:
            return json.loads((self.workdir(record) / RESULT_FILENAME).read_text())
        except (OSError, ValueError):
            return None

    def log_tail(self, record: JobRecord, lines: int = 20) -> list[str]:
        """The last lines of the job's log, read from the end of the file only."""
        return tail_lines(self.workdir(record) / LOG_FILENAME, lines)

    # -- scheduling -------------------------------------------------------------------------

    def _schedule(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._launch_queued()
            except Exception:  # the scheduler must outlive any one job's trouble
                log.exception("Scheduling failed; trying again.")
                time.sleep(1.0)

    def _launch_queued(self) -> None:
        """Starts queued jobs, oldest first, while slots are free. A job that ends as it starts
        (an invalid document, a failed HDFS check) frees its slot at once for the next."""
        while not self._stopping.is_set():
            with self._lock:  # taken per batch, so that cancels get in between
                free = self.max_running - len(self._runs)
                if free <= 0:
                    return
                queued, _ = self.store.list(status=[JobStatus.CREATED], limit=free, oldest_first=True)
                if not queued:
                    return
                for record in queued:
                    self._launch(record)

    def _launch(self, record: JobRecord) -> None:
        """Lays out and starts one queued job (called with the lock held)."""
        workdir = self.jobs_dir / record.id
        try:
            job = self._admitted.pop(record.id, None) or admit(
                json.loads(record.document), self.settings, Origin.SERVICE, self.data_dir)
            if workdir.exists():
                shutil.rmtree(workdir)  # a layout the last service run left before starting
            argv = prepare(self.settings, job, workdir, record.id, self._spark_submit, self._hdfs)
        except HdfsCheckFailed as exc:
            log.warning("Job %s fails its HDFS checks: %s", record.id, exc)
            self.store.move(record.id, JobStatus.ERROR, f"before spark-submit: {exc}", ended=time.time())
            return
        except Exception as exc:  # one job's trouble must never wedge the queue behind it
            log.warning("Job %s cannot start: %s", record.id, exc)
            self.store.move(record.id, JobStatus.ERROR, f"cannot start: {exc}", ended=time.time())
            return
        # WAITING is saved before the process starts, and the supervisor writes its pid first
        # thing: after a crash in between, the next start re-attaches the run or, if nothing
        # ever started, starts it. No job runs unrecorded, and none is lost.
        started = {"started": time.time(), "workdir": str(workdir)}
        record = (self.store.move(record.id, JobStatus.WAITING, **started)
                  or self.store.update(record.id, **started))  # already WAITING: a restart
        run = SparkSubmit(argv, workdir, self._env, workdir / LOG_FILENAME, workdir / EXIT_FILENAME)
        try:
            pid = run.start()
        except Exception as exc:
            self.store.move(record.id, JobStatus.ERROR, f"cannot start spark-submit: {exc}", ended=time.time())
            return
        record = self.store.update(record.id, pid=pid, pid_start=run.start_time)
        self._follow_in_background(record, run)

    def _follow_in_background(self, record: JobRecord, run: SparkSubmit) -> None:
        self._runs[record.id] = run
        threading.Thread(target=self._follow, args=(record, run), name=f"job-{record.id}",
                         daemon=True).start()

    def _follow(self, record: JobRecord, run: SparkSubmit) -> None:
        """Follows one run to its end and records how it ended."""
        job_id = record.id

        def on_line(watcher: LogWatcher, line: str) -> None:
            if watcher.application and line.startswith("sparkrunner: application: "):
                try:
                    self.store.move(job_id, JobStatus.RUNNING, running=time.time(),
                                    app_id=watcher.application, ui_url=watcher.ui_url)
                except IllegalMove:
                    pass  # already ended (or re-reading the log of a job that ran on)

        try:
            outcome = run.wait(timeout=record.timeout_seconds or None, on_line=on_line,
                               started_at=record.started)
        except Exception as exc:  # never leave a job active because following it failed
            log.exception("Following job %s failed.", job_id)
            run.terminate()  # nor a spark-submit running that nobody follows
            outcome = Outcome(JobStatus.ERROR, f"lost: following the job failed: {exc}")
        self._finish(job_id, outcome)

    def _finish(self, job_id: str, outcome: Outcome) -> None:
        with self._lock:
            self._runs.pop(job_id, None)
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
        self._wake.set()
