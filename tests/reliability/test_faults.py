"""Faults: afterwards no job is lost, none is stuck, and every terminal state says why.

Each test runs a real `sparkrunner serve`, breaks something the way it breaks in production
(SIGKILL, a crash, a damaged file, a full disk, a cluster without workers), and checks what the
service says and keeps. Where the break is the service's or a process's, jobs run under the
stand-in spark-submit (tests/support/spark_submit_standin.py), whose process group the service
treats as spark-submit's; a cluster without workers and a cancel while the JVM starts need real
Spark (e2e).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import uuid

import pytest
import requests

from conftest import make_job
from service_helpers import Service, free_port, pids_in_group, sleepy_job, stored
from support.spark_submit_standin import child_pid, standin_job

TERMINAL = {"COMPLETE", "ERROR", "CANCELLED"}


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def assert_nothing_unfinished(service: Service) -> None:
    jobs = service.get("/jobs", params={"size": 1000}).json()["jobs"]
    assert [j for j in jobs if j["jobStatus"] not in TERMINAL] == []
    assert all(j["reason"] for j in jobs), [j for j in jobs if not j["reason"]]


def test_spark_submit_killed_with_sigkill_ends_in_error(tmp_path, standin_spark_home):
    service = Service(tmp_path / "data", spark_home=standin_spark_home).start()
    try:
        job = service.submit(standin_job(seconds=60, child=True))
        service.wait_for(job["id"], {"RUNNING"})
        pgid = stored(service, job["id"], "pid")
        child = child_pid(service.data_dir / "jobs" / job["id"])
        # spark-submit is the supervisor's only child: kill it alone, as the OOM killer would.
        [submit] = open(f"/proc/{pgid}/task/{pgid}/children").read().split()
        assert "bin/spark-submit" in cmdline(int(submit)) and child in pids_in_group(pgid)
        os.kill(int(submit), signal.SIGKILL)
        job = service.wait_for(job["id"], TERMINAL, timeout=30)
        assert (job["jobStatus"], job["reason"], job["signal"]) == ("ERROR", "killed by signal 9", 9)
        deadline = time.monotonic() + 10
        while pids_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids_in_group(pgid) == []  # what it left in its group (the child) went with it
    finally:
        service.stop()


def test_a_killed_service_restarts_and_leaves_no_job_stuck(tmp_path, standin_spark_home):
    """Killed while one job runs and another is stored but not launched; later, killed again
    while the job's whole process group dies too."""
    service = Service(tmp_path / "data", max_jobs=1, spark_home=standin_spark_home).start()
    try:
        survivor = service.submit(standin_job(seconds=4, result={"sum": 4950}))
        queued = service.submit(standin_job(result={"sum": 4950}))
        service.wait_for(survivor["id"], {"RUNNING"})
        assert service.job(queued["id"])["jobStatus"] == "CREATED"
        pgid = stored(service, survivor["id"], "pid")
        service.kill()
        assert pids_in_group(pgid), "spark-submit must outlive the service"

        service.start()
        survivor = service.wait_for(survivor["id"], TERMINAL, timeout=60)
        assert survivor["jobStatus"] == "COMPLETE", survivor
        assert survivor["result"]["sum"] == 4950
        queued = service.wait_for(queued["id"], TERMINAL, timeout=60)
        assert queued["jobStatus"] == "COMPLETE"

        victim = service.submit(standin_job(seconds=300, child=True))
        service.wait_for(victim["id"], {"RUNNING"})
        pgid = stored(service, victim["id"], "pid")
        service.kill()
        os.killpg(pgid, signal.SIGKILL)
        service.start()
        victim = service.wait_for(victim["id"], TERMINAL, timeout=30)
        assert (victim["jobStatus"], victim["reason"]) == (
            "ERROR", "lost: the service restarted and the job's process was gone")
        assert_nothing_unfinished(service)
    finally:
        service.stop()


#: A job that runs (under the stand-in) and reports the result the tests look for.
GOOD_JOB = standin_job(result={"sum": 4950})


def insert(db: sqlite3.Connection, status: str, document: str, **columns) -> str:
    job_id = str(uuid.uuid4())
    values = {"id": job_id, "job_type": "MODEL_BATCH_JOB", "name": "damaged", "status": status,
              "document": document, "created": time.time(), **columns}
    db.execute(f"INSERT INTO jobs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
               list(values.values()))
    return job_id


def test_damaged_records_and_working_directories_end_in_error_and_the_rest_run(tmp_path, standin_spark_home):
    service = Service(tmp_path / "data", max_jobs=1, spark_home=standin_spark_home).start()
    service.stop()  # it made the data directory and the store; now damage them

    # A dead pid: a process we started and reaped.
    dead = subprocess.Popen(["true"])
    dead.wait()
    jobs = service.data_dir / "jobs"
    with sqlite3.connect(service.data_dir / "jobs.db") as db:
        bogus = insert(db, "BOGUS", json.dumps(GOOD_JOB))
        truncated_doc = insert(db, "CREATED", json.dumps(GOOD_JOB)[:40])
        not_a_job = insert(db, "CREATED", json.dumps({"model": "not a model"}))
        half_exit = insert(db, "RUNNING", "{}", workdir=str(jobs / "half-exit"), pid=dead.pid,
                           pid_start="1", started=time.time())
        no_workdir = insert(db, "WAITING", "{}", workdir=str(jobs / "gone"), pid=dead.pid,
                            pid_start="1", started=time.time())
        good = insert(db, "CREATED", json.dumps(GOOD_JOB))
        # The service died after saving WAITING, before spark-submit started: it must run now.
        never_started = insert(db, "WAITING", json.dumps(GOOD_JOB), workdir=str(jobs / "never"),
                               started=time.time())
        done = insert(db, "COMPLETE", json.dumps(GOOD_JOB), reason="exit code 0", ended=time.time())
    (jobs / "half-exit").mkdir()
    (jobs / "half-exit" / "exit.json").write_text('{"returnc')
    (jobs / "half-exit" / "driver.log").write_bytes(b"\xff\xfe half a line")

    service.start()
    try:
        ended = {job_id: service.wait_for(job_id, TERMINAL, timeout=120)
                 for job_id in (bogus, truncated_doc, not_a_job, half_exit, no_workdir, good, never_started)}
        reasons = {job_id: (job["jobStatus"], job["reason"]) for job_id, job in ended.items()}
        assert reasons[bogus] == ("ERROR", "corrupt record: the stored state 'BOGUS' is not a job state")
        assert reasons[truncated_doc][0] == "ERROR"
        assert reasons[truncated_doc][1].startswith("cannot start: ")
        assert reasons[not_a_job][0] == "ERROR" and "$.model" in reasons[not_a_job][1]
        lost = ("ERROR", "lost: the service restarted and the job's process was gone")
        assert reasons[half_exit] == lost and reasons[no_workdir] == lost
        assert reasons[good][0] == "COMPLETE" and ended[good]["result"]["sum"] == 4950
        assert reasons[never_started][0] == "COMPLETE" and ended[never_started]["result"]["sum"] == 4950
        assert (service.job(done)["jobStatus"], service.job(done)["reason"]) == ("COMPLETE", "exit code 0")
        log = service.get(f"/jobs/{half_exit}/log").json()
        assert log["log"] == ["\ufffd\ufffd half a line"]
        assert_nothing_unfinished(service)
    finally:
        service.stop()


def no_jvm_job() -> dict:
    """A job that ends before spark-submit (an HDFS input, checked at a namenode that is a closed
    port: see NO_NAMENODE), with a FILE asset that makes each stored record large: the disk
    fills fast and no JVM starts."""
    return make_job(inputData=[{"assetType": "EXTERNAL_FILE", "fileUrl": "hdfs:///in.csv"}],
                    assets=[{"assetType": "FILE", "filename": "pad.txt", "content": "x" * 20_000}])


#: Without a namenode an hdfs:// input is not checked, only warned about, and the job runs.
NO_NAMENODE = "hdfs:\n  namenode: http://127.0.0.1:9\n  timeout_seconds: 2\n"


def test_a_full_disk_during_submit_never_acknowledges_an_unstored_job(tmp_path, standin_spark_home):
    service = Service(tmp_path / "data", spark_home=standin_spark_home,
                      extra=NO_NAMENODE).start(file_size_limit=256 * 1024)
    acknowledged, refused = [], []
    try:
        for _ in range(200):
            response = service.post("/jobs", json=no_jvm_job())
            if response.status_code == 201:
                acknowledged.append(response.json()["id"])
            else:
                assert response.status_code in (503, 507), response.text
                refused.append(response.json()["detail"])
                if len(refused) >= 3:
                    break
        assert acknowledged and refused, "the file size limit was never reached"
        assert refused[0].startswith("the job could not be stored: ")
    finally:
        service.kill()
    service.start()  # the disk has room again
    try:
        for job_id in acknowledged:
            job = service.wait_for(job_id, TERMINAL, timeout=60)
            assert job["jobStatus"] == "ERROR", job
            assert job["reason"].startswith("before spark-submit: http://127.0.0.1:9: cannot reach WebHDFS"), job
        listed = {j["id"] for j in service.get("/jobs", params={"size": 1000}).json()["jobs"]}
        assert set(acknowledged) <= listed
        assert_nothing_unfinished(service)
    finally:
        service.stop()


@pytest.fixture
def master_without_workers(tmp_path):
    """A real standalone master that no worker ever joins."""
    from sparkrunner.command import spark_home
    from sparkrunner.config import Settings

    port, webui = free_port(), free_port()
    env = dict(os.environ, SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
               SPARK_LOG_DIR=str(tmp_path), SPARK_LOCAL_IP="127.0.0.1")
    master = subprocess.Popen(
        [str(spark_home(Settings()) / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
         "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui)],
        env=env, stdout=open(tmp_path / "master.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and master.poll() is None, (tmp_path / "master.log").read_text()
            time.sleep(0.3)
    yield f"spark://127.0.0.1:{port}"
    os.killpg(master.pid, signal.SIGKILL)
    master.wait()


@pytest.mark.e2e
def test_a_job_that_never_gets_executors_ends_at_its_timeout(tmp_path, master_without_workers):
    service = Service(tmp_path / "data")
    service.config.write_text(service.config.read_text().replace(
        "spark:\n", f"spark:\n  master: {master_without_workers}\n", 1))
    service.start()
    try:
        job = service.submit(sleepy_job(0, timeoutSeconds=25))
        job = service.wait_for(job["id"], TERMINAL, timeout=90)
        assert (job["jobStatus"], job["reason"]) == ("ERROR", "timed out after 25 s")
        log = (service.data_dir / "jobs" / job["id"] / "driver.log").read_text()
        assert "Connected to Spark cluster with app ID" in log  # it reached the master, and waited
        assert pids_in_group(stored(service, job["id"], "pid")) == []
    finally:
        service.stop()


@pytest.mark.e2e
def test_cancel_while_starting_and_cancel_twice(tmp_path):
    service = Service(tmp_path / "data").start()
    try:
        job = service.submit(sleepy_job(60))
        service.wait_for(job["id"], {"WAITING", "RUNNING"}, timeout=30)
        first = service.post(f"/jobs/{job['id']}/cancel")
        second = service.post(f"/jobs/{job['id']}/cancel")
        assert first.status_code == second.status_code == 200
        assert first.json()["cancelRequested"] and second.json()["cancelRequested"]
        job = service.wait_for(job["id"], TERMINAL, timeout=30)
        assert (job["jobStatus"], job["reason"]) == ("CANCELLED", "cancelled by user")
        assert pids_in_group(stored(service, job["id"], "pid")) == []
        third = service.post(f"/jobs/{job['id']}/cancel").json()
        assert (third["jobStatus"], third["reason"]) == ("CANCELLED", "cancelled by user")
    finally:
        service.stop()


def test_a_second_service_on_the_same_data_directory_is_refused(tmp_path, standin_spark_home):
    service = Service(tmp_path / "data", spark_home=standin_spark_home).start()
    try:
        second = Service(tmp_path / "data", config=service.config)
        with pytest.raises(RuntimeError):
            second.start()
        assert second.process.wait(10) == 2
        assert "another sparkrunner service is using" in second.log_path.read_text()
        assert requests.get(service.url + "/healthz", timeout=5).ok
    finally:
        service.stop()
