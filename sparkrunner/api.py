"""The REST interface (FastAPI): submit, list, inspect, page the log of, and cancel jobs.

The helpers every route shares (who asks, their job, submitting a request's document) are module
functions, so that ModelOp's routes (:mod:`sparkrunner.modelop_api`) use them too.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Literal

from fastapi import FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from . import __version__
from .auth import CSRF_HEADER, OPEN_PATHS, Guard, Tokens
from .config import Settings
from .errors import BulkRefused, JobInvalid, JobNotFound, JobNotStored, ModelNotFound, StoreError
from .jobspec import JOB_TYPES, parse_document, schema
from .metrics import Metrics, RequestMetrics
from .script import SCRIPT_JOB_TYPE
from .service import JobService
from .states import ACTIVE_STATES, JobStatus
from .store import JobRecord

log = logging.getLogger(__name__)

MAX_PAGE = 1000
MAX_OFFSET = 2**63 - 1  # SQLite's largest integer: a larger OFFSET cannot even be bound
JobTypeName = Literal["MODEL_BATCH_JOB", "MODEL_BATCH_TEST_JOB", "MODEL_BATCH_TRAINING_JOB", "SPARK_SCRIPT_JOB"]
assert set(JobTypeName.__args__) == {*JOB_TYPES, SCRIPT_JOB_TYPE}


def iso_time(timestamp: float | None) -> str | None:
    """A time as the API writes it: ISO 8601 in UTC, to the millisecond (``2021-03-26T14:12:20.345Z``)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_view(record: JobRecord, service: JobService | None = None) -> dict[str, Any]:
    """A job as the API shows it; with ``service``, also its log tail and result."""
    now = time.time()
    started_or_now = record.started or (record.ended if record.status.is_terminal else now)
    view = {
        "id": record.id,
        "batchId": record.seq,  # the same job on Livy's path, /batches/{batchId}
        "jobStatus": record.status.value,
        "jobType": record.job_type,
        "name": record.name,
        "createdDate": iso_time(record.created),
        "startDate": iso_time(record.started),
        "endDate": iso_time(record.ended),
        "waitSeconds": round((started_or_now or now) - record.created, 3),
        "runSeconds": round((record.ended or now) - record.started, 3) if record.started else None,
        "reason": record.reason,
        "warnings": list(record.warnings),
        "executionMode": record.execution_mode,
        "executionReason": record.execution_reason,
        "exitCode": record.exit_code,
        "signal": record.signal,
        "timeoutSeconds": record.timeout_seconds,
        "cancelRequested": record.cancel_requested,
        "sparkApplicationId": record.app_id,
        "sparkUiUrl": record.ui_url if record.status in ACTIVE_STATES else None,
    }
    if service is not None:
        view["logTail"] = service.log_tail(record)
        view["result"] = service.result(record)
        progress = service.progress(record)
        if progress is not None:  # absent when unknown
            view["progress"] = {**progress.as_dict(), "updated": iso_time(progress.updated)}
        view["links"] = {"self": f"/jobs/{record.id}", "log": f"/jobs/{record.id}/log",
                         "cancel": f"/jobs/{record.id}/cancel"}
    return view


def _error(status: int, detail: str, **extra) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


#: The request body of every route that submits a job (it is read raw, so FastAPI cannot infer it).
JOB_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ModelBatchJob"}}}}}


def service_of(request: Request) -> JobService:
    return request.app.state.service


def owner_of(request: Request) -> str:
    """The authenticated user ("" when authentication is off)."""
    return getattr(request.state, "user", "")


def find(request: Request, job_id: str) -> JobRecord:
    """The caller's job ``job_id``. Raises JobNotFound, also for another user's job."""
    record = service_of(request).get(job_id)
    if record.owner != owner_of(request):
        raise JobNotFound(job_id)  # another user's job does not exist for you
    return record


async def submit_body(request: Request, idempotency_key: str | None = None,
                      as_document: Callable[[dict], dict] | None = None) -> tuple[JobRecord, bool]:
    """(job, created) for the job document in the request's body, admitted and stored for the
    caller by the service; what every route that submits calls. Raises JobInvalid or JobNotStored.

    ``as_document`` makes the job's document of the body (Livy's batch request is a script job).
    """
    # The body is read raw, so that a bad document gets our own 422 listing every problem.
    body = parse_document(await request.body())
    try:
        return await run_in_threadpool(service_of(request).submit, as_document(body) if as_document else body,
                                       owner=owner_of(request), idempotency_key=idempotency_key)
    except StoreError as exc:
        log.error("Could not store a job: %s", exc)
        raise JobNotStored(f"the job could not be stored: {exc}") from exc


def create_app(settings: Settings, service: JobService | None = None, manage: bool | None = None) -> FastAPI:
    """The REST app over ``service``. With ``manage`` (the default when ``service`` is None)
    the app starts the service with itself and closes it at the end, making it from
    ``settings`` if none is given."""
    if manage is None:
        manage = service is None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if manage:
            app.state.service = (app.state.service or JobService(settings)).start()
        try:
            yield
        finally:
            if manage:
                app.state.service.close()

    tokens = Tokens(settings.service.tokens)
    # Livy's routes (imported here: they build on this module).
    from .livy_api import batches_path, is_livy_path, livy_error, livy_router

    livy_base = batches_path(settings.service.livy_prefix)
    app = FastAPI(title="sparkrunner", version=__version__, lifespan=lifespan,
                  description="Run ModelOp-style modelBatchJob documents on Apache Spark.",
                  responses=COMMON_RESPONSES)
    app.state.service = service
    app.add_middleware(Guard, tokens=tokens, max_request_bytes=settings.service.max_request_bytes,
                       msg_paths=(livy_base,))
    metrics = Metrics(lambda: app.state.service.store)
    app.add_middleware(RequestMetrics, metrics=metrics, routes=lambda: app.router.routes)  # outermost

    @app.exception_handler(JobNotFound)
    async def not_found(request: Request, exc: JobNotFound):
        return _error(404, str(exc))

    @app.exception_handler(ModelNotFound)
    async def model_not_found(request: Request, exc: ModelNotFound):
        return _error(404, str(exc))

    @app.exception_handler(BulkRefused)
    async def bulk_refused(request: Request, exc: BulkRefused):
        return _error(exc.status, exc.detail)

    @app.exception_handler(JobInvalid)
    async def invalid(request: Request, exc: JobInvalid):
        what = "model" if request.url.path == "/models" else "job"
        return _error(422, f"the {what} is invalid: {len(exc.errors)} problem(s)", errors=exc.as_dicts())

    @app.exception_handler(JobNotStored)
    async def not_stored(request: Request, exc: JobNotStored):
        return _error(503, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route matching the path only;
            # /jobs has two routes (GET, POST) and Allow must name every method it supports.
            allowed = {method for route in app.router.routes
                       if route.matches(request.scope)[0] is not Match.NONE
                       for method in getattr(route, "methods", None) or ()}
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        if is_livy_path(request.url.path, livy_base):
            return livy_error(exc.status_code, str(exc.detail), exc.headers)
        return await http_exception_handler(request, exc)

    @app.post("/jobs", status_code=201, summary="Submit a job", openapi_extra=JOB_REQUEST_BODY,
              responses=SUBMIT_RESPONSES)
    async def submit(request: Request,
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
        record, created = await submit_body(request, idempotency_key)
        return JSONResponse(job_view(record, service_of(request)), status_code=201 if created else 200,
                            headers={"Location": f"/jobs/{record.id}"})

    @app.get("/jobs", summary="List jobs, newest first")
    def list_jobs(request: Request,
                  job_status: list[JobStatus] | None = Query(None, alias="jobStatus"),
                  job_type: JobTypeName | None = Query(None, alias="jobType"),
                  start: int = Query(0, alias="from", ge=0, le=MAX_OFFSET),
                  size: int = Query(20, ge=1, le=MAX_PAGE)):
        records, total = service_of(request).list_jobs(status=job_status, job_type=job_type,
                                                       owner=owner_of(request), offset=start, limit=size)
        return {"from": start, "size": len(records), "total": total,
                "jobs": [job_view(r) for r in records]}


    @app.get("/jobs/{job_id}", responses=JOB_RESPONSES, summary="A job: state, times, end reason, log tail, result")
    async def get_job(request: Request, job_id: str):
        # Inline, not in the thread pool: one indexed SQLite read and two small file reads cost
        # less than the hand-off to a worker thread, and this is what clients poll.
        return job_view(find(request, job_id), service_of(request))

    @app.get("/jobs/{job_id}/log", responses=JOB_RESPONSES, summary="Page through a job's driver log")
    def get_log(request: Request, job_id: str, start: int | None = Query(None, alias="from", ge=0),
                size: int = Query(100, ge=1, le=10_000)):
        record = find(request, job_id)
        begin, total, lines = service_of(request).read_log(record, start, size)
        return {"id": record.id, "from": begin, "total": total, "log": lines}

    @app.post("/jobs/{job_id}/cancel", responses=JOB_RESPONSES, summary="Cancel a job (repeatable)")
    def cancel(request: Request, job_id: str):
        find(request, job_id)
        return job_view(service_of(request).cancel(job_id), service_of(request))

    # ModelOp Center's own path to the same jobs (imported here: it builds on this module).
    from .modelop_api import router as modelop_router

    app.include_router(modelop_router)
    # Registered models (imported here: they build on this module).
    from .models_api import router as models_router

    app.include_router(models_router)
    # The dashboard (imported here: it builds on the service).
    from .ui import Sessions, ui_router

    app.include_router(ui_router(Sessions(tokens)))
    app.include_router(livy_router(settings.service.livy_prefix))

    @app.get("/metrics", summary="Prometheus metrics: jobs by type and state, latencies, API requests",
             response_class=PlainTextResponse)
    def prometheus_metrics():
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness")
    def healthz():
        return {"status": "ok", "version": __version__}

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description,
                               routes=app.routes)
            components = spec.setdefault("components", {})
            components.setdefault("schemas", {}).update(openapi_job_schemas())
            if tokens.enabled:
                components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                                 "basic": {"type": "http", "scheme": "basic"}}
                spec["security"] = [{"bearer": []}, {"basic": []}]
                for path in OPEN_PATHS & spec["paths"].keys():
                    for operation in spec["paths"][path].values():
                        operation["security"] = []  # the guard lets these through unauthenticated
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


#: What the guard (auth.py) may answer before any route runs.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Authentication is configured, and the request has no valid token"},
    403: {"description": f"A state-changing request with neither a bearer token, an {CSRF_HEADER} "
                         "header nor a JSON body (Content-Type: application/json)"},
    413: {"description": "The request body is larger than service.max_request_bytes"},
}
#: What a route that submits a job may answer.
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "Stored and queued"},
    200: {"description": "An earlier job with the same Idempotency-Key"},
    422: {"description": "The job is invalid; every problem is listed"},
    503: {"description": "The job could not be stored; nothing was kept"},
}
#: What a route about one job may answer besides its success.
JOB_RESPONSES: dict[int | str, dict[str, Any]] = {404: {"description": "No such job (or another user's)"}}


def openapi_job_schemas() -> dict[str, Any]:
    """The job schema's definitions as OpenAPI components, with references rewritten."""
    text = json.dumps(copy.deepcopy(schema())).replace('"#/$defs/', '"#/components/schemas/')
    job = json.loads(text)
    defs = job.pop("$defs")
    job.pop("$schema", None)
    job.pop("$id", None)
    return {"ModelBatchJob": job, **defs}
