"""sparkrunner from a real Airflow 3: `airflow dags test` against a live `sparkrunner serve`.

Each DAG run gets an AIRFLOW_HOME of its own, with a copy of one SQLite metadata database migrated
once for the session (conftest's ``migrated_airflow_db``); the Titanic and failures DAGs run at the
same time (``dag_runs``). Each test asserts on what Airflow recorded (task states, tries, XComs) and
on what the service did (its jobs, their states, documents and logs). Airflow only talks to the
service, so the service runs its jobs with the stand-in spark-submit
(tests/support/spark_submit_standin.py), except in the retry test, where a real Spark job outlives
the service's crash. The Titanic jobs run on real Spark in tests/test_examples.py and, through the
service, in tests/test_distributed.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import AIRFLOW, REPO, airflow_env
from service_helpers import Service, sleepy_job
from support.spark_submit_standin import instructions, standin_job

# Airflow writes a home directory when imported; keep this process's out of the user's.
os.environ["AIRFLOW_HOME"] = str(REPO / "build" / "airflow-test-home")
_root_handlers, _root_level = logging.root.handlers[:], logging.root.level
import airflow.sdk  # noqa: E402,F401
# Importing Airflow points the root logger at the sys.stdout of the moment, pytest's capture,
# which is closed by the time py4j logs from its finalizers at exit: undo that.
logging.root.handlers[:] = _root_handlers
logging.root.setLevel(_root_level)

from airflow.sdk.exceptions import TaskDeferralTimeout  # noqa: E402

from sparkrunner.airflow import SparkRunnerJobOperator, SparkRunnerJobTrigger  # noqa: E402

sys.path.insert(0, str(REPO / "jobs"))
from build_examples import build  # noqa: E402

pytestmark = pytest.mark.e2e

LOGICAL_DATE = "2024-01-02"
TERMINAL = {"COMPLETE", "ERROR", "CANCELLED"}

# Fails in model code, with a message carrying a templated output URL and an untemplated marker.
FAILING_SOURCE = '''\
# modelop.score
def score(inputs, outputs, attachments):
    # "{{ kept }}" is model code: Airflow must hand it over untouched.
    raise ValueError("no rows for " + outputs[0]["fileUrl"] + " {{ kept }}")
'''

FAILURES_DAG = '''\
from datetime import timedelta

from airflow.sdk import DAG

from sparkrunner.airflow import SparkRunnerJobOperator

FAILING_JOB = {failing_job!r}

with DAG("sparkrunner_failures", schedule=None, default_args={{"retries": 0}}):
    SparkRunnerJobOperator(task_id="fails", job=FAILING_JOB, poll_interval=1)
    # sleeps.json lies beside this file: it is found like any template file.
    SparkRunnerJobOperator(task_id="times_out_deferred", job="sleeps.json", deferrable=True,
                           poll_interval=1, execution_timeout=timedelta(seconds=12))
    SparkRunnerJobOperator(task_id="times_out_polling", job="sleeps.json", poll_interval=1,
                           execution_timeout=timedelta(seconds=12))
'''

RETRY_DAG = '''\
from datetime import timedelta

from airflow.sdk import DAG

from sparkrunner.airflow import SparkRunnerJobOperator

with DAG("sparkrunner_retry", schedule=None):
    SparkRunnerJobOperator(task_id="sleeps", job="sleeps.json", poll_interval=1, max_failed_polls=2,
                           retries=3, retry_delay=timedelta(seconds=5))
'''


def connection(service: Service) -> str:
    return json.dumps({"conn_type": "sparkrunner", "host": "127.0.0.1", "port": service.port})


@pytest.fixture(scope="module")
def service(tmp_path_factory, standin_spark_home):
    svc = Service(tmp_path_factory.mktemp("svc") / "data", max_jobs=2, spark_home=standin_spark_home).start()
    yield svc
    svc.stop()


class Airflow:
    """An AIRFLOW_HOME whose DAGs run with `airflow dags test` against one sparkrunner service."""

    def __init__(self, home: Path, migrated_db: Path, service: Service, **env: str):
        self.home = home
        (home / "dags").mkdir(parents=True)
        shutil.copy(migrated_db, home / "airflow.db")
        self.env = airflow_env(home, AIRFLOW_CONN_SPARKRUNNER_DEFAULT=connection(service), **env)
        self.output = home / "dags-test.log"
        self.process: subprocess.Popen | None = None

    def add(self, name: str, text: str) -> Path:
        path = self.home / "dags" / name
        path.write_text(text)
        return path

    def start(self, dag_id: str) -> subprocess.Popen:
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen([AIRFLOW, "dags", "test", dag_id, LOGICAL_DATE],
                                            env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self.process

    def finish(self, timeout: float = 400) -> tuple[int, str]:
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"airflow dags test ran over {timeout} s:\n{self.log()[-5000:]}")
        return returncode, self.log()

    def dags_test(self, dag_id: str, timeout: float = 400) -> tuple[int, str]:
        self.start(dag_id)
        return self.finish(timeout)

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def query(self, sql: str, *args) -> list[tuple]:
        with sqlite3.connect(self.home / "airflow.db", timeout=30) as db:
            return db.execute(sql, args).fetchall()

    def tasks(self, dag_id: str) -> dict[str, tuple[str, int]]:
        """{task_id: (state, try_number)} of the DAG's one run."""
        rows = self.query("SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ?", dag_id)
        return {task: (state, tries) for task, state, tries in rows}

    def xcom(self, dag_id: str, task_id: str, key: str = "return_value"):
        rows = self.query("SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ?",
                          dag_id, task_id, key)
        assert rows, f"no XCom {key!r} from {dag_id}.{task_id}"
        return json.loads(rows[0][0])


#: What each Titanic job reports (the real ones report the same, see tests/test_examples.py).
TITANIC_RESULTS = {"train": {"trainingRows": 800}, "score": {"scoredRows": 300},
                   "metrics": {"rows": 300, "accuracy": 0.81, "auc": 0.87}}


def with_standin(job: Path, **told) -> dict:
    """The job file's document, rewritten to be run by the stand-in as ``told``."""
    doc = json.loads(job.read_text())
    doc["model"]["storedModel"]["modelAssets"].append(instructions(**told))
    job.write_text(json.dumps(doc))
    return doc


@dataclass
class Ran:
    """One ended `airflow dags test` run: its Airflow home, exit code and output, and what the
    run was given (``given``)."""

    airflow: Airflow
    returncode: int = -1
    log: str = ""
    given: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def dag_runs(service, migrated_airflow_db, tmp_path_factory) -> dict[str, Ran]:
    """The Titanic DAG and the failures DAG, run at the same time against the module's service.
    `airflow dags test` runs one task after another, mostly waiting on its jobs, so two runs
    overlap well; each has an Airflow home of its own. Both have ended when a test reads them."""
    runs = {"titanic_sparkrunner": titanic_dag(tmp_path_factory.mktemp("titanic-dag"), service, migrated_airflow_db),
            "sparkrunner_failures": failures_dag(tmp_path_factory.mktemp("failures-dag"), service,
                                                 migrated_airflow_db)}
    for dag_id, ran in runs.items():
        ran.airflow.start(dag_id)
    try:
        for ran in runs.values():
            ran.returncode, ran.log = ran.airflow.finish()
    finally:
        for ran in runs.values():
            if ran.airflow.process.poll() is None:
                ran.airflow.process.kill()
                ran.airflow.process.wait()
    return runs


def titanic_dag(tmp_path: Path, service: Service, migrated_db: Path) -> Ran:
    """The example DAG, over the example's jobs told to run under the stand-in."""
    jobs = build(tmp_path / "example")
    sent = {role: with_standin(job, start_seconds=1, seconds=1, lines=1200, result=TITANIC_RESULTS[role])
            for role, job in jobs.items()}
    airflow = Airflow(tmp_path / "airflow", migrated_db, service,
                      SPARKRUNNER_EXAMPLES_DIR=str(tmp_path / "example"))
    airflow.add("titanic_dag.py", (REPO / "jobs" / "dags" / "titanic_dag.py").read_text())
    return Ran(airflow, given={"jobs": jobs, "sent": sent})


def failures_dag(tmp_path: Path, service: Service, migrated_db: Path) -> Ran:
    """FAILURES_DAG: a job failing in model code, and a job outliving its task's execution_timeout,
    deferred and polling."""
    out = tmp_path / "out"
    failing = standin_job(exit=1, error="score function 'score' raised ValueError: no rows", source=FAILING_SOURCE,
                          outputData=[{"assetType": "EXTERNAL_FILE", "name": "out", "filename": "out",
                                       "fileUrl": out.as_uri() + "/{{ ds }}", "fileFormat": "CSV"}])
    airflow = Airflow(tmp_path / "airflow", migrated_db, service)
    airflow.add("failures_dag.py", FAILURES_DAG.format(failing_job=failing))
    airflow.add("sleeps.json", json.dumps(standin_job(seconds=300)))
    return Ran(airflow, given={"out": out})


def test_the_titanic_dag_trains_scores_and_evaluates(service, dag_runs):
    ran = dag_runs["titanic_sparkrunner"]
    airflow, returncode, log = ran.airflow, ran.returncode, ran.log
    jobs, sent = ran.given["jobs"], ran.given["sent"]

    assert returncode == 0, log[-5000:]
    assert airflow.tasks("titanic_sparkrunner") == {
        "train": ("success", 1), "score": ("success", 1), "metrics": ("success", 1)}
    views = {role: service.job(airflow.xcom("titanic_sparkrunner", role, "job_id")) for role in jobs}
    assert {view["jobStatus"] for view in views.values()} == {"COMPLETE"}
    assert len({view["id"] for view in views.values()}) == 3
    for role, view in views.items():
        assert airflow.xcom("titanic_sparkrunner", role) == view["result"] == TITANIC_RESULTS[role]
        # Each task sent its job file's document as it is, and in order.
        stored = json.loads((service.data_dir / "jobs" / view["id"] / "job.json").read_text())
        assert stored == sent[role]
    assert views["train"]["endDate"] <= views["score"]["startDate"]
    assert views["score"]["endDate"] <= views["metrics"]["startDate"]
    # Each job's driver log was copied into its task's log, page by page, to the last line.
    pages = [service.get(f"/jobs/{view['id']}/log", params={"size": 1}).json() for view in views.values()]
    assert min(page["total"] for page in pages) > 1000  # more than one page
    assert log.count("] [job] ") == sum(page["total"] for page in pages)
    for page in pages:
        assert f"[job] {page['log'][-1]}" in log
    assert "Deferring: job" in log  # the example waits in the triggerer


def test_failures_fail_the_task_and_a_timed_out_task_cancels_its_job(service, dag_runs):
    ran = dag_runs["sparkrunner_failures"]
    airflow, returncode, log, out = ran.airflow, ran.returncode, ran.log, ran.given["out"]

    assert returncode != 0 and "DagRun failed" in log
    assert airflow.tasks("sparkrunner_failures") == {
        "fails": ("failed", 1), "times_out_deferred": ("failed", 1), "times_out_polling": ("failed", 1)}

    # The model's exception is the job's end reason, and the task fails with it.
    failed = service.job(airflow.xcom("sparkrunner_failures", "fails", "job_id"))
    assert failed["jobStatus"] == "ERROR"
    assert failed["reason"] == "exit code 1: score function 'score' raised ValueError: no rows"
    assert f"sparkrunner job {failed['id']} ended ERROR: {failed['reason']}" in log
    # The job's URL was templated; its model code, with braces of its own, was not.
    sent = json.loads((service.data_dir / "jobs" / failed["id"] / "job.json").read_text())
    assert sent["outputData"][0]["fileUrl"] == out.as_uri() + f"/{LOGICAL_DATE}"
    assert sent["model"]["storedModel"]["modelAssets"][0]["sourceCode"] == FAILING_SOURCE
    assert "{{ kept }}" in (service.data_dir / "jobs" / failed["id"] / "model.py").read_text()

    # A task whose execution_timeout passes cancels its job, deferred or not.
    for task in ("times_out_deferred", "times_out_polling"):
        job_id = airflow.xcom("sparkrunner_failures", task, "job_id")
        cancelled = service.wait_for(job_id, TERMINAL, timeout=60)
        assert (cancelled["jobStatus"], cancelled["reason"]) == ("CANCELLED", "cancelled by user"), task
    deferred = airflow.xcom("sparkrunner_failures", "times_out_deferred", "job_id")
    assert f"AirflowTaskTimeout: job {deferred}: the task's execution_timeout passed while the job was" in log
    polled = airflow.xcom("sparkrunner_failures", "times_out_polling", "job_id")
    assert f"Cancelled job {polled}: the task was killed or timed out." in log
    assert service.get("/jobs", params={"jobStatus": ["CREATED", "WAITING", "RUNNING"]}).json()["total"] == 0


def test_a_retry_reconnects_to_the_job_of_the_failed_try(migrated_airflow_db, tmp_path):
    """With a real Spark job: it outlives the service's crash, and the retried task finds it."""
    service = Service(tmp_path / "data", max_jobs=1).start()
    airflow = Airflow(tmp_path / "airflow", migrated_airflow_db, service)
    airflow.add("retry_dag.py", RETRY_DAG)
    airflow.add("sleeps.json", json.dumps(sleepy_job(20)))
    try:
        airflow.start("sparkrunner_retry")

        job = wait_until(lambda: first(service.get("/jobs", params={"jobStatus": "RUNNING"}).json()["jobs"]),
                         "the job to run", airflow)
        service.kill()  # a crash: the job's spark-submit lives on, the first try loses the service
        wait_until(lambda: airflow.tasks("sparkrunner_retry").get("sleeps", ("", 0))[0] == "up_for_retry",
                   "the first try to fail", airflow)
        service.start()
        returncode, log = airflow.finish()

        assert returncode == 0, log[-5000:]
        state, tries = airflow.tasks("sparkrunner_retry")["sleeps"]
        assert state == "success" and tries >= 2
        assert "failures in a row tolerated" in log
        listed = service.get("/jobs").json()
        assert listed["total"] == 1, listed  # the retry found the first try's job: nothing resubmitted
        view = service.job(job["id"])
        assert view["jobStatus"] == "COMPLETE"
        assert airflow.xcom("sparkrunner_retry", "sleeps", "job_id") == job["id"]
        assert airflow.xcom("sparkrunner_retry", "sleeps") == view["result"]
        assert view["result"]["sum"] == 4950
    finally:
        if airflow.process and airflow.process.poll() is None:
            airflow.process.kill()
        service.stop()


def test_a_deferred_task_stopped_by_airflow_cancels_its_job(service, monkeypatch):
    """The two ways Airflow 3 ends a deferred task without the trigger firing: a user marks it
    failed or succeeded or clears it (the triggerer calls the trigger's on_kill), or the scheduler
    times the deferral out (the task resumes straight into a failure)."""
    monkeypatch.setenv("AIRFLOW_CONN_SPARKRUNNER_DEFAULT", connection(service))
    by_user, by_timeout = (service.submit(standin_job(seconds=300))["id"] for _ in range(2))

    asyncio.run(SparkRunnerJobTrigger(by_user).on_kill())

    operator = SparkRunnerJobOperator(task_id="sleeps", job={}, deferrable=True)
    with pytest.raises(TaskDeferralTimeout):
        operator.resume_execution("__fail__", {"error": "Trigger timeout"},
                                  {"ti": PushedJobId(by_timeout)})

    for job_id in (by_user, by_timeout):
        view = service.wait_for(job_id, TERMINAL, timeout=60)
        assert (view["jobStatus"], view["reason"]) == ("CANCELLED", "cancelled by user")


class PushedJobId:
    """Stands in for the task instance, whose XComs are all resume_execution reads."""

    def __init__(self, job_id: str):
        self.job_id = job_id

    def xcom_pull(self, task_ids: str, key: str):
        assert (task_ids, key) == ("sleeps", "job_id")
        return self.job_id


def first(items: list):
    return items[0] if items else None


def wait_until(probe, what: str, airflow: Airflow, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        if airflow.process.poll() is not None:
            raise AssertionError(f"airflow dags test ended while waiting for {what}:\n{airflow.log()[-5000:]}")
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}:\n{airflow.log()[-5000:]}")
