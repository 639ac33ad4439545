"""One warm server: a Spark Connect server and its fork server, for one user's warm jobs.

The Connect server is a spark-submit of Spark's ``SparkConnectServer`` on the configured master,
listening on 127.0.0.1 only, on a port of its own, with a token of its own (in its environment,
never on a command line; only this user's jobs get it), in the sandbox a cold job would get
(without any job's directory: a warm job's files reach it as session artifacts). Its fork server
(:mod:`sparkrunner.inside.forkserver`) starts each job's process in milliseconds.

The server's files live in a directory of its own under the data directory: ``server.log``
(the Connect server's output), ``forkserver.log``, ``server.json`` (pids, to stop a server a
crashed service left behind).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Mapping

from .. import proc
from ..command import child_env, properties_text, spark_submit_path
from ..config import Settings
from ..prepare import spark_defaults
from ..launcher import SparkSubmit
from ..sandbox import Sandbox
from ..workdir import DIR_MODE, FILE_MODE, PROPERTIES_FILENAME, SCRATCH_DIRNAME

log = logging.getLogger(__name__)

CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
FORKSERVER_MODULE = "sparkrunner.inside.forkserver"
TOKEN_VARIABLE = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
LOG_FILENAME = "server.log"
FORKSERVER_LOG_FILENAME = "forkserver.log"
RECORD_FILENAME = "server.json"
EXIT_FILENAME = "exit.json"
#: How long stop() waits for the server to end after SIGTERM before it kills it.
STOP_GRACE_SECONDS = 10.0
#: A kept session idle longer than this is not taken again: Spark Connect closes a session idle
#: for an hour (spark.connect.session.manager.defaultSessionTimeout), and a closed one cannot be
#: reopened.
SESSION_KEPT_SECONDS = 30 * 60
KEEP_SESSION_VARIABLE = "SPARKRUNNER_KEEP_SESSION"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class WarmServer:
    """A Connect server and its fork server for one owner; :meth:`start`, then :meth:`ready`."""

    def __init__(self, owner: str, settings: Settings, directory: Path, sandbox: Sandbox | None,
                 landlock_paths: tuple[list[str], list[str]] | None):
        self.owner = owner
        self.settings = settings
        self.directory = Path(directory)
        self.sandbox = sandbox
        #: (read-only, read-write) paths of a warm job's Landlock sandbox; None: no sandbox.
        self.landlock_paths = landlock_paths
        self.port = free_port()
        self._token = secrets.token_urlsafe(32)
        self.server: SparkSubmit | None = None
        self.forkserver: subprocess.Popen | None = None
        self.jobs_started = 0
        self.running = 0
        #: Set by the pool once it is stopping the server (retired, its last job ended).
        self.stopping = False
        self.last_used = time.monotonic()
        #: Why the server is gone, once it is (it died, or was stopped).
        self.ended: str | None = None
        self.started_at: float | None = None
        self.ready_at: float | None = None
        #: The Connect server's Spark UI, where its jobs' progress is read; None when it has none.
        self.ui_url: str | None = None
        self._fork_lock = threading.Lock()
        self._ready_lock = threading.Lock()
        #: Sessions a finished job left open for the next job of the same kind: key -> [(id, when)].
        self._kept_sessions: dict[str, list[tuple[str, float]]] = {}
        self._sessions_lock = threading.Lock()
        self._base_env: dict[str, str] = {}

    # -- start and stop -----------------------------------------------------------------------

    def start(self) -> None:
        """Starts the Connect server and the fork server; :meth:`ready` waits for them."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        scratch = self.directory / SCRATCH_DIRNAME  # the sandbox's /tmp: SparkSubmit makes it
        conf = {**spark_defaults(self.settings), **self.settings.spark.conf,
                "spark.app.name": f"sparkrunner-warm-{self.owner or 'default'}",
                "spark.driver.memory": self.settings.warm.driver_memory,
                "spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.connect.grpc.binding.port": str(self.port)}
        if str(conf.get("spark.ui.enabled", "true")).lower() != "false":
            # A port of its own, so that the jobs' progress can be read from its UI (progress.py).
            conf.setdefault("spark.ui.port", str(free_port()))
            self.ui_url = f"http://127.0.0.1:{conf['spark.ui.port']}"
        properties = self.directory / PROPERTIES_FILENAME
        fd = os.open(properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(properties_text(conf))
        argv = [spark_submit_path(self.settings), "--master", self.settings.spark.master,
                "--deploy-mode", "client", "--class", CONNECT_SERVER_CLASS,
                "--properties-file", str(properties), "spark-internal"]
        env, wrap = child_env(self.settings), None
        if self.sandbox is not None:
            env = self.sandbox.env(env)
            wrap = self.sandbox.argv(self.directory, scratch)
        env[TOKEN_VARIABLE] = self._token
        self.started_at = time.monotonic()
        # Under a supervisor, as a cold job's spark-submit: bwrap's --die-with-parent would end
        # the server with the thread that started it.
        self.server = SparkSubmit(argv, self.directory, env, self.directory / LOG_FILENAME,
                                  self.directory / EXIT_FILENAME, sandbox=wrap)
        self.server.start()
        # Every job's environment starts from this one: worked out once, not on each job's start.
        self._base_env = job_env = self._job_base_env()
        with open(self.directory / FORKSERVER_LOG_FILENAME, "ab") as out:
            self.forkserver = subprocess.Popen(
                [sys.executable, "-m", FORKSERVER_MODULE], cwd=self.directory, env=job_env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out, start_new_session=True,
                text=True, bufsize=1)
        read_only, read_write = self.landlock_paths or ([], [])
        self._send({"read_only": read_only, "read_write": read_write,
                    "sandbox": self.landlock_paths is not None})
        self._write_record()
        log.info("Starting a warm Spark Connect server for %r on 127.0.0.1:%d (group %d).",
                 self.owner, self.port, self.server.pid)

    def ready(self, timeout: float) -> bool:
        """Waits until the server accepts connections and has run a first query; False when it
        did not within ``timeout`` seconds, or died (see :attr:`ended`)."""
        deadline = time.monotonic() + timeout
        with self._ready_lock:  # one warm-up, whoever waits
            return self._wait_ready(deadline)

    def _wait_ready(self, deadline: float) -> bool:
        while self.ready_at is None:
            if not self.alive():
                return False
            if accepts(self.port):
                answer = self._ask({"warmup": True, "env": self.session_env()})
                self.ready_at = time.monotonic()
                # Its properties (perhaps the cluster's secret) are read by now. Only them: its
                # /tmp holds the JVM's scratch space, and removing that directory would even
                # unmount the local roots bound beneath it in the sandbox.
                (self.directory / PROPERTIES_FILENAME).unlink(missing_ok=True)
                log.info("The warm server for %r is ready after %.1f s (first query %.1f s).",
                         self.owner, self.ready_at - (self.started_at or self.ready_at), answer["warmup"])
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def alive(self) -> bool:
        """Whether both processes run; once one has ended, :attr:`ended` says why."""
        if self.ended is not None:
            return False
        if self.server is None or self.forkserver is None:
            return False
        if not self.server.is_running():
            self.ended = (f"the warm Spark Connect server exited with status {self.server.returncode()}"
                          + self._last_log_line())
        elif self.forkserver.poll() is not None:
            self.ended = f"the warm server's fork server exited with status {self.forkserver.returncode}"
        if self.ended is not None:
            log.warning("Warm server of %r: %s", self.owner, self.ended)
            return False
        return True

    def stop(self, why: str = "stopped") -> None:
        """Stops both processes (the Connect server gets ``STOP_GRACE_SECONDS`` to end)."""
        if self.ended is None:
            self.ended = f"the warm Spark Connect server was {why}"
        if self.forkserver is not None and self.forkserver.poll() is None:
            try:
                self.forkserver.stdin.close()
            except OSError:
                pass
        processes = [p for p in (self.server and self.server.process, self.forkserver) if p is not None]
        for process in processes:
            if process.poll() is None:
                proc.signal_group(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            proc.signal_group(process.pid, signal.SIGKILL)  # what lingers in its group too
            process.wait()
        if self.server is not None:
            self.server.clean_up()

    # -- jobs ---------------------------------------------------------------------------------

    def session_env(self, session_id: str | None = None) -> dict[str, str]:
        """What a warm job's process adds to its environment: the server, a session (a new one
        unless ``session_id``), the token."""
        return {"SPARK_REMOTE": f"sc://localhost:{self.port}/;session_id={session_id or uuid.uuid4()}",
                TOKEN_VARIABLE: self._token, "SPARKRUNNER_WARM": "1"}

    def take_session(self, key: str) -> str:
        """A session for a job of kind ``key`` (see :func:`sparkrunner.warm.run.session_key`):
        one an earlier job of that kind left open, its Python workers started and its artifacts
        added, else a new one. One job at a time uses a session."""
        now = time.monotonic()
        with self._sessions_lock:
            kept = [(sid, at) for sid, at in self._kept_sessions.get(key, []) if now - at < SESSION_KEPT_SECONDS]
            session_id = kept.pop()[0] if kept else str(uuid.uuid4())
            self._kept_sessions[key] = kept
        return session_id

    def keep_session(self, key: str, session_id: str) -> None:
        """Gives back a session a job of kind ``key`` ended well in, for the next such job."""
        with self._sessions_lock:
            self._kept_sessions.setdefault(key, []).append((session_id, time.monotonic()))

    def fork(self, job_id: str, workdir: Path, files: Mapping[str, Path], scratch: Path,
             session_id: str | None = None, keep_session: bool = False) -> int:
        """Starts a job's process in ``workdir``, its ``log``, ``exit`` and ``supervisor`` files
        named by ``files``, in Spark Connect session ``session_id`` (default: a new one), left
        open at the end with ``keep_session``; the pid of its supervisor."""
        env = {**self._base_env, **self.session_env(session_id), "HOME": str(scratch),
               "TMPDIR": str(scratch)}
        if keep_session:
            env[KEEP_SESSION_VARIABLE] = "1"
        answer = self._ask({"job": job_id, "workdir": str(workdir), "env": env,
                            **{name: str(path) for name, path in files.items()}})
        if "error" in answer:
            raise OSError(f"the fork server could not start the job: {answer['error']}")
        self.jobs_started += 1
        self.last_used = time.monotonic()
        return int(answer["pid"])

    def memory_mb(self) -> float:
        """Resident memory of the Connect server's processes (the JVM and its Python workers)."""
        if self.server is None or self.server.pid is None:
            return 0.0
        return proc.tree_rss_bytes(self.server.pid) / (1024 * 1024)

    def _job_base_env(self) -> dict[str, str]:
        env = child_env(self.settings)
        if self.sandbox is not None:
            env = self.sandbox.env(env)
        env.pop(TOKEN_VARIABLE, None)
        return env

    def _send(self, message: Mapping) -> None:
        assert self.forkserver is not None and self.forkserver.stdin is not None
        self.forkserver.stdin.write(json.dumps(message) + "\n")
        self.forkserver.stdin.flush()

    def _ask(self, message: Mapping) -> dict:
        with self._fork_lock:
            try:
                self._send(message)
                line = self.forkserver.stdout.readline()
            except (OSError, ValueError) as exc:
                raise OSError(f"the fork server is gone: {exc}") from exc
            if not line:
                self.alive()
                raise OSError(f"the fork server is gone: {self.ended or 'it closed its output'}")
            return json.loads(line)

    def _write_record(self) -> None:
        record = {"owner": self.owner, "port": self.port,
                  "pids": [(pid, proc.start_time(pid)) for pid in (self.server.pid, self.forkserver.pid)]}
        fd = os.open(self.directory / RECORD_FILENAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                     FILE_MODE)
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)

    def _last_log_line(self) -> str:
        try:
            with open(self.directory / LOG_FILENAME, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                lines = [l for l in f.read().decode("utf-8", "replace").splitlines()
                         if l.strip() and not l.startswith(("\t", " "))]
        except OSError:
            return ""
        return f": {lines[-1].strip()}" if lines else ""


def stop_leftovers(warm_dir: Path) -> None:
    """Stops the servers a service that ended without stopping them left running."""
    if not warm_dir.is_dir():
        return
    for record_file in warm_dir.glob(f"*/{RECORD_FILENAME}"):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        for pid, started in record.get("pids", []):
            if started is not None and proc.is_running(pid, started):
                log.info("Stopping a warm server process (pid %d) the last service run left.", pid)
                proc.signal_group(pid, signal.SIGKILL)
        shutil.rmtree(record_file.parent, ignore_errors=True)
