"""Registered models: the ``model`` part of a modelBatchJob stored once, named and versioned, and
the jobs made from it.

A model is checked when it is registered as a job's model is checked when the job is admitted:
by :func:`sparkrunner.admission.admit` itself, on a job of each type around it (its data assets
stand-ins, whose problems are not the model's). The job types it passes are the ones it can run.

A job names a registered model with ``"model": {"ref": "name"}`` (the latest version) or
``"model": {"ref": "name:3"}``. :func:`job_from_model` makes the complete document before
admission: the model's defaults, the job's own fields over them, the stored model, and
``registeredModel`` saying which model and version it came from. So the stored job is complete and
runs again the same way, whatever happens to the registry later.

Pure: the store is the caller's (:class:`sparkrunner.service.JobService`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .admission import Origin, admit
from .config import Settings
from .errors import FieldError, JobInvalid
from .jobspec import DEFAULT_JOB_TYPE, JOB_TYPES
from .store import ModelRecord

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: ``name`` or ``name:version`` (a version SQLite can hold).
REF_PATTERN = re.compile(rf"(?P<name>{NAME_PATTERN.pattern})(?::(?P<version>[1-9][0-9]{{0,17}}))?")
NAME_RULE = "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
REF_FIELD = "ref"
#: The job fields a registered model keeps for its jobs, which a job may name to override.
DEFAULT_FIELDS = ("jobParameters", "targetEngine", "idField", "timeoutSeconds", "executionMode")
#: Carried by a job made from a registered model: ``{"name": …, "version": …}``.
SOURCE_FIELD = "registeredModel"
#: What a model's job types are checked around: data assets that are never read.
_STAND_IN_INPUT = {"assetType": "EXTERNAL_FILE", "name": "input", "fileUrl": "/sparkrunner-stand-in/input.json",
                   "fileFormat": "JSON"}
_STAND_IN_OUTPUT = {**_STAND_IN_INPUT, "name": "output", "fileUrl": "/sparkrunner-stand-in/output.json"}


@dataclass(frozen=True)
class Registration:
    """A model ready to be stored: its name, model part, defaults and the job types it runs."""

    name: str
    model: dict
    defaults: dict
    job_types: tuple[str, ...]


def check_name(name: Any, path: str) -> list[FieldError]:
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return []
    return [FieldError(path, f"{name!r} is not a model name: {NAME_RULE}")]


def registration(body: Any, settings: Settings, data_dir: Path | None) -> Registration:
    """The registration ``POST /models`` asks for (``{"name", "model", "defaults"}``; the name
    defaults to ``modelMetaData.name``), or :class:`JobInvalid` listing every problem."""
    if not isinstance(body, dict):
        raise JobInvalid([FieldError("$", "must be an object such as {\"name\": …, \"model\": {\"storedModel\": …}}")])
    model, defaults = body.get("model"), body.get("defaults") or {}
    errors: list[FieldError] = []
    if not isinstance(model, dict):
        raise JobInvalid([FieldError("$.model", "must be the model part of a modelBatchJob: an object "
                                                "with storedModel.modelAssets")])
    if REF_FIELD in model:
        errors.append(FieldError(f"$.model.{REF_FIELD}", "a registered model cannot name another one: "
                                                         "give the model itself (storedModel)"))
    name = body.get("name")
    if name is None:
        stored = model.get("storedModel")
        meta = stored.get("modelMetaData") if isinstance(stored, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if name is None:
            errors.append(FieldError("$.name", "is missing, and so is $.model.storedModel.modelMetaData.name"))
    if name is not None:
        errors += check_name(name, "$.name")
    if not isinstance(defaults, dict):
        errors.append(FieldError("$.defaults", f"must be an object of job fields ({', '.join(DEFAULT_FIELDS)})"))
        defaults = {}
    errors += [FieldError(f"$.defaults.{key}", f"is not a job default; accepted: {', '.join(DEFAULT_FIELDS)}")
               for key in defaults if key not in DEFAULT_FIELDS]
    if errors:
        raise JobInvalid(errors)
    return Registration(name, copy.deepcopy(model), copy.deepcopy(defaults),
                        job_types(model, defaults, settings, data_dir))


def job_types(model: dict, defaults: dict, settings: Settings, data_dir: Path | None) -> tuple[str, ...]:
    """The job types ``model`` can run with ``defaults``, each admitted as a job of its own; or
    :class:`JobInvalid` with the problems of every type when it runs none."""
    runs, problems = [], {}
    for job_type in JOB_TYPES:
        document = {**defaults_for(job_type, defaults), "jobType": job_type, "model": model, "inputData": [_STAND_IN_INPUT],
                    "outputData": [_STAND_IN_OUTPUT]}
        try:
            admit(document, settings, Origin.SERVICE, data_dir, warm_unavailable=None)
        except JobInvalid as exc:
            found = [_as_registered(e) for e in exc.errors if not e.path.startswith(("$.inputData", "$.outputData"))]
            if found:
                problems.update(dict.fromkeys(found))  # in order, without repeats
                continue
        runs.append(job_type)
    if not runs:
        raise JobInvalid(list(problems))
    return tuple(runs)


def defaults_for(job_type: str | None, defaults: Mapping[str, Any]) -> dict:
    """The defaults that apply to a job of ``job_type``: ``idField`` only to score jobs (the
    only ones that carry ids from records to outputs)."""
    if (job_type or DEFAULT_JOB_TYPE) == DEFAULT_JOB_TYPE:
        return dict(defaults)
    return {k: v for k, v in defaults.items() if k != "idField"}


def _as_registered(error: FieldError) -> FieldError:
    """A job's problem as the registration's: a default's path is under ``$.defaults``."""
    head = error.path[2:].split(".")[0].split("[")[0]
    if head in DEFAULT_FIELDS:
        return FieldError("$.defaults." + error.path[2:], error.message)
    return error


def reference(document: Mapping[str, Any]) -> tuple[str, int | None] | None:
    """(name, version or None for the latest) of the registered model ``document`` names, None
    when it carries its model; :class:`JobInvalid` for a reference that cannot be one."""
    model = document.get("model")
    if not isinstance(model, dict) or REF_FIELD not in model:
        return None
    ref, path = model[REF_FIELD], f"$.model.{REF_FIELD}"
    errors = [FieldError("$.model", f"names a registered model ({REF_FIELD}), so it holds nothing else; "
                                    f"found {', '.join(sorted(set(model) - {REF_FIELD}))}")] if len(model) > 1 else []
    match = REF_PATTERN.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        raise JobInvalid([*errors, FieldError(path, f"{ref!r} is not a registered model's reference: "
                                                    "'name' (its latest version) or 'name:version'")])
    if errors:
        raise JobInvalid(errors)
    return match["name"], int(match["version"]) if match["version"] else None


def job_from_model(document: Mapping[str, Any], record: ModelRecord) -> dict:
    """The complete job ``document`` asks for: the model's defaults, the job's own fields over
    them, the stored model, and where it came from."""
    defaults = defaults_for(document.get("jobType"), record.defaults)
    job = {**copy.deepcopy(defaults), **copy.deepcopy({k: v for k, v in document.items() if k != "model"})}
    job["model"] = copy.deepcopy(record.model)
    job[SOURCE_FIELD] = {"name": record.name, "version": record.version}
    return job


def job_of_model(name: str, version: int | None, body: Mapping[str, Any]) -> dict:
    """The job document ``POST /models/{name}/jobs`` makes of ``body`` (jobType, inputData,
    outputData and any other job field)."""
    ref = name if version is None else f"{name}:{version}"
    return {**{k: v for k, v in body.items() if k not in ("model", "version")}, "model": {REF_FIELD: ref}}


def trained_model(job: Mapping[str, Any]) -> tuple[dict, dict]:
    """(model, defaults) of the version a completed training job makes: its model, whose
    EXTERNAL_FILE attachments are the job's outputs (what training wrote), and the job's values of
    the default fields (the caller prefers the defaults of the version it was trained from)."""
    model = copy.deepcopy(job["model"])
    stored = model["storedModel"]
    outputs = [dict(a, assetRole="MODEL_ATTACHMENT") for a in job.get("outputData") or []
               if a.get("assetType") == "EXTERNAL_FILE"]
    stored["modelAssets"] = [a for a in stored["modelAssets"] if a.get("assetType") != "EXTERNAL_FILE"] + outputs
    return model, {k: copy.deepcopy(job[k]) for k in DEFAULT_FIELDS if k in job}
