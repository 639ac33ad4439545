"""Every error sparkrunner raises on purpose: one base, a small hierarchy, structured fields.

Each error names what was wrong and what would do. Third-party errors (SQLite's, HTTP clients')
are converted where they arise, with ``raise … from exc``, so callers catch these classes only.
The command line picks its exit code by class (:mod:`sparkrunner.cli.exits`).

Two kinds live elsewhere for a reason: the Airflow operator's errors (``JobFailed``,
``JobRefused`` in :mod:`sparkrunner.airflow.operators`) also derive from Airflow's exception
classes, and ``ScoringError`` runs inside spark-submit as a file of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .states import JobStatus


class SparkRunnerError(Exception):
    """Base of every error sparkrunner raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a job document.

    ``path`` is a JSON path such as ``$.model.storedModel.modelAssets[0].name``.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --- the job, the configuration and the command line ---------------------------------------------

class JobInvalid(SparkRunnerError):
    """The job document is refused; ``errors`` lists every problem found, not just the first."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"path": e.path, "message": e.message} for e in self.errors]


class ConfigError(SparkRunnerError):
    """The configuration file or a configuration value is wrong."""


class UsageError(SparkRunnerError):
    """The command line asks for something impossible."""


class SparkNotFound(SparkRunnerError):
    """No spark-submit could be found."""


class MlflowModelError(SparkRunnerError):
    """An MLflow model directory cannot be read (no MLmodel, no python_function flavor, bad YAML);
    admission turns it into a FieldError on the attachment's fileUrl."""


class SandboxUnavailable(ConfigError):
    """Jobs must run in a sandbox (``sandbox: on``, or several users), and bwrap cannot make one here."""


# --- laying out and running a job ----------------------------------------------------------------

class WorkdirError(SparkRunnerError):
    """The working directory could not be laid out."""


class EnvironmentFailed(SparkRunnerError):
    """A job's Python environment (its model's own packages) could not be built: ``detail``
    holds the installer's own error lines, ``log`` all it said."""

    def __init__(self, message: str, log: str = "", detail: str = "", timed_out: bool = False):
        super().__init__(message)
        self.log = log
        self.detail = detail or message
        self.timed_out = timed_out


class HdfsCheckFailed(SparkRunnerError):
    """Assets on HDFS are missing, outputs already exist under the "fail" policy, or WebHDFS
    could not be asked; ``errors`` names each, by asset or setting."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


# --- the job store and the service ---------------------------------------------------------------

class JobNotFound(SparkRunnerError):
    """No job has this id (or none the asker may see)."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")


class ModelNotFound(SparkRunnerError):
    """No registered model has this name (and version), or none the asker may see."""

    def __init__(self, name: str, version: int | None = None):
        self.name, self.version = name, version
        which = f"{name!r}" if version is None else f"{name!r} version {version}"
        super().__init__(f"no registered model {which}")


class BulkRefused(SparkRunnerError):
    """A bulk-scoring request the service will not take: too large (``status`` 413), or not lines
    of records at all (400)."""

    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail
        super().__init__(detail)


class IllegalMove(SparkRunnerError):
    """A state change the job's states do not allow (a terminal state never changes)."""

    def __init__(self, job_id: str, current: JobStatus, new: JobStatus):
        self.current, self.new = current, new
        super().__init__(f"job {job_id} cannot move from {current} to {new}")


class StoreError(SparkRunnerError):
    """The job store could not be read or written (SQLite's error, converted at the store):
    a full disk, a locked or damaged database file. Nothing of the failed call was kept."""


class JobNotStored(StoreError):
    """The store could not save a submitted job (a full disk, a locked file); nothing was kept."""


class DataDirInUse(SparkRunnerError):
    """Another sparkrunner service holds the data directory: two would run every job twice."""


# --- the REST client -----------------------------------------------------------------------------

class ApiError(SparkRunnerError):
    """The service answered a request with an error; ``status`` is its HTTP status (0 when it
    could not be reached), ``errors`` the problems a 422 lists."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None):
        self.status, self.detail, self.errors = status, detail, errors or []
        super().__init__(detail if not status else f"HTTP {status}: {detail}")

    @property
    def transient(self) -> bool:
        """True when asking again later may succeed."""
        return False


class RequestRefused(ApiError):
    """The service refused the request itself (4xx): a wrong id, token or job document."""


class ServiceUnavailable(ApiError):
    """The service could not be reached, failed (5xx) or is overloaded (429)."""

    @property
    def transient(self) -> bool:
        return True


def api_error(status: int, detail: str, errors: list[dict] | None = None) -> ApiError:
    """The error class for an answer with HTTP ``status`` (0: no answer at all)."""
    if status == 0 or status == 429 or status >= 500:
        return ServiceUnavailable(status, detail, errors)
    return RequestRefused(status, detail, errors)


# --- the development cluster ---------------------------------------------------------------------

class ClusterError(SparkRunnerError):
    """The development cluster could not be started, stopped or found."""


class ClusterUsageError(ClusterError, UsageError):
    """An argument to the cluster's ``up`` is impossible."""
