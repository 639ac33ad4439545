"""The job service: what the REST API (and anything else serving jobs) asks, in one place.

:class:`JobService` is a facade over the parts, each readable and testable alone:

- admission (:mod:`sparkrunner.admission`) once at submit, then the store
  (:mod:`sparkrunner.store`), before a job is acknowledged;
- :mod:`.runner`: slots, launch, follow, finish and cancel;
- :mod:`.reconcile`: on start, whatever the last run of the service left unfinished;
- :mod:`.reader`: a job's files (log pages, log tail, result);
- :mod:`.tracker`: running jobs' progress, read from their Spark UIs.

It also holds the data directory's lock: two services there would run every job twice.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Iterable

from ..admission import AdmittedJob, Origin, admit
from ..command import child_env
from ..config import Settings
from .. import models
from ..errors import DataDirInUse, FieldError, JobInvalid, JobNotFound, ModelNotFound
from ..launcher import Launcher
from ..progress import Progress
from ..sandbox import choose
from ..states import JobStatus
from ..store import JobRecord, JobStore, ModelRecord
from ..workdir import DIR_MODE
from ..warm import make_pool
from .reader import JobFiles
from .reconcile import reconcile
from .runner import Runner
from .tracker import ProgressTracker

log = logging.getLogger(__name__)


def _lock_data_dir(data_dir: Path):
    """Holds an exclusive lock on the data directory: two services there would run jobs twice."""
    import fcntl

    handle = os.fdopen(os.open(data_dir / "service.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise DataDirInUse(f"another sparkrunner service is using {str(data_dir)!r}") from exc
    return handle


class JobService:
    """Submit, list, read, cancel jobs; runs them in the background once started; thread-safe."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = Path(settings.data_dir).expanduser()
        self.jobs_dir = self.data_dir / "jobs"
        for directory in (self.data_dir, self.jobs_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            directory.chmod(DIR_MODE)
        self._lock_file = _lock_data_dir(self.data_dir)
        try:
            self.store = JobStore(self.data_dir / "jobs.db")
            self.files = JobFiles(self.jobs_dir)
            # Several users need the sandbox: without one, this refuses (SandboxUnavailable).
            sandbox = choose(settings, child_env(settings), service=True)
            self.warm, self.warm_unavailable = make_pool(settings, self.data_dir, sandbox)
            if self.warm_unavailable and settings.warm.enabled:
                log.warning("Jobs run cold: %s.", self.warm_unavailable)
            # At least one slot: the configuration checks it.
            self.launcher = Launcher(settings, sandbox, environments=self.data_dir / "environments")
            self.runner = Runner(self.store, self.launcher, self.jobs_dir,
                                 settings.service.max_concurrent_jobs, self._admit_stored,
                                 self.warm, settings.warm.max_concurrent_jobs)
            self.tracker = ProgressTracker(self.store)
        except BaseException:
            self._lock_file.close()
            raise

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> "JobService":
        """Reconciles unfinished jobs, then starts running queued ones."""
        reconcile(self.store, self.runner, self.files)
        if self.warm is not None:
            # Without tokens there is one user, whose server can be warm before the first job.
            one_user = "" if self.settings.warm.prestart and not self.settings.service.tokens else None
            self.warm.start(prestart_owner=one_user)
        self.runner.start()
        self.tracker.start()
        return self

    def close(self) -> None:
        """Stops running jobs from the queue. Running spark-submits go on; the next start
        re-attaches them."""
        self.runner.stop()
        self.tracker.stop()
        if self.warm is not None:
            self.warm.close()
        self.store.close()
        self._lock_file.close()

    # -- requests ---------------------------------------------------------------------------

    def submit(self, document: dict, owner: str = "", idempotency_key: str | None = None
               ) -> tuple[JobRecord, bool]:
        """Admits and stores a job; returns (job, created). Raises JobInvalid, or StoreError
        when it could not be stored (then nothing was kept).

        With an idempotency key already used by ``owner``, the earlier job is returned and
        nothing new is stored or run.
        """
        document = self.resolve_model(document, owner)
        job = admit(document, self.settings, Origin.SERVICE, self.data_dir, self.warm_unavailable)
        self._check_requirements(job)
        spec = job.spec
        timeout = spec.timeout_seconds or self.settings.service.default_timeout_seconds or None
        record, created = self.store.create(
            id=str(uuid.uuid4()), owner=owner, idempotency_key=idempotency_key,
            job_type=spec.job_type, name=spec.name, document=dict(spec.document),
            timeout_seconds=timeout, warnings=job.warnings,
            execution_mode=job.execution.mode.value, execution_reason=job.execution.reason)
        if created:
            log.info("Job %s (%s %r) stored and queued.", record.id, spec.job_type, spec.name)
            self.runner.queue(record.id, job)
        return record, created

    def resolve_model(self, document: dict, owner: str) -> dict:
        """``document`` made complete when it names a registered model of ``owner``'s (see
        :mod:`sparkrunner.models`); as it is otherwise. The one place a reference is resolved:
        every route submits through :meth:`submit`."""
        ref = models.reference(document)
        if ref is None:
            return document
        name, version = ref
        try:
            record = self.store.get_model(owner, name, version)
        except ModelNotFound as exc:
            known = ", ".join(r.name for r in self.store.latest_models(owner)) or "none"
            raise JobInvalid([FieldError(f"$.model.{models.REF_FIELD}", f"{exc} (your models: {known})")]) from exc
        return models.job_from_model(document, record)

    # -- registered models --------------------------------------------------------------------

    def register_model(self, body: dict, owner: str = "") -> ModelRecord:
        """Stores the model ``body`` registers as the next version of its name; JobInvalid
        listing every problem when it cannot run as any job type."""
        registration = models.registration(body, self.settings, self.data_dir)
        record = self.store.add_model(owner=owner, name=registration.name, model=registration.model,
                                      defaults=registration.defaults, job_types=registration.job_types)
        log.info("Model %r version %d registered (%s).", record.name, record.version, ", ".join(record.job_types))
        return record

    def register_trained(self, name: str, job_id: str, owner: str = "") -> ModelRecord:
        """Stores, as the next version of ``name``, the model a completed training job of
        ``owner``'s trained: its outputs become the model's attachments."""
        errors = models.check_name(name, "$.name")
        try:
            record = self.store.get(job_id)
            if record.owner != owner:
                raise JobNotFound(job_id)
        except JobNotFound:
            errors.append(FieldError("$.fromJob", f"{job_id!r} is none of your jobs"))
            raise JobInvalid(errors) from None
        if record.job_type != "MODEL_BATCH_TRAINING_JOB" or record.status is not JobStatus.COMPLETE:
            errors.append(FieldError("$.fromJob", f"job {job_id} is a {record.status.value} "
                                     f"{record.job_type}; only a COMPLETE MODEL_BATCH_TRAINING_JOB "
                                     "has trained a model"))
        if errors:
            raise JobInvalid(errors)
        document = json.loads(record.document)
        model, defaults = models.trained_model(document)
        source = document.get(models.SOURCE_FIELD) or {}
        try:  # the version it was trained from keeps the defaults of every job type (idField too)
            defaults = self.store.get_model(owner, source["name"], source["version"]).defaults
        except (KeyError, TypeError, ModelNotFound):
            pass  # a job that carried its model, or whose model was deleted since: its own fields
        types = models.job_types(model, defaults, self.settings, self.data_dir)
        stored = self.store.add_model(owner=owner, name=name, model=model, defaults=defaults,
                                      job_types=types, trained_by=job_id)
        log.info("Model %r version %d registered from training job %s.", name, stored.version, job_id)
        return stored

    def get(self, job_id: str) -> JobRecord:
        """The job; JobNotFound if there is none."""
        return self.store.get(job_id)

    def get_batch(self, batch_id: int) -> JobRecord:
        """The job whose batch id (Livy's integer id, the store's seq) is ``batch_id``;
        JobNotFound if there is none."""
        return self.store.get_seq(batch_id)

    def list_jobs(self, *, status: Iterable[JobStatus] | None = None, job_type: str | None = None,
                  owner: str | None = None, offset: int = 0, limit: int = 100,
                  oldest_first: bool = False) -> tuple[list[JobRecord], int]:
        """A page of jobs, newest first (or oldest first, as Livy lists), and how many match in all."""
        return self.store.list(status=status, job_type=job_type, owner=owner, offset=offset, limit=limit,
                               oldest_first=oldest_first)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancels a job; repeatable, and a finished job is left as it is."""
        return self.runner.cancel(job_id)

    def workdir(self, record: JobRecord) -> Path:
        return self.files.workdir(record)

    def read_log(self, record: JobRecord, start: int | None, size: int) -> tuple[int, int, list[str]]:
        """(from, total, lines) of the job's driver log; see :meth:`JobFiles.log_page`."""
        return self.files.log_page(record, start, size)

    def result(self, record: JobRecord):
        """The job's result.json, parsed; None when it has none."""
        return self.files.result(record)

    def progress(self, record: JobRecord) -> Progress | None:
        """The job's latest progress, read from its Spark UI; None when unknown."""
        return self.tracker.get(record.id)

    def log_tail(self, record: JobRecord, lines: int = 20) -> list[str]:
        """The last lines of the job's log, read from the end of the file only."""
        return self.files.log_tail(record, lines)

    # -- parts ------------------------------------------------------------------------------

    def _check_requirements(self, job: AdmittedJob) -> None:
        """Refuses a job whose model names packages the indexes cannot resolve (an unknown
        package, a version or a wheel that does not exist here), with the installer's words.

        Here rather than in :func:`admit`, which opens nothing over the network; a set whose
        environment is built already, or ``environments.check_on_submit: false``, skips it.
        """
        if job.requirements is None or not self.settings.environments.check_on_submit:
            return
        problem = self.launcher.environments.check(job.requirements)
        if problem:
            raise JobInvalid([FieldError(job.requirements.source,
                                         f"its packages {' '.join(job.requirements.lines)} cannot "
                                         f"be installed: {problem}")])

    def _admit_stored(self, record: JobRecord) -> AdmittedJob:
        """A stored job admitted again, under the configuration in force now (after a restart)."""
        return admit(json.loads(record.document), self.settings, Origin.SERVICE, self.data_dir,
                     self.warm_unavailable)
