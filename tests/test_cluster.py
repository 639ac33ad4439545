"""A real Spark standalone cluster from the pyspark wheel: secure by default, and jobs run on it.

The session's one cluster (conftest's ``standalone_cluster``) serves these tests and
tests/test_distributed.py; the test of ``down`` runs after every other test and stops it. The
tests of arguments and of a missing cluster start nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from service_helpers import free_ports
from sparkrunner import config
from sparkrunner import devcluster as cluster
from sparkrunner.command import child_env, spark_submit_path

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "conf" / "standalone.yaml"

#: Under load a driver plus two executor JVMs on two cores take a while; generous, never hit when well.
JOB_TIMEOUT = 300
START_TIMEOUT = 180

JOB_SCRIPT = r'''
import json, os, sys, time, urllib.request
from pyspark.sql import SparkSession


def jvm_of(pid):
    """The nearest java ancestor of ``pid``: for a task, the executor JVM running it."""
    while pid > 1:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "java":
                return pid
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
    return None


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def where(index, rows):
    time.sleep(1)  # long enough that both single-core executors get tasks
    jvm = jvm_of(os.getpid())
    # A Python worker runs in its executor's directory: <work-dir>/<app id>/<executor id>.
    yield {"partition": index, "sum": sum(x * x for x in rows), "cwd": os.getcwd(), "jvm": jvm,
           "cmdline": cmdline(jvm)}


spark = SparkSession.builder.appName("cluster-test").getOrCreate()
sc = spark.sparkContext
partitions = sc.parallelize(range(100), 4).mapPartitionsWithIndex(where).collect()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"
executors = json.load(opener.open(url, timeout=30))
driver_jvm = jvm_of(os.getpid())
with open(sys.argv[1], "w") as f:
    json.dump({"app_id": sc.applicationId, "partitions": partitions, "driver_jvm": driver_jvm,
               "driver_cmdline": cmdline(driver_jvm),
               "executors": [{k: e.get(k) for k in ("id", "hostPort", "totalTasks")}
                             for e in executors]}, f)
spark.stop()
'''

PROBE_SCRIPT = r'''
import sys
from pyspark.sql import SparkSession

SparkSession.builder.appName(sys.argv[2]).getOrCreate()
open(sys.argv[1], "w").write("joined the cluster\n")
'''


def proc_stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/<pid>/stat, or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None


def running(pid: int, start_time: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == start_time


def group_members(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        fields = proc_stat(int(name)) if name.isdigit() else None
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(name))
    return members


def listeners(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                address, port = fields[1].rsplit(":", 1)
                found.add((address, int(port, 16)))
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1 in IPv4 and IPv6 tables


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def job_settings(cluster_dir: Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """What spark-submit needs to run a job on the cluster: master URL, Spark properties, environment.

    The properties go on spark-submit's command line, so they hold no secret: the secret reaches
    the driver through ``SPARK_CONF_DIR``, whose spark-defaults.conf spark-submit reads (it has to
    be in the driver's configuration: Spark 4.3's driver ignores ``_SPARK_AUTH_SECRET`` and
    ``spark.authenticate.secret.file`` for a ``spark://`` master). Executors get it from their
    Worker. The environment replaces ``spark.env``'s default, so it keeps SPARK_LOCAL_IP.
    conf/standalone.yaml says the same to a configured service.
    """
    info = cluster.read_info(cluster_dir)
    if info is None:
        raise cluster.ClusterError(f"no cluster is recorded in {str(Path(cluster_dir).resolve())!r}; "
                                   f"start one with: sparkrunner cluster up --cluster-dir {cluster_dir}")
    if not (Path(info.client_conf_dir) / "spark-defaults.conf").is_file():
        raise cluster.ClusterError(f"the cluster's client configuration in {info.client_conf_dir!r} is "
                                   "missing; restart the cluster (sparkrunner cluster down, then up)")
    conf = {"spark.authenticate": "true"}
    env = {"SPARK_CONF_DIR": info.client_conf_dir, "SPARK_LOCAL_IP": "127.0.0.1"}
    return info.master_url, conf, env


def job_env_and_argv(info: cluster.ClusterInfo, script: Path, *args: str,
                     conf: dict[str, str] | None = None, env: dict[str, str] | None = None,
                     with_cluster_settings: bool = True) -> tuple[dict[str, str], list[str]]:
    """spark-submit's environment and argv for ``script``, as sparkrunner builds them."""
    profile = config.load(PROFILE)
    spark = profile.spark
    if with_cluster_settings:
        master, cluster_conf, cluster_env = job_settings(Path(info.cluster_dir))
        spark = dataclasses.replace(spark, master=master, conf={**spark.conf, **cluster_conf},
                                    env={**spark.env, **cluster_env})
    else:
        spark = dataclasses.replace(spark, master=info.master_url,
                                    conf={k: v for k, v in spark.conf.items()
                                          if not k.startswith("spark.authenticate")})
    spark = dataclasses.replace(spark, conf={**spark.conf, **(conf or {})},
                                env={**spark.env, **(env or {})})
    settings = profile.with_overrides(spark=spark)
    base = {k: v for k, v in os.environ.items() if k != "SPARK_CONF_DIR"}
    argv = [spark_submit_path(settings), "--master", spark.master, "--deploy-mode", spark.deploy_mode]
    for key in sorted(spark.conf):
        argv += ["--conf", f"{key}={spark.conf[key]}"]
    return child_env(settings, base), [*argv, str(script), *args]


def start(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture
def spark_cluster(standalone_cluster):
    return standalone_cluster


@pytest.fixture
def secret(spark_cluster) -> str:
    return Path(spark_cluster.secret_file).read_text().strip()


# --- no cluster needed --------------------------------------------------------------------------

def test_job_settings_without_a_cluster_say_how_to_start_one(tmp_path):
    with pytest.raises(cluster.ClusterError, match="sparkrunner cluster up"):
        job_settings(tmp_path)


def test_down_without_a_cluster_does_nothing(tmp_path):
    assert cluster.down(tmp_path) == [f"no cluster is recorded in {tmp_path.resolve()}"]
    assert cluster.status(tmp_path)["running"] is False


@pytest.mark.parametrize("arguments, message", [
    ({"workers": 0}, "workers must be at least 1"),
    ({"memory_per_worker": "1 GB"}, "not a size"),
    ({"master_port": 7077, "webui_port": 7077}, "both 7077"),
])
def test_impossible_arguments_are_refused_before_anything_starts(tmp_path, arguments, message):
    with pytest.raises(cluster.ClusterUsageError, match=message):
        cluster.up(tmp_path, **arguments)
    assert not (tmp_path / "cluster.json").exists()


# --- the running cluster -------------------------------------------------------------------------

@pytest.mark.e2e
def test_the_master_reports_both_workers_alive(spark_cluster):
    state = cluster.master_state(spark_cluster.webui_url)
    assert state["status"] == "ALIVE"
    assert [w["state"] for w in state["workers"]] == ["ALIVE", "ALIVE"]
    assert all(w["host"] == "127.0.0.1" for w in state["workers"])
    report = cluster.status(Path(spark_cluster.cluster_dir))
    assert report["running"] is True
    assert [p["name"] for p in report["processes"]] == ["master", "worker-1", "worker-2"]


@pytest.mark.e2e
def test_the_rest_submission_server_is_off(spark_cluster):
    master = spark_cluster.processes[0]
    master_port = int(spark_cluster.master_url.rsplit(":", 1)[1])
    webui_port = int(spark_cluster.webui_url.rsplit(":", 1)[1])
    assert {port for _, port in listeners(master.pid)} == {master_port, webui_port}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 6066), timeout=2).close()


@pytest.mark.e2e
def test_every_daemon_listens_on_the_loopback_interface_only(spark_cluster):
    for proc in spark_cluster.processes:
        addresses = {address for address, _ in listeners(proc.pid)}
        assert addresses and addresses <= LOOPBACK, (proc.name, addresses)


@pytest.mark.e2e
def test_the_secret_is_readable_by_its_owner_only(spark_cluster, secret):
    assert len(secret) == 64 and int(secret, 16)
    client_conf = Path(spark_cluster.client_conf_dir)
    for path in (Path(spark_cluster.secret_file), client_conf / "spark-defaults.conf"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(client_conf.stat().st_mode) == 0o700
    assert secret in (client_conf / "spark-defaults.conf").read_text()


@pytest.mark.e2e
def test_the_secret_is_on_no_command_line(spark_cluster, secret):
    for proc in spark_cluster.processes:
        assert secret not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(), proc.name
    everything = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True)
    assert secret not in everything.stdout
    assert secret not in Path(spark_cluster.cluster_dir, "cluster.json").read_text()


@pytest.mark.e2e
def test_a_job_runs_on_executors_of_both_workers(spark_cluster, secret, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB_SCRIPT)
    result = tmp_path / "result.json"
    (ui_port,) = free_ports(1)
    env, argv = job_env_and_argv(spark_cluster, script, str(result), conf={
        "spark.ui.port": str(ui_port),
        # Start tasks only once both executors are up, or the first could take them all.
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": f"{JOB_TIMEOUT}s",
    })
    assert secret not in " ".join(argv)
    log = tmp_path / "driver.log"
    proc = start(argv, env, log, tmp_path)
    try:
        code = proc.wait(timeout=JOB_TIMEOUT)
    finally:
        stop(proc)
    assert code == 0, f"spark-submit exited with {code}:\n{tail(log)}"

    report = json.loads(result.read_text())
    parts = report["partitions"]
    assert sum(p["sum"] for p in parts) == sum(x * x for x in range(100))
    workers = {Path(p["cwd"]).relative_to(Path(spark_cluster.cluster_dir) / "work").parts[0]
               for p in parts}
    assert workers == {"worker-1", "worker-2"}
    jvms = {p["jvm"] for p in parts}
    assert len(jvms) == 2 and report["driver_jvm"] not in jvms
    executors = [e for e in report["executors"] if e["id"] != "driver"]
    assert len(executors) == 2 and all(e["totalTasks"] > 0 for e in executors)
    assert report["app_id"] in {a["id"] for a in cluster.master_state(spark_cluster.webui_url)["completedapps"]}
    # Nor in any log: the driver's output, the daemons' logs, the executors' stdout and stderr.
    logs = [log, *Path(spark_cluster.cluster_dir, "logs").iterdir(),
            *(p for p in Path(spark_cluster.cluster_dir, "work").rglob("std*") if p.is_file())]
    assert len(logs) >= 1 + 3 + 4
    for path in logs:
        assert secret not in path.read_text(errors="replace"), path
    assert "org.apache.spark.deploy.SparkSubmit" in report["driver_cmdline"]
    assert secret not in report["driver_cmdline"]
    for part in parts:
        assert "CoarseGrainedExecutorBackend" in part["cmdline"]
        assert secret not in part["cmdline"]


@pytest.mark.e2e
def test_drivers_without_the_secret_are_refused_by_the_master(spark_cluster, tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE_SCRIPT)
    wrong_conf = tmp_path / "wrong-conf"
    wrong_conf.mkdir()
    (wrong_conf / "spark-defaults.conf").write_text(
        "spark.authenticate true\nspark.authenticate.secret " + "0" * 64 + "\n")
    probes = {
        # No authentication at all: the master expects a SASL handshake first.
        "no-secret": job_env_and_argv(spark_cluster, script, str(tmp_path / "no-secret.joined"),
                                      "no-secret", with_cluster_settings=False),
        # Authentication with a secret that is not the cluster's.
        "wrong-secret": job_env_and_argv(spark_cluster, script, str(tmp_path / "wrong-secret.joined"),
                                         "wrong-secret", conf={"spark.authenticate": "true"},
                                         env={"SPARK_CONF_DIR": str(wrong_conf)},
                                         with_cluster_settings=False),
    }
    running = {name: start(argv, env, tmp_path / f"{name}.log", tmp_path)
               for name, (env, argv) in probes.items()}
    try:
        for name, proc in running.items():
            log = tmp_path / f"{name}.log"
            wait_for(lambda: "Failed to connect to master" in log.read_text(errors="replace")
                     or proc.poll() is not None, JOB_TIMEOUT, f"the {name} driver to be refused")
            text = log.read_text(errors="replace")
            assert "Failed to connect to master" in text, f"{name}:\n{tail(log)}"
            expected = "Expected SaslMessage" if name == "no-secret" else "SaslException"
            assert expected in text, f"{name}:\n{tail(log)}"
            assert not (tmp_path / f"{name}.joined").exists()
    finally:
        for proc in running.values():
            stop(proc)
    state = cluster.master_state(spark_cluster.webui_url)
    names = {a["name"] for a in state["activeapps"] + state["completedapps"]}
    assert not names & set(probes)


@pytest.mark.e2e
def test_up_refuses_to_start_over_a_running_cluster(spark_cluster):
    with pytest.raises(cluster.ClusterError, match="still running"):
        cluster.up(Path(spark_cluster.cluster_dir), master_port=1, webui_port=2)
    assert cluster.status(Path(spark_cluster.cluster_dir))["running"] is True


@pytest.mark.e2e
@pytest.mark.last  # it stops the cluster the session shares
def test_down_stops_every_recorded_process(spark_cluster):
    cluster_dir = Path(spark_cluster.cluster_dir)
    messages = cluster.down(cluster_dir)
    assert messages == [f"stopped {p.name} (pid {p.pid})" for p in spark_cluster.processes]
    for proc in spark_cluster.processes:
        assert not running(proc.pid, proc.start_time), proc.name
        assert group_members(proc.pid) == [], f"{proc.name}'s process group outlived it"
    assert not (cluster_dir / "cluster.json").exists()
    assert not Path(spark_cluster.secret_file).exists()
    assert cluster.down(cluster_dir) == [f"no cluster is recorded in {cluster_dir}"]
    assert cluster.status(cluster_dir)["running"] is False
