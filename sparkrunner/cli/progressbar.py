"""A job's progress on the command line: a bar (rich's) on a terminal, plain lines otherwise.

The bar goes to standard error; the job's log lines printed meanwhile (to standard output) appear
above it. Off a terminal (a pipe, a CI log) a line is printed each time the state or the
percentage changes, never a bar's control characters.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, TextIO


def describe(progress: Mapping[str, Any]) -> str:
    """``tasks 18/40 · Spark jobs 1 done, 1 active of 4`` (and failures, if any)."""
    tasks, jobs = progress["tasks"], progress["jobs"]
    text = f"tasks {tasks['done']}/{tasks['total']} · Spark jobs {jobs['done']} done, {jobs['active']} active of {jobs['total']}"
    failed = [f"{progress[k]['failed']} {k} failed" for k in ("jobs", "stages", "tasks") if progress[k]["failed"]]
    return text + (f" · {', '.join(failed)}" if failed else "")


class ProgressView:
    """Shows a job's state and progress as they change; a context manager."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._last: str | None = None
        self._bar = None
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description:9}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                 console=Console(file=self.stream, force_terminal=True), redirect_stdout=True, redirect_stderr=False)
            self._task = self._bar.add_task("CREATED", total=100, detail="")

    def __enter__(self) -> "ProgressView":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, status: str, progress: Mapping[str, Any] | None) -> None:
        """The job is in ``status`` with ``progress`` (the API's field; None when unknown)."""
        percent = 100.0 if status == "COMPLETE" else (progress or {}).get("percent")
        detail = describe(progress) if progress else ""
        if self._bar is not None:
            self._bar.update(self._task, description=status, completed=percent or 0, detail=detail,
                             refresh=True)
            return
        if status in ("COMPLETE", "ERROR", "CANCELLED"):
            return  # the caller says how it ended, with the reason
        line = f"sparkrunner: {status}" + (f" {percent:.1f}%" if percent is not None else "") + (f" ({detail})" if detail else "")
        if line != self._last:
            self._last = line
            print(line, file=self.stream, flush=True)

    def job(self, view: Mapping[str, Any]) -> None:
        """Shows a job as the API answers it."""
        self.update(view["jobStatus"], view.get("progress"))


class DriverProgress:
    """For ``run``: reads the progress of the driver started here from its Spark UI, once the
    driver has reported it, every second, into a :class:`ProgressView`."""

    def __init__(self, view: ProgressView, interval: float = 1.0):
        import threading

        self.view = view
        self.interval = interval
        self.ui_url: str | None = None
        self.app_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def on_line(self, watcher, line: str) -> None:
        """A SparkSubmit.wait ``on_line``: notes the application and its UI when reported."""
        if watcher.application and self.app_id is None:
            self.app_id, self.ui_url = watcher.application, watcher.ui_url
            self.view.update("RUNNING", None)

    def __enter__(self) -> "DriverProgress":
        self.view.update("WAITING", None)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        from ..progress import read_progress

        while not self._stop.wait(self.interval):
            if self.ui_url:
                progress = read_progress(self.ui_url, self.app_id)
                if progress is not None and not self._stop.is_set():
                    self.view.update("RUNNING", progress.as_dict())
