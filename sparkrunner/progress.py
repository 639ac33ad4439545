"""A running job's progress, read from its driver's Spark UI REST API.

Spark's UI serves ``/api/v1/applications/{appId}/jobs`` and ``/stages``; this module asks both and
sums them into a :class:`Progress`: Spark jobs and stages done, active and failed, tasks done of
all known, and a percentage. The UI's address comes from the driver's own output (the port moves up
from 4040 when taken), so nothing here guesses it.

A warm job shares one Spark application (its warm Connect server) with the other jobs of its
user: Spark Connect tags every Spark job it runs for a session
(``SparkConnect_OperationTag_User_<user>_Session_<session id>_Operation_<id>``), so a warm job's
progress is that of the jobs carrying its session's tag, and of their stages.

Standard library and requests only; nothing here changes a job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import requests

log = logging.getLogger(__name__)

#: How long one request to a driver's UI may take: a busy driver answers late, and progress can wait.
UI_TIMEOUT_SECONDS = 1.5
#: Job statuses of the UI's REST API (JobExecutionStatus).
_JOB_DONE, _JOB_ACTIVE, _JOB_FAILED = "SUCCEEDED", "RUNNING", "FAILED"
#: Stage statuses of the UI's REST API (StageStatus).
_STAGE_DONE, _STAGE_ACTIVE, _STAGE_FAILED = "COMPLETE", "ACTIVE", "FAILED"


@dataclass(frozen=True)
class Counts:
    """How many are done, active and failed, of ``total`` known."""

    done: int = 0
    active: int = 0
    failed: int = 0
    total: int = 0


@dataclass(frozen=True)
class Progress:
    """A job's progress at ``updated`` (a time.time() value)."""

    jobs: Counts
    stages: Counts
    tasks: Counts
    updated: float

    @property
    def percent(self) -> float:
        """Tasks done of the tasks of every Spark job known so far, in percent (a later Spark
        job adds tasks, so this may go down as well as up)."""
        if self.tasks.total:
            return round(100.0 * min(self.tasks.done, self.tasks.total) / self.tasks.total, 1)
        return 100.0 if self.jobs.total and self.jobs.done == self.jobs.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The API's ``progress``: counts, ``percent`` and ``updated`` (ISO 8601 is the caller's)."""
        return {"jobs": asdict(self.jobs), "stages": asdict(self.stages), "tasks": asdict(self.tasks),
                "percent": self.percent, "updated": self.updated}


def session_tag(session_id: str) -> str:
    """The part of Spark Connect's job tags that names a session."""
    return f"_Session_{session_id}"


def for_session(jobs: Iterable[dict], session_id: str) -> list[dict]:
    """The Spark jobs a Spark Connect session ran, told by their tags."""
    mark = session_tag(session_id)
    return [job for job in jobs if any(mark in tag for tag in job.get("jobTags") or ())]


def summarise(jobs: list[dict], stages: list[dict], session_id: str | None = None,
              now: float | None = None) -> Progress:
    """The progress that the UI's ``jobs`` and ``stages`` (as /api/v1 answers) show; with
    ``session_id``, only that Spark Connect session's."""
    if session_id is not None:
        jobs = for_session(jobs, session_id)
        mine = {stage_id for job in jobs for stage_id in job.get("stageIds") or ()}
        stages = [stage for stage in stages if stage.get("stageId") in mine]

    def count(items: list[dict], done: str, active: str, failed: str) -> Counts:
        statuses = [item.get("status") for item in items]
        return Counts(statuses.count(done), statuses.count(active), statuses.count(failed), len(items))

    def tasks(field: str) -> int:
        return sum(int(job.get(field) or 0) for job in jobs)

    task_counts = Counts(done=tasks("numCompletedTasks") + tasks("numSkippedTasks"),
                         active=tasks("numActiveTasks"), failed=tasks("numFailedTasks"),
                         total=tasks("numTasks"))
    return Progress(jobs=count(jobs, _JOB_DONE, _JOB_ACTIVE, _JOB_FAILED),
                    stages=count(stages, _STAGE_DONE, _STAGE_ACTIVE, _STAGE_FAILED),
                    tasks=task_counts, updated=time.time() if now is None else now)


class SparkUi:
    """The REST API of one Spark UI (``http://host:port``)."""

    def __init__(self, url: str, http: requests.Session | None = None, timeout: float = UI_TIMEOUT_SECONDS):
        self.url = url.rstrip("/")
        self.http = http or requests.Session()
        self.timeout = timeout

    def _get(self, path: str) -> Any:
        response = self.http.get(f"{self.url}/api/v1{path}", timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def application_id(self) -> str | None:
        """The id of the (first) application this UI serves; a driver's UI serves one."""
        apps = self._get("/applications")
        return apps[0]["id"] if apps else None

    def progress(self, app_id: str | None, session_id: str | None = None) -> Progress | None:
        """The application's progress (a Spark Connect session's, with ``session_id``); None
        when the UI cannot tell (not up yet, gone, or not a Spark UI)."""
        try:
            app_id = app_id or self.application_id()
            if not app_id:
                return None
            jobs = self._get(f"/applications/{app_id}/jobs")
            stages = self._get(f"/applications/{app_id}/stages?details=false")
            if not isinstance(jobs, list) or not isinstance(stages, list):
                return None
            return summarise(jobs, stages, session_id)
        except (requests.RequestException, ValueError, KeyError, TypeError, IndexError) as exc:
            log.debug("No progress from the Spark UI at %r: %s", self.url, exc)
            return None


def read_progress(ui_url: str | None, app_id: str | None, session_id: str | None = None,
                  http: requests.Session | None = None) -> Progress | None:
    """The progress the Spark UI at ``ui_url`` shows for ``app_id``; None when unknown."""
    if not ui_url or not ui_url.startswith(("http://", "https://")):
        return None
    return SparkUi(ui_url, http).progress(app_id, session_id)
