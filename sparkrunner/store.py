"""The durable job store: SQLite in WAL mode, behind a small interface.

A job's state changes only through :meth:`JobStore.move`, which checks the move is allowed and
saves it in the same transaction. Every write is committed (and synced) before it returns.
SQLite's own errors are converted here into :class:`~sparkrunner.errors.StoreError`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import IllegalMove, JobNotFound, ModelNotFound, StoreError
from .states import ACTIVE_STATES, JobStatus, can_move

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    owner            TEXT NOT NULL DEFAULT '',
    idempotency_key  TEXT,
    job_type         TEXT NOT NULL,
    name             TEXT NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT,
    document         TEXT NOT NULL,
    timeout_seconds  REAL,
    created          REAL NOT NULL,
    started          REAL,
    running          REAL,
    ended            REAL,
    workdir          TEXT,
    pid              INTEGER,
    pid_start        TEXT,
    exit_code        INTEGER,
    signal           INTEGER,
    app_id           TEXT,
    ui_url           TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    warnings         TEXT NOT NULL DEFAULT '[]',
    execution_mode   TEXT NOT NULL DEFAULT 'cold',
    execution_reason TEXT,
    session_id       TEXT,
    UNIQUE (owner, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS models (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner       TEXT NOT NULL DEFAULT '',
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    model       TEXT NOT NULL,
    defaults    TEXT NOT NULL DEFAULT '{}',
    job_types   TEXT NOT NULL DEFAULT '[]',
    trained_by  TEXT,
    created     REAL NOT NULL,
    UNIQUE (owner, name, version)
);
-- The last version number given to each of a user's model names: a deleted version's number is
-- never given again, so a job document naming name:version always meant one model.
CREATE TABLE IF NOT EXISTS model_names (
    owner        TEXT NOT NULL,
    name         TEXT NOT NULL,
    last_version INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
);
"""


@dataclass(frozen=True)
class JobRecord:
    """One stored job, as the store holds it."""

    seq: int
    id: str
    owner: str
    idempotency_key: str | None
    job_type: str
    name: str
    status: JobStatus
    reason: str | None
    document: str
    timeout_seconds: float | None
    created: float
    started: float | None
    running: float | None
    ended: float | None
    workdir: str | None
    pid: int | None
    pid_start: str | None
    exit_code: int | None
    signal: int | None
    app_id: str | None
    ui_url: str | None
    cancel_requested: bool
    #: What admission said of the job besides accepting it (settings the configuration overrode).
    warnings: tuple[str, ...] = ()
    #: "warm" or "cold" (see sparkrunner.execution), and why; a warm job that found no warm
    #: server free runs cold, and then this says so.
    execution_mode: str = "cold"
    execution_reason: str | None = None
    #: A warm job's Spark Connect session: its Spark jobs carry it in their tags (progress.py).
    session_id: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "JobRecord":
        values = dict(row)
        values["status"] = JobStatus(values["status"])  # an unknown value fails loudly
        values["cancel_requested"] = bool(values["cancel_requested"])
        values["warnings"] = tuple(json.loads(values.get("warnings") or "[]"))
        return cls(**values)


@dataclass(frozen=True)
class ModelRecord:
    """One version of a registered model: the ``model`` part of a modelBatchJob and the job
    fields its jobs get unless they name their own (``defaults``)."""

    seq: int
    owner: str
    name: str
    version: int
    model: dict
    defaults: dict
    #: The jobTypes the model can run (it defines their functions).
    job_types: tuple[str, ...]
    #: The training job whose output this version's attachments are; None when registered directly.
    trained_by: str | None
    created: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "ModelRecord":
        values = dict(row)
        values["model"] = json.loads(values["model"])
        values["defaults"] = json.loads(values["defaults"])
        values["job_types"] = tuple(json.loads(values["job_types"]))
        return cls(**values)


_COLUMNS = [f.name for f in fields(JobRecord)]
#: Columns a caller may set besides the state (the state and its reason go through move()).
_UPDATABLE = frozenset(_COLUMNS) - {"seq", "id", "owner", "idempotency_key", "job_type", "name",
                                    "status", "reason", "document", "created", "warnings"}
#: Columns added since the first release, with their definitions: added to older stores on open.
_ADDED_COLUMNS = {"warnings": "TEXT NOT NULL DEFAULT '[]'",
                  "execution_mode": "TEXT NOT NULL DEFAULT 'cold'", "execution_reason": "TEXT",
                  "session_id": "TEXT"}


#: Durations :meth:`JobStore.histogram` measures, as SQL over a job's times: from submit to the
#: application running (spark-submit's start when it never reported one), and from start to end.
DURATIONS = {"start_latency": "COALESCE(running, started) - created",
             "execution_time": "ended - started"}


class JobStore:
    """Jobs in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._converted("be opened"):
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                       timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a job acknowledged to a client survives a power cut, not just a crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for column, definition in _ADDED_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {definition}")
        self.path.chmod(0o600)
        self._end_corrupt_records()

    def _end_corrupt_records(self) -> None:
        """Ends, as ERROR, jobs whose stored state is no state at all, saying so: one damaged
        row must not keep the service from reading, listing and running the others."""
        states = [s.value for s in JobStatus]
        marks = ",".join("?" * len(states))
        with self._transaction() as db:
            rows = db.execute(f"SELECT id, status FROM jobs WHERE status IS NULL OR status NOT IN ({marks})",
                              states).fetchall()
            for row in rows:
                db.execute("UPDATE jobs SET status = ?, reason = ?, ended = ? WHERE id = ?",
                           (JobStatus.ERROR.value, f"corrupt record: the stored state {row['status']!r} is "
                            "not a job state", time.time(), row["id"]))

    def close(self) -> None:
        with self._reading("be closed"):
            self._db.close()

    @contextmanager
    def _converted(self, doing: str) -> Iterator[None]:
        """Turns SQLite's errors into StoreError, saying what the store could not do."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"the job store {str(self.path)!r} could not {doing}: {exc}") from exc

    @contextmanager
    def _reading(self, doing: str = "be read") -> Iterator[sqlite3.Connection]:
        with self._lock, self._converted(doing):
            yield self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._converted("save the change"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def create(self, *, id: str, owner: str, idempotency_key: str | None, job_type: str, name: str,
               document: dict, timeout_seconds: float | None, warnings: Iterable[str] = (),
               execution_mode: str = "cold", execution_reason: str | None = None
               ) -> tuple[JobRecord, bool]:
        """Stores a new CREATED job; with a known idempotency key, returns the earlier job.

        Returns (job, created).
        """
        with self._transaction() as db:
            if idempotency_key is not None:
                row = db.execute("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?",
                                 (owner, idempotency_key)).fetchone()
                if row is not None:
                    return JobRecord.from_row(row), False
            db.execute(
                "INSERT INTO jobs (id, owner, idempotency_key, job_type, name, status, document,"
                " timeout_seconds, created, warnings, execution_mode, execution_reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (id, owner, idempotency_key, job_type, name, JobStatus.CREATED.value,
                 json.dumps(document), timeout_seconds, time.time(), json.dumps(list(warnings)),
                 execution_mode, execution_reason))
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (id,)).fetchone()
            return JobRecord.from_row(row), True

    def get(self, job_id: str) -> JobRecord:
        with self._reading() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return JobRecord.from_row(row)

    def get_seq(self, seq: int) -> JobRecord:
        """The job whose ``seq`` (the store's integer key, Livy's batch id) is ``seq``."""
        with self._reading() as db:
            row = db.execute("SELECT * FROM jobs WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise JobNotFound(str(seq))
        return JobRecord.from_row(row)

    def list(self, *, status: Iterable[JobStatus] | None = None, job_type: str | None = None,
             owner: str | None = None, offset: int = 0, limit: int = 100,
             oldest_first: bool = False) -> tuple[list[JobRecord], int]:
        """A page of jobs, newest first (or oldest first), and how many match in all."""
        where, args = [], []
        if status is not None:
            values = [JobStatus(s).value for s in status]
            where.append(f"status IN ({','.join('?' * len(values))})")
            args += values
        if job_type is not None:
            where.append("job_type = ?")
            args.append(job_type)
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        order = "ASC" if oldest_first else "DESC"
        with self._reading() as db:
            total = db.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0]
            rows = db.execute(f"SELECT * FROM jobs{clause} ORDER BY seq {order} LIMIT ? OFFSET ?",
                                    [*args, limit, offset]).fetchall()
        return [JobRecord.from_row(r) for r in rows], total

    def counts(self) -> dict[tuple[str, JobStatus], int]:
        """How many jobs there are of each (job type, state)."""
        with self._reading() as db:
            rows = db.execute("SELECT job_type, status, COUNT(*) FROM jobs GROUP BY job_type, status").fetchall()
        return {(row[0], JobStatus(row[1])): row[2] for row in rows}

    def histogram(self, seconds: str, buckets: Iterable[float], status: Iterable[JobStatus] | None = None
                  ) -> dict[str, tuple[list[int], int, float]]:
        """By job type: (cumulative counts at or under each bucket, count, sum) of ``seconds``,
        one of :data:`DURATIONS` (jobs for which it is known; with ``status``, in those states)."""
        expression = DURATIONS[seconds]
        bounds = list(buckets)
        where, args = [f"({expression}) IS NOT NULL"], []
        if status is not None:
            values = [JobStatus(s).value for s in status]
            where.append(f"status IN ({','.join('?' * len(values))})")
            args += values
        under = ", ".join(f"SUM(CASE WHEN ({expression}) <= ? THEN 1 ELSE 0 END)" for _ in bounds)
        query = (f"SELECT job_type, COUNT(*), TOTAL({expression}){', ' + under if bounds else ''} FROM jobs"
                 f" WHERE {' AND '.join(where)} GROUP BY job_type")
        with self._reading() as db:
            rows = db.execute(query, [*bounds, *args]).fetchall()
        return {row[0]: ([int(c) for c in row[3:]], row[1], float(row[2])) for row in rows}

    def unfinished(self) -> list[JobRecord]:
        """Jobs not yet in a terminal state, oldest first."""
        return self.list(status=[JobStatus.CREATED, *ACTIVE_STATES], limit=-1, oldest_first=True)[0]

    def update(self, job_id: str, **changes: Any) -> JobRecord:
        """Saves fields other than the state (pid, application id, ...)."""
        bad = set(changes) - _UPDATABLE
        if bad:
            raise ValueError(f"not updatable with update(): {', '.join(sorted(bad))}")
        with self._transaction() as db:
            return self._save(db, job_id, changes)

    def move(self, job_id: str, new: JobStatus, reason: str | None = None, **changes: Any) -> JobRecord | None:
        """Moves a job to ``new`` and saves ``changes`` with it, in one transaction.

        Returns the updated job, or None when the job is already in ``new`` (nothing changed).
        Raises :class:`IllegalMove` for a move the states do not allow (a terminal state never
        changes) and ValueError when a terminal state comes without a reason.
        """
        new = JobStatus(new)
        if new.is_terminal and not reason:
            raise ValueError(f"moving job {job_id} to {new} needs a reason")
        bad = set(changes) - _UPDATABLE
        if bad:
            raise ValueError(f"not updatable: {', '.join(sorted(bad))}")
        with self._transaction() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            current = JobStatus(row["status"])
            if current is new:
                return None
            if not can_move(current, new):
                raise IllegalMove(job_id, current, new)
            changes = {**changes, "status": new.value}
            if reason is not None:
                changes["reason"] = reason
            return self._save(db, job_id, changes)

    def _save(self, db: sqlite3.Connection, job_id: str, changes: dict[str, Any]) -> JobRecord:
        if changes:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            cursor = db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*changes.values(), job_id])
            if cursor.rowcount == 0:
                raise JobNotFound(job_id)
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return JobRecord.from_row(row)

    # -- registered models --------------------------------------------------------------------

    def add_model(self, *, owner: str, name: str, model: dict, defaults: dict,
                  job_types: Iterable[str], trained_by: str | None = None) -> ModelRecord:
        """Stores ``model`` as the next version of ``owner``'s model ``name`` (1 for a new name)."""
        with self._transaction() as db:
            row = db.execute("SELECT last_version FROM model_names WHERE owner = ? AND name = ?",
                             (owner, name)).fetchone()
            version = (row["last_version"] if row else 0) + 1
            db.execute("INSERT INTO model_names (owner, name, last_version) VALUES (?, ?, ?)"
                       " ON CONFLICT (owner, name) DO UPDATE SET last_version = excluded.last_version",
                       (owner, name, version))
            db.execute("INSERT INTO models (owner, name, version, model, defaults, job_types, trained_by,"
                       " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (owner, name, version, json.dumps(model), json.dumps(defaults),
                        json.dumps(list(job_types)), trained_by, time.time()))
            row = db.execute("SELECT * FROM models WHERE owner = ? AND name = ? AND version = ?",
                             (owner, name, version)).fetchone()
            return ModelRecord.from_row(row)

    def get_model(self, owner: str, name: str, version: int | None = None) -> ModelRecord:
        """``owner``'s model ``name`` at ``version`` (None: the latest); ModelNotFound if none."""
        query, args = "SELECT * FROM models WHERE owner = ? AND name = ?", [owner, name]
        if version is not None:
            query, args = query + " AND version = ?", [*args, version]
        with self._reading() as db:
            row = db.execute(query + " ORDER BY version DESC LIMIT 1", args).fetchone()
        if row is None:
            raise ModelNotFound(name, version)
        return ModelRecord.from_row(row)

    def model_versions(self, owner: str, name: str) -> list[ModelRecord]:
        """Every version of ``owner``'s model ``name``, newest first (empty when there is none)."""
        with self._reading() as db:
            rows = db.execute("SELECT * FROM models WHERE owner = ? AND name = ? ORDER BY version DESC",
                              (owner, name)).fetchall()
        return [ModelRecord.from_row(r) for r in rows]

    def latest_models(self, owner: str) -> list[ModelRecord]:
        """The latest version of each of ``owner``'s models, by name."""
        with self._reading() as db:
            rows = db.execute("SELECT * FROM models WHERE owner = ? AND version = (SELECT MAX(version)"
                              " FROM models AS m WHERE m.owner = models.owner AND m.name = models.name)"
                              " ORDER BY name", (owner,)).fetchall()
        return [ModelRecord.from_row(r) for r in rows]

    def delete_model(self, owner: str, name: str, version: int | None = None) -> int:
        """Deletes one version of ``owner``'s model ``name``, or all (``version`` None); how many
        were deleted. ModelNotFound when there was none. Jobs made from it keep their documents."""
        query, args = "DELETE FROM models WHERE owner = ? AND name = ?", [owner, name]
        if version is not None:
            query, args = query + " AND version = ?", [*args, version]
        with self._transaction() as db:
            deleted = db.execute(query, args).rowcount
        if not deleted:
            raise ModelNotFound(name, version)
        return deleted
