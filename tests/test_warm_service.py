"""Warm jobs through the service: a real warm Spark Connect server, real jobs, real cancels.

One service with warm jobs on serves most tests (its server starts once); the server's life
(death, replacement, one per user) gets services of its own.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from service_helpers import InProcessService, Service
from tests.conftest import make_job
from tests.modelop_documents import data_asset, python_job

pytestmark = pytest.mark.e2e

WARM_EXTRA = "  max_concurrent_jobs: 2\n"

THREE_LISTS = '''\
import csv
from pyspark.sql import SparkSession

# modelop.metrics
def metrics(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    df = spark.read.option("header", True).csv(inputs[0]["fileUrl"])
    df.createOrReplaceTempView("people")
    rows = spark.sql("SELECT name, CAST(age AS INT) + 1 AS next_age FROM people ORDER BY name").collect()
    with open(outputs[0]["fileUrl"], "w", newline="") as f:
        csv.writer(f).writerows([[r["name"], r["next_age"]] for r in rows])
    return {"rows": len(rows), "ansi": spark.conf.get("spark.sql.ansi.enabled")}
'''

HOSTILE = '''\
import os

# modelop.metrics
def metrics(inputs, outputs, attachments):
    here = os.getcwd()
    data_dir = os.path.dirname(os.path.dirname(here))
    verdicts = {}

    def attempt(name, action):
        try:
            action()
            verdicts[name] = "done"
        except OSError as exc:
            verdicts[name] = type(exc).__name__

    attempt("read the job store", lambda: open(os.path.join(data_dir, "jobs.db"), "rb").read(1))
    attempt("list the jobs", lambda: os.listdir(os.path.join(data_dir, "jobs")))
    attempt("write beside the jobs", lambda: open(os.path.join(data_dir, "evil"), "w"))
    attempt("write /tmp", lambda: open("/tmp/sparkrunner-warm-evil", "w"))
    attempt("write its own directory", lambda: open("mine.txt", "w").write("x"))
    ancestors, pid = [], os.getpid()
    while pid > 1:
        with open("/proc/%d/stat" % pid) as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
        ancestors.append(pid)
    for n, ancestor in enumerate(a for a in ancestors if a > 1):
        attempt("signal ancestor %d" % n, lambda a=ancestor: os.kill(a, 0))
        attempt("read the environment of ancestor %d" % n,
                lambda a=ancestor: open("/proc/%d/environ" % a, "rb").read())
    return verdicts
'''


#: A query that runs until it is stopped.
ENDLESS = '''\
from pyspark.sql import SparkSession

# modelop.metrics
def metrics(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    return spark.range(10 ** 13).selectExpr("sum(id) AS s").collect()[0]["s"]
'''

SLOW_TASKS = '''\
import time
from pyspark.sql import SparkSession

# modelop.metrics
def metrics(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()

    def slowly(batches):
        for batch in batches:
            time.sleep(0.25)
            yield batch

    return {"rows": spark.range(0, 40, 1, 40).mapInPandas(slowly, "id long").count()}
'''


def people(tmp: Path) -> Path:
    path = tmp / "people.csv"
    path.write_text("name,age\nada,36\ngrace,45\nalan,41\n")
    return path


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("warm-roots")


@pytest.fixture(scope="module")
def warm(tmp_path_factory, roots):
    """A service with warm jobs on; its warm server started ahead of the first job."""
    base = tmp_path_factory.mktemp("warm-service")
    service = Service(base / "data", warm=True, local_roots=[roots], extra=WARM_EXTRA).start()
    yield service
    service.stop()


def three_list_job(roots: Path, name: str, **fields) -> dict:
    source = roots / f"{name}-in"
    source.mkdir(exist_ok=True)
    out = roots / f"{name}-out.csv"
    return make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB",
                    inputData=[data_asset(str(people(source)))],
                    outputData=[data_asset(str(out))],
                    targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false"}}, **fields)


def test_an_eligible_job_runs_warm_and_writes_what_it_writes_cold(warm, roots):
    # The same job cold gives the same (test_warm.py compares warm and cold runs of the driver):
    # here, the service's warm path, with what this job must write.
    job = warm.submit(three_list_job(roots, "warm"))
    assert job["executionMode"] == "warm"
    assert job["executionReason"] == "eligible: runs on a warm Spark Connect server"
    done = warm.wait_for(job["id"], {"COMPLETE", "ERROR"})
    assert done["jobStatus"] == "COMPLETE", done
    assert done["result"] == {"rows": 3, "ansi": "false"}  # the job's SQL setting, in its session
    assert list(csv.reader(open(roots / "warm-out.csv"))) == [["ada", "37"], ["alan", "42"], ["grace", "46"]]
    log = warm.get(f"/jobs/{job['id']}/log", params={"size": 1000}).json()["log"]
    assert any("warm: runs on the warm Spark Connect server" in line for line in log)
    assert not any(line.startswith("sparkrunner: command:") for line in log)  # no spark-submit


def test_a_job_asking_for_cold_runs_cold_beside_the_warm_ones(warm, roots):
    job = warm.submit(three_list_job(roots, "cold", executionMode="cold"))
    assert job["executionMode"] == "cold"
    assert job["executionReason"] == "the job asks for it (executionMode 'cold')"
    done = warm.wait_for(job["id"], {"COMPLETE", "ERROR"})
    assert done["jobStatus"] == "COMPLETE", done
    assert done["result"] == {"rows": 3, "ansi": "false"}
    assert list(csv.reader(open(roots / "cold-out.csv"))) == [["ada", "37"], ["alan", "42"], ["grace", "46"]]
    log = warm.get(f"/jobs/{job['id']}/log", params={"size": 1000}).json()["log"]
    assert any(line.startswith("sparkrunner: command:") for line in log)


def test_a_modelop_scoring_document_runs_warm_and_scores_as_cold_runs_do(warm, roots):
    from test_modelop_documents import check_python_job_ran

    tmp = roots / "scoring"
    tmp.mkdir()
    job = warm.submit(python_job(tmp))
    assert job["executionMode"] == "warm"
    done = warm.wait_for(job["id"], {"COMPLETE", "ERROR"})
    assert done["jobStatus"] == "COMPLETE", done
    check_python_job_ran(tmp)  # the rows and the rejected record a cold run writes
    assert {k: done["result"][k] for k in ("recordsRead", "recordsScored", "recordsRejected")} == {
        "recordsRead": 5, "recordsScored": 4, "recordsRejected": 1}


def test_a_warm_job_that_reaches_for_the_jvm_ends_saying_to_resubmit_it_cold(warm):
    # Found only at run time: the name is built, so no parser could see it.
    source = THREE_LISTS.replace('    df = spark.read', '    getattr(spark, "spark" + "Context")\n    df = spark.read')
    doc = make_job(source, job_type="MODEL_BATCH_TEST_JOB")
    job = warm.submit(doc)
    assert job["executionMode"] == "warm"
    done = warm.wait_for(job["id"], {"COMPLETE", "ERROR"})
    assert done["jobStatus"] == "ERROR"
    assert "executionMode" in done["reason"] and "cold" in done["reason"], done["reason"]


def test_a_warm_job_is_cancelled_and_the_server_goes_on_serving(warm, roots):
    job = warm.submit(make_job(ENDLESS, job_type="MODEL_BATCH_TEST_JOB"))
    warm.wait_for(job["id"], {"RUNNING"}, timeout=60)
    cancelled = warm.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    done = warm.wait_for(job["id"], {"CANCELLED", "ERROR", "COMPLETE"}, timeout=60)
    assert done["jobStatus"] == "CANCELLED" and done["reason"] == "cancelled by user"
    after = warm.submit(three_list_job(roots, "after-cancel"))
    assert warm.wait_for(after["id"], {"COMPLETE", "ERROR"}, timeout=60)["jobStatus"] == "COMPLETE"


def test_a_warm_job_past_its_timeout_ends_as_error(warm):
    slow = make_job('''\
import time
from pyspark.sql import SparkSession

# modelop.metrics
def metrics(inputs, outputs, attachments):
    SparkSession.builder.getOrCreate().range(1).count()
    time.sleep(600)
''', job_type="MODEL_BATCH_TEST_JOB", timeoutSeconds=3)
    job = warm.submit(slow)
    assert job["executionMode"] == "warm"
    done = warm.wait_for(job["id"], {"COMPLETE", "ERROR", "CANCELLED"}, timeout=60)
    assert done["jobStatus"] == "ERROR" and done["reason"] == "timed out after 3 s"


def test_a_warm_job_reaches_only_its_own_directory(warm):
    job = warm.submit(make_job(HOSTILE, job_type="MODEL_BATCH_TEST_JOB"))
    assert job["executionMode"] == "warm"
    done = warm.wait_for(job["id"], {"COMPLETE", "ERROR"})
    assert done["jobStatus"] == "COMPLETE", done
    verdicts = done["result"]
    assert verdicts.pop("write its own directory") == "done"
    assert any(name.startswith("signal ancestor") for name in verdicts)  # the service among them
    assert verdicts == {name: "PermissionError" for name in verdicts}, verdicts
    assert not (warm.data_dir / "evil").exists()
    assert not os.path.exists("/tmp/sparkrunner-warm-evil")


def test_a_job_whose_server_dies_ends_as_error_saying_so_and_the_next_gets_a_new_server(warm, roots):
    # The module's service: this test comes last of those that use it, and leaves it a new server.
    job = warm.submit(make_job(ENDLESS, job_type="MODEL_BATCH_TEST_JOB"))
    warm.wait_for(job["id"], {"RUNNING"}, timeout=180)
    [record] = list((warm.data_dir / "warm").glob("*/server.json"))
    server_pid, _ = json.loads(record.read_text())["pids"][0]
    os.killpg(server_pid, signal.SIGKILL)
    done = warm.wait_for(job["id"], {"COMPLETE", "ERROR", "CANCELLED"}, timeout=60)
    assert done["jobStatus"] == "ERROR"
    assert done["reason"].startswith("the warm Spark Connect server exited"), done["reason"]
    assert done["reason"].endswith("while the job ran")
    after = warm.submit(three_list_job(roots, "after-death"))
    done = warm.wait_for(after["id"], {"COMPLETE", "ERROR"}, timeout=240)
    assert done["jobStatus"] == "COMPLETE" and done["executionMode"] == "warm", done
    assert server_port(warm, after["id"]) != server_port(warm, job["id"])  # a new server


def server_port(service, job_id: str) -> int:
    log = service.get(f"/jobs/{job_id}/log", params={"size": 1000}).json()["log"]
    [line] = [l for l in log if "warm: runs on the warm Spark Connect server" in l]
    return int(line.split("127.0.0.1:")[1].split(",")[0])


def test_each_user_has_a_server_of_their_own_and_a_worn_server_is_replaced(tmp_path, roots):
    tokens = {"ann": "ann-token-0123456789", "bob": "bob-token-0123456789"}
    extra = WARM_EXTRA + "  tokens:\n" + "".join(f"    {u}: {t}\n" for u, t in tokens.items())
    config = tmp_path / "sparkrunner.yaml"
    from service_helpers import write_config

    write_config(config, tmp_path / "data", warm=True, local_roots=[roots], extra=extra)
    # The Spark UI on, for the warm servers: a warm job's progress is read from its server's UI.
    config.write_text(config.read_text().replace("spark.ui.enabled: 'false'", "spark.ui.enabled: 'true'") +
                      "warm:\n  max_jobs_per_server: 2\n")
    service = InProcessService(tmp_path / "data", config=config).start()
    try:
        ports = {}
        for n, user in enumerate(["ann", "ann", "bob", "ann"]):
            service.headers = {"Authorization": f"Bearer {tokens[user]}"}
            job = service.submit(three_list_job(roots, f"user-{n}"))
            done = service.wait_for(job["id"], {"COMPLETE", "ERROR"}, timeout=240)
            assert done["jobStatus"] == "COMPLETE" and done["executionMode"] == "warm", done
            ports[n] = server_port(service, job["id"])
        assert ports[0] == ports[1]  # ann's server
        assert ports[2] != ports[0]  # bob's own
        assert ports[3] not in (ports[0], ports[2])  # ann's server ran its 2 jobs: a new one

        # Progress of a warm job: its own Spark jobs on the server it shares with its user's others.
        service.headers = {"Authorization": f"Bearer {tokens['bob']}"}
        job = service.submit(make_job(SLOW_TASKS, job_type="MODEL_BATCH_TEST_JOB"))
        readings = []
        while True:
            seen = service.job(job["id"])
            # Before its first Spark job the job is RUNNING with nothing to count yet (all zeros).
            if "progress" in seen and seen["jobStatus"] == "RUNNING" and seen["progress"]["jobs"]["total"]:
                readings.append(seen["progress"]["tasks"]["done"])
                assert seen["progress"]["tasks"]["total"] >= 40  # its 40 partitions (and a count)
                # Its own Spark jobs only: the server's application also ran bob's earlier job.
                assert seen["sparkUiUrl"], seen
                every_job = requests.get(f"{seen['sparkUiUrl']}/api/v1/applications/"
                                         f"{seen['sparkApplicationId']}/jobs", timeout=10).json()
                assert 0 < seen["progress"]["jobs"]["total"] < len(every_job)
            if seen["jobStatus"] in ("COMPLETE", "ERROR", "CANCELLED"):
                break
            time.sleep(0.2)
        assert seen["jobStatus"] == "COMPLETE" and seen["result"] == {"rows": 40}, seen
        assert len(set(readings)) >= 2, readings  # it moved while the job ran
    finally:
        service.stop()


def test_run_warm_reuses_one_local_server_across_invocations_until_stop_warm(tmp_path):
    from conftest import SPARKRUNNER
    import subprocess

    discovery = tmp_path / "discovery" / "connect-local.json"  # not the developer's own server
    discovery.parent.mkdir(mode=0o700)
    env = {**os.environ, "SPARK_LOCAL_CONNECT_DISCOVERY": str(discovery)}
    job = tmp_path / "job.json"
    job.write_text(json.dumps(make_job(THREE_LISTS.replace(
        'df = spark.read.option("header", True).csv(inputs[0]["fileUrl"])',
        'df = spark.createDataFrame([("ada", "36"), ("alan", "41")], "name string, age string")').replace(
        '    with open(outputs[0]["fileUrl"], "w", newline="") as f:\n'
        '        csv.writer(f).writerows([[r["name"], r["next_age"]] for r in rows])\n', ''),
        job_type="MODEL_BATCH_TEST_JOB")))
    server_pids = []
    try:
        for n in range(2):
            done = subprocess.run([SPARKRUNNER, "run", "--warm", "-q", "--workdir", str(tmp_path / f"run{n}"), str(job)],
                                  env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr + (tmp_path / f"run{n}" / "driver.log").read_text()[-3000:]
            assert f"in {tmp_path / f'run{n}'}, warm" in done.stderr
            assert json.loads((tmp_path / f"run{n}" / "result.json").read_text()) == {"rows": 2, "ansi": "true"}
            server_pids.append(json.loads(discovery.read_text())["pid"])
        assert server_pids[0] == server_pids[1]  # the second run found the first one's server
        os.kill(server_pids[0], 0)  # and it is still there
        stopped = subprocess.run([SPARKRUNNER, "stop-warm"], env=env, capture_output=True, text=True, timeout=60)
        assert stopped.stdout.strip() == "sparkrunner: stopped the warm Spark Connect server"
        deadline = time.monotonic() + 60
        while os.path.exists(f"/proc/{server_pids[0]}"):
            assert time.monotonic() < deadline, "the local warm server outlived stop-warm"
            time.sleep(0.1)
    finally:
        subprocess.run([SPARKRUNNER, "stop-warm"], env=env, capture_output=True, timeout=60)
