"""A job's document summarised for its page: the model, the function and its form, the data, the
settings, in the words the README uses."""

from __future__ import annotations

import json
from typing import Any

from ..errors import JobInvalid
from ..jobspec import validate
from ..store import JobRecord


def _urls(assets) -> list[str]:
    return [str(a.get("fileUrl") or a.get("name") or "?") for a in assets]


def summarise(record: JobRecord) -> list[tuple[str, Any]]:
    """(label, value) rows; a value is a string or a list of strings."""
    document = json.loads(record.document)
    model = (document.get("model") or {}).get("storedModel") or {}
    meta = model.get("modelMetaData") or {}
    rows: list[tuple[str, Any]] = [("Model", str(meta.get("name") or record.name)),
                                   ("Model type", str(meta.get("type") or "—")),
                                   ("Job type", record.job_type)]
    try:
        spec = validate(document)
    except (JobInvalid, ValueError, TypeError):
        spec = None  # a script job (a Livy batch), or a document admitted under other rules
    if spec is not None:
        call = f"{spec.role.value} function {spec.function}()"
        if spec.init_function:
            call += f", init {spec.init_function}()"
        where = spec.primary.filename if spec.primary else f"the MLflow model {spec.scoring.mlflow.url}"
        rows += [("Function", f"{call} in {where}"),
                 ("Form", _form(spec)),
                 ("Inputs", _urls(spec.inputs)), ("Outputs", _urls(spec.outputs)),
                 ("Attachments", _urls(spec.attachments))]
        settings = {**spec.job_parameters, **spec.spark_conf}
        if spec.executor_memory:
            settings["executorMemory"] = spec.executor_memory
        rows.append(("Settings", [f"{k} = {v}" for k, v in settings.items()]))
    elif isinstance(document.get("file"), str):
        rows.append(("Script", " ".join([document["file"], *map(str, document.get("args") or [])])))
    rows.append(("Runs", f"{record.execution_mode}" + (f": {record.execution_reason}" if record.execution_reason else "")))
    if record.timeout_seconds:
        rows.append(("Timeout", f"{record.timeout_seconds:g} s"))
    rows.append(("Warnings", list(record.warnings)))
    return rows


def _form(spec) -> str:
    if spec.scoring is None:
        return "three lists of assets, on the driver"
    if spec.scoring.mlflow is not None:
        return "an MLflow model: mlflow.pyfunc on each batch, on the Python workers"
    return f"one {spec.scoring.form.lower()} at a time on the Python workers"
