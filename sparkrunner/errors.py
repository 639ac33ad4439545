"""One base error and a small hierarchy; every error names what was wrong and what would do."""

from __future__ import annotations

from dataclasses import dataclass


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


class JobInvalid(SparkRunnerError):
    """The job document is refused; ``errors`` lists every problem found, not just the first."""

    def __init__(self, errors: list[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"path": e.path, "message": e.message} for e in self.errors]


class ConfigError(SparkRunnerError):
    """The configuration file or a configuration value is wrong."""


class WorkdirError(SparkRunnerError):
    """The working directory could not be laid out."""


class SparkNotFound(SparkRunnerError):
    """No spark-submit could be found."""
