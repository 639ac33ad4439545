"""Bulk scoring: a request of JSON lines becomes a scoring job of a registered model, and the job's
outputs become the answer's JSON lines.

The request's records travel inside the job, as a FILE asset in its working directory marked
``inWorkdir`` (:mod:`sparkrunner.scoringspec`): the driver reads them itself and hands them to
Spark, and writes the scores (and the records the input schema rejects) back into the working
directory as JSON lines, which the service reads as they appear. So the job is an ordinary one —
admitted, stored, run warm when it can, listed — and nobody else's job can see its data.

Every answer line carries the record's id (the model's ``idField``; else ``sparkrunner_id``, the
record's line number, which the service adds to each record and the model sees), the batch id
(the job's id), the model's name and version, and start and end times (the job's start, and when
the service had the line). Lines that are not JSON objects, and records the input schema rejects,
come back as lines with an ``error``; none is dropped.

Pure, but for :class:`LineTail`, which reads a job's growing output file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BulkSettings
from .errors import BulkRefused
from .scoringspec import IN_WORKDIR, REJECTED_ROLE
from .workdir import open_job_file

#: The id the service gives each record when the model names no idField: its line number.
ID_FIELD = "sparkrunner_id"
RECORDS_FILENAME = "bulk_records.jsonl"
SCORES_FILENAME = "bulk_scores.jsonl"
REJECTED_FILENAME = "bulk_rejected.jsonl"
MEDIA_TYPE = "application/x-ndjson"


@dataclass(frozen=True)
class Batch:
    """A request's records, ready for the job, and the lines that are no records."""

    #: The records to score, one JSON object a line (each with its id).
    records: str
    count: int
    #: (line number, why) of each line that is not a record.
    bad_lines: tuple[tuple[int, str], ...]
    #: The field that carries each record's id: the model's idField, or :data:`ID_FIELD`.
    id_field: str
    #: Whether the service assigned the ids (:data:`ID_FIELD`).
    assigned_ids: bool


def parse(body: bytes, model_id_field: str | None, limits: BulkSettings) -> Batch:
    """The batch in ``body``, or :class:`BulkRefused` (413: too large; 400: not UTF-8, too many
    lines, no line at all). A line that is not a JSON object is kept as a bad line, to be answered."""
    if len(body) > limits.max_request_bytes:
        raise BulkRefused(413, f"the body holds {len(body)} bytes; at most {limits.max_request_bytes} are "
                               "accepted (bulk.max_request_bytes): send the records in several requests")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BulkRefused(400, f"the body is not UTF-8 text ({exc}): send one JSON object a line") from exc
    # Only "\n" ends a line: JSON text may hold U+2028 and the like, which splitlines() would split on.
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not lines:
        raise BulkRefused(400, "the body holds no records: send one JSON object a line")
    if len(lines) > limits.max_lines:
        raise BulkRefused(400, f"the body holds {len(lines)} records (lines); at most {limits.max_lines} are "
                               "accepted (bulk.max_lines): send them in several requests")
    records, bad = [], []
    for n, line in lines:
        problem, record = _record(n, line)
        if problem is None and model_id_field is not None and model_id_field not in record:
            problem = f"line {n} has no {model_id_field!r}, the model's idField, which each record must carry"
        if problem is not None:
            bad.append((n, problem))
            continue
        if model_id_field is None:
            record = {ID_FIELD: n, **{k: v for k, v in record.items() if k != ID_FIELD}}
        records.append(json.dumps(record, ensure_ascii=False))
    return Batch("".join(r + "\n" for r in records), len(records), tuple(bad),
                 model_id_field or ID_FIELD, model_id_field is None)


def _record(n: int, line: str) -> tuple[str | None, Any]:
    def refuse_constant(name: str):
        raise ValueError(f"{name} is not a JSON value")

    try:
        record = json.loads(line, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:
        return f"line {n} is not JSON: {exc}", None
    if not isinstance(record, dict):
        return f"line {n} is a JSON {type(record).__name__}, not an object (one record a line)", None
    return None, record


def job_document(name: str, version: int, batch: Batch) -> dict:
    """The scoring job of ``batch`` by version ``version`` of registered model ``name``."""
    def in_workdir(filename: str, **fields) -> dict:
        return {"assetType": "FILE", "name": filename, "filename": filename, "fileFormat": "JSON",
                IN_WORKDIR: True, **fields}

    return {"model": {"ref": f"{name}:{version}"}, "jobType": "MODEL_BATCH_JOB", "idField": batch.id_field,
            "inputData": [in_workdir(RECORDS_FILENAME, content=batch.records)],
            "outputData": [in_workdir(SCORES_FILENAME),
                           in_workdir(REJECTED_FILENAME, assetRole=REJECTED_ROLE)]}


@dataclass(frozen=True)
class Envelope:
    """What every answer line of one batch carries besides its record's outcome."""

    batch_id: str
    model: str
    version: int
    id_field: str
    #: The job's start (ISO 8601), or the request's time for lines answered before it.
    start_time: str

    def line(self, record_id: Any, end_time: str, **outcome: Any) -> bytes:
        fields = {self.id_field: record_id, "batchId": self.batch_id, "model": self.model,
                  "modelVersion": self.version, "startTime": self.start_time, "endTime": end_time, **outcome}
        return (json.dumps(fields, ensure_ascii=False, default=str) + "\n").encode("utf-8")

    def scored(self, row: dict, end_time: str) -> bytes:
        """A score the model gave: its outputs under ``result``, its record's id beside them."""
        record_id = row.pop(self.id_field, None)
        return self.line(record_id, end_time, result=row)

    def rejected(self, row: dict, end_time: str) -> bytes:
        """A record the schema check rejected (a row of the rejected-records output)."""
        try:
            record = json.loads(row.get("record") or "null")
        except ValueError:
            record = row.get("record")
        return self.line(row.get(self.id_field), end_time, error=row.get("reason"), record=record)

    def bad_line(self, n: int, why: str, end_time: str, assigned_ids: bool) -> bytes:
        return self.line(n if assigned_ids else None, end_time, line=n, error=why)


class LineTail:
    """Complete lines of a job's output file as it grows, from where the last read stopped."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""

    def read(self) -> list[bytes]:
        """The lines completed since the last read (none while the file does not exist)."""
        try:
            with open_job_file(self.path) as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:  # not there yet; or a link or a FIFO the model put there: never followed
            return []
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [line for line in lines if line.strip()]
