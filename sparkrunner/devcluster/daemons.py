"""A Spark standalone cluster on this machine, from the pyspark wheel, secure by default.

:func:`up` starts one Master and N Workers with the wheel's ``bin/spark-class`` (the wheel has no
``sbin/start-*.sh``), all on 127.0.0.1; :func:`down` stops exactly those processes; :func:`status`
reports on them. What ``cluster up`` writes into the cluster directory is in :mod:`.record`.

Security, as verified against Spark 4.3:

* ``spark.authenticate`` is on, with a fresh 256-bit secret per cluster kept in
  ``<cluster_dir>/secret`` (mode 0600). The secret is never on a command line, where ``ps`` shows
  it to every user: the daemons get it in the ``_SPARK_AUTH_SECRET`` environment variable, which
  their SecurityManager reads (and a Worker hands on to its executors the same way); spark-submit
  gets it from ``<cluster_dir>/client-conf/spark-defaults.conf`` (mode 0600, found through
  ``SPARK_CONF_DIR``), because a driver of a ``spark://`` master insists on finding
  ``spark.authenticate.secret`` in its own configuration and ignores both the environment variable
  and ``spark.authenticate.secret.file`` (that one is for Kubernetes only).
* The Master's REST submission server is off (``spark.master.rest.enabled=false`` in the
  properties file the daemons are started with): Spark 4.x turns it on by default and it accepts
  jobs without any authentication (CVE-2018-11770).
* Everything listens on 127.0.0.1 only (``--host`` and ``SPARK_LOCAL_IP``, which also binds the
  web UIs), and the daemons do not inherit the caller's ``SPARK_*`` variables, so a developer's
  ``SPARK_MASTER_OPTS`` or ``spark-env.sh`` cannot switch any of this back.

Linux only: processes are told apart by their start time in ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ClusterError, ClusterUsageError
from ..proc import group_members, is_running, listening_ports, signal_group, stat
from .record import (CLIENT_CONF_DIR, DAEMON_CONF_DIR, DAEMON_PROPERTIES, SECRET_FILE, STATE_FILE,
                     ClusterInfo, Daemon, forget, properties_text, read_info, write_private)

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_CLUSTER_DIR = Path("build/cluster")
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

#: The environment variable Spark's SecurityManager reads the shared secret from.
SECRET_ENV = "_SPARK_AUTH_SECRET"

#: Spark properties of the Master and the Workers; none of them is secret.
DAEMON_CONF: dict[str, str] = {
    "spark.authenticate": "true",
    "spark.master.rest.enabled": "false",
}

START_TIMEOUT = 60.0
STOP_GRACE = 10.0
#: A Worker's memory as Spark takes it: 512m, 1g.
MEMORY = re.compile(r"^[1-9][0-9]*[mMgGtT]$")
_LOG_TAIL_LINES = 15

# Popen objects of the daemons this Python process started: kept so that down() in the same process
# reaps them (a zombie still has its /proc entry) and Python does not warn about live children.
_children: dict[int, subprocess.Popen] = {}


# --- starting ----------------------------------------------------------------------------------

def up(cluster_dir: Path, workers: int = 2, cores_per_worker: int = 1, memory_per_worker: str = "1g",
       master_port: int = 7077, webui_port: int = 8080, *, worker_webui_port: int = 8081,
       timeout: float = START_TIMEOUT, spark_home: Path | None = None) -> ClusterInfo:
    """Starts a Master and ``workers`` Workers and returns once the Master reports them all ALIVE.

    Worker N's web UI gets port ``worker_webui_port + N - 1`` (0: any free port). ``spark_home``
    defaults to the pyspark wheel's Spark. Raises :class:`ClusterError` if a cluster recorded in
    ``cluster_dir`` still runs, a port is taken, or the cluster is not up within ``timeout``
    seconds; then whatever was started is stopped again.
    """
    _check_arguments(workers, cores_per_worker, memory_per_worker, master_port, webui_port,
                     worker_webui_port)
    cluster_dir = Path(cluster_dir).expanduser().resolve()
    home = Path(spark_home) if spark_home else _wheel_spark_home()
    spark_class = home / "bin" / "spark-class"
    if not spark_class.is_file():
        raise ClusterError(f"no bin/spark-class under {str(home)!r}; is pyspark installed?")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise ClusterError("Spark needs Java: install a JDK (17 or 21) or set JAVA_HOME")

    _refuse_if_running(cluster_dir)
    worker_ports = [worker_webui_port + i if worker_webui_port else 0 for i in range(workers)]
    for port in (master_port, webui_port, *worker_ports):
        if port and not _port_free(port):
            raise ClusterError(f"port {port} on {HOST} is already in use; choose other ports "
                               "(--master-port, --webui-port) or stop what uses it")

    for sub in ("logs", "work", DAEMON_CONF_DIR, CLIENT_CONF_DIR):
        (cluster_dir / sub).mkdir(parents=True, exist_ok=True)
    for private in (DAEMON_CONF_DIR, CLIENT_CONF_DIR):
        os.chmod(cluster_dir / private, 0o700)

    secret = secrets.token_hex(32)
    secret_file = cluster_dir / SECRET_FILE
    write_private(secret_file, secret + "\n")
    client_conf_dir = cluster_dir / CLIENT_CONF_DIR
    write_private(client_conf_dir / "spark-defaults.conf", properties_text(
        {"spark.authenticate": "true", "spark.authenticate.secret": secret},
        "Read by spark-submit through SPARK_CONF_DIR, so the secret stays off its command line."))
    daemon_conf_dir = cluster_dir / DAEMON_CONF_DIR
    properties = daemon_conf_dir / DAEMON_PROPERTIES
    write_private(properties, properties_text(
        DAEMON_CONF, "Read by the Master and the Workers (--properties-file)."))

    master_url = f"spark://{HOST}:{master_port}"
    info = ClusterInfo(cluster_dir=str(cluster_dir), master_url=master_url,
                       webui_url=f"http://{HOST}:{webui_port}", secret_file=str(secret_file),
                       client_conf_dir=str(client_conf_dir), spark_home=str(home), workers=workers,
                       processes=())
    env = _daemon_env(home, daemon_conf_dir, secret)
    deadline = time.monotonic() + timeout
    try:
        info = _start(info, "master", [
            str(spark_class), MASTER_CLASS, "--host", HOST, "--port", str(master_port),
            "--webui-port", str(webui_port), "--properties-file", str(properties)], env)
        # Workers that find no master wait 5 to 15 s before they try again: start them once the
        # master's port listens.
        _wait(info, deadline, f"the master to listen on port {master_port}",
              lambda: master_port in listening_ports(info.processes[0].pid))
        for i, port in enumerate(worker_ports, start=1):
            work_dir = cluster_dir / "work" / f"worker-{i}"
            work_dir.mkdir(parents=True, exist_ok=True)
            info = _start(info, f"worker-{i}", [
                str(spark_class), WORKER_CLASS, master_url, "--host", HOST,
                "--cores", str(cores_per_worker), "--memory", memory_per_worker,
                "--work-dir", str(work_dir), "--webui-port", str(port),
                "--properties-file", str(properties)], env)
        _wait(info, deadline, f"{workers} worker(s) to register with the master",
              lambda: len(_alive_workers(info)) >= workers)
        # Should a later Spark rename spark.master.rest.enabled, its REST server would come back
        # unannounced, accepting jobs without authentication: refuse such a cluster.
        extra = listening_ports(info.processes[0].pid) - {master_port, webui_port}
        if extra:
            raise ClusterError(f"the master listens on port(s) {sorted(extra)} besides {master_port} "
                               f"and {webui_port} (its unauthenticated REST submission server?); "
                               "sparkrunner does not know how to turn that off in this Spark")
    except BaseException:
        log.warning("The cluster in %r did not start; stopping what was started.", str(cluster_dir))
        _stop(info.processes, grace=5.0)
        forget(cluster_dir)
        raise
    log.info("The cluster in %r is up: master %s with %d worker(s).", str(cluster_dir), master_url,
             workers)
    return info


def _check_arguments(workers: int, cores: int, memory: str, master_port: int, webui_port: int,
                     worker_webui_port: int) -> None:
    if workers < 1:
        raise ClusterUsageError(f"workers must be at least 1, not {workers}")
    if cores < 1:
        raise ClusterUsageError(f"cores per worker must be at least 1, not {cores}")
    if not MEMORY.match(memory):
        raise ClusterUsageError(f"memory per worker {memory!r} is not a size such as 512m or 1g")
    for what, port in (("master port", master_port), ("web UI port", webui_port)):
        if not 0 < port < 65536:
            raise ClusterUsageError(f"{what} must be between 1 and 65535, not {port}")
    if not 0 <= worker_webui_port < 65536:
        raise ClusterUsageError(f"worker web UI port must be between 0 and 65535, not {worker_webui_port}")
    if master_port == webui_port:
        raise ClusterUsageError(f"the master port and the web UI port are both {master_port}")


def _wheel_spark_home() -> Path:
    from ..command import spark_home
    from ..config import Settings

    return spark_home(Settings())


def _refuse_if_running(cluster_dir: Path) -> None:
    info = read_info(cluster_dir)
    if info is None:
        return
    running = [p for p in info.processes if _is_alive(p)]
    if running:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in running)
        raise ClusterError(f"a cluster started in {str(cluster_dir)!r} is still running: {names}; "
                           f"stop it first with: sparkrunner cluster down --cluster-dir {cluster_dir}")
    log.info("Removing the record of a cluster in %r whose processes are all gone.", str(cluster_dir))
    forget(cluster_dir)


def _daemon_env(home: Path, daemon_conf_dir: Path, secret: str) -> dict[str, str]:
    # Nothing from the caller's SPARK_* variables: SPARK_MASTER_OPTS, SPARK_DAEMON_JAVA_OPTS or a
    # SPARK_CONF_DIR with a spark-env.sh could turn the REST server back on or leave the loopback.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "_SPARK_"))}
    env.update({
        "SPARK_HOME": str(home),
        "SPARK_CONF_DIR": str(daemon_conf_dir),
        "SPARK_LOCAL_IP": HOST,  # binds the web UIs too, which --host does not
        SECRET_ENV: secret,
    })
    return env


def _start(info: ClusterInfo, name: str, argv: list[str], env: dict[str, str]) -> ClusterInfo:
    """``info`` with one more daemon, started and recorded in cluster.json."""
    log_path = Path(info.cluster_dir) / "logs" / f"{name}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, env=env, cwd=info.cluster_dir,
                                start_new_session=True)
    _children[proc.pid] = proc
    found = stat(proc.pid)
    daemon = Daemon(name=name, pid=proc.pid, start_time=found.start_time if found else 0,
                    log=str(log_path))
    info = replace(info, processes=(*info.processes, daemon))
    try:
        # Recorded at once, so that down() can stop it even if this process dies during startup.
        write_private(Path(info.cluster_dir) / STATE_FILE, info.to_json())
    except BaseException:
        _stop([daemon], grace=5.0)  # not yet in any record: nobody else could stop it
        raise
    log.info("Started the Spark %s (pid %d), logging to %r.", name, proc.pid, str(log_path))
    return info


def _wait(info: ClusterInfo, deadline: float, what: str, ready) -> None:
    while True:
        dead = [p for p in info.processes if not _is_alive(p)]
        if dead:
            raise ClusterError(f"the Spark {dead[0].name} (pid {dead[0].pid}) exited while waiting "
                               f"for {what}{_log_tails(dead)}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out waiting for {what}{_log_tails(info.processes)}")
        time.sleep(0.5)


def _alive_workers(info: ClusterInfo) -> list[dict[str, Any]]:
    try:
        state = master_state(info.webui_url)
    except ClusterError:
        return []
    return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]


def master_state(webui_url: str, timeout: float = 3.0) -> dict[str, Any]:
    """The master's JSON status page (``/json/``): its workers, applications and state."""
    import http.client  # here, not at the top: every sparkrunner command imports this module
    import urllib.request

    # No proxy: an http_proxy in the environment must not intercept a loopback address.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = webui_url.rstrip("/") + "/json/"
    try:
        with opener.open(url, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise ClusterError(f"the master's status page {url} did not answer: {exc}") from exc


def _log_tails(processes) -> str:
    parts = []
    for proc in processes:
        try:
            lines = Path(proc.log).read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            continue
        parts.append(f"\n--- last lines of {proc.log} ---\n" + "\n".join(lines))
    return "".join(parts)


# --- stopping ----------------------------------------------------------------------------------

def down(cluster_dir: Path, grace: float = STOP_GRACE) -> list[str]:
    """Stops the processes up() recorded in ``cluster_dir``; returns what it did, one line each.

    Each recorded process group gets SIGTERM, and SIGKILL after ``grace`` seconds; a pid now used
    by another process is left alone. Idempotent: with nothing recorded, nothing happens.
    """
    cluster_dir = Path(cluster_dir).expanduser().resolve()
    info = read_info(cluster_dir)
    if info is None:
        forget(cluster_dir)
        return [f"no cluster is recorded in {cluster_dir}"]
    messages = _stop(info.processes, grace)
    forget(cluster_dir)
    return messages


def _stop(processes, grace: float) -> list[str]:
    messages = []
    stopping = []
    for proc in processes:
        if _is_alive(proc) and signal_group(proc.pid, signal.SIGTERM):
            stopping.append(proc)
        else:
            messages.append(f"{proc.name} (pid {proc.pid}) was not running")
    deadline = time.monotonic() + grace
    while stopping and time.monotonic() < deadline:
        _reap()
        # The group, not just its leader: a Worker's executors live in the Worker's group.
        if not any(group_members(p.pid) for p in stopping):
            break
        time.sleep(0.2)
    for proc in stopping:
        _reap()
        if group_members(proc.pid):
            log.warning("The Spark %s (pid %d) outlived SIGTERM by %.0f s; killing it.",
                        proc.name, proc.pid, grace)
            signal_group(proc.pid, signal.SIGKILL)
            messages.append(f"killed {proc.name} (pid {proc.pid}) after {grace:.0f} s")
        else:
            messages.append(f"stopped {proc.name} (pid {proc.pid})")
    _reap()
    return messages


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


# --- looking ------------------------------------------------------------------------------------

def status(cluster_dir: Path) -> dict[str, Any]:
    """The recorded cluster: each process alive or not, and the workers the master knows.

    ``running`` is true when every recorded process is alive and the master reports all workers
    ALIVE; ``master_error`` says why the master's status page could not be read, if it could not.
    """
    cluster_dir = Path(cluster_dir).expanduser().resolve()
    info = read_info(cluster_dir)
    if info is None:
        return {"cluster_dir": str(cluster_dir), "recorded": False, "running": False,
                "processes": [], "workers": [], "master_error": None}
    processes = [{"name": p.name, "pid": p.pid, "alive": _is_alive(p), "log": p.log}
                 for p in info.processes]
    workers: list[dict[str, Any]] = []
    master_error = None
    try:
        state = master_state(info.webui_url)
        workers = [{key: w.get(key) for key in ("id", "host", "port", "state", "cores", "coresused",
                                                  "memory", "memoryused", "webuiaddress")}
                   for w in state.get("workers", [])]
    except ClusterError as exc:
        master_error = str(exc)
    alive_workers = sum(1 for w in workers if w["state"] == "ALIVE")
    return {"cluster_dir": str(cluster_dir), "recorded": True,
            "running": all(p["alive"] for p in processes) and alive_workers >= info.workers,
            "master_url": info.master_url, "webui_url": info.webui_url,
            "secret_file": info.secret_file, "client_conf_dir": info.client_conf_dir,
            "processes": processes, "workers": workers, "master_error": master_error}


# --- processes and ports -----------------------------------------------------------------------


def _is_alive(proc: Daemon) -> bool:
    """Whether the recorded process still runs: its pid exists and started when recorded."""
    _reap()
    return is_running(proc.pid, proc.start_time)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM does: only a listener, not a closing connection, makes the port unusable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True
