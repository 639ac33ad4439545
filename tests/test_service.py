"""The job service over real HTTP on 127.0.0.1, running real spark-submits, with a real SQLite file."""

from __future__ import annotations

import os
import threading
import time

import pytest

from conftest import make_job
from service_helpers import Service, pids_in_group, sleepy_job, stored

pytestmark = pytest.mark.e2e

FAILING_SOURCE = '''\
# modelop.score
def score(inputs, outputs, attachments):
    raise ValueError("row 3 has no age")
'''


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("svc") / "data", max_jobs=2).start()
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


def test_a_job_runs_to_complete_with_its_result_and_a_pageable_log(service):
    response = service.post("/jobs", json=sleepy_job(0, createdBy="alice"))
    assert response.status_code == 201
    job = response.json()
    assert response.headers["Location"] == f"/jobs/{job['id']}"
    assert job["jobStatus"] in ("CREATED", "WAITING")
    seen = set()
    while job["jobStatus"] not in ("COMPLETE", "ERROR", "CANCELLED"):
        seen.add(job["jobStatus"])
        time.sleep(0.2)
        job = service.job(job["id"])
    assert job["jobStatus"] == "COMPLETE", job
    assert "RUNNING" in seen
    assert job["reason"] == "exit code 0" and job["exitCode"] == 0
    assert job["result"]["sum"] == 4950
    assert job["sparkApplicationId"].startswith("local-")
    assert job["startDate"] and job["endDate"] and job["runSeconds"] > 0
    assert any(line.startswith("sparkrunner: result: ") for line in job["logTail"])

    log = service.get(f"/jobs/{job['id']}/log", params={"from": 0, "size": 5}).json()
    assert log["id"] == job["id"] and log["from"] == 0 and len(log["log"]) == 5
    assert log["log"][0].startswith("sparkrunner: command: ")
    total = log["total"]
    tail = service.get(f"/jobs/{job['id']}/log", params={"size": 3}).json()
    assert tail["from"] == total - 3 and len(tail["log"]) == 3
    every = []
    for start in range(0, total, 40):
        every += service.get(f"/jobs/{job['id']}/log", params={"from": start, "size": 40}).json()["log"]
    assert len(every) == total
    assert open(service.data_dir / "jobs" / job["id"] / "driver.log").read().splitlines() == every

    listed = service.get("/jobs", params={"jobStatus": "COMPLETE", "jobType": "MODEL_BATCH_JOB"}).json()
    assert job["id"] in [j["id"] for j in listed["jobs"]]
    assert service.get("/jobs", params={"jobStatus": "RUNNING", "jobType": "MODEL_BATCH_TEST_JOB"}).json()["jobs"] == []


def test_a_failing_model_ends_in_error_with_its_reason(service):
    job = service.submit(make_job(FAILING_SOURCE))
    job = service.wait_for(job["id"], {"COMPLETE", "ERROR", "CANCELLED"})
    assert job["jobStatus"] == "ERROR"
    assert job["reason"] == "exit code 1: score function 'score' raised ValueError: row 3 has no age"
    assert job["exitCode"] == 1


def test_at_most_max_concurrent_jobs_run_at_once(service):
    ids = [service.submit(sleepy_job(4))["id"] for _ in range(3)]
    most, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            active = service.get("/jobs", params={"jobStatus": ["WAITING", "RUNNING"]}).json()["total"]
            most[0] = max(most[0], active)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        jobs = [service.wait_for(i, {"COMPLETE", "ERROR", "CANCELLED"}, timeout=240) for i in ids]
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
    job = service.submit(sleepy_job(300))
    service.wait_for(job["id"], {"RUNNING"})
    pgid = stored(service, job["id"], "pid")
    assert pids_in_group(pgid)
    response = service.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["cancelRequested"] is True
    job = service.wait_for(job["id"], {"COMPLETE", "ERROR", "CANCELLED"}, timeout=60)
    assert (job["jobStatus"], job["reason"]) == ("CANCELLED", "cancelled by user")
    assert pids_in_group(pgid) == []
    again = service.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["jobStatus"] == "CANCELLED"
    assert again.json()["endDate"] == job["endDate"]


def test_a_queued_job_cancels_without_starting_and_a_finished_job_stays(service):
    blockers = [service.submit(sleepy_job(300))["id"] for _ in range(2)]
    queued = service.submit(sleepy_job(0))
    time.sleep(1)
    assert service.job(queued["id"])["jobStatus"] == "CREATED"
    cancelled = service.post(f"/jobs/{queued['id']}/cancel").json()
    assert (cancelled["jobStatus"], cancelled["reason"], cancelled["startDate"]) == ("CANCELLED", "cancelled by user", None)
    for job_id in blockers:
        service.post(f"/jobs/{job_id}/cancel")
    for job_id in blockers:
        assert service.wait_for(job_id, {"CANCELLED", "ERROR", "COMPLETE"})["jobStatus"] == "CANCELLED"
    assert not (service.data_dir / "jobs" / queued["id"]).exists()


def test_idempotent_submit_returns_the_same_job(service):
    key = "dag=score/task=s/run=2026-11-23/map=-1"
    first = service.post("/jobs", json=sleepy_job(0), headers={"Idempotency-Key": key})
    second = service.post("/jobs", json=sleepy_job(0), headers={"Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    listed = service.get("/jobs", params={"size": 1000}).json()["jobs"]
    assert [j["id"] for j in listed].count(first.json()["id"]) == 1
    assert service.wait_for(first.json()["id"], {"COMPLETE", "ERROR"})["jobStatus"] == "COMPLETE"


def test_a_job_past_its_timeout_ends_in_error(service):
    job = service.submit(sleepy_job(300, timeoutSeconds=3))
    job = service.wait_for(job["id"], {"COMPLETE", "ERROR", "CANCELLED"}, timeout=90)
    assert (job["jobStatus"], job["reason"]) == ("ERROR", "timed out after 3 s")


def test_unknown_job_is_404_and_the_openapi_document_has_the_job_schema(service):
    assert service.get("/jobs/nope").status_code == 404
    assert service.get("/jobs/nope/log").status_code == 404
    assert service.post("/jobs/nope/cancel").status_code == 404
    spec = service.get("/openapi.json").json()
    assert "ModelBatchJob" in spec["components"]["schemas"]
    assert "sourceCodeAsset" in spec["components"]["schemas"]
    assert set(spec["paths"]) >= {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/log", "/jobs/{job_id}/cancel", "/healthz"}
