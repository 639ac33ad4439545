"""Load: a burst of concurrent submissions, and polling a thousand jobs while jobs run.

Most jobs here end before spark-submit (they name an HDFS input, and the configured namenode is a
closed port):
they go through the whole service path (validate, store, queue, schedule, lay out, check, end
with a reason) without a JVM each, which 1,000 JVMs on 2 cores could not afford. In the burst,
every 50th job runs under the stand-in spark-submit and holds a slot for a few seconds, so the
concurrency limit is tested by process groups the service started. The polling test runs two
real Spark jobs, so that the polls compete with two Spark drivers for the CPU.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import make_job
from service_helpers import Service, pids_in_group, sleepy_job
from support.spark_submit_standin import INSTRUCTIONS, standin_job

pytestmark = pytest.mark.e2e

MAX_JOBS = 2
TERMINAL = ("COMPLETE", "ERROR", "CANCELLED")
#: Where the HDFS checks of no_jvm_job fail at once: nothing listens on port 9.
NO_NAMENODE = "hdfs:\n  namenode: http://127.0.0.1:9\n  timeout_seconds: 2\n"


def no_jvm_job(n: int) -> dict:
    return make_job(inputData=[{"assetType": "EXTERNAL_FILE", "fileUrl": f"hdfs:///in/{n}.csv"}])


class Monitor(threading.Thread):
    """Samples, from the SQLite file and /proc, how many jobs are active at once."""

    def __init__(self, service: Service):
        super().__init__(daemon=True)
        self.service, self.stop = service, threading.Event()
        self.most_active = self.most_groups = 0

    def run(self):
        db = sqlite3.connect(self.service.data_dir / "jobs.db", timeout=30)
        while not self.stop.is_set():
            active = db.execute("SELECT pid FROM jobs WHERE status IN ('WAITING', 'RUNNING')").fetchall()
            self.most_active = max(self.most_active, len(active))
            groups = sum(1 for (pid,) in active if pid and pids_in_group(pid))
            self.most_groups = max(self.most_groups, groups)
            time.sleep(0.1)
        db.close()


@pytest.fixture
def standin_service(tmp_path, standin_spark_home):
    svc = Service(tmp_path / "data", max_jobs=MAX_JOBS, spark_home=standin_spark_home,
                  extra=NO_NAMENODE).start()
    yield svc
    svc.stop()


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path / "data", max_jobs=MAX_JOBS, extra=NO_NAMENODE).start()
    yield svc
    svc.stop()


def submit_all(service: Service, docs: list[dict], threads: int) -> list[requests.Response]:
    def post(doc):
        with requests.Session() as session:
            return session.post(service.url + "/jobs", json=doc, timeout=120,
                                headers={"X-Requested-By": "load-test"})

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, docs))


def test_a_burst_of_200_submissions_is_stored_runs_within_the_limit_and_ends(standin_service):
    service = standin_service
    docs = [standin_job(seconds=8, result={"sum": 4950}) if n % 50 == 0 else no_jvm_job(n) for n in range(200)]
    monitor = Monitor(service)
    monitor.start()
    responses = submit_all(service, docs, threads=50)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 200}, statuses
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 200
    with sqlite3.connect(service.data_dir / "jobs.db") as db:
        stored = {row[0] for row in db.execute("SELECT id FROM jobs")}
    assert set(ids) <= stored

    ended = {job_id: service.wait_for(job_id, set(TERMINAL), timeout=300) for job_id in ids}
    monitor.stop.set()
    monitor.join()
    real = {r.json()["id"] for r, doc in zip(responses, docs) if INSTRUCTIONS in str(doc)}
    assert len(real) == 4
    for job_id, job in ended.items():
        if job_id in real:
            assert job["jobStatus"] == "COMPLETE" and job["result"]["sum"] == 4950, job
        else:
            assert job["jobStatus"] == "ERROR" and job["reason"].startswith("before spark-submit: "), job
    assert monitor.most_active <= MAX_JOBS and monitor.most_groups <= MAX_JOBS
    assert monitor.most_groups == MAX_JOBS  # the limit was reached, so the check meant something


def test_polling_a_thousand_jobs_while_jobs_run_stays_responsive(service):
    """1,000 jobs stored; status and log of each polled by 20 clients while two real jobs run."""
    submit_all(service, [no_jvm_job(n) for n in range(998)], threads=20)
    running = [service.submit(sleepy_job(20)) for _ in range(MAX_JOBS)]
    for job in running:
        service.wait_for(job["id"], {"RUNNING"}, timeout=120)
    listed = service.get("/jobs", params={"size": 1000}).json()
    assert listed["total"] >= 1000 and len(listed["jobs"]) == 1000
    ids = [j["id"] for j in listed["jobs"]]

    latencies, failures = [], []

    def poll(job_id):
        with requests.Session() as session:
            for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/log?size=50"):
                started = time.perf_counter()
                try:
                    response = session.get(service.url + path, timeout=10)
                    if response.status_code != 200 or response.json().get("id") != job_id:
                        failures.append((path, response.status_code))
                except requests.RequestException as exc:
                    failures.append((path, repr(exc)))
                latencies.append(time.perf_counter() - started)

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(poll, ids))
    # Both real jobs were running throughout, so the polls competed with two Spark drivers.
    assert all(service.job(j["id"])["jobStatus"] == "RUNNING" for j in running)
    assert failures == []
    assert len(latencies) == 2000
    latencies.sort()
    print(f"polled 2000 times: median {latencies[1000] * 1000:.1f} ms, p99 {latencies[1980] * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms")
    for job in running:
        service.post(f"/jobs/{job['id']}/cancel")
        assert service.wait_for(job["id"], set(TERMINAL))["jobStatus"] == "CANCELLED"
