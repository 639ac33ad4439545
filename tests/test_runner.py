"""The service's runner in-process, with a stand-in spark-submit: no JVM starts here.

What the runner owns: slots (a job being prepared holds one), launch, follow, finish and cancel,
and that prepare() runs outside the lock a cancel needs. The stand-in spark-submit records that
it started, reports an application as the driver does, then sleeps as long as it is told.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import make_job
from sparkrunner.config import PolicySettings, ServiceSettings, Settings, SparkSettings, WarmSettings
from sparkrunner.errors import FieldError, HdfsCheckFailed
from sparkrunner.service import JobService
from sparkrunner.states import JobStatus

STAND_IN = '''\
import os, sys, time
with open(os.path.join(os.environ["STAND_IN_STARTS"], os.path.basename(os.getcwd())), "w") as f:
    f.write(" ".join(sys.argv))
print("sparkrunner: application: local-1 is running; Spark UI http://127.0.0.1:4040", flush=True)
time.sleep(float(os.environ.get("STAND_IN_SECONDS", "0")))
'''


@pytest.fixture
def starts(tmp_path) -> Path:
    """Where the stand-in spark-submit leaves one file per job it ran, named by the job's id."""
    path = tmp_path / "starts"
    path.mkdir()
    return path


def make_service(tmp_path, starts: Path, slots: int = 1, seconds: float = 0) -> JobService:
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    submit = home / "bin" / "spark-submit"
    submit.write_text(f"#!{sys.executable}\n{STAND_IN}")
    submit.chmod(0o755)
    spark = SparkSettings(home=str(home), env={"STAND_IN_STARTS": str(starts),
                                               "STAND_IN_SECONDS": str(seconds)})
    # Where bwrap works, the jobs run sandboxed: the stand-in may write only under a local root.
    settings = Settings(data_dir=tmp_path / "data", spark=spark, policy=PolicySettings(local_roots=(str(starts),)),
                        service=ServiceSettings(max_concurrent_jobs=slots), warm=WarmSettings(enabled=False))
    return JobService(settings)


def wait_for(predicate, timeout: float = 20.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def status_of(service: JobService, job_id: str) -> JobStatus:
    return service.get(job_id).status


def ended(service: JobService, job_id: str):
    return wait_for(lambda: service.get(job_id).status.is_terminal and service.get(job_id),
                    what=f"job {job_id} to end")


class SlowPrepare:
    """Wraps the launcher's prepare: each call waits until :meth:`release`, as a slow HDFS
    check or staging would, and says when it has begun."""

    def __init__(self, service: JobService, fail: Exception | None = None):
        self.real = service.runner.launcher.prepare
        self.fail = fail
        self.begun = threading.Event()
        self.gate = threading.Event()
        service.runner.launcher.prepare = self

    def __call__(self, job, workdir, job_id):
        run = self.real(job, workdir, job_id)  # the working directory is laid out, then it waits
        self.begun.set()
        if not self.gate.wait(30):
            raise AssertionError("prepare was never released")
        if self.fail is not None:
            raise self.fail
        return run

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def service(tmp_path, starts):
    service = make_service(tmp_path, starts).start()
    yield service
    service.close()


def test_a_job_runs_through_the_stand_in_to_complete(service, starts):
    record, created = service.submit(make_job())
    assert created
    job = ended(service, record.id)
    assert (job.status, job.reason, job.exit_code) == (JobStatus.COMPLETE, "exit code 0", 0)
    assert job.app_id == "local-1" and job.running is not None and job.pid is not None
    assert (starts / record.id).read_text().endswith("sparkrunner_driver.py")
    assert service.read_log(job, None, 5)[2][-1].startswith("sparkrunner: application: local-1")


def test_a_cancel_while_the_job_is_prepared_ends_it_and_spark_submit_never_starts(service, starts):
    slow = SlowPrepare(service)
    record, _ = service.submit(make_job())
    assert slow.begun.wait(20)
    workdir = service.jobs_dir / record.id
    assert workdir.is_dir() and status_of(service, record.id) is JobStatus.CREATED

    # The cancel answers while prepare is still busy: prepare does not hold the lock it needs.
    answered = {}
    canceller = threading.Thread(target=lambda: answered.update(job=service.cancel(record.id)))
    canceller.start()
    canceller.join(5)
    assert not canceller.is_alive(), "cancel waited for prepare"
    assert answered["job"].status is JobStatus.CANCELLED and answered["job"].reason == "cancelled by user"

    slow.release()
    wait_for(lambda: not workdir.exists(), what="the unstarted job's directory to go")
    job = service.get(record.id)
    assert (job.status, job.reason, job.started, job.pid) == (JobStatus.CANCELLED, "cancelled by user", None, None)
    assert list(starts.iterdir()) == []
    # Its slot is free again: the next job runs.
    service.runner.launcher.prepare = slow.real
    other, _ = service.submit(make_job())
    assert ended(service, other.id).status is JobStatus.COMPLETE
    assert [p.name for p in starts.iterdir()] == [other.id]


def test_reading_and_listing_answer_while_a_job_is_prepared(service):
    slow = SlowPrepare(service)
    record, _ = service.submit(make_job())
    assert slow.begun.wait(20)
    assert service.get(record.id).status is JobStatus.CREATED
    jobs, total = service.list_jobs()
    assert total == 1 and jobs[0].id == record.id
    assert service.read_log(service.get(record.id), None, 10)[1] == 0
    slow.release()
    assert ended(service, record.id).status is JobStatus.COMPLETE


def test_a_job_being_prepared_holds_its_slot(service, starts):
    slow = SlowPrepare(service)
    first, _ = service.submit(make_job())
    assert slow.begun.wait(20)
    second, _ = service.submit(make_job())
    service.runner.wake()
    time.sleep(0.5)  # the scheduler had every chance to take the second job; it must not have
    assert status_of(service, second.id) is JobStatus.CREATED
    assert not (service.jobs_dir / second.id).exists()
    slow.release()
    assert ended(service, first.id).status is JobStatus.COMPLETE
    assert ended(service, second.id).status is JobStatus.COMPLETE


def test_a_failed_hdfs_check_ends_the_job_and_frees_its_slot(service, starts):
    slow = SlowPrepare(service, fail=HdfsCheckFailed([FieldError("$.inputData[0]", "'in' does not exist")]))
    first, _ = service.submit(make_job())
    assert slow.begun.wait(20)
    second, _ = service.submit(make_job())
    service.runner.launcher.prepare = slow.real  # only the first job's check fails
    slow.release()
    job = ended(service, first.id)
    assert (job.status, job.reason) == (JobStatus.ERROR, "before spark-submit: $.inputData[0]: 'in' does not exist")
    assert ended(service, second.id).status is JobStatus.COMPLETE
    assert [p.name for p in starts.iterdir()] == [second.id]


def test_a_cancel_after_the_start_ends_the_run(tmp_path, starts):
    service = make_service(tmp_path, starts, seconds=300).start()
    try:
        record, _ = service.submit(make_job())
        wait_for(lambda: status_of(service, record.id) is JobStatus.RUNNING, what="RUNNING")
        assert service.cancel(record.id).cancel_requested
        job = ended(service, record.id)
        assert (job.status, job.reason) == (JobStatus.CANCELLED, "cancelled by user")
        assert service.cancel(record.id).ended == job.ended  # repeatable; the end stands
    finally:
        service.close()


def test_closing_during_prepare_starts_nothing_and_the_next_start_runs_the_job(tmp_path, starts):
    service = make_service(tmp_path, starts).start()
    slow = SlowPrepare(service)
    record, _ = service.submit(make_job())
    assert slow.begun.wait(20)
    service.runner.stop()  # what close() does first; the store stays open for the thread
    slow.release()
    wait_for(lambda: not any(t.name == f"job-{record.id}" for t in threading.enumerate()),
             what="the job's thread to give up")
    assert status_of(service, record.id) is JobStatus.CREATED and list(starts.iterdir()) == []
    service.close()
    again = make_service(tmp_path, starts).start()
    try:
        assert ended(again, record.id).status is JobStatus.COMPLETE
    finally:
        again.close()
