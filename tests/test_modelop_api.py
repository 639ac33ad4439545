"""ModelOp Center's path, ``/model-manage/api/jobs``, driven as ModelOp's own clients drive it:
``requests.post(url, json=job)`` with no other header, ``id`` read from the answer, then polled.

The documents are the realistic ones of :mod:`modelop_documents` (list schemas, FILE assets with
``fileContent``, MinIO attachments, ``--master: yarn``, ``executorMemory``). Most tests run the
real app under uvicorn in this process, with no JVM: jobs either stay queued (the service's
scheduler is not started) or run under a stand-in ``spark-submit`` (``spark.home``) that prints
what the driver would. Two tests run real spark-submits, through ``sparkrunner serve``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import sqlite3
import stat
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import uvicorn

import modelop_documents as modelop
from service_helpers import Service, free_port
from sparkrunner.api import create_app
from sparkrunner.config import PolicySettings, ServiceSettings, Settings
from sparkrunner.service import JobService
from test_modelop_documents import MASTER_WARNING, check_spark_job_ran, read_json_lines

JOBS = "/model-manage/api/jobs"
TERMINAL = {"COMPLETE", "ERROR", "CANCELLED"}
ALICE_TOKEN = "alice-token-0123456789abcdef"
BOB_TOKEN = "bob-token-fedcba9876543210"


# -- the app under uvicorn, in this process ---------------------------------------------------------

@contextlib.contextmanager
def served(settings: Settings, start: bool = False):
    """The REST app over a JobService on 127.0.0.1, in a thread; yields its base URL. With
    ``start``, the service schedules and runs jobs; without, they stay CREATED."""
    service = JobService(settings)
    if start:
        service.start()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, service), host="127.0.0.1", port=free_port(),
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
        service.close()


def settings_for(tmp_path: Path, **service) -> Settings:
    """The defaults (master local[*]), with the test's directory as the one local root."""
    return Settings(data_dir=tmp_path / "data", policy=PolicySettings(local_roots=(str(tmp_path),)),
                    service=ServiceSettings(**service))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def poll(base: str, job_id: str, timeout: float = 60) -> dict:
    """Polls the job as ModelOp does until it ends; returns its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{base}{JOBS}/{job_id}", timeout=10)
        response.raise_for_status()
        job = response.json()
        if job["jobStatus"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['jobStatus']} after {timeout} s"
        time.sleep(0.1)


def texts(job: dict) -> list[str]:
    """The job's messages without their time stamps, after checking each has one."""
    found = []
    for line in job["jobMessages"]:
        day, clock, text = line.split(" ", 2)
        assert len(day.split("/")) == 3 and len(clock.split(":")) == 3, line
        found.append(text)
    return found


@pytest.fixture
def queued(tmp_path):
    """A service that stores and shows jobs but never starts one."""
    with served(settings_for(tmp_path)) as base:
        yield base


def test_a_modelop_client_submits_with_a_plain_json_post_and_reads_the_id(queued, tmp_path):
    doc = modelop.spark_job(tmp_path)
    response = requests.post(f"{queued}{JOBS}", json=doc)  # exactly what ModelOp's clients send
    response.raise_for_status()
    assert response.status_code == 201
    job = response.json()
    assert response.headers["Location"] == f"{JOBS}/{job['id']}"
    assert (job["jobStatus"], job["jobType"]) == ("CREATED", "MODEL_BATCH_JOB")
    # The document's own fields come back as they were sent...
    assert job["model"] == doc["model"]
    assert job["inputData"] == doc["inputData"] and job["targetEngine"] == doc["targetEngine"]
    assert (job["group"], job["lastModifiedBy"], job["modelWritesOutput"]) == ("modelop", "john", True)
    # ...and ours win where both have one.
    assert job["createdDate"] != doc["createdDate"] and job["createdDate"].endswith("Z")
    assert job["_links"]["self"]["href"] == f"{JOBS}/{job['id']}"
    assert (job["jobWaitTime"], job["jobRunTime"], job["jobEndTime"]) == (None, None, None)
    # The configuration's master replaced the job's yarn, and the job says so.
    assert job["warnings"] == [MASTER_WARNING]
    assert texts(job) == ["batch job received", f"warning: {MASTER_WARNING}"]
    year, month, day = job["createdDate"][:10].split("-")
    assert job["jobMessages"][0].startswith(f"{int(year)}/{int(month)}/{int(day)} ")

    shown = requests.get(f"{queued}{JOBS}/{job['id']}").json()
    assert shown["id"] == job["id"] and shown["model"] == doc["model"]
    assert shown["lastModifiedDate"] == shown["createdDate"]
    # The same job on sparkrunner's own path.
    assert requests.get(f"{queued}/jobs/{job['id']}").json()["jobStatus"] == "CREATED"


def test_a_bad_document_is_refused_with_every_problem_as_on_jobs(queued, tmp_path):
    doc = modelop.spark_job(tmp_path)
    doc["model"]["storedModel"]["modelAssets"][0]["sourceCode"] = "def untagged(): pass\n"
    doc["inputData"][0] = {"assetType": "EXTERNAL_FILE"}
    ours = requests.post(f"{queued}{JOBS}", json=doc)
    theirs = requests.post(f"{queued}/jobs", json=doc)
    assert ours.status_code == theirs.status_code == 422
    assert ours.json() == theirs.json()
    assert "$.inputData[0]" in {error["path"] for error in ours.json()["errors"]}
    not_json = requests.post(f"{queued}{JOBS}", data=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["errors"][0]["message"]
    assert requests.get(f"{queued}{JOBS}").json()["page"]["totalElements"] == 0


def test_the_list_is_a_spring_data_rest_page(queued, tmp_path):
    def named(i: int) -> dict:
        doc = modelop.spark_job(tmp_path)
        doc["model"]["storedModel"]["modelMetaData"]["name"] = f"job {i}"
        return doc

    ids = [requests.post(f"{queued}{JOBS}", json=named(i)).json()["id"] for i in range(5)]
    first = requests.get(f"{queued}{JOBS}", params={"size": 2}).json()
    assert set(first) == {"_embedded", "_links", "page"}
    assert first["page"] == {"size": 2, "totalElements": 5, "totalPages": 3, "number": 0}
    assert [j["id"] for j in first["_embedded"]["jobs"]] == ids[::-1][:2]  # newest first
    assert "prev" not in first["_links"] and first["_links"]["next"]["href"] == f"{JOBS}?page=1&size=2"
    last = requests.get(f"{queued}{JOBS}", params={"page": 2, "size": 2}).json()
    assert [j["id"] for j in last["_embedded"]["jobs"]] == ids[:1]
    assert last["page"]["number"] == 2 and "next" not in last["_links"]
    assert last["_links"]["prev"]["href"] == f"{JOBS}?page=1&size=2"
    listed = last["_embedded"]["jobs"][0]
    assert listed["name"] == "job 0" and listed["model"]["storedModel"]["modelMetaData"]["type"] == "PYSPARK"
    assert listed["jobStatus"] == "CREATED" and listed["warnings"] == [MASTER_WARNING]
    assert texts(listed) == ["batch job received", f"warning: {MASTER_WARNING}"]
    beyond = requests.get(f"{queued}{JOBS}", params={"page": 9}).json()
    assert beyond["_embedded"]["jobs"] == [] and beyond["page"]["totalElements"] == 5
    for bad in ({"page": -1}, {"size": 0}, {"size": 1001}, {"page": "x"}):
        assert requests.get(f"{queued}{JOBS}", params=bad).status_code == 422, bad
    assert requests.get(f"{queued}{JOBS}/no-such-job").status_code == 404


def test_a_job_whose_stored_document_is_damaged_is_still_shown(queued, tmp_path):
    job_id = requests.post(f"{queued}{JOBS}", json=modelop.spark_job(tmp_path)).json()["id"]
    with sqlite3.connect(tmp_path / "data" / "jobs.db") as db:
        db.execute("UPDATE jobs SET document = ? WHERE id = ?", ('{"model": {"stor', job_id))
    response = requests.get(f"{queued}{JOBS}/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == job_id and "model" not in response.json()
    assert requests.get(f"{queued}{JOBS}").json()["_embedded"]["jobs"][0]["id"] == job_id


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "text/plain", "text/plain; charset=utf-8", "", "application/jsonp",
                                          "application/x-json-not", "+json"])
def test_a_post_a_browser_form_could_send_is_refused(queued, tmp_path, content_type):
    # text/plain is the classic JSON-in-a-form attack: the body is a valid job.
    headers = {"Content-Type": content_type} if content_type else {}
    for path in (JOBS, "/jobs", "/jobs/any/cancel"):
        response = requests.post(f"{queued}{path}", data=json.dumps(modelop.spark_job(tmp_path)), headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert "X-Requested-By" in response.json()["detail"] and "application/json" in response.json()["detail"]
    assert requests.get(f"{queued}{JOBS}").json()["page"]["totalElements"] == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.modelop.job+json"])
def test_a_body_declared_as_json_passes_the_cross_site_check(queued, tmp_path, content_type):
    response = requests.post(f"{queued}{JOBS}", data=json.dumps(modelop.spark_job(tmp_path)),
                             headers={"Content-Type": content_type})
    assert response.status_code == 201, response.text


def test_with_tokens_another_users_job_is_404_and_lists_are_per_user(tmp_path):
    settings = settings_for(tmp_path, tokens={"alice": ALICE_TOKEN, "bob": BOB_TOKEN})
    doc = modelop.spark_job(tmp_path)
    with served(settings) as base:
        assert requests.post(f"{base}{JOBS}", json=doc).status_code == 401
        alices = requests.post(f"{base}{JOBS}", json=doc, headers=bearer(ALICE_TOKEN)).json()["id"]
        response = requests.get(f"{base}{JOBS}/{alices}", headers=bearer(BOB_TOKEN))
        assert response.status_code == 404 and response.json()["detail"] == f"no job with id {alices!r}"
        assert requests.get(f"{base}{JOBS}", headers=bearer(BOB_TOKEN)).json()["page"]["totalElements"] == 0
        assert requests.get(f"{base}{JOBS}/{alices}", headers=bearer(ALICE_TOKEN)).json()["id"] == alices
        mine = requests.get(f"{base}{JOBS}", headers=bearer(ALICE_TOKEN)).json()
        assert [j["id"] for j in mine["_embedded"]["jobs"]] == [alices]
        # HTTP basic, which a browser replays by itself, needs the JSON type or the header.
        basic = {"Authorization": "Basic " + base64.b64encode(f"bob:{BOB_TOKEN}".encode()).decode()}
        assert requests.post(f"{base}{JOBS}", data={"job": "x"}, headers=basic).status_code == 403
        assert requests.post(f"{base}{JOBS}", json=doc, headers=basic).status_code == 201


# -- a whole run, with a stand-in spark-submit ------------------------------------------------------

#: What spark-submit would do under sparkrunner: print the driver's reports, write result.json, exit.
STAND_IN = '''\
#!{python}
import json, time
time.sleep(0.3)
print("sparkrunner: application: local-1700000000000 is running; Spark UI off", flush=True)
time.sleep(0.3)
with open("result.json", "w") as f:
    json.dump({{"rows": 5}}, f)
print("sparkrunner: result: written", flush=True)
'''


@pytest.fixture
def spark_home(tmp_path):
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "spark-submit"
    script.write_text(STAND_IN.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return home


def test_a_job_is_followed_to_its_end_in_modelops_fields(tmp_path, spark_home):
    settings = settings_for(tmp_path)
    settings = settings.with_overrides(spark=dataclasses.replace(settings.spark, home=str(spark_home)))
    doc = modelop.spark_job(tmp_path)
    with served(settings, start=True) as base:
        submitted = requests.post(f"{base}{JOBS}", json=doc)
        submitted.raise_for_status()
        job = poll(base, submitted.json()["id"])
    assert job["jobStatus"] == "COMPLETE", job
    assert job["result"] == {"rows": 5}
    times = [job["jobWaitTime"], job["jobRunTime"], job["jobEndTime"]]
    assert all(type(t) is int for t in times), times
    assert times == sorted(times)
    assert abs(job["jobEndTime"] / 1000 - time.time()) < 60  # epoch milliseconds, not seconds
    assert texts(job) == [
        "batch job received",
        f"warning: {MASTER_WARNING}",
        "batch job started: spark-submit is starting the application",
        "batch job running: Spark application local-1700000000000",
        "batch job ended COMPLETE: exit code 0"]
    assert job["lastModifiedDate"] == job["endDate"]
    assert job["inputData"] == doc["inputData"] and job["model"]["id"] == doc["model"]["id"]


# -- real spark-submits -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_service(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("modelop") / "data", max_jobs=2).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def real_jobs(real_service, tmp_path_factory) -> dict[str, tuple[dict, str, Path]]:
    """Both real-shaped documents, each with a directory of its own, posted together as ModelOp
    posts them: {kind: (document, job id, directory)}. The service runs them side by side (two
    JVMs on two cores overlap better than they follow); each test polls its own."""
    posted = {}
    for kind, document in (("spark", modelop.spark_job), ("python", modelop.python_job)):
        directory = tmp_path_factory.mktemp(f"modelop-{kind}")
        doc = document(directory)
        response = requests.post(f"{real_service.url}{JOBS}", json=doc)  # no header but JSON's type
        response.raise_for_status()
        posted[kind] = (doc, response.json()["id"], directory)
    return posted


@pytest.mark.e2e
def test_a_real_shaped_spark_job_runs_unchanged_through_modelops_path(real_service, real_jobs):
    doc, job_id, directory = real_jobs["spark"]
    job = poll(real_service.url, job_id, timeout=240)
    assert job["jobStatus"] == "COMPLETE", job
    check_spark_job_ran(job["result"], directory)
    assert job["sparkApplicationId"].startswith("local-")
    times = [job["jobWaitTime"], job["jobRunTime"], job["jobEndTime"]]
    assert all(type(t) is int for t in times) and times == sorted(times)
    assert texts(job)[1] == f"warning: {MASTER_WARNING}"
    assert texts(job)[-1] == "batch job ended COMPLETE: exit code 0"
    assert job["model"] == doc["model"] and job["inputData"] == doc["inputData"]


@pytest.mark.e2e
def test_a_real_shaped_python_model_runs_unchanged_through_modelops_path(real_service, real_jobs):
    _, job_id, directory = real_jobs["python"]
    job = poll(real_service.url, job_id, timeout=240)
    assert job["jobStatus"] == "COMPLETE", job
    # 0.5 * Fare / Pclass for the four good rows; the fifth's Fare is 'cheap'.
    scores = sorted(read_json_lines(directory / "scores"), key=lambda r: r["PassengerId"])
    assert [(r["PassengerId"], round(r["score"], 3)) for r in scores] == [
        (1, 1.208), (2, 35.642), (3, 1.321), (4, 26.55)]
    [rejected] = read_json_lines(directory / "rejected")
    assert "Fare" in json.dumps(rejected) and "cheap" in json.dumps(rejected)
    assert job["model"]["storedModel"]["modelMetaData"]["inputSchema"][0]["schemaDefinition"] == modelop.EXTENDED_INPUT
