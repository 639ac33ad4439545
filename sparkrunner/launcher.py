"""Runs spark-submit: its own process group, its output in driver.log, a recorded end.

spark-submit writes straight into the job's ``driver.log`` (not into a pipe of ours) and its
supervisor records its exit status, so it outlives whoever started it; a :class:`LogWatcher`
follows the file to echo it, keep the last lines and pick out the driver's reports.

:class:`Launcher` is the one launch sequence ``sparkrunner run`` and the service share: an
admitted job is prepared (:func:`sparkrunner.prepare.prepare`) into a :class:`SparkSubmit`,
which the caller starts and waits for; with a :class:`~sparkrunner.sandbox.Sandbox`,
spark-submit runs inside it (the supervisor stays outside, so the pid recorded, signalled on
cancel and found again after a restart is the same as without).

A sandboxed job can write into its working directory, so every file read back from it here is
opened without following links (:func:`sparkrunner.workdir.open_job_file`).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, TextIO

from . import proc
from .admission import AdmittedJob
from .command import child_env, mask_argv, mask_properties, spark_submit_path
from .config import Settings
from .hdfs import Hdfs
from .inside.supervise import STATUS_FD
from .environments import LOG_PREFIX, EnvironmentCache, Hold, PythonEnv, user_cache_dir
from .errors import EnvironmentFailed
from .prepare import append_log, prepare
from .proc import signal_group
from .sandbox import Sandbox
from .states import JobStatus
from .workdir import (DIR_MODE, EXIT_FILENAME, LOG_FILENAME, PROPERTIES_FILENAME, SCRATCH_DIRNAME,
                      SUPERVISOR_FILENAME, open_job_file)

log = logging.getLogger(__name__)

TAIL_LINES = 20
POLL_SECONDS = 0.05
#: How long spark-submit gets to shut down after SIGTERM before the group is killed.
TERM_GRACE_SECONDS = 5.0
_REPORT = "sparkrunner: "
#: Run with ``python -m``: the supervisor of every spark-submit.
SUPERVISOR_MODULE = "sparkrunner.inside.supervise"


@dataclass(frozen=True)
class Outcome:
    """How a run ended, in words fit for a job's end reason."""

    status: JobStatus
    reason: str
    exit_code: int | None = None
    signal: int | None = None
    tail: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.COMPLETE


class LogWatcher:
    """Reads the lines appended to a log file since the last call."""

    def __init__(self, path: Path, echo: TextIO | None = None, offset: int = 0):
        self.path = Path(path)
        self.echo = echo
        self.offset = offset
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.error: str | None = None
        self.application: str | None = None
        self.ui_url: str | None = None
        self._partial = b""

    def poll(self, final: bool = False) -> list[str]:
        """New complete lines (with ``final``, the unterminated last one too)."""
        try:
            with open_job_file(self.path) as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:  # not there yet, or not a plain file (a link the job left)
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        if final and self._partial:
            complete.append(self._partial)
            self._partial = b""
        lines = [raw.decode("utf-8", "replace").rstrip("\r") for raw in complete]
        for line in lines:
            self._note(line)
        return lines

    def _note(self, line: str) -> None:
        if self.echo is not None:
            self.echo.write(line + "\n")
            self.echo.flush()
        if line.strip():
            self.tail.append(line)
        if line.startswith(_REPORT + "error: "):
            self.error = line[len(_REPORT + "error: "):]
        elif line.startswith(_REPORT + "application: "):
            # "sparkrunner: application: local-123 is running; Spark UI http://host:4040"
            words = line[len(_REPORT + "application: "):].split()
            self.application = words[0] if words else None
            self.ui_url = words[-1] if words and words[-1].startswith("http") else None


CANCELLED_REASON = "cancelled by user"
#: Only a run attached after a restart can end with no exit status recorded.
LOST_REASON = "lost: the service restarted and the job's process was gone"


def end_reason(returncode: int | None, *, cancelled: bool = False, timeout: float | None = None,
               error: str | None = None, tail: tuple[str, ...] = ()) -> Outcome:
    """The outcome of a spark-submit that ended with ``returncode``.

    ``timeout`` is set when the run was ended for running too long; ``error`` is the driver's
    one-line report of a failure in model code.
    """
    if returncode is None:
        if cancelled:
            return Outcome(JobStatus.CANCELLED, CANCELLED_REASON, tail=tail)
        return Outcome(JobStatus.ERROR, LOST_REASON, tail=tail)
    sig = -returncode if returncode < 0 else None
    code = returncode if returncode >= 0 else None
    if cancelled:
        return Outcome(JobStatus.CANCELLED, CANCELLED_REASON, code, sig, tail)
    if timeout is not None:
        return Outcome(JobStatus.ERROR, f"timed out after {timeout:g} s", code, sig, tail)
    if returncode == 0:
        return Outcome(JobStatus.COMPLETE, "exit code 0", 0, None, tail)
    if sig is not None:
        return Outcome(JobStatus.ERROR, f"killed by signal {sig}", None, sig, tail)
    detail = error or _last_error_line(tail)
    return Outcome(JobStatus.ERROR, f"exit code {returncode}" + (f": {detail}" if detail else ""),
                   code, None, tail)


def _last_error_line(tail: tuple[str, ...]) -> str | None:
    for line in reversed(tail):
        if "Exception" in line or "Error" in line or "error:" in line:
            return line.strip()
    return tail[-1].strip() if tail else None


class SparkSubmit:
    """One spark-submit in its own process group, under :mod:`sparkrunner.inside.supervise`.

    Output goes to ``log_path``; the supervisor writes the exit status to ``exit_file``, so the
    end can be told even by a process that did not start it (see :meth:`attach`).
    ``properties`` (those of its properties file) are logged, masked; ``sandbox`` is bwrap's
    argv up to ``--``, to run spark-submit in.
    """

    def __init__(self, argv: list[str], cwd: Path, env: Mapping[str, str], log_path: Path,
                 exit_file: Path | None = None, *, properties: Mapping[str, str] | None = None,
                 sandbox: list[str] | None = None):
        self.argv = list(argv)
        self.cwd = Path(cwd)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.exit_file = Path(exit_file) if exit_file else self.cwd / EXIT_FILENAME
        self.properties = dict(properties or {})
        self.sandbox = list(sandbox) if sandbox else None
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self.start_time: str | None = None
        self.cancelled = False
        self._killed_at: float | None = None
        #: The job's hold on its own Python environment (kept from eviction while it runs).
        self.hold: Hold | None = None

    @classmethod
    def attach(cls, pid: int | None, start_time: str | None, cwd: Path, log_path: Path,
               exit_file: Path | None = None) -> "SparkSubmit":
        """A handle on a run started earlier, by this or another process."""
        run = cls([], cwd, {}, log_path, exit_file)
        run.pid, run.start_time = pid, start_time
        return run

    def command(self) -> list[str]:
        """What :meth:`start` runs: the supervisor, and under it spark-submit (in a sandbox,
        under a second supervisor that reports its exit status)."""
        supervisor = [sys.executable, "-m", SUPERVISOR_MODULE]
        files = [str(self.exit_file), str(self.exit_file.with_name(SUPERVISOR_FILENAME))]
        if not self.sandbox:
            return [*supervisor, *files, "--", *self.argv]
        return [*supervisor, *files, "--sandboxed", "--", *self.sandbox,
                *supervisor, "--report-fd", str(STATUS_FD), "--", *self.argv]

    def start(self) -> int:
        """Starts spark-submit and returns the pid of its group's leader (the supervisor)."""
        if self.sandbox:
            os.mkdir(self.cwd / SCRATCH_DIRNAME, DIR_MODE)  # the private /tmp
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "ab") as out:
            lines = [f"command: {shlex.join(mask_argv(self.argv))}"]
            if self.properties:
                masked = mask_properties(self.properties)
                lines.append(f"properties: {shlex.join(f'{k}={v}' for k, v in masked.items())}")
            if self.sandbox:
                lines.append(f"sandbox: {shlex.join(self.sandbox)}")
            out.write("".join(f"{_REPORT}{line}\n" for line in lines).encode())
            out.flush()
            # The supervisor inherits the hold on the job's environment: it outlives a service
            # restart, so the environment is never evicted under a run that goes on.
            held = (self.hold.inheritable_copy(),) if self.hold is not None else ()
            try:
                self.process = subprocess.Popen(
                    self.command(), cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, pass_fds=held)
            finally:
                for fd in held:
                    os.close(fd)
        self.pid = self.process.pid
        started = proc.start_time(self.pid)
        self.start_time = None if started is None else str(started)
        log.info("Started spark-submit (group %d) in %r.", self.pid, str(self.cwd))
        return self.pid

    def is_running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return (self.pid is not None and self.start_time is not None
                and proc.is_running(self.pid, self.start_time))

    def terminate(self, cancelled: bool = False) -> None:
        """Asks the whole group to stop (SIGTERM); :meth:`wait` kills it if it lingers."""
        self.cancelled = self.cancelled or cancelled
        if self._killed_at is None and self.pid is not None and self.is_running():
            self._killed_at = time.monotonic()
            signal_group(self.pid, signal.SIGTERM)

    def cancel(self) -> None:
        self.terminate(cancelled=True)

    def release(self) -> None:
        """Gives back what the run held before it started (its hold on its Python environment);
        for a run that will not start."""
        self._let_go_of_environment()

    def _let_go_of_environment(self) -> None:
        if self.hold is not None:
            self.hold.close()
            self.hold = None

    def wait(self, timeout: float | None = None, echo: TextIO | None = None,
             on_line: Callable[[LogWatcher, str], None] | None = None,
             started_at: float | None = None) -> Outcome:
        """Follows the log until the run ends; ends it ``timeout`` seconds after ``started_at``
        (a time.time() value; default now)."""
        watcher = LogWatcher(self.log_path, echo)
        deadline = None
        if timeout is not None:
            elapsed = 0.0 if started_at is None else max(0.0, time.time() - started_at)
            deadline = time.monotonic() + timeout - elapsed
        timed_out = False
        while True:
            for line in watcher.poll():
                if on_line is not None:
                    on_line(watcher, line)
            if not self.is_running():
                break
            now = time.monotonic()
            if deadline is not None and now > deadline and not timed_out and not self.cancelled:
                timed_out = True
                log.info("spark-submit (group %d) ran past its timeout of %g s; ending it.", self.pid, timeout)
                self.terminate()
            if self._killed_at is not None and now - self._killed_at > TERM_GRACE_SECONDS:
                signal_group(self.pid, signal.SIGKILL)
            time.sleep(POLL_SECONDS)
        if self.process is not None:
            # Whatever the group left behind (Python workers, a JVM ignoring SIGTERM) goes too.
            signal_group(self.pid, signal.SIGKILL)
        for line in watcher.poll(final=True):
            if on_line is not None:
                on_line(watcher, line)
        self.clean_up()
        # A cancel only counts when it reached the process; one after a clean exit changes nothing.
        return end_reason(self.returncode(), cancelled=self.cancelled and self._killed_at is not None,
                          timeout=timeout if timed_out else None,
                          error=watcher.error, tail=tuple(watcher.tail))

    def clean_up(self) -> None:
        """Removes what only the run needed: its properties file (which may hold the cluster's
        secret) and its private /tmp. Neither follows a link the job may have left. Lets go of
        its Python environment."""
        self._let_go_of_environment()
        try:
            os.unlink(self.cwd / PROPERTIES_FILENAME)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("Could not remove %r: %s", str(self.cwd / PROPERTIES_FILENAME), exc)
        scratch = self.cwd / SCRATCH_DIRNAME
        if scratch.is_dir() and not scratch.is_symlink():
            shutil.rmtree(scratch, ignore_errors=True)

    def returncode(self) -> int | None:
        """spark-submit's exit status as the supervisor recorded it; None when nobody did."""
        try:
            with open_job_file(self.exit_file) as f:
                return int(json.loads(f.read())["returncode"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if self.process is not None and self.process.returncode is not None and self.process.returncode < 0:
            return self.process.returncode  # the supervisor itself was killed
        return None


def started_by_supervisor(exit_file: Path) -> tuple[int, str] | None:
    """(pid, start time) the supervisor of a run wrote beside ``exit_file``; None if it never
    started (or wrote nothing readable)."""
    try:
        with open_job_file(Path(exit_file).with_name(SUPERVISOR_FILENAME)) as f:
            found = json.loads(f.read())
        return int(found["pid"]), str(found["start"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Launcher:
    """Turns admitted jobs into spark-submits under one configuration.

    The spark-submit program, its environment, the HDFS clients and the sandbox are found once;
    every job then goes the same way, whoever launches it: :meth:`prepare` lays out its working
    directory and returns its :class:`SparkSubmit`, not yet started.

    With a ``sandbox`` (:func:`sparkrunner.sandbox.choose` picks it), every spark-submit runs in it.
    """

    def __init__(self, settings: Settings, sandbox: Sandbox | None = None,
                 environments: Path | None = None):
        self.settings = settings
        self.spark_submit = spark_submit_path(settings)  # SparkNotFound: before any job is taken
        self.env = child_env(settings)
        self.hdfs = Hdfs(settings.hdfs)
        self.sandbox = sandbox
        #: Where models' own environments are kept: ``environments.cache_dir``, else
        #: ``environments`` (the service passes its data directory's), else the user's cache.
        root = Path(settings.environments.cache_dir or environments or user_cache_dir())
        self.environments = EnvironmentCache(root, settings, sandbox)

    def prepare(self, job: AdmittedJob, workdir: Path, job_id: str) -> SparkSubmit:
        """Lays out ``workdir`` for ``job`` and returns the spark-submit that runs it.

        Builds the model's own environment if it has packages and none is built (up to
        ``environments.build_timeout_seconds``), renders, checks HDFS and stages (network calls,
        each up to ``hdfs.timeout_seconds``): call it outside any lock others wait on. Raises
        EnvironmentFailed (the build's log is then the job's), HdfsCheckFailed or WorkdirError.
        """
        workdir = Path(workdir)
        python_env, hold = self._environment(job, workdir)
        try:
            prepared = prepare(self.settings, job, workdir, job_id, self.spark_submit, self.hdfs, python_env)
        except BaseException:
            if hold is not None:
                hold.close()
            raise
        env = self.env if python_env is None else child_env(self.settings, python_env=python_env)
        wrap = None
        if self.sandbox is not None:
            env = self.sandbox.env(env)
            wrap = self.sandbox.argv(workdir, workdir / SCRATCH_DIRNAME,
                                     read_only=[str(python_env.path)] if python_env else ())
        run = SparkSubmit(prepared.argv, workdir, env, workdir / LOG_FILENAME, workdir / EXIT_FILENAME,
                          properties=prepared.properties, sandbox=wrap)
        run.hold = hold
        return run

    def _environment(self, job: AdmittedJob, workdir: Path) -> tuple[PythonEnv | None, Hold | None]:
        """The job's own environment and the hold that keeps it while the job runs; (None,
        None) when its model brings no packages. A failed build leaves its log as the job's."""
        if job.requirements is None:
            return None, None
        try:
            return self.environments.ensure(job.requirements,
                                            archive=not self.settings.spark.master.startswith("local"))
        except EnvironmentFailed as exc:
            workdir.mkdir(mode=DIR_MODE, exist_ok=True)
            append_log(workdir / LOG_FILENAME,
                       [f"{LOG_PREFIX}building for {' '.join(job.requirements.lines)} "
                        f"({job.requirements.source}) failed",
                        *(f"{LOG_PREFIX}| {line}" for line in exc.log.splitlines() if line.strip()),
                        f"{LOG_PREFIX}{exc}"])
            raise

    @staticmethod
    def attach(pid: int | None, start_time: str | None, workdir: Path) -> SparkSubmit:
        """A handle on the spark-submit an earlier launch started in ``workdir``."""
        workdir = Path(workdir)
        return SparkSubmit.attach(pid, start_time, workdir, workdir / LOG_FILENAME, workdir / EXIT_FILENAME)
