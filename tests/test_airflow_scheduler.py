"""A deferred task timed out by a real Airflow scheduler cancels its sparkrunner job.

Airflow 3.3 does not apply execution_timeout to a task that defers: the operator gives its
remaining time to ``defer(timeout=…)`` instead. When that passes the scheduler fails the deferral on
its own: the trigger is dropped without its on_kill() and the task resumes straight into
TaskDeferralTimeout. No triggerer runs here, so that resume is the only thing that can cancel the
job. The scheduler, DAG processor and API server (the workers' execution API) are real processes;
the service's job runs under the stand-in spark-submit (Airflow sees only the service).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import AIRFLOW
from service_helpers import Service, free_port
from support.spark_submit_standin import standin_job

pytestmark = pytest.mark.e2e


DAG = '''\
from datetime import datetime, timedelta

from airflow.sdk import DAG

from sparkrunner.airflow import SparkRunnerJobOperator

with DAG("sparkrunner_timeout", schedule=None, start_date=datetime(2024, 1, 1),
         is_paused_upon_creation=False):
    SparkRunnerJobOperator(task_id="sleeps", job="sleeps.json", deferrable=True, poll_interval=2,
                           retries=0, execution_timeout=timedelta(seconds=8))
'''


class Processes:
    """Airflow commands, each in a process group of its own, stopped together."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.started = env, logs, []

    def start(self, *args: str) -> None:
        log = open(self.logs / f"{args[0]}.log", "wb")
        self.started.append(subprocess.Popen([AIRFLOW, *args], env=self.env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True))

    def run(self, *args: str) -> str:
        done = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    def stop(self) -> None:
        for process in self.started:
            with_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.started:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            with_group(process, signal.SIGKILL)  # what SIGTERM left behind: executor workers
            process.wait()


def with_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def test_a_deferral_timed_out_by_the_scheduler_cancels_the_job(tmp_path, migrated_airflow_db, standin_spark_home):
    service = Service(tmp_path / "data", max_jobs=1, spark_home=standin_spark_home).start()
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(migrated_airflow_db, home / "airflow.db")
    (home / "dags" / "timeout_dag.py").write_text(DAG)
    (home / "dags" / "sleeps.json").write_text(json.dumps(standin_job(seconds=300)))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"), AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL="2",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        # One secret for every process: each would otherwise write its own into a new airflow.cfg
        # (the copied database comes without one), and the API server would refuse the workers.
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
        AIRFLOW_CONN_SPARKRUNNER_DEFAULT=json.dumps(
            {"conn_type": "sparkrunner", "host": "127.0.0.1", "port": service.port}))
    airflow = Processes(env, tmp_path)
    try:
        airflow.start("api-server", "--port", str(port))
        airflow.start("dag-processor")
        airflow.start("scheduler")
        wait_for(home, "SELECT 1 FROM dag WHERE dag_id = 'sparkrunner_timeout'", "the DAG to be parsed")
        airflow.run("dags", "trigger", "sparkrunner_timeout")

        wait_for(home, "SELECT 1 FROM task_instance WHERE task_id = 'sleeps' AND state = 'failed'",
                 "the task to fail")

        [job] = service.get("/jobs").json()["jobs"]
        job = service.wait_for(job["id"], {"COMPLETE", "ERROR", "CANCELLED"}, timeout=60)
        assert (job["jobStatus"], job["reason"]) == ("CANCELLED", "cancelled by user")
        [task_log] = (home / "logs").rglob("task_id=sleeps/attempt=1.log")
        events = [json.loads(line).get("event", "") for line in task_log.read_text().splitlines()
                  if line.startswith("{")]
        assert "Deferring: job %s is followed in the triggerer." % job["id"] in events
        assert "Cancelled job %s: Airflow timed the deferred task out." % job["id"] in events
        assert "TaskDeferralTimeout" in task_log.read_text()
    finally:
        airflow.stop()
        service.stop()


def wait_for(home: Path, sql: str, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(home / "airflow.db", timeout=30) as db:
                if db.execute(sql).fetchone():
                    return
        except sqlite3.OperationalError:
            pass  # not migrated yet, or locked for a moment
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; see the *.log files beside {home}")
