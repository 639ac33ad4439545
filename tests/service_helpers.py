"""The sparkrunner service for tests: as a child process (``sparkrunner serve``), or in this
process (:class:`InProcessService`, the app served by uvicorn on 127.0.0.1), both over real HTTP
and a real SQLite file. With ``spark_home`` set to a stand-in (tests/support/spark_submit_standin.py)
either runs jobs without a JVM."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import requests

from conftest import SPARKRUNNER

# A score function that sleeps, then reports when it ran; used to see jobs overlap.
SLEEPY_SOURCE = '''\
import json, os, time
from pyspark.sql import SparkSession

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    began = time.time()
    seconds = float(open("seconds.txt").read())
    deadline = began + seconds
    while time.time() < deadline:
        time.sleep(0.2)
    total = spark.range(100).groupBy().sum("id").collect()[0][0]
    return {"began": began, "ended": time.time(), "sum": total, "pid": os.getpid()}
'''


def sleepy_job(seconds: float, **fields) -> dict:
    from conftest import make_job

    return make_job(SLEEPY_SOURCE, name="sleepy.py",
                    assets=[{"assetType": "FILE", "filename": "seconds.txt", "content": str(seconds)}],
                    **fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` different free ports on 127.0.0.1."""
    socks = []
    try:
        for _ in range(count):  # held open together, so the ports differ
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


class Api:
    """Requests to a service at ``url``, as a program sends them."""

    url: str
    #: Seconds between two polls of :meth:`wait_for`.
    poll_seconds = 0.25

    def __init__(self) -> None:
        #: Sent with every request (e.g. an Authorization header); per-call headers win.
        self.headers: dict[str, str] = {}

    # -- REST ---------------------------------------------------------------------------------

    def post(self, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        """A POST as a program sends it: with the header the cross-site check asks for."""
        headers = {"X-Requested-By": "sparkrunner-tests", **self.headers, **(headers or {})}
        return requests.post(self.url + path, timeout=30, headers=headers, **kwargs)

    def get(self, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, headers={**self.headers, **(headers or {})}, **kwargs)

    def delete(self, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        headers = {"X-Requested-By": "sparkrunner-tests", **self.headers, **(headers or {})}
        return requests.delete(self.url + path, timeout=30, headers=headers, **kwargs)

    def submit(self, doc: dict, **headers) -> dict:
        response = self.post("/jobs", json=doc, headers=headers)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        return self.get(f"/jobs/{job_id}").json()

    def wait_for(self, job_id: str, states: set[str], timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["jobStatus"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['jobStatus']} after {timeout} s: {job}")
            time.sleep(self.poll_seconds)


def write_config(path: Path, data_dir: Path, *, max_jobs: int = 2, extra: str = "",
                 spark_home: Path | None = None, warm: bool = False,
                 local_roots: list[Path] | None = None) -> Path:
    """A service configuration; ``extra`` is appended (YAML, top-level keys).

    Local fileUrls are accepted anywhere under pytest's temporary root, which holds every test's
    files (but never inside the service's data directory). ``spark_home`` replaces the pyspark
    wheel's Spark, e.g. by the stand-in. Jobs run cold unless ``warm`` (then the warm tests'
    own configuration says more); a warm job's sandbox cannot hide the data directory inside a
    local root, so warm tests name ``local_roots`` beside it.
    """
    roots = ", ".join(str(p) for p in local_roots) if local_roots else Path(data_dir).parent.parent
    home = f"  home: {spark_home}\n" if spark_home else ""
    path.write_text(f"data_dir: {data_dir}\n"
                    f"spark:\n{home}  conf:\n    spark.ui.enabled: 'false'\n    spark.ui.showConsoleProgress: 'false'\n"
                    f"policy:\n  local_roots: [{roots}]\n"
                    + ("" if warm else "warm:\n  enabled: false\n")
                    + f"service:\n  max_concurrent_jobs: {max_jobs}\n" + extra)
    return path


class Service(Api):
    """``sparkrunner serve`` as a child process; restartable, killable."""

    def __init__(self, data_dir: Path, config: Path | None = None, max_jobs: int = 2, extra: str = "",
                 spark_home: Path | None = None, **config_options):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config or write_config(self.data_dir.parent / f"{self.data_dir.name}-sparkrunner.yaml",
                                             self.data_dir, max_jobs=max_jobs, extra=extra,
                                             spark_home=spark_home, **config_options)
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-service.log"

    def start(self, file_size_limit: int | None = None) -> "Service":
        """Starts the service; ``file_size_limit`` (bytes) makes every write past that size in
        any one file fail (RLIMIT_FSIZE), as a full disk would."""
        def limit_files() -> None:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a dead process
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [SPARKRUNNER, "--config", str(self.config), "-v", "serve", "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=limit_files if file_size_limit else None)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("the service did not come up")

    def kill(self) -> None:
        """SIGKILL, as a crash would: the service gets no chance to tidy up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class InProcessService(Api):
    """The service in this process: ``create_app`` over a :class:`JobService` on a temporary
    data directory, served by uvicorn on 127.0.0.1. Configured as :class:`Service` is (the same
    YAML), so a test can use either; it starts once and cannot be killed (use :class:`Service`
    for restarts). ``stop`` cancels whatever still runs, then stops the server."""

    poll_seconds = 0.05

    def __init__(self, data_dir: Path, config: Path | None = None, max_jobs: int = 2, extra: str = "",
                 spark_home: Path | None = None, **config_options):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.config = config or write_config(self.data_dir.parent / f"{self.data_dir.name}-sparkrunner.yaml",
                                             self.data_dir, max_jobs=max_jobs, extra=extra,
                                             spark_home=spark_home, **config_options)
        self.service = None
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> "InProcessService":
        import uvicorn

        from sparkrunner import config
        from sparkrunner.api import create_app
        from sparkrunner.service import JobService

        self.settings = config.load(self.config)
        self.service = JobService(self.settings)
        app = create_app(self.settings, self.service, manage=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process service did not come up")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            # The follower threads die with this process: end every job they follow first.
            unfinished = [record.id for record in self.service.store.unfinished()]
            for job_id in unfinished:
                self.service.cancel(job_id)
            deadline = time.monotonic() + 30
            while any(not self.service.get(job_id).status.is_terminal for job_id in unfinished):
                assert time.monotonic() < deadline, "jobs still unfinished 30 s after their cancel"
                time.sleep(0.05)
        finally:
            self._server.should_exit = True
            self._thread.join(30)
            self._thread = None


def stored(service: Service, job_id: str, column: str):
    """One column of a job's row, read from the SQLite file itself."""
    with sqlite3.connect(service.data_dir / "jobs.db") as db:
        return db.execute(f"SELECT {column} FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]


def pids_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found
