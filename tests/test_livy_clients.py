"""Livy's own clients, unmodified, against a live sparkrunner service running real PySpark scripts:
Airflow's LivyOperator under `airflow dags test` (polling, deferrable, failing, timed out), and
the `livy` package's LivyBatch (create, wait, log, kill).

The DAGs are written as a Livy user writes them; only the connection points at sparkrunner.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from service_helpers import Service
from test_airflow import Airflow

from livy import LivyBatch, SessionState

pytestmark = pytest.mark.e2e

PI = '''\
import sys
from operator import add
from random import random

from pyspark.sql import SparkSession

if __name__ == "__main__":
    spark = SparkSession.builder.appName("PythonPi").getOrCreate()
    partitions = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    n = 10000 * partitions

    def inside(_):
        x, y = random() * 2 - 1, random() * 2 - 1
        return 1 if x * x + y * y <= 1 else 0

    count = spark.sparkContext.parallelize(range(n), partitions).map(inside).reduce(add)
    print("Pi is roughly %f, from %d partitions" % (4.0 * count / n, partitions))
    spark.stop()
'''

# Starts Spark the old way, then fails in its own code.
RAISES = '''\
from pyspark import SparkConf, SparkContext

sc = SparkContext(conf=SparkConf().setAppName("raises"))
rows = sc.parallelize([1, 2, 3]).count()
raise ValueError("expected 4 rows, found %d" % rows)
'''

EXITS = '''\
import sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
print("exiting with", sys.argv[1])
sys.exit(int(sys.argv[1]))
'''

SLEEPS = '''\
import sys, time
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
print("sleeping", sys.argv[1], flush=True)
time.sleep(float(sys.argv[1]))
'''

SUCCESS_DAG = '''\
from airflow.sdk import DAG
from airflow.providers.apache.livy.operators.livy import LivyOperator

with DAG("livy_success", schedule=None, default_args={{"retries": 0}}):
    LivyOperator(task_id="pi", file={pi!r}, args=[3], name="pi-polled", polling_interval=1,
                 driver_memory="512m", conf={{"spark.sql.shuffle.partitions": "4"}},
                 livy_conn_id="sparkrunner_livy")
    LivyOperator(task_id="pi_deferred", file={pi!r}, args=[2], name="pi-deferred", polling_interval=1,
                 deferrable=True, livy_conn_id="sparkrunner_livy")
'''

FAILURES_DAG = '''\
from datetime import timedelta

from airflow.sdk import DAG
from airflow.providers.apache.livy.operators.livy import LivyOperator

with DAG("livy_failures", schedule=None, default_args={{"retries": 0}}):
    LivyOperator(task_id="raises", file={raises!r}, name="raises", polling_interval=1,
                 livy_conn_id="sparkrunner_livy")
    LivyOperator(task_id="exits", file={exits!r}, args=[3], name="exits", polling_interval=1,
                 livy_conn_id="sparkrunner_livy")
    LivyOperator(task_id="times_out", file={sleeps!r}, args=[300], name="times-out", polling_interval=1,
                 execution_timeout=timedelta(seconds=20), livy_conn_id="sparkrunner_livy")
    LivyOperator(task_id="times_out_deferred", file={sleeps!r}, args=[300], name="times-out-deferred",
                 polling_interval=1, deferrable=True, execution_timeout=timedelta(seconds=20),
                 livy_conn_id="sparkrunner_livy")
'''


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("livy-svc") / "data", max_jobs=2).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    """The scripts, written where the service accepts local files (under policy.local_roots)."""
    directory = tmp_path_factory.mktemp("scripts")
    paths = {}
    for name, text in {"pi": PI, "raises": RAISES, "exits": EXITS, "sleeps": SLEEPS}.items():
        paths[name] = directory / f"{name}.py"
        paths[name].write_text(text)
    return {name: str(path) for name, path in paths.items()}


def livy_airflow(tmp_path, migrated_airflow_db, service: Service) -> Airflow:
    connection = json.dumps({"conn_type": "livy", "host": "127.0.0.1", "port": service.port})
    return Airflow(tmp_path / "airflow", migrated_airflow_db, service, AIRFLOW_CONN_SPARKRUNNER_LIVY=connection)


@pytest.fixture(scope="module")
def dag_runs(service, migrated_airflow_db, scripts, tmp_path_factory) -> dict[str, tuple[Airflow, int, str]]:
    """The success and failures DAGs, run at the same time against the module's service:
    {dag_id: (airflow, returncode, log)}. `airflow dags test` runs one task after another, mostly
    waiting on its batches, so two runs overlap well; each has an Airflow home of its own. Both
    have ended when a test reads them."""
    dags = {"livy_success": SUCCESS_DAG.format(pi=scripts["pi"]), "livy_failures": FAILURES_DAG.format(**scripts)}
    started = {}
    for dag_id, text in dags.items():
        airflow = livy_airflow(tmp_path_factory.mktemp(dag_id), migrated_airflow_db, service)
        airflow.add(f"{dag_id}.py", text)
        airflow.start(dag_id)
        started[dag_id] = airflow
    try:
        return {dag_id: (airflow, *airflow.finish()) for dag_id, airflow in started.items()}
    finally:
        for airflow in started.values():
            if airflow.process.poll() is None:
                airflow.process.kill()
                airflow.process.wait()


def xcom(airflow: Airflow, dag_id: str, task_id: str, key: str = "return_value"):
    """An XCom; Airflow's SQLite column hands a bare number back as one."""
    rows = airflow.query("SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ?",
                         dag_id, task_id, key)
    assert rows, f"no XCom {key!r} from {dag_id}.{task_id}"
    value = rows[0][0]
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def batches_by_name(service: Service) -> dict[str, dict]:
    listed = service.get("/batches", params={"size": 1000}).json()
    return {batch["name"]: batch for batch in listed["sessions"]}


def test_livy_operator_runs_scripts_polling_and_deferred(service, dag_runs):
    airflow, returncode, log = dag_runs["livy_success"]

    assert returncode == 0, log[-5000:]
    assert airflow.tasks("livy_success") == {"pi": ("success", 1), "pi_deferred": ("success", 1)}
    batches = batches_by_name(service)
    for task, name, partitions in (("pi", "pi-polled", 3), ("pi_deferred", "pi-deferred", 2)):
        batch = batches[name]
        assert (batch["state"], batch["jobStatus"], batch["reason"]) == ("success", "COMPLETE", "exit code 0")
        assert xcom(airflow, "livy_success", task) == batch["id"]  # the operator returns the batch id
        assert xcom(airflow, "livy_success", task, "app_id") == batch["appId"]
        assert batch["appId"].startswith("local-")
        # The driver log, copied into the task log by the operator (polling) or the trigger.
        assert f"Pi is roughly" in log and f"from {partitions} partitions" in log
        job = service.job(batch["jobId"])
        assert job["jobType"] == "SPARK_SCRIPT_JOB" and job["batchId"] == batch["id"]
    # Livy's resource fields became spark-submit settings through the policy.
    # They went into the run's properties file, which the log shows after the command.
    head = service.get(f"/batches/{batches['pi-polled']['id']}/log", params={"from": 0, "size": 5}).json()["log"]
    [properties] = [line for line in head if line.startswith("sparkrunner: properties: ")]
    assert "--properties-file" in head[0]
    assert "spark.driver.memory=512m" in properties and "spark.sql.shuffle.partitions=4" in properties
    assert "Deferring" in log or "deferred" in log.lower()


def test_livy_operator_fails_with_the_script_and_deletes_a_timed_out_batch(service, dag_runs):
    airflow, returncode, log = dag_runs["livy_failures"]

    assert returncode != 0
    assert airflow.tasks("livy_failures") == {
        "raises": ("failed", 1), "exits": ("failed", 1), "times_out": ("failed", 1),
        "times_out_deferred": ("failed", 1)}
    batches = batches_by_name(service)
    raised, exited = batches["raises"], batches["exits"]
    assert raised["state"] == "dead"
    assert raised["reason"] == "exit code 1: script 'raises.py' raised ValueError: expected 4 rows, found 3"
    assert f"Batch {raised['id']} did not succeed" in log
    assert "ValueError: expected 4 rows, found 3" in log  # the driver log, in the task log
    assert (exited["state"], exited["reason"]) == ("dead", "exit code 3: script 'exits.py' exited with status 3")
    # execution_timeout: the operator's on_kill deletes the batch, and the job is cancelled.
    for name in ("times-out", "times-out-deferred"):
        timed_out = wait_for_state(service, batches[name]["id"], {"killed"}, timeout=60)
        assert (timed_out["jobStatus"], timed_out["reason"]) == ("CANCELLED", "cancelled by user")
        assert f"Deleting batch session {timed_out['id']}" in log
    assert service.get("/jobs", params={"jobStatus": ["CREATED", "WAITING", "RUNNING"]}).json()["total"] == 0


def test_the_livy_package_creates_waits_reads_the_log_and_kills(service, scripts):
    batch = LivyBatch.create(service.url, file=scripts["pi"], args=["2"], name="pi-livy",
                             driver_memory="512m", spark_conf={"spark.ui.enabled": "false"})
    failing = LivyBatch.create(service.url, file=scripts["raises"])  # the service runs both at once

    assert batch.wait() is SessionState.SUCCESS
    lines = batch.log()  # the last 100 lines
    assert any("Pi is roughly" in line for line in lines)
    first = batch.log(from_=0, size=1)
    assert first[0].startswith("sparkrunner: command: ")

    assert failing.wait() is SessionState.DEAD
    assert any("ValueError: expected 4 rows, found 3" in line for line in failing.log(size=200))

    sleeper = LivyBatch.create(service.url, file=scripts["sleeps"], args=["300"])
    wait_for_state(service, sleeper.batch_id, {"running"})
    deadline = time.monotonic() + 60
    while "sleeping 300" not in sleeper.log() and time.monotonic() < deadline:
        time.sleep(0.25)
    sleeper.kill()
    assert sleeper.wait() is SessionState.KILLED  # the batch stays, killed, with its log
    assert "sleeping 300" in LivyBatch(service.url, sleeper.batch_id).log()
    with pytest.raises(ValueError, match="not found"):
        LivyBatch(service.url, 10**9).state


# A script fetched by Spark, with a module (pyFiles) and a data file (files) fetched beside it.
REMOTE = '''\
import sys
from pyspark import SparkFiles
from pyspark.sql import SparkSession
from wordhelp import count_words

spark = SparkSession.builder.getOrCreate()
with open(SparkFiles.get("words.txt")) as f:
    lines = f.read().splitlines()
counts = spark.sparkContext.parallelize(lines, 2).map(count_words).sum()
print("words:", counts, "argv:", sys.argv[1:])
'''


@pytest.fixture
def web(tmp_path):
    """An HTTP server of a directory, as an artifact store would serve the scripts."""
    served = tmp_path / "web"
    served.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        _QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_remote_script_runs_with_its_py_files_and_files(service, web):
    served, url = web
    (served / "remote.py").write_text(REMOTE)
    (served / "wordhelp.py").write_text("def count_words(line):\n    return len(line.split())\n")
    (served / "words.txt").write_text("one two\nthree\nfour five six\n")

    batch = LivyBatch.create(service.url, file=f"{url}/remote.py", args=["a b"],
                             py_files=[f"{url}/wordhelp.py"], files=[f"{url}/words.txt"])

    assert batch.wait() is SessionState.SUCCESS, batch.log(size=60)
    # The whole log: Livy's default page is its last 100 lines, and Spark's shutdown may log more
    # than that after the script's own line.
    assert "words: 6 argv: ['a b']" in batch.log(from_=0, size=10000)


def test_a_batch_times_out_and_one_outlives_a_restart_of_the_service(tmp_path, scripts):
    service = Service(tmp_path / "data", max_jobs=2).start()
    try:
        slow = service.post("/batches", json={"file": scripts["sleeps"], "args": ["300"],
                                              "timeoutSeconds": 25}).json()
        survivor = service.post("/batches", json={"file": scripts["sleeps"], "args": ["20"]}).json()
        wait_for_state(service, survivor["id"], {"running"})
        deadline = time.monotonic() + 60
        while "sleeping 20" not in service.get(f"/batches/{survivor['id']}/log").json()["log"]:
            assert time.monotonic() < deadline
            time.sleep(0.25)

        service.kill()  # a crash: the script's spark-submit lives on
        service.start()

        ended = wait_for_state(service, survivor["id"], {"success", "dead", "killed"})
        assert (ended["state"], ended["reason"]) == ("success", "exit code 0")
        timed_out = wait_for_state(service, slow["id"], {"success", "dead", "killed"})
        assert (timed_out["state"], timed_out["reason"]) == ("dead", "timed out after 25 s")
    finally:
        service.stop()


def wait_for_state(service: Service, batch_id: int, states: set[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        batch = requests.get(f"{service.url}/batches/{batch_id}", timeout=30).json()
        if batch["state"] in states:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {batch['state']} after {timeout} s: {batch}")
        time.sleep(0.25)
