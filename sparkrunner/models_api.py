"""Registered models over REST: ``/models`` (register, list, show, delete) and the jobs made from
them, ``POST /models/{name}/jobs``. The same users and ownership as jobs: a user sees and uses
only their own models (another user's is 404). What a model is and how a job is made of it:
:mod:`sparkrunner.models`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from .api import SUBMIT_RESPONSES, iso_time, job_view, owner_of, service_of, submit_body
from .errors import ModelNotFound
from .jobspec import parse_document
from .models import job_of_model
from .store import ModelRecord

router = APIRouter()

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
def model_version(request: Request, name: str, version: int):
    return model_view(service_of(request).store.get_model(owner_of(request), name, version), full=True)


@router.delete("/models/{name}", responses=MODEL_RESPONSES,
               summary="Delete a model, every version (jobs made from it keep their documents)")
def delete_model(request: Request, name: str):
    return {"name": name, "deleted": service_of(request).store.delete_model(owner_of(request), name)}


@router.delete("/models/{name}/versions/{version}", responses=MODEL_RESPONSES,
               summary="Delete one version of a model (its number is never given again)")
def delete_version(request: Request, name: str, version: int):
    store = service_of(request).store
    return {"name": name, "version": version, "deleted": store.delete_model(owner_of(request), name, version)}


@router.post("/models/{name}/jobs", status_code=201, openapi_extra=JOB_OF_MODEL_BODY,
             responses=SUBMIT_RESPONSES,
             summary="Create a job of a registered model: jobType, inputData, outputData")
async def create_job(request: Request, name: str, version: int | None = Query(None, ge=1),
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    record, created = await submit_body(request, idempotency_key,
                                        as_document=lambda body: job_of_model(name, version, body))
    return JSONResponse(job_view(record, service_of(request)), status_code=201 if created else 200,
                        headers={"Location": f"/jobs/{record.id}"})
