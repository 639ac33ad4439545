"""The trigger a deferred SparkRunnerJobOperator waits on: polls the job in the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from ..client import Tolerance
from ..errors import ApiError
from ..states import JobStatus
from .hooks import SparkRunnerHook


class SparkRunnerJobTrigger(BaseTrigger):
    """Fires once, when the job has ended, when the service could not be asked, or at ``deadline``.

    The event's payload is ``{"status": "done" | "error" | "timeout", "job_id": …}`` plus, for
    ``done``, the job's last view under ``"job"`` and otherwise a ``"message"``.

    ``deadline`` (epoch seconds) is the task's execution_timeout: Airflow 3 does not enforce it on
    a deferred task, and when its own trigger timeout fires it stops this trigger without calling
    :meth:`on_kill`, so the trigger cancels the job itself when the deadline passes.
    """

    def __init__(self, job_id: str, sparkrunner_conn_id: str = SparkRunnerHook.default_conn_name,
                 poll_interval: float = 10.0, max_failed_polls: int = 5, deadline: float | None = None):
        super().__init__()
        self.job_id = job_id
        self.sparkrunner_conn_id = sparkrunner_conn_id
        self.poll_interval = poll_interval
        self.max_failed_polls = max_failed_polls
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "job_id": self.job_id,
            "sparkrunner_conn_id": self.sparkrunner_conn_id,
            "poll_interval": self.poll_interval,
            "max_failed_polls": self.max_failed_polls,
            "deadline": self.deadline,
        }

    def _hook(self) -> SparkRunnerHook:
        return SparkRunnerHook(self.sparkrunner_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        tolerance = Tolerance(self.max_failed_polls)
        status = None
        while True:
            try:
                view = await hook.aget(self.job_id)
            except ApiError as exc:
                if not tolerance.failed(exc):
                    yield self._event("error", message=f"cannot follow it: {exc}")
                    return
                self.log.warning("Polling job %s failed (%d of %d failures in a row tolerated): %s",
                                 self.job_id, tolerance.failures, self.max_failed_polls, exc)
            else:
                tolerance.succeeded()
                status = JobStatus(view["jobStatus"])
                if status.is_terminal:
                    view.pop("logTail", None)  # the operator copies the whole log instead
                    yield self._event("done", job=view)
                    return
            if self.deadline is not None and time.time() >= self.deadline:
                message = await self._cancel(f"the task's execution_timeout passed while the job "
                                             f"was {status or 'unknown'}")
                yield self._event("timeout", message=message)
                return
            pause = self.poll_interval
            if self.deadline is not None:
                pause = min(pause, max(0.0, self.deadline - time.time()))
            await asyncio.sleep(pause)

    async def _cancel(self, why: str) -> str:
        try:
            await self._hook().acancel(self.job_id)
        except ApiError as exc:
            self.log.warning("Cancelling job %s failed: %s", self.job_id, exc)
            return f"{why}; cancelling it failed: {exc}"
        self.log.info("Cancelled job %s: %s.", self.job_id, why)
        return f"{why}; it is cancelled"

    async def on_kill(self) -> None:
        """The user marked the deferred task failed or succeeded, or cleared it: cancel the job."""
        await self._cancel("the deferred task was stopped by a user")

    def _event(self, status: str, **payload: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "job_id": self.job_id, **payload})
