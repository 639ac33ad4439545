"""The job service: submit, schedule, follow, cancel, time out, and read a job's files.

Most tests run the real app and JobService in this process, over HTTP on 127.0.0.1 and a
temporary SQLite file, with a stand-in spark-submit (tests/support/spark_submit_standin.py)
that prints and writes what Spark and sparkrunner's driver do: a job takes a second, not a JVM's
ten. The e2e test at the end runs real jobs through a real `sparkrunner serve`.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from conftest import make_job
from service_helpers import InProcessService, Service, pids_in_group, sleepy_job, stored
from support.spark_submit_standin import calls, child_pid, standin_job

TERMINAL = {"COMPLETE", "ERROR", "CANCELLED"}

FAILING_SOURCE = '''\
# modelop.score
def score(inputs, outputs, attachments):
    raise ValueError("row 3 has no age")
'''


@pytest.fixture(scope="module")
def service(tmp_path_factory, standin_spark_home):
    svc = InProcessService(tmp_path_factory.mktemp("svc") / "data", max_jobs=2,
                           spark_home=standin_spark_home).start()
    yield svc
    svc.stop()


def test_an_invalid_job_is_refused_with_every_problem_and_nothing_is_stored(service):
    before = service.get("/jobs").json()["total"]
    dirs_before = sorted(os.listdir(service.data_dir / "jobs"))
    doc = make_job("def nothing_tagged(): pass\n", jobType="MODEL_BATCH_JOB",
                   jobParameters={"--master": "yarn"}, inputData=[{"assetType": "EXTERNAL_FILE"}])
    response = service.post("/jobs", json=doc)
    assert response.status_code == 422
    paths = {e["path"] for e in response.json()["errors"]}
    assert paths == {"$.inputData[0]"}  # schema errors come first, all of them
    doc["inputData"] = []
    response = service.post("/jobs", json=doc)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert "names no score function" in error["message"]
    response = service.post("/jobs", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in response.json()["errors"][0]["message"]
    assert service.get("/jobs").json()["total"] == before
    assert sorted(os.listdir(service.data_dir / "jobs")) == dirs_before


def test_a_job_runs_to_complete_with_its_result_and_a_pageable_log(service, standin_spark_home):
    response = service.post("/jobs", json=standin_job(seconds=0.2, lines=60, result={"sum": 4950},
                                                      createdBy="alice"))
    assert response.status_code == 201
    job = response.json()
    assert response.headers["Location"] == f"/jobs/{job['id']}"
    assert job["jobStatus"] in ("CREATED", "WAITING")
    job = service.wait_for(job["id"], TERMINAL)
    assert job["jobStatus"] == "COMPLETE", job
    assert stored(service, job["id"], "running") is not None  # it went through RUNNING
    assert job["reason"] == "exit code 0" and job["exitCode"] == 0
    assert job["result"] == {"sum": 4950}
    assert job["sparkApplicationId"].startswith("local-")
    assert job["startDate"] and job["endDate"] and job["runSeconds"] > 0
    assert any(line.startswith("sparkrunner: result: ") for line in job["logTail"])

    # spark-submit got the command line sparkrunner built, in the job's working directory.
    workdir = service.data_dir / "jobs" / job["id"]
    [call] = calls(workdir)
    argv = call["argv"]
    assert (argv[argv.index("--master") + 1], argv[argv.index("--deploy-mode") + 1]) == ("local[*]", "client")
    assert "spark.ui.enabled=false" in argv and "spark.app.name=sparkrunner-test-model" in argv
    assert argv[-1] == str(workdir / "sparkrunner_driver.py")
    assert (call["cwd"], call["env"]["SPARK_HOME"]) == (str(workdir), str(standin_spark_home))
    assert call["env"]["PYSPARK_PYTHON"] == call["env"]["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert call["pgid"] == stored(service, job["id"], "pid")  # the supervisor's own group

    log = service.get(f"/jobs/{job['id']}/log", params={"from": 0, "size": 5}).json()
    assert log["id"] == job["id"] and log["from"] == 0 and len(log["log"]) == 5
    assert log["log"][0].startswith("sparkrunner: command: ")
    total = log["total"]
    assert total > 60
    tail = service.get(f"/jobs/{job['id']}/log", params={"size": 3}).json()
    assert tail["from"] == total - 3 and len(tail["log"]) == 3
    every = []
    for start in range(0, total, 40):
        every += service.get(f"/jobs/{job['id']}/log", params={"from": start, "size": 40}).json()["log"]
    assert len(every) == total
    assert open(workdir / "driver.log").read().splitlines() == every

    listed = service.get("/jobs", params={"jobStatus": "COMPLETE", "jobType": "MODEL_BATCH_JOB"}).json()
    assert job["id"] in [j["id"] for j in listed["jobs"]]
    assert service.get("/jobs", params={"jobStatus": "RUNNING", "jobType": "MODEL_BATCH_TEST_JOB"}).json()["jobs"] == []


def test_a_failing_model_ends_in_error_with_its_reason(service):
    job = service.submit(standin_job(exit=1, error="score function 'score' raised ValueError: row 3 has no age"))
    job = service.wait_for(job["id"], TERMINAL)
    assert job["jobStatus"] == "ERROR"
    assert job["reason"] == "exit code 1: score function 'score' raised ValueError: row 3 has no age"
    assert job["exitCode"] == 1 and job["result"] is None


def test_at_most_max_concurrent_jobs_run_at_once(service):
    ids = [service.submit(standin_job(seconds=0.8))["id"] for _ in range(3)]
    most, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            active = service.get("/jobs", params={"jobStatus": ["WAITING", "RUNNING"]}).json()["total"]
            most[0] = max(most[0], active)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        jobs = [service.wait_for(i, TERMINAL, timeout=60) for i in ids]
    finally:
        stop.set()
        watcher.join()
    assert [j["jobStatus"] for j in jobs] == ["COMPLETE"] * 3
    assert most[0] == 2
    # First come, first served: the third started only after one of the first two ended.
    first_end = min(jobs[0]["endDate"], jobs[1]["endDate"])
    assert jobs[2]["startDate"] >= first_end
    assert max(jobs[0]["startDate"], jobs[1]["startDate"]) < jobs[2]["startDate"]


def test_cancel_ends_the_whole_process_group_and_is_repeatable(service):
    job = service.submit(standin_job(seconds=300, child=True))
    service.wait_for(job["id"], {"RUNNING"})
    pgid = stored(service, job["id"], "pid")
    assert child_pid(service.data_dir / "jobs" / job["id"]) in pids_in_group(pgid)
    response = service.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["cancelRequested"] is True
    job = service.wait_for(job["id"], TERMINAL, timeout=30)
    assert (job["jobStatus"], job["reason"]) == ("CANCELLED", "cancelled by user")
    assert pids_in_group(pgid) == []
    again = service.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["jobStatus"] == "CANCELLED"
    assert again.json()["endDate"] == job["endDate"]


def test_a_run_that_ignores_sigterm_is_killed_after_the_grace_period(service, monkeypatch):
    from sparkrunner import launcher

    monkeypatch.setattr(launcher, "TERM_GRACE_SECONDS", 0.5)
    job = service.submit(standin_job(seconds=300, child=True, on_term="ignore"))
    service.wait_for(job["id"], {"RUNNING"})
    pgid = stored(service, job["id"], "pid")
    child = child_pid(service.data_dir / "jobs" / job["id"])
    service.post(f"/jobs/{job['id']}/cancel")
    job = service.wait_for(job["id"], TERMINAL, timeout=30)
    assert (job["jobStatus"], job["reason"], job["signal"]) == ("CANCELLED", "cancelled by user", 9)
    assert child not in pids_in_group(pgid) and pids_in_group(pgid) == []


def test_a_queued_job_cancels_without_starting_and_a_finished_job_stays(service):
    blockers = [service.submit(standin_job(seconds=300))["id"] for _ in range(2)]
    for job_id in blockers:
        service.wait_for(job_id, {"WAITING", "RUNNING"})
    queued = service.submit(standin_job())
    assert service.job(queued["id"])["jobStatus"] == "CREATED"  # both slots are taken
    cancelled = service.post(f"/jobs/{queued['id']}/cancel").json()
    assert (cancelled["jobStatus"], cancelled["reason"], cancelled["startDate"]) == ("CANCELLED", "cancelled by user", None)
    for job_id in blockers:
        service.post(f"/jobs/{job_id}/cancel")
    for job_id in blockers:
        assert service.wait_for(job_id, TERMINAL)["jobStatus"] == "CANCELLED"
    # Slots are free, and the queue is served oldest first: once a later job has run, the
    # scheduler has been past the cancelled one.
    later = service.submit(standin_job())
    assert service.wait_for(later["id"], TERMINAL)["jobStatus"] == "COMPLETE"
    assert service.job(queued["id"])["startDate"] is None
    assert not (service.data_dir / "jobs" / queued["id"]).exists()


def test_idempotent_submit_returns_the_same_job(service):
    key = "dag=score/task=s/run=2026-11-23/map=-1"
    first = service.post("/jobs", json=standin_job(), headers={"Idempotency-Key": key})
    second = service.post("/jobs", json=standin_job(exit=3), headers={"Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    listed = service.get("/jobs", params={"size": 1000}).json()["jobs"]
    assert [j["id"] for j in listed].count(first.json()["id"]) == 1
    assert service.wait_for(first.json()["id"], TERMINAL)["jobStatus"] == "COMPLETE"


def test_a_job_past_its_timeout_ends_in_error(service):
    job = service.submit(standin_job(seconds=300, child=True, timeoutSeconds=1))
    job = service.wait_for(job["id"], TERMINAL, timeout=30)
    assert (job["jobStatus"], job["reason"]) == ("ERROR", "timed out after 1 s")
    assert pids_in_group(stored(service, job["id"], "pid")) == []


def test_unknown_job_is_404_and_the_openapi_document_has_the_job_schema(service):
    assert service.get("/jobs/nope").status_code == 404
    assert service.get("/jobs/nope/log").status_code == 404
    assert service.post("/jobs/nope/cancel").status_code == 404
    spec = service.get("/openapi.json").json()
    assert "ModelBatchJob" in spec["components"]["schemas"]
    assert "sourceCodeAsset" in spec["components"]["schemas"]
    assert set(spec["paths"]) >= {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/log", "/jobs/{job_id}/cancel", "/healthz"}


# --- a job's files ---------------------------------------------------------------------------

def bytes_read_by(call) -> int:
    """How many bytes this thread read (read(2) and the like) while ``call`` ran."""
    def rchar() -> int:
        with open("/proc/thread-self/io") as f:
            return int(next(line for line in f if line.startswith("rchar:")).split()[1])

    before = rchar()
    call()
    return rchar() - before


def test_the_log_tail_reads_only_the_end(tmp_path):
    from sparkrunner.service.reader import tail_lines

    log = tmp_path / "driver.log"
    with open(log, "wb") as f:
        f.truncate(64 << 20)  # 64 MiB of hole first: reading it all would show
        f.seek(0, 2)
        f.write("".join(f"line {i}\n" for i in range(100_000)).encode())
    size = log.stat().st_size
    assert bytes_read_by(lambda: log.read_bytes()) >= size  # the measure sees a whole read
    found = []
    assert bytes_read_by(lambda: found.append(tail_lines(log, 3))) < 64 << 10
    assert found == [["line 99997", "line 99998", "line 99999"]]
    assert bytes_read_by(lambda: found.append(tail_lines(log, 3, block=5))) < 1 << 10
    assert found[1] == ["line 99997", "line 99998", "line 99999"]
    log.write_text("only\n")
    assert tail_lines(log, 20) == ["only"]
    assert tail_lines(tmp_path / "missing.log", 5) == []


def test_the_log_pager_holds_back_an_unfinished_last_line_until_the_job_ends(tmp_path):
    from sparkrunner.config import Settings
    from sparkrunner.service import JobService
    from sparkrunner.states import JobStatus

    service = JobService(Settings(data_dir=tmp_path / "data"))
    try:
        record, _ = service.store.create(id="j1", owner="", idempotency_key=None, job_type="MODEL_BATCH_JOB",
                                         name="m", document={}, timeout_seconds=None)
        workdir = service.workdir(record)
        workdir.mkdir()
        (workdir / "driver.log").write_bytes(b"line 1\nscore: 0.9")
        assert service.read_log(record, 0, 10) == (0, 1, ["line 1"])
        with open(workdir / "driver.log", "ab") as f:
            f.write(b"87 auc\rstill one line\n")
        assert service.read_log(record, 1, 10) == (1, 2, ["score: 0.987 auc\rstill one line"])
        with open(workdir / "driver.log", "ab") as f:
            f.write(b"last, unterminated")
        ended = service.store.move("j1", JobStatus.ERROR, "x")
        assert service.read_log(ended, None, 1) == (2, 3, ["last, unterminated"])
    finally:
        service.close()


def test_one_data_directory_serves_one_job_service(tmp_path):
    from sparkrunner.config import Settings
    from sparkrunner.service import JobService

    service = JobService(Settings(data_dir=tmp_path / "data"))
    try:
        # A second service on the same data directory would run every job twice.
        with pytest.raises(Exception, match="another sparkrunner service is using"):
            JobService(Settings(data_dir=tmp_path / "data"))
    finally:
        service.close()
    JobService(Settings(data_dir=tmp_path / "data")).close()  # once the first has closed, it may


# --- real Spark ------------------------------------------------------------------------------

@pytest.mark.e2e
def test_real_jobs_through_a_real_service_report_their_application_result_and_failure(tmp_path):
    """What the stand-in stands in for: the real driver's reports, through `sparkrunner serve`."""
    service = Service(tmp_path / "data", max_jobs=2).start()
    try:
        good = service.submit(sleepy_job(0))
        bad = service.submit(make_job(FAILING_SOURCE))
        good = service.wait_for(good["id"], TERMINAL)
        assert (good["jobStatus"], good["reason"], good["exitCode"]) == ("COMPLETE", "exit code 0", 0), good
        assert stored(service, good["id"], "running") is not None
        assert good["sparkApplicationId"].startswith("local-")
        assert good["result"]["sum"] == 4950
        assert any(line.startswith("sparkrunner: result: ") for line in good["logTail"])
        log = service.get(f"/jobs/{good['id']}/log", params={"from": 0, "size": 10_000}).json()
        assert log["log"][0].startswith("sparkrunner: command: ") and log["total"] == len(log["log"])
        assert open(service.data_dir / "jobs" / good["id"] / "driver.log").read().splitlines() == log["log"]
        bad = service.wait_for(bad["id"], TERMINAL)
        assert (bad["jobStatus"], bad["exitCode"]) == ("ERROR", 1)
        assert bad["reason"] == "exit code 1: score function 'score' raised ValueError: row 3 has no age"
    finally:
        service.stop()
