"""ModelOp Center's job API, ``/model-manage/api/jobs``: the same jobs, store and users as ``/jobs``,
answered as ModelOp's own API answers, so that its clients work unchanged.

Those clients submit with ``requests.post(f"{base}/model-manage/api/jobs", json=job)``, fail on an
answer that is not 2xx, read ``id`` from it, and poll ``GET …/jobs/{id}`` for ``jobStatus``. A job
is shown as ModelOp shows one: the document as it was submitted, with the job's own fields over it
(``id``, ``jobStatus``, ``jobMessages``, ``jobWaitTime``/``jobRunTime``/``jobEndTime`` in epoch
milliseconds, ``createdDate``, ``lastModifiedDate``); a list is a Spring Data REST page.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from .api import (JOB_REQUEST_BODY, JOB_RESPONSES, MAX_OFFSET, MAX_PAGE, SUBMIT_RESPONSES, find,
                  iso_time, job_view, owner_of, service_of, submit_body)
from .service import JobService
from .store import JobRecord

JOBS_PATH = "/model-manage/api/jobs"
#: The last page number whose first job SQLite can still skip to, at the largest page size.
MAX_PAGE_NUMBER = MAX_OFFSET // MAX_PAGE

router = APIRouter()


def _millis(timestamp: float | None) -> int | None:
    return None if timestamp is None else round(timestamp * 1000)


def _stamp(timestamp: float) -> str:
    """A time as ModelOp writes it in job messages: ``2021/3/11 14:40:45`` (UTC)."""
    t = datetime.fromtimestamp(timestamp, timezone.utc)
    return f"{t.year}/{t.month}/{t.day} {t:%H:%M:%S}"


def job_messages(record: JobRecord) -> list[str]:
    """The job's story in ModelOp's words: ``2021/3/11 14:40:45 batch job received``, then what
    admission warned of, then started, running and ended with its reason."""
    events = [(record.created, "batch job received")]
    events += [(record.created, f"warning: {warning}") for warning in record.warnings]
    if record.started is not None:
        events.append((record.started, "batch job started: spark-submit is starting the application"))
    if record.running is not None:
        events.append((record.running, "batch job running" +
                       (f": Spark application {record.app_id}" if record.app_id else "")))
    if record.status.is_terminal:
        ended = record.ended or max(t for t in (record.created, record.started, record.running) if t)
        events.append((ended, f"batch job ended {record.status}: {record.reason}"))
    return [f"{_stamp(at)} {text}" for at, text in events]


def submitted_document(record: JobRecord) -> dict[str, Any]:
    """The job's document as it was submitted; empty when the stored copy is damaged (such a job
    ends ERROR, saying why, and must still be shown)."""
    try:
        document = json.loads(record.document)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def modelop_view(record: JobRecord, service: JobService | None = None) -> dict[str, Any]:
    """A job as ModelOp's API shows it: the submitted document under the job's own fields
    (those of :func:`job_view` too, ``warnings`` among them); with ``service``, also its log
    tail and result."""
    times = [t for t in (record.created, record.started, record.running, record.ended) if t is not None]
    own = {
        **job_view(record, service),
        "jobMessages": job_messages(record),
        "jobWaitTime": _millis(record.started),
        "jobRunTime": _millis(record.running),
        "jobEndTime": _millis(record.ended),
        "lastModifiedDate": iso_time(max(times)),
        "_links": {"self": {"href": f"{JOBS_PATH}/{record.id}"}, "job": {"href": f"{JOBS_PATH}/{record.id}"}},
    }
    return {**submitted_document(record), **own}


@router.post(JOBS_PATH, status_code=201, summary="Submit a job, as ModelOp Center's API does",
             openapi_extra=JOB_REQUEST_BODY, responses=SUBMIT_RESPONSES)
async def submit(request: Request, idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    record, created = await submit_body(request, idempotency_key)
    return JSONResponse(modelop_view(record, service_of(request)), status_code=201 if created else 200,
                        headers={"Location": f"{JOBS_PATH}/{record.id}"})


@router.get(JOBS_PATH, summary="A page of jobs, newest first, as Spring Data REST pages them")
def list_jobs(request: Request, page: int = Query(0, ge=0, le=MAX_PAGE_NUMBER, description="page number, from 0"),
              size: int = Query(20, ge=1, le=MAX_PAGE, description="jobs per page")):
    records, total = service_of(request).list_jobs(owner=owner_of(request), offset=page * size, limit=size)
    pages = math.ceil(total / size)

    def link(number: int) -> dict[str, str]:
        return {"href": f"{JOBS_PATH}?page={number}&size={size}"}

    links = {"self": link(page)}
    if 0 < page <= pages:
        links["prev"] = link(page - 1)
    if page + 1 < pages:
        links["next"] = link(page + 1)
    return {"_embedded": {"jobs": [modelop_view(r) for r in records]},
            "_links": links,
            "page": {"size": size, "totalElements": total, "totalPages": pages, "number": page}}


@router.get(JOBS_PATH + "/{job_id}", responses=JOB_RESPONSES,
            summary="A job as ModelOp Center's API shows it: document, state, messages, times")
async def get_job(request: Request, job_id: str):
    # Inline, as GET /jobs/{id}: this is what ModelOp's clients poll.
    return modelop_view(find(request, job_id), service_of(request))
