"""The warm servers of a service: one per user, started when needed, replaced when worn, watched.

- A user's warm jobs run on that user's server only (sessions on one server share its Python
  workers, so users do not share servers). At most ``warm.max_servers`` run; a user without one
  takes the place of the least recently used idle server. When every server is busy with other
  users' jobs, the job runs cold, and its log says so.
- A server is replaced after ``warm.max_jobs_per_server`` jobs, or once its processes hold more
  than ``warm.max_server_memory_mb``: it takes no more jobs and stops when its last job ends;
  the user's next job starts a new one. Never two servers for one user at once.
- A watcher checks every server every few seconds; one that died is dropped (its running jobs
  end ERROR, saying the server died, see :class:`sparkrunner.warm.run.WarmRun`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..config import Settings
from ..sandbox import Sandbox
from .server import WarmServer, stop_leftovers

log = logging.getLogger(__name__)

#: How often the watcher looks at the servers.
WATCH_SECONDS = 2.0


class WarmPool:
    """Hands out warm servers by owner; thread-safe."""

    def __init__(self, settings: Settings, warm_dir: Path, sandbox: Sandbox | None,
                 landlock_paths: tuple[list[str], list[str]] | None):
        self.settings = settings
        self.warm_dir = Path(warm_dir)
        self.sandbox = sandbox
        self.landlock_paths = landlock_paths
        self._servers: dict[str, WarmServer] = {}
        #: Servers retired (worn or making way) that still run jobs: stopped when the last ends.
        self._retiring: list[WarmServer] = []
        self._lock = threading.Condition()
        self._closed = threading.Event()
        self._count = 0
        self._watcher: threading.Thread | None = None

    def start(self, prestart_owner: str | None = None) -> None:
        """Stops what an earlier service left, starts the watcher and, with ``prestart_owner``,
        that owner's server (in the background)."""
        stop_leftovers(self.warm_dir)
        self._watcher = threading.Thread(target=self._watch, name="warm-watcher", daemon=True)
        self._watcher.start()
        if prestart_owner is not None:
            threading.Thread(target=self._prestart, args=(prestart_owner,), name="warm-prestart",
                             daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            servers = list(self._servers.values()) + self._retiring
            self._servers.clear()
            self._retiring.clear()
            self._lock.notify_all()
        for server in servers:
            server.stop("stopped with the service")

    # -- jobs ---------------------------------------------------------------------------------

    def acquire(self, owner: str) -> tuple[WarmServer | None, str]:
        """A ready server for ``owner``'s job, counted as running it; or (None, why not), and the
        job runs cold. Waits while the server starts (up to ``warm.start_timeout_seconds``)."""
        deadline = time.monotonic() + self.settings.warm.start_timeout_seconds
        with self._lock:
            while True:
                if self._closed.is_set():
                    return None, "the service is closing"
                if not any(s.owner == owner for s in self._retiring):
                    break  # never two servers for one user: a retiring one must end first
                if not self._lock.wait(timeout=max(0.0, deadline - time.monotonic())):
                    return None, "the user's warm server is being replaced and still runs jobs"
            server = self._servers.get(owner)
            if server is not None and server.ready_at is not None and not server.alive():
                # Died since the watcher last looked: the job gets a new one, not the corpse.
                del self._servers[owner]
                _in_background(server.stop, "found dead")
                server = None
            if server is None:
                server, why = self._new_server(owner)
                if server is None:
                    return None, why
            server.running += 1
        if not server.ready(max(0.0, deadline - time.monotonic())):
            self.release(server)
            return None, server.ended or (f"the warm server did not start within "
                                          f"{self.settings.warm.start_timeout_seconds} s")
        return server, ""

    def release(self, server: WarmServer) -> None:
        """A job of ``server`` ended: it may now be retired or stopped."""
        with self._lock:
            server.running -= 1
            server.last_used = time.monotonic()
            if self._servers.get(server.owner) is server and self._worn(server):
                self._retire(server)
            stop = server in self._retiring and server.running <= 0 and not server.stopping
            server.stopping = server.stopping or stop
            self._lock.notify_all()
        if stop:  # not in the job's thread: its end is recorded now, not after the JVM's
            _in_background(self._stop_retired, server)

    def _stop_retired(self, server: WarmServer) -> None:
        """Stops a retired server; only then may its user have another (never two at once)."""
        server.stop("replaced")
        with self._lock:
            if server in self._retiring:
                self._retiring.remove(server)
            self._lock.notify_all()

    def servers(self) -> list[WarmServer]:
        with self._lock:
            return list(self._servers.values())

    # -- parts --------------------------------------------------------------------------------

    def _new_server(self, owner: str) -> tuple[WarmServer | None, str]:
        """Starts a server for ``owner`` (lock held), making way for it if needed."""
        limit = self.settings.warm.max_servers
        if len(self._servers) + len(self._retiring) >= limit:
            idle = [s for s in self._servers.values() if s.running == 0]
            if not idle:
                return None, (f"all {limit} warm servers (warm.max_servers) are running other "
                              "users' jobs")
            victim = min(idle, key=lambda s: s.last_used)
            del self._servers[victim.owner]
            _in_background(victim.stop, "stopped to make way for another user's")
        self._count += 1
        server = WarmServer(owner, self.settings, self.warm_dir / str(self._count), self.sandbox,
                            self.landlock_paths)
        try:
            server.start()
        except OSError as exc:
            server.stop("failed to start")
            return None, f"the warm server could not start: {exc}"
        self._servers[owner] = server
        return server, ""

    def _worn(self, server: WarmServer) -> bool:
        warm = self.settings.warm
        if server.jobs_started >= warm.max_jobs_per_server:
            log.info("The warm server of %r ran %d jobs: replacing it.", server.owner, server.jobs_started)
            return True
        memory = server.memory_mb()
        if memory > warm.max_server_memory_mb:
            log.info("The warm server of %r holds %.0f MB: replacing it.", server.owner, memory)
            return True
        return False

    def _retire(self, server: WarmServer) -> None:
        """Takes ``server`` out of service (lock held); it stops when its last job ends."""
        del self._servers[server.owner]
        self._retiring.append(server)

    def _prestart(self, owner: str) -> None:
        server, why = self.acquire(owner)
        if server is None:
            log.warning("The warm server could not be started ahead of jobs: %s", why)
        else:
            self.release(server)

    def _watch(self) -> None:
        while not self._closed.wait(WATCH_SECONDS):
            try:
                self._look()
            except Exception:  # the watcher must outlive any one server's trouble
                log.exception("Watching the warm servers failed.")

    def _look(self) -> None:
        dead, worn = [], []
        with self._lock:
            for server in list(self._servers.values()):
                if server.ready_at is None:
                    continue  # starting: acquire() waits for it and sees it die
                if not server.alive():
                    del self._servers[server.owner]
                    dead.append(server)
                elif server.running == 0 and self._worn(server):
                    self._retire(server)
                    server.stopping = True
                    worn.append(server)
            for server in list(self._retiring):
                if not server.stopping and not server.alive():
                    self._retiring.remove(server)
                    dead.append(server)
            self._lock.notify_all()
        for server in dead:
            _in_background(server.stop, "found dead")
        for server in worn:
            _in_background(self._stop_retired, server)


def _in_background(stop, *args) -> None:
    """Stops a server in a thread of its own: stopping a JVM takes seconds."""
    threading.Thread(target=stop, args=args, name="warm-stop", daemon=True).start()
