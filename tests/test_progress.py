"""A running job's progress: summed from a Spark UI's REST answers (a warm job's by its session's
tags), and shown in GET /jobs/{id} by the in-process service, whose stand-in spark-submit serves
a Spark UI of its own (no JVM)."""

from __future__ import annotations

import time

import pytest

from sparkrunner.progress import Counts, Progress, summarise
from service_helpers import InProcessService
from support.spark_submit_standin import standin_job, ui_jobs_at

SESSION = "0c6f9a52-3d4e-4c1b-9f0a-7b2e8d1c5a43"


def test_summarise_counts_jobs_stages_and_tasks():
    jobs, stages = ui_jobs_at(4, 0.55)  # 22 of 40 tasks: jobs 0 and 1 done, job 2 running
    progress = summarise(jobs, stages, now=1.0)
    assert progress.jobs == Counts(done=2, active=1, failed=0, total=4)
    assert progress.stages == Counts(done=2, active=1, failed=0, total=4)
    assert progress.tasks == Counts(done=22, active=1, failed=0, total=40)
    assert progress.percent == 55.0
    assert progress.as_dict() == {"jobs": {"done": 2, "active": 1, "failed": 0, "total": 4},
                                  "stages": {"done": 2, "active": 1, "failed": 0, "total": 4},
                                  "tasks": {"done": 22, "active": 1, "failed": 0, "total": 40},
                                  "percent": 55.0, "updated": 1.0}


def test_failed_jobs_and_skipped_tasks():
    jobs = [{"status": "FAILED", "numTasks": 8, "numCompletedTasks": 3, "numFailedTasks": 5, "stageIds": [0]},
            {"status": "SUCCEEDED", "numTasks": 4, "numCompletedTasks": 2, "numSkippedTasks": 2, "stageIds": [1]}]
    stages = [{"stageId": 0, "status": "FAILED"}, {"stageId": 1, "status": "COMPLETE"}]
    progress = summarise(jobs, stages)
    assert progress.jobs == Counts(done=1, active=0, failed=1, total=2)
    assert progress.stages.failed == 1
    assert progress.tasks == Counts(done=7, active=0, failed=5, total=12)


def test_no_spark_job_yet_is_zero_percent():
    assert summarise([], []).percent == 0.0


def test_a_warm_job_counts_only_its_sessions_jobs():
    """Spark Connect tags a session's Spark jobs; the other sessions' jobs on the same server
    (another job of the same user) are not this job's."""
    tag = f"SparkConnect_OperationTag_User_alice_Session_{SESSION}_Operation_9d2c"
    other = "SparkConnect_OperationTag_User_alice_Session_1111aaaa-0000-4000-8000-000000000000_Operation_77"
    jobs = [{"jobId": 1, "status": "RUNNING", "numTasks": 10, "numCompletedTasks": 4, "stageIds": [3, 4],
             "jobTags": [f"SparkConnect_SessionTag_User_alice_Session_{SESSION}", tag]},
            {"jobId": 0, "status": "SUCCEEDED", "numTasks": 50, "numCompletedTasks": 50, "stageIds": [1, 2],
             "jobTags": [other]}]
    stages = [{"stageId": s, "status": st} for s, st in ((4, "ACTIVE"), (3, "COMPLETE"), (2, "COMPLETE"), (1, "COMPLETE"))]
    progress = summarise(jobs, stages, SESSION)
    assert progress.jobs == Counts(done=0, active=1, failed=0, total=1)
    assert progress.stages == Counts(done=1, active=1, failed=0, total=2)
    assert progress.tasks.total == 10 and progress.percent == 40.0


@pytest.fixture
def service(tmp_path, standin_spark_home):
    svc = InProcessService(tmp_path / "data", spark_home=standin_spark_home).start()
    yield svc
    svc.stop()


def test_progress_moves_while_a_job_runs_and_is_absent_when_unknown(service):
    job = service.submit(standin_job(seconds=5, ui_jobs=4))
    no_ui = service.submit(standin_job(seconds=1))
    service.wait_for(job["id"], {"RUNNING"}, timeout=30)
    seen: list[dict] = []
    while (view := service.job(job["id"]))["jobStatus"] == "RUNNING":
        if "progress" in view:
            seen.append(view["progress"])
        time.sleep(0.25)
    assert len(seen) >= 3, seen
    percents = [p["percent"] for p in seen]
    assert percents == sorted(percents) and percents[-1] > percents[0], percents
    assert all(p["jobs"]["total"] == 4 and p["tasks"]["total"] == 40 for p in seen)
    assert seen[-1]["updated"].endswith("Z")
    # Readings are never more than 2 s old while the job runs.
    stamps = {p["updated"] for p in seen}
    assert len(stamps) >= 3
    ended = service.wait_for(no_ui["id"], {"COMPLETE"}, timeout=30)
    assert "progress" not in ended  # its driver reported no UI: unknown, so absent
