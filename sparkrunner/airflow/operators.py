"""SparkRunnerJobOperator: runs one modelBatchJob on a sparkrunner service from an Airflow task."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator, XComArg, conf
from airflow.sdk.exceptions import (
    AirflowException, AirflowFailException, AirflowTaskTimeout, TaskDeferralTimeout)

from ..client import LOG_PAGE, LogCursor, Tolerance
from ..errors import ApiError, SparkRunnerError
from ..states import JobStatus
from .hooks import SparkRunnerHook
from .triggers import SparkRunnerJobTrigger

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

T = TypeVar("T")

JOB_ID_KEY = "job_id"
# Fields that travel verbatim: model code and file contents may well contain "{{", "{%" or "{#",
# and they are the model's business, not Airflow's.
VERBATIM = {"SOURCE_CODE": "sourceCode", "FILE": "content"}


class JobFailed(SparkRunnerError, AirflowException):
    """The job ended ERROR or CANCELLED (``status``), or could not be submitted or followed
    (``job_id`` or ``status`` None); a retry may run it again."""

    def __init__(self, job_id: str | None, reason: str, status: str | None = None):
        self.job_id, self.reason, self.status = job_id, reason, status
        if job_id is None:
            message = f"the job could not be submitted: {reason}"
        elif status is None:
            message = f"sparkrunner job {job_id}: {reason}"
        else:
            message = f"sparkrunner job {job_id} ended {status}: {reason}"
        super().__init__(message)


class JobRefused(SparkRunnerError, AirflowFailException):
    """The job document is invalid or unreadable; retrying cannot help, so the task is not retried."""

    def __init__(self, message: str, errors: list[dict] | None = None):
        self.errors = errors or []
        super().__init__(message + "".join(f"\n  {e.get('path', '$')}: {e.get('message')}"
                                           for e in self.errors))


def job_of_registered_model(model: str, job_type: str, input_data: list[dict] | None,
                            output_data: list[dict] | None, fields: dict | None) -> dict:
    """The job document that runs registered model ``model`` (``name`` or ``name:version``); the
    service makes it complete (sparkrunner.models)."""
    if fields is not None and not isinstance(fields, dict):
        raise TypeError(f"with model=, job holds further job fields (a dict), not {type(fields).__name__}")
    return {**(fields or {}), "model": {"ref": model}, "jobType": job_type,
            "inputData": list(input_data or []), "outputData": list(output_data or [])}


def idempotency_key(dag_id: str, task_id: str, run_id: str, map_index: int, generation: int = 1) -> str:
    """The Idempotency-Key of a task instance's job; later generations replace failed jobs."""
    key = f"airflow:{dag_id}:{task_id}:{run_id}:{map_index}"
    return key if generation == 1 else f"{key}:{generation}"


class SparkRunnerJobOperator(BaseOperator):
    """Runs a modelBatchJob on a sparkrunner service and returns the job's result.

    :param job: the job document: a dict (or an XComArg giving one), or the path of a JSON file (relative to the DAG's folder
        or ``template_searchpath``, or absolute; itself templated) read when the task runs. Strings
        in the document are Jinja-templated (``"fileUrl": "hdfs:///scores/{{ ds }}"``), except
        model source code and FILE asset contents, which travel verbatim.
    :param model: instead of carrying its model, the job runs a model registered on the service:
        ``"name"`` (its latest version) or ``"name:version"``; ``job_type``, ``input_data`` and
        ``output_data`` (lists of data assets, templated) complete the job, and ``job``, if given,
        adds other job fields (over the model's defaults).
    :param sparkrunner_conn_id: an Airflow connection of type ``sparkrunner``.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between looks at the job.
    :param max_failed_polls: how many looks in a row may fail (the service restarting, say) before
        the task fails; the job runs on, and a retry reconnects to it.

    The job is submitted with an Idempotency-Key made of the DAG, task, run and map index, so a
    retried task finds the job its earlier try started (running or COMPLETE) instead of starting
    another; a job that ended ERROR or CANCELLED is replaced by a fresh submission. The job's id is
    pushed to XCom as ``job_id``; its driver log is copied into the task log; the task fails with
    the job's end reason when it does not COMPLETE. Killing the task, or its execution_timeout
    passing (also while deferred), cancels the job.
    """

    template_fields: Sequence[str] = ("job",)
    template_fields_renderers = {"job": "json"}
    ui_color = "#e8f1fa"

    def __init__(self, *, job: dict | str | None = None, model: str | None = None,
                 job_type: str = "MODEL_BATCH_JOB", input_data: list[dict] | None = None,
                 output_data: list[dict] | None = None,
                 sparkrunner_conn_id: str = SparkRunnerHook.default_conn_name,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 poll_interval: float = 10.0, max_failed_polls: int = 5, **kwargs: Any):
        super().__init__(**kwargs)
        if model is not None:
            job = job_of_registered_model(model, job_type, input_data, output_data, job)
        if not isinstance(job, (dict, str, XComArg)):
            raise TypeError(f"job must be a job document (dict), a JSON file's path or an XComArg, "
                            f"not {type(job).__name__}")
        if poll_interval <= 0 or max_failed_polls < 0:
            raise ValueError(f"poll_interval must be > 0 and max_failed_polls >= 0, "
                             f"not {poll_interval!r} and {max_failed_polls!r}")
        self.job = job
        self.sparkrunner_conn_id = sparkrunner_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_failed_polls = max_failed_polls
        self.job_id: str | None = None
        self._cancelled = False
        self._log_lines = 0  # of the job's log, copied into the task log by this process

    @cached_property
    def hook(self) -> SparkRunnerHook:
        return SparkRunnerHook(self.sparkrunner_conn_id)

    # -- templating ---------------------------------------------------------------------------

    def render_template(self, content: Any, context: Context, jinja_env: jinja2.Environment | None = None,
                        seen_oids: set[int] | None = None) -> Any:
        # A job file is parsed before anything is rendered: rendering its text as one template
        # would run Jinja over model code. (template_ext is not used for the same reason, and
        # because it would take every nested "….json" file name for a template to load.)
        if content is self.job and isinstance(content, str):
            if seen_oids is not None and id(content) in seen_oids:
                return content  # a mapped value: Airflow leaves those unrendered; execute() reads it
            path = super().render_template(content, context, jinja_env, seen_oids)  # "{{ var.value.x }}/a.json"
            content = self.read_job_file(path, jinja_env)
        if isinstance(content, dict) and (verbatim := VERBATIM.get(content.get("assetType"))):
            return {key: value if key == verbatim else self.render_template(value, context, jinja_env, seen_oids)
                    for key, value in content.items()}
        return super().render_template(content, context, jinja_env, seen_oids)

    def read_job_file(self, path: str, jinja_env: jinja2.Environment | None = None) -> dict:
        """The job document in ``path``: absolute, or found like any template file."""
        try:
            if Path(path).is_absolute():
                text = Path(path).read_text(encoding="utf-8")
            else:
                env = jinja_env or self.get_template_env()
                text = env.loader.get_source(env, path)[0]
        except Exception as exc:  # jinja2's TemplateNotFound, OSError, a missing loader
            raise JobRefused(f"cannot read the job file {path!r}: {exc!r}") from exc
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise JobRefused(f"the job file {path!r} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise JobRefused(f"the job file {path!r} holds a JSON {type(document).__name__}, "
                             "not a job document (an object)")
        return document

    # -- running ------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        job = self.job if isinstance(self.job, dict) else self.read_job_file(self.job)
        view = self._submit(job, context)
        self.job_id = view["id"]
        context["ti"].xcom_push(key=JOB_ID_KEY, value=self.job_id)
        if not JobStatus(view["jobStatus"]).is_terminal:
            if self.deferrable:
                self._defer(context)
            view = self._wait()
        return self._finish(view)

    def _submit(self, job: dict, context: Context) -> dict:
        ti = context["ti"]
        # Try n may meet the jobs of tries 1..n-1 here: each failed one moved the key on by one.
        for generation in range(1, max(1, ti.try_number) + 1):
            key = idempotency_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index, generation)
            try:
                view = self._tolerating(lambda: self.hook.submit(job, idempotency_key=key))
            except ApiError as exc:
                if exc.status == 422:
                    raise JobRefused(f"the sparkrunner service refused the job: {exc.detail}", exc.errors) from exc
                raise JobFailed(None, str(exc)) from exc
            status = JobStatus(view["jobStatus"])
            if status in (JobStatus.ERROR, JobStatus.CANCELLED) and generation < ti.try_number:
                self.log.info("Job %s, of an earlier try, ended %s (%s); submitting the job again.",
                              view["id"], status, view.get("reason"))
                continue
            break
        self.log.info("Job %s is %s (Idempotency-Key %r).", view["id"], status, key)
        return view

    def _defer(self, context: Context) -> None:
        deadline = None
        timeout = None
        if self.execution_timeout:
            started = getattr(context["ti"], "start_date", None) or datetime.now(timezone.utc)
            deadline = started.timestamp() + self.execution_timeout.total_seconds()
            # Also given to Airflow, which times the deferral out on its own if no triggerer runs
            # this trigger; resume_execution() cancels the job then.
            timeout = timedelta(seconds=max(1.0, deadline - time.time()))
        self.log.info("Deferring: job %s is followed in the triggerer.", self.job_id)
        self.defer(trigger=SparkRunnerJobTrigger(self.job_id, self.sparkrunner_conn_id, self.poll_interval,
                                                 self.max_failed_polls, deadline),
                   method_name="execute_complete", timeout=timeout)

    def _wait(self) -> dict:
        """Polls the job to its end, copying its log into the task log as it grows; returns the
        job's last view."""
        tolerance = Tolerance(self.max_failed_polls)
        while True:
            try:
                view = self.hook.get(self.job_id)
                self._copy_log()
            except ApiError as exc:
                if not tolerance.failed(exc):
                    raise JobFailed(self.job_id, f"cannot follow it: {exc}") from exc
                self.log.warning("Polling job %s failed (%d of %d failures in a row tolerated): %s",
                                 self.job_id, tolerance.failures, self.max_failed_polls, exc)
            else:
                tolerance.succeeded()
                if JobStatus(view["jobStatus"]).is_terminal:
                    return view
            time.sleep(self.poll_interval)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Where a deferred task resumes when its trigger fires."""
        self.job_id = event["job_id"]
        if event["status"] == "timeout":
            self._cancelled = True  # by the trigger already; on_kill() need not ask again
            self._copy_log_safely()
            raise AirflowTaskTimeout(f"job {self.job_id}: {event['message']}")
        if event["status"] != "done":
            raise JobFailed(self.job_id, event.get("message", f"unexpected trigger event {event!r}"))
        return self._finish(event["job"])

    def _finish(self, view: dict) -> Any:
        """The job's result, after copying the rest of its log; raises unless it is COMPLETE."""
        self._copy_log_safely()
        status = JobStatus(view["jobStatus"])
        if status is not JobStatus.COMPLETE:
            raise JobFailed(self.job_id, view.get("reason") or "no reason given", status.value)
        self.log.info("Job %s is COMPLETE: %s.", self.job_id, view.get("reason"))
        return view.get("result")

    # -- the driver log -----------------------------------------------------------------------

    def _copy_log(self) -> None:
        """Copies the job's log lines this process has not copied yet into the task log."""
        cursor = LogCursor(lambda start, size: self.hook.log(self.job_id, start=start, size=size),
                           self._log_lines, LOG_PAGE)
        try:
            for line in cursor.read():
                self.log.info("[job] %s", line)
        finally:
            self._log_lines = cursor.position

    def _copy_log_safely(self) -> None:
        try:
            self._tolerating(self._copy_log)
        except ApiError as exc:  # the log is a convenience; the job's outcome decides the task
            self.log.warning("Could not copy the log of job %s: %s", self.job_id, exc)

    # -- stopping -----------------------------------------------------------------------------

    def on_kill(self) -> None:
        """The task is being killed (or its execution_timeout passed): cancel the job."""
        if self.job_id and not self._cancelled:
            self._cancel("the task was killed or timed out")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout:
            # The scheduler timed the deferral out: it dropped the trigger without its on_kill()
            # and resumed the task straight into this failure, so nobody else cancels the job.
            self.job_id = context["ti"].xcom_pull(task_ids=self.task_id, key=JOB_ID_KEY)
            if self.job_id:
                self._cancel("Airflow timed the deferred task out")
            raise

    def _cancel(self, why: str) -> None:
        try:
            self.hook.cancel(self.job_id)
        except ApiError as exc:
            self.log.warning("Cancelling job %s failed (%s): %s", self.job_id, why, exc)
            return
        self._cancelled = True
        self.log.info("Cancelled job %s: %s.", self.job_id, why)

    # -- helpers ------------------------------------------------------------------------------

    def _tolerating(self, call: Callable[[], T]) -> T:
        """``call()``, asked again after a transient failure, up to max_failed_polls times."""
        tolerance = Tolerance(self.max_failed_polls)
        while True:
            try:
                return call()
            except ApiError as exc:
                if not tolerance.failed(exc):
                    raise
                self.log.warning("The sparkrunner service failed a request (%d of %d failures in a row "
                                 "tolerated): %s", tolerance.failures, self.max_failed_polls, exc)
                time.sleep(self.poll_interval)
