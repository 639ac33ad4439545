"""Reads a job's files for the API: its driver log, a page at a time or its last lines, and
its result. Read only: nothing here changes a job or its working directory."""

from __future__ import annotations

import json
from pathlib import Path

from ..workdir import LOG_FILENAME, RESULT_FILENAME
from ..store import JobRecord


def tail_lines(path: Path, count: int, block: int = 8192) -> list[str]:
    """The last ``count`` lines of a file, reading backwards in blocks (logs grow large)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, 2)
            data, position = b"", end
            while position > 0 and data.count(b"\n") <= count:
                step = min(block, position)
                position -= step
                f.seek(position)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-count:]


class JobFiles:
    """The files of the jobs under one ``jobs_dir``."""

    def __init__(self, jobs_dir: Path):
        self.jobs_dir = Path(jobs_dir)

    def workdir(self, record: JobRecord) -> Path:
        """The job's working directory: where it ran, or where it will."""
        return Path(record.workdir) if record.workdir else self.jobs_dir / record.id

    def log_page(self, record: JobRecord, start: int | None, size: int) -> tuple[int, int, list[str]]:
        """(from, total, lines) of the job's driver log, Livy-style: with no ``start``, the
        last ``size`` lines. A last line still being written counts once the job has ended."""
        try:
            with open(self.workdir(record) / LOG_FILENAME, "rb") as f:
                lines = f.read().decode("utf-8", "replace").split("\n")
        except FileNotFoundError:
            lines = [""]
        if lines[-1] == "" or not record.status.is_terminal:
            lines.pop()  # empty after the last newline, or not finished yet
        total = len(lines)
        begin = max(0, total - size) if start is None else min(max(0, start), total)
        return begin, total, lines[begin:begin + size]

    def log_tail(self, record: JobRecord, lines: int = 20) -> list[str]:
        """The last lines of the job's log, read from the end of the file only."""
        return tail_lines(self.workdir(record) / LOG_FILENAME, lines)

    def result(self, record: JobRecord):
        """The job's result.json, parsed; None when it has none."""
        try:
            return json.loads((self.workdir(record) / RESULT_FILENAME).read_text())
        except (OSError, ValueError):
            return None
