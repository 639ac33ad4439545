"""Validates a script job, a PySpark script run as spark-submit runs it, into a frozen :class:`ScriptSpec`.

A script job is what Livy calls a batch. Its document is Livy's batch request with
``"jobType": "SPARK_SCRIPT_JOB"``::

    {"jobType": "SPARK_SCRIPT_JOB", "file": "/srv/jobs/pi.py", "args": ["10"],
     "pyFiles": [...], "files": [...], "archives": [...],
     "driverMemory": "1g", "executorMemory": "2g", "driverCores": 1, "executorCores": 2,
     "numExecutors": 4, "queue": "etl", "name": "pi", "conf": {"spark.sql.shuffle.partitions": "8"},
     "proxyUser": "alice", "timeoutSeconds": 600}

The script has no score function: the driver runs it as ``python file args...`` inside a Spark
driver, and its exit status decides how the job ends. ``className`` and ``jars`` (JVM
applications) are refused.

Pure, like :mod:`sparkrunner.jobspec`: the fields are checked here, and
:mod:`sparkrunner.admission` puts the resources and ``conf`` through the same policy as a model
job's settings and the locations through the same location rules.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from .config import LimitSettings
from .errors import FieldError, JobInvalid
from .policy import Location, local_path
from .workdir import filename_problem

SCRIPT_JOB_TYPE = "SPARK_SCRIPT_JOB"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Livy's fields that are spark-submit options, and the option each one is.
OPTION_FIELDS: Mapping[str, str] = {
    "name": "--name",
    "driverMemory": "--driver-memory",
    "executorMemory": "--executor-memory",
    "driverCores": "--driver-cores",
    "executorCores": "--executor-cores",
    "numExecutors": "--num-executors",
    "queue": "--queue",
    "proxyUser": "--proxy-user",
}
#: Fields holding lists of locations, shipped with the spark-submit option of the same name.
LOCATION_LISTS: Mapping[str, str] = {"pyFiles": "--py-files", "files": "--files", "archives": "--archives"}
_STRINGS = ("file", "name", "driverMemory", "executorMemory", "queue", "proxyUser", "className")
_COUNTS = ("driverCores", "executorCores", "numExecutors")
_LISTS = ("args", "jars", *LOCATION_LISTS)
ACCEPTED_FIELDS = ("jobType", *_STRINGS, *_COUNTS, *_LISTS, "conf", "timeoutSeconds")
#: Fields sparkrunner refuses, and why.
JVM_FIELDS = {
    "className": "names a JVM application's main class; sparkrunner runs PySpark scripts only "
                 "(a Python file in 'file')",
    "jars": "adds jars to the JVMs; sparkrunner runs PySpark scripts only, and jars are the "
            "operator's (spark.jars)",
}


@dataclass(frozen=True)
class ScriptSpec:
    """A validated script job: what the later stages need, and the document as received."""

    document: Mapping[str, Any]
    name: str
    #: ``file`` as sent.
    file: str
    #: The script's file name: in the working directory when it is a local file (copied there
    #: when the job is laid out), on the driver's Python path when it is shipped (``--py-files``).
    filename: str
    #: A local script's resolved path (then it is copied), None for a URL Spark fetches.
    local_path: str | None
    args: tuple[str, ...]
    py_files: tuple[str, ...]
    files: tuple[str, ...]
    archives: tuple[str, ...]
    timeout_seconds: int | None
    job_type: str = SCRIPT_JOB_TYPE

    def shipped(self) -> Mapping[str, tuple[str, ...]]:
        """{spark-submit option: locations} of what goes to the cluster with the script."""
        py_files = self.py_files if self.local_path else (self.file, *self.py_files)
        return {"--py-files": py_files, "--files": self.files, "--archives": self.archives}


def is_script_job(document: Mapping[str, Any]) -> bool:
    """True for a script job's document (``"jobType": "SPARK_SCRIPT_JOB"``)."""
    return isinstance(document, Mapping) and document.get("jobType") == SCRIPT_JOB_TYPE


def check_shape(document: Mapping[str, Any], limits: LimitSettings = LimitSettings()) -> dict:
    """A private copy of ``document`` once every field has Livy's type and it is within the
    limits, or :class:`JobInvalid` listing what is wrong."""
    errors: list[FieldError] = []
    unknown = sorted(set(document) - set(ACCEPTED_FIELDS))
    for field in unknown:
        errors.append(FieldError(f"$.{field}", "is not a field of a script job (a Livy batch); "
                                               f"accepted: {', '.join(ACCEPTED_FIELDS)}"))
    if "file" not in document:
        errors.append(FieldError("$.file", "is required: the PySpark script to run"))
    for field in _STRINGS:
        if field in document and not isinstance(document[field], str):
            errors.append(FieldError(f"$.{field}", f"must be a string, not {_kind(document[field])}"))
    for field in _COUNTS:
        if field in document and _count(document[field]) is None:
            errors.append(FieldError(f"$.{field}", f"must be a whole number of at least 1, not "
                                                   f"{document[field]!r}"))
    for field in _LISTS:
        value = document.get(field)
        if field not in document:
            continue
        if not isinstance(value, list):
            errors.append(FieldError(f"$.{field}", f"must be a list of strings, not {_kind(value)}"))
        elif len(value) > limits.max_assets:
            errors.append(FieldError(f"$.{field}", f"holds {len(value)} items; at most "
                                                   f"{limits.max_assets} are accepted (limits.max_assets)"))
        else:
            for i, item in enumerate(value):
                # args: numbers become strings, as Livy's JSON reader and Airflow's hook make them.
                if not (isinstance(item, str) or field == "args" and _scalar(item)):
                    errors.append(FieldError(f"$.{field}[{i}]", f"must be a string, not {_kind(item)}"))
    conf = document.get("conf")
    if "conf" in document and conf is not None:
        if not isinstance(conf, dict):
            errors.append(FieldError("$.conf", f"must be an object of Spark properties, not {_kind(conf)}"))
        elif len(conf) > limits.max_assets:
            errors.append(FieldError("$.conf", f"holds {len(conf)} properties; at most "
                                               f"{limits.max_assets} are accepted (limits.max_assets)"))
        else:
            for key, value in conf.items():
                if not _scalar(value):
                    errors.append(FieldError(f"$.conf[{key!r}]", f"must be a string or a number, not {_kind(value)}"))
    timeout = document.get("timeoutSeconds")
    if timeout is not None and _count(timeout) is None:
        errors.append(FieldError("$.timeoutSeconds", f"must be a whole number of seconds, at least 1, "
                                                     f"not {timeout!r}"))
    if errors:
        raise JobInvalid(errors)
    try:
        text = json.dumps(document, allow_nan=False, ensure_ascii=False)
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise JobInvalid([FieldError("$", f"holds {exc.object[exc.start:exc.end]!r}, a lone surrogate, which "
                                          "is not a character: it cannot be stored as UTF-8")]) from exc
    except (TypeError, ValueError) as exc:
        raise JobInvalid([FieldError("$", f"holds a value that cannot be stored as JSON: {exc}")]) from exc
    if size > limits.max_asset_bytes:
        raise JobInvalid([FieldError("$", f"holds {size} bytes; a script job may hold at most "
                                          f"{limits.max_asset_bytes} (limits.max_asset_bytes)")])
    return json.loads(text)


def build(doc: dict) -> ScriptSpec:
    """The script spec of a document :func:`check_shape` passed, or :class:`JobInvalid`."""
    errors = [FieldError(f"$.{field}", message) for field, message in JVM_FIELDS.items()
              if doc.get(field)]
    file = doc["file"]
    local = local_path(file)
    if local is not None and not _CONTROL.search(local):  # else the location rules refuse it
        # Resolved as the location rules resolve it (links followed): the file that was admitted.
        local = os.path.realpath(local)
    filename = _last_part(file)
    if not filename.endswith(".py"):
        errors.append(FieldError("$.file", f"{file!r} is not a Python file (*.py); sparkrunner runs "
                                           "PySpark scripts, not JVM applications"))
    else:
        problem = filename_problem(filename)
        if problem:
            errors.append(FieldError("$.file", f"its file name {filename!r} {problem}"))
    for where, url in _locations(doc):
        if "," in url:
            # spark-submit's --py-files, --files and --archives split on ','.
            errors.append(FieldError(where, f"{url!r} may not contain ','"))
    if local is None:
        # A shipped script is found on the driver's Python path by its file name.
        for i, url in enumerate(doc.get("pyFiles") or []):
            if _last_part(url) == filename:
                errors.append(FieldError(f"$.pyFiles[{i}]", f"{url!r} has the file name of the script "
                                                            f"itself ({filename!r})"))
    if errors:
        raise JobInvalid(errors)
    return ScriptSpec(
        document=MappingProxyType(doc),
        name=doc.get("name") or filename.removesuffix(".py"),
        file=file,
        filename=filename,
        local_path=local,
        args=tuple(str(a) if not isinstance(a, bool) else str(a).lower() for a in doc.get("args") or []),
        py_files=tuple(map(_absolute, doc.get("pyFiles") or [])),
        files=tuple(map(_absolute, doc.get("files") or [])),
        archives=tuple(map(_absolute, doc.get("archives") or [])),
        timeout_seconds=None if doc.get("timeoutSeconds") is None else _count(doc["timeoutSeconds"]),
    )


def options_of(doc: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(spark-submit options in flag form, the JSON path of each, ``conf``) of a document
    :func:`check_shape` passed: what :func:`sparkrunner.policy.resolve_settings` checks."""
    options, paths = {}, {}
    for field, flag in OPTION_FIELDS.items():
        value = doc.get(field)
        if value not in (None, ""):
            options[flag], paths[flag] = str(value), f"$.{field}"
    conf = {str(k): _setting_str(v) for k, v in (doc.get("conf") or {}).items()}
    return options, paths, conf


def locations_of(doc: Mapping[str, Any]) -> list[Location]:
    """Every location the job names (``file``, ``pyFiles``, ``files``, ``archives``)."""
    return [Location(where, url) for where, url in _locations(doc)]


def _absolute(url: str) -> str:
    """A relative plain path made absolute (spark-submit runs in the working directory)."""
    scheme = urllib.parse.urlsplit(url).scheme
    return os.path.abspath(url) if scheme == "" and not os.path.isabs(url) else url


def _locations(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = [("$.file", doc["file"])] if isinstance(doc.get("file"), str) else []
    for field in LOCATION_LISTS:
        found += [(f"$.{field}[{i}]", url) for i, url in enumerate(doc.get(field) or [])]
    return found


def _last_part(url: str) -> str:
    """The file name a location ends with (of a plain path, or of a URL's path)."""
    scheme = urllib.parse.urlsplit(url).scheme
    path = url if scheme == "" or len(scheme) == 1 else urllib.parse.urlsplit(url).path
    return os.path.basename(path.rstrip("/"))


def _count(value: Any) -> int | None:
    """A positive whole number given as a number or a string of digits (Livy's reader takes both)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 1 else None
    if isinstance(value, str) and value.strip().isdigit() and int(value) >= 1:
        return int(value)
    return None


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not (isinstance(value, float) and value != value)


def _setting_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")
