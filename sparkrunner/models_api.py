"""Registered models over REST: ``/models`` (register, list, show, delete) and the jobs made from
them, ``POST /models/{name}/jobs``. The same users and ownership as jobs: a user sees and uses
only their own models (another user's is 404). What a model is and how a job is made of it:
:mod:`sparkrunner.models`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from . import bulk
from .api import MAX_OFFSET, SUBMIT_RESPONSES, iso_time, job_view, owner_of, service_of, submit_body
from .errors import JobNotStored, ModelNotFound, StoreError
from .service import JobService
from .states import JobStatus
from .store import JobRecord
from .jobspec import parse_document
from .models import job_of_model
from .store import ModelRecord

log = logging.getLogger(__name__)
router = APIRouter()
#: A version number, in a path or a query: at most SQLite's largest integer (a larger one cannot be bound).
VERSION = {"ge": 1, "le": MAX_OFFSET}
#: How often a bulk answer looks for new lines while its job runs.
BULK_POLL_SECONDS = 0.02

MODEL_RESPONSES: dict[int | str, dict[str, Any]] = {404: {"description": "No such model (or another user's)"}}
REGISTER_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "description": "{\"name\", \"model\": the model part of a modelBatchJob, \"defaults\": job fields its "
                   "jobs get unless they name their own}; or {\"name\", \"fromJob\": a COMPLETE training "
                   "job's id}, whose outputs become the new version's attachments",
    "properties": {"name": {"type": "string"}, "model": {"type": "object"}, "defaults": {"type": "object"},
                   "fromJob": {"type": "string"}}}}}}}
JOB_OF_MODEL_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "A modelBatchJob without its model: jobType, inputData, outputData, "
                                     "and any other job field (over the model's defaults)",
    "properties": {"jobType": {"type": "string"}, "inputData": {"type": "array"},
                   "outputData": {"type": "array"}}}}}}}


def model_view(record: ModelRecord, full: bool = False) -> dict[str, Any]:
    """A model version as the API shows it; ``full`` adds the model part itself."""
    view = {"name": record.name, "version": record.version, "ref": f"{record.name}:{record.version}",
            "jobTypes": list(record.job_types), "defaults": record.defaults,
            "createdDate": iso_time(record.created), "trainedBy": record.trained_by,
            "links": {"self": f"/models/{record.name}/versions/{record.version}",
                      "jobs": f"/models/{record.name}/jobs"}}
    if full:
        view["model"] = record.model
    return view


@router.post("/models", status_code=201, summary="Register a model, or a new version of one",
             openapi_extra=REGISTER_BODY,
             responses={201: {"description": "Stored as the next version of its name"},
                        422: {"description": "The model is invalid; every problem is listed"}})
async def register(request: Request):
    body = parse_document(await request.body())
    service, owner = service_of(request), owner_of(request)
    if "fromJob" in body:
        record = await run_in_threadpool(service.register_trained, body.get("name"), str(body["fromJob"]), owner)
    else:
        record = await run_in_threadpool(service.register_model, body, owner)
    return JSONResponse(model_view(record, full=True), status_code=201,
                        headers={"Location": f"/models/{record.name}/versions/{record.version}"})


@router.get("/models", summary="List your models (each at its latest version)")
def list_models(request: Request):
    records = service_of(request).store.latest_models(owner_of(request))
    return {"models": [model_view(r) for r in records]}


@router.get("/models/{name}", responses=MODEL_RESPONSES, summary="A model's versions, newest first")
def model_versions(request: Request, name: str):
    versions = service_of(request).store.model_versions(owner_of(request), name)
    if not versions:
        raise ModelNotFound(name)
    return {"name": name, "latest": versions[0].version, "versions": [model_view(r) for r in versions]}


@router.get("/models/{name}/versions/{version}", responses=MODEL_RESPONSES,
            summary="One version of a model, with the model itself")
def model_version(request: Request, name: str, version: int = Path(**VERSION)):
    return model_view(service_of(request).store.get_model(owner_of(request), name, version), full=True)


@router.delete("/models/{name}", responses=MODEL_RESPONSES,
               summary="Delete a model, every version (jobs made from it keep their documents)")
def delete_model(request: Request, name: str):
    return {"name": name, "deleted": service_of(request).store.delete_model(owner_of(request), name)}


@router.delete("/models/{name}/versions/{version}", responses=MODEL_RESPONSES,
               summary="Delete one version of a model (its number is never given again)")
def delete_version(request: Request, name: str, version: int = Path(**VERSION)):
    store = service_of(request).store
    return {"name": name, "version": version, "deleted": store.delete_model(owner_of(request), name, version)}


@router.post("/models/{name}/jobs", status_code=201, openapi_extra=JOB_OF_MODEL_BODY,
             responses=SUBMIT_RESPONSES,
             summary="Create a job of a registered model: jobType, inputData, outputData")
async def create_job(request: Request, name: str, version: int | None = Query(None, **VERSION),
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    record, created = await submit_body(request, idempotency_key,
                                        as_document=lambda body: job_of_model(name, version, body))
    return JSONResponse(job_view(record, service_of(request)), status_code=201 if created else 200,
                        headers={"Location": f"/jobs/{record.id}"})


BULK_BODY = {"requestBody": {"required": True, "content": {bulk.MEDIA_TYPE: {"schema": {
    "type": "string", "description": "One JSON object (a record) a line"}}}}}
BULK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "One JSON object a line, streamed as the job gives them: the record's id, batchId, "
                         "model, modelVersion, startTime, endTime, and the model's outputs (result) or an "
                         "error (a line that is no record, a record the input schema rejects, a failed job)",
          "content": {bulk.MEDIA_TYPE: {"schema": {"type": "string"}}}},
    400: {"description": "The body is not lines of UTF-8 text, holds no line, or more than bulk.max_lines"},
    404: {"description": "No such model (or another user's)"},
    413: {"description": "The body is larger than bulk.max_request_bytes"},
    422: {"description": "The scoring job is invalid (the model cannot score records); every problem is listed"},
    503: {"description": "The job could not be stored; nothing was kept"},
}


@router.post("/models/{name}/score", openapi_extra=BULK_BODY, responses=BULK_RESPONSES,
             response_class=StreamingResponse,
             summary="Score JSON lines with a registered model (bulk): one answer line per record")
async def bulk_score(request: Request, name: str, version: int | None = Query(None, **VERSION)):
    service, owner = service_of(request), owner_of(request)
    body = await request.body()
    model = service.store.get_model(owner, name, version)
    batch = bulk.parse(body, model.defaults.get("idField"), service.settings.bulk)
    received = time.time()
    job = None
    if batch.count:
        try:
            job, _ = await run_in_threadpool(service.submit, bulk.job_document(model.name, model.version, batch),
                                             owner=owner)
        except StoreError as exc:
            log.error("Could not store a bulk scoring job: %s", exc)
            raise JobNotStored(f"the job could not be stored: {exc}") from exc
    envelope = bulk.Envelope(job.id if job else None, model.name, model.version, batch.id_field, iso_time(received))
    headers = {"Location": f"/jobs/{job.id}"} if job else {}
    return StreamingResponse(_bulk_answer(service, batch, envelope, job), media_type=bulk.MEDIA_TYPE,
                             headers=headers)


async def _bulk_answer(service: JobService, batch: bulk.Batch, envelope: bulk.Envelope,
                       job: JobRecord | None) -> AsyncIterator[bytes]:
    """The answer's lines: the lines that are no records, then the job's scores as they appear,
    then its rejected records, then its failure if it failed. A client that goes away cancels it."""
    now = iso_time(time.time())
    for n, why in batch.bad_lines:
        yield envelope.bad_line(n, why, now, batch.assigned_ids)
    if job is None:
        return
    workdir = service.workdir(job)
    scores, rejected = bulk.LineTail(workdir / bulk.SCORES_FILENAME), bulk.LineTail(workdir / bulk.REJECTED_FILENAME)
    finished = False
    try:
        while True:
            current = service.get(job.id)  # before the files: once it has ended, they are whole
            if current.started is not None:
                envelope = dataclasses.replace(envelope, start_time=iso_time(current.started))
            lines = scores.read()
            for line in lines:
                yield envelope.scored(json.loads(line), iso_time(time.time()))
            if current.status.is_terminal:
                finished = True
                break
            if not lines:
                await asyncio.sleep(BULK_POLL_SECONDS)
        now = iso_time(time.time())
        for line in rejected.read():
            yield envelope.rejected(json.loads(line), now)
        if current.status is not JobStatus.COMPLETE:
            yield envelope.line(None, now, error=f"the batch job ended {current.status.value}: {current.reason}")
    finally:
        if not finished:  # the client went away before the end: the job is of no use to anyone
            # Not awaited: the request's task is being cancelled, and an await would be too.
            service.cancel(job.id)
