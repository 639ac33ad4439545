"""Apache Livy's batch API, ``/batches``: the same jobs, store, users and limits as ``/jobs``,
answered as Livy answers, so that Livy's clients (Airflow's LivyOperator, the ``livy`` package,
scripts) work by changing only their URL.

A batch is a script job (:mod:`sparkrunner.script`): the request body, stored as the job's
document with ``"jobType": "SPARK_SCRIPT_JOB"``, enters through the one admission step like every
job. A batch's id is the job's ``seq``, the store's integer key, since Livy's clients require an
integer; ``/jobs/{id}`` shows the same job under its own id. Every job is a batch: a model job
submitted to ``/jobs`` is listed and shown here too.

Errors on these routes are Livy's ``{"msg": "..."}``: 400 for a request sparkrunner refuses
(Livy answers a bad request so), 404 for a batch that does not exist or is another user's.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Callable

from fastapi import APIRouter, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import owner_of, service_of, submit_body
from .errors import FieldError, JobInvalid, JobNotFound, StoreError
from .script import ACCEPTED_FIELDS, SCRIPT_JOB_TYPE
from .service import JobService
from .states import ACTIVE_STATES, JobStatus
from .store import JobRecord

BATCHES = "/batches"
#: How many of the log's last lines a batch carries in ``log``, as Livy's batch view does.
VIEW_LOG_LINES = 10
MAX_LOG_PAGE = 10_000
MAX_LIST_PAGE = 1000
MAX_OFFSET = 2**63 - 1


class BatchState(str, Enum):
    """Livy's batch states (its ``SessionState``); clients refuse any other value."""

    NOT_STARTED = "not_started"
    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"
    BUSY = "busy"
    SHUTTING_DOWN = "shutting_down"
    ERROR = "error"
    DEAD = "dead"
    KILLED = "killed"
    SUCCESS = "success"


#: A job's state as Livy names it.
LIVY_STATE: dict[JobStatus, BatchState] = {
    JobStatus.CREATED: BatchState.STARTING,
    JobStatus.WAITING: BatchState.STARTING,
    JobStatus.RUNNING: BatchState.RUNNING,
    JobStatus.COMPLETE: BatchState.SUCCESS,
    JobStatus.ERROR: BatchState.DEAD,
    JobStatus.CANCELLED: BatchState.KILLED,
}
assert set(LIVY_STATE) == set(JobStatus)


def batches_path(prefix: str) -> str:
    """Where the routes are: ``/batches`` under ``prefix`` (``""``, ``livy``, ``/livy/``: any
    slashes, as Airflow's hook takes the prefix)."""
    stripped = prefix.strip("/")
    return (f"/{stripped}" if stripped else "") + BATCHES


def is_livy_path(path: str, base: str) -> bool:
    """True for a path under Livy's routes at ``base`` (whose errors take Livy's shape)."""
    return path == base or path.startswith(base + "/")


def livy_error(status: int, msg: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"msg": msg}, status_code=status, headers=headers)


def batch_view(record: JobRecord, service: JobService | None = None) -> dict[str, Any]:
    """A job as Livy shows a batch, with sparkrunner's own names for it; with ``service``,
    also the last lines of its log."""
    # Only a script job can name one (and its document is small).
    proxy_user = _document_field(record, "proxyUser") if record.job_type == SCRIPT_JOB_TYPE else None
    return {
        "id": record.seq,
        "name": record.name,
        "owner": record.owner or None,
        "proxyUser": proxy_user or record.owner or None,
        "state": LIVY_STATE[record.status].value,
        "appId": record.app_id,
        "appInfo": {"driverLogUrl": None,
                    "sparkUiUrl": record.ui_url if record.status in ACTIVE_STATES else None},
        "log": service.log_tail(record, VIEW_LOG_LINES) if service is not None else [],
        # sparkrunner's names for the same job.
        "jobId": record.id,
        "jobType": record.job_type,
        "jobStatus": record.status.value,
        "reason": record.reason,
    }


def _document_field(record: JobRecord, field: str) -> Any:
    try:
        document = json.loads(record.document)
    except ValueError:
        return None
    return document.get(field) if isinstance(document, dict) else None


class LivyRoute(APIRoute):
    """A route whose refusals take Livy's shape, ``{"msg": ...}``, with Livy's codes."""

    def get_route_handler(self) -> Callable:
        handle = super().get_route_handler()

        async def livy_handler(request: Request):
            try:
                return await handle(request)
            except JobNotFound as exc:
                return livy_error(404, f"Session '{exc.job_id}' not found.")
            except JobInvalid as exc:
                return livy_error(400, "; ".join(str(e) for e in exc.errors))
            except RequestValidationError as exc:
                return livy_error(400, "; ".join(_validation_message(e) for e in exc.errors()))
            except StoreError as exc:  # JobNotStored among them: nothing was kept
                return livy_error(503, str(exc))
            except StarletteHTTPException as exc:
                return livy_error(exc.status_code, str(exc.detail), exc.headers)

        return livy_handler


def _validation_message(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "path"))
    return f"{where}: {error.get('msg', 'is not valid')}"


#: The request body of POST /batches: Livy's batch request.
BATCH_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "description": "Livy's batch request. sparkrunner runs PySpark scripts: className and jars are "
                   "refused. timeoutSeconds is sparkrunner's own.",
    "required": ["file"],
    "additionalProperties": False,
    "properties": {
        "file": {"type": "string", "description": "the PySpark script: a local path under "
                                                  "policy.local_roots, or an hdfs:, webhdfs: or http(s): URL"},
        "args": {"type": "array", "items": {"type": "string"}},
        "pyFiles": {"type": "array", "items": {"type": "string"}},
        "files": {"type": "array", "items": {"type": "string"}},
        "archives": {"type": "array", "items": {"type": "string"}},
        "name": {"type": "string"},
        "driverMemory": {"type": "string"},
        "executorMemory": {"type": "string"},
        "driverCores": {"type": "integer", "minimum": 1},
        "executorCores": {"type": "integer", "minimum": 1},
        "numExecutors": {"type": "integer", "minimum": 1},
        "queue": {"type": "string"},
        "conf": {"type": "object", "additionalProperties": {"type": "string"}},
        "proxyUser": {"type": "string"},
        "className": {"type": "string"},
        "jars": {"type": "array", "items": {"type": "string"}},
        "timeoutSeconds": {"type": "integer", "minimum": 1},
        "jobType": {"enum": [SCRIPT_JOB_TYPE]},
    }}}}}}
assert set(BATCH_REQUEST_BODY["requestBody"]["content"]["application/json"]["schema"]["properties"]) \
    == set(ACCEPTED_FIELDS)
_MSG = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["msg"], "properties": {"msg": {"type": "string"}}}}}}
BATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such batch (or another user's)", **_MSG},
    400: {"description": "A query parameter is not valid", **_MSG},
}


def livy_router(prefix: str = "") -> APIRouter:
    """Livy's routes under ``prefix`` (service.livy_prefix)."""
    base = batches_path(prefix)
    router = APIRouter(prefix=base, route_class=LivyRoute, tags=["Livy"])

    def find_batch(request: Request, batch_id: str) -> JobRecord:
        if not batch_id.isascii() or not batch_id.isdigit() or int(batch_id) > MAX_OFFSET:
            raise JobNotFound(batch_id)
        record = service_of(request).get_batch(int(batch_id))
        if record.owner != owner_of(request):
            raise JobNotFound(batch_id)  # another user's batch does not exist for you
        return record

    @router.post("", status_code=201, summary="Submit a batch: a PySpark script, as Livy runs one",
                 openapi_extra=BATCH_REQUEST_BODY, responses={
                     201: {"description": "Stored and queued; Location names the batch"},
                     400: {"description": "The batch is refused; msg lists every problem", **_MSG},
                     503: {"description": "The batch could not be stored; nothing was kept", **_MSG}})
    async def create_batch(request: Request,
                           idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
        record, created = await submit_body(request, idempotency_key, as_document=script_document)
        return JSONResponse(batch_view(record, service_of(request)), status_code=201 if created else 200,
                            headers={"Location": f"{base}/{record.seq}"})

    @router.get("", summary="A page of batches, oldest first, as Livy lists them", responses=BATCH_RESPONSES)
    def list_batches(request: Request, start: int = Query(0, alias="from", ge=0, le=MAX_OFFSET),
                     size: int = Query(100, ge=1, le=MAX_LIST_PAGE)):
        records, total = service_of(request).list_jobs(owner=owner_of(request), offset=start,
                                                       limit=size, oldest_first=True)
        return {"from": start, "total": total, "sessions": [batch_view(r) for r in records]}

    @router.get("/{batch_id}", summary="A batch: state, application, last log lines", responses=BATCH_RESPONSES)
    async def get_batch(request: Request, batch_id: str):
        return batch_view(find_batch(request, batch_id), service_of(request))

    @router.get("/{batch_id}/state", summary="A batch's state, in Livy's names", responses=BATCH_RESPONSES)
    async def get_state(request: Request, batch_id: str):
        record = find_batch(request, batch_id)
        return {"id": record.seq, "state": LIVY_STATE[record.status].value}

    @router.get("/{batch_id}/log", summary="Page through a batch's driver log", responses=BATCH_RESPONSES)
    def get_log(request: Request, batch_id: str,
                start: int | None = Query(None, alias="from", ge=0, le=MAX_OFFSET),
                size: int = Query(100, ge=1, le=MAX_LOG_PAGE)):
        record = find_batch(request, batch_id)
        begin, total, lines = service_of(request).read_log(record, start, size)
        return {"id": record.seq, "from": begin, "total": total, "log": lines}

    @router.delete("/{batch_id}", summary="Kill a batch (it stays listed, as killed)",
                   responses=BATCH_RESPONSES)
    def delete_batch(request: Request, batch_id: str):
        service_of(request).cancel(find_batch(request, batch_id).id)
        return {"msg": "deleted"}

    return router


def script_document(body: dict) -> dict:
    """The job document of a Livy batch request: the request as a script job."""
    if body.get("jobType", SCRIPT_JOB_TYPE) != SCRIPT_JOB_TYPE:
        raise JobInvalid([FieldError("$.jobType", f"{body['jobType']!r}: a batch is a script job, "
                                                     f"{SCRIPT_JOB_TYPE!r}")])
    return {"jobType": SCRIPT_JOB_TYPE, **body}
