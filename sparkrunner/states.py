"""Job states, with ModelOp's names, and the moves allowed between them."""

from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    CREATED = "CREATED"      # accepted, stored, queued
    WAITING = "WAITING"      # spark-submit started, the application not yet running
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobStatus.COMPLETE, JobStatus.ERROR, JobStatus.CANCELLED})
ACTIVE_STATES = frozenset({JobStatus.WAITING, JobStatus.RUNNING})

_ENDS = TERMINAL_STATES
ALLOWED_MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.CREATED: frozenset({JobStatus.WAITING}) | _ENDS,
    JobStatus.WAITING: frozenset({JobStatus.RUNNING}) | _ENDS,
    JobStatus.RUNNING: _ENDS,
    JobStatus.COMPLETE: frozenset(),
    JobStatus.ERROR: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_move(current: JobStatus, new: JobStatus) -> bool:
    """True when a job in ``current`` may move to ``new``."""
    return new in ALLOWED_MOVES[current]
