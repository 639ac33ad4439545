"""ModelOp Center's path, ``/model-manage/api/jobs``, driven as ModelOp's own clients drive it:
``requests.post(url, json=job)`` with no other header, ``id`` read from the answer, then polled.

Most tests run the real app under uvicorn in this process (no JVM): jobs either stay queued (the
service's scheduler is not started) or run under a stand-in ``spark-submit`` (``spark.home``) that
prints what the driver would. Two tests run a real spark-submit, through ``sparkrunner serve``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import socket
import sqlite3
import stat
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import uvicorn

from service_helpers import Service
from sparkrunner.api import create_app
from sparkrunner.config import PolicySettings, ServiceSettings, Settings
from sparkrunner.errors import JobInvalid
from sparkrunner.command import job_settings
from sparkrunner.jobspec import validate
from sparkrunner.modelop_api import modelop_view
from sparkrunner.service import JobService

JOBS = "/model-manage/api/jobs"
TERMINAL = {"COMPLETE", "ERROR", "CANCELLED"}
ALICE_TOKEN = "alice-token-0123456789abcdef"
BOB_TOKEN = "bob-token-fedcba9876543210"

# -- a job document shaped like the ones ModelOp Center produces ---------------------------------

#: Real-shape fields today's validator refuses, each behind its own switch: True puts the field in
#: every document below exactly as ModelOp sends it. Flip them once the validator accepts them.
#: modelMetaData.inputSchema / outputSchema as arrays (ModelOp sends [] or a list of schema objects).
SEND_SCHEMA_ARRAYS = False
#: A FILE asset as ModelOp sends it: filename, fileContent (base64), fileContentString, localFile, no
#: content. While off, the same file goes as today's {filename, content}.
SEND_REAL_FILE_ASSETS = False
#: targetEngine.sparkConf {"--master": "yarn"}: the operator's setting, to be overridden by the
#: configuration (local[*] here) with a warning on the job instead of being refused.
SEND_MASTER_OVERRIDE = False

CREATED = "2021-03-26T14:12:20.345Z"

#: A Spark three-list model: reads its input CSV, writes the scored rows, reports counts.
SPARK_MODEL = '''\
from pyspark.sql import SparkSession

THRESHOLD = None

# modelop.init
def begin():
    global THRESHOLD
    THRESHOLD = float(open("threshold.txt").read())

# modelop.score
def action(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    df = spark.read.option("header", True).csv(inputs[0]["fileUrl"]).selectExpr("id", "cast(value as double) as value")
    scored = df.withColumn("high", df.value > THRESHOLD)
    scored.coalesce(1).write.mode("overwrite").option("header", True).csv(outputs[0]["fileUrl"])
    return {"rows": scored.count(), "high": scored.filter("high").count(),
            "lists": [len(inputs), len(outputs), len(attachments)]}
'''


def _repository(kind: str, **extra) -> dict:
    return {"repositoryType": kind, **extra}


def file_asset(filename: str, text: str) -> dict:
    """A small FILE model asset: as ModelOp sends it, or (until the validator takes that) as today."""
    if SEND_REAL_FILE_ASSETS:
        return {"assetId": str(uuid.uuid4()), "assetType": "FILE", "assetRole": "MODEL_SCHEMA",
                "filename": filename, "fileFormat": "UNKNOWN", "fileSize": len(text.encode()),
                "fileContent": base64.b64encode(text.encode()).decode(), "fileContentString": text,
                "localFile": f"/tmp/model-manage-repos/{uuid.uuid4()}/{filename}",
                "repositoryInfo": _repository("GIT_REPO", repositoryUrl="https://git.example/models.git",
                                              branch="main"),
                "importedRepository": {"repositoryUrl": "https://git.example/models.git", "branch": "main"}}
    return {"assetType": "FILE", "filename": filename, "content": text}


def data_asset(url: str, name: str = "", role: str = "") -> dict:
    """An EXTERNAL_FILE input or output as ModelOp sends one (only the location is ours)."""
    asset = {"assetId": str(uuid.uuid4()), "assetType": "EXTERNAL_FILE", "name": name, "filename": Path(url).name,
             "fileUrl": url, "fileFormat": "CSV", "fileSize": 0,
             "repositoryInfo": _repository("HDFS_REPOSITORY", host="", port=0)}
    if role:
        asset["assetRole"] = role
    return asset


def modelop_job(source: str = SPARK_MODEL, *, filename: str = "model.py", inputs=(), outputs=(),
                files: dict[str, str] | None = None, **fields) -> dict:
    """A modelBatchJob as ModelOp Center produces it, running ``source``; ``fields`` go on top."""
    model_id, stored_id, engine_id = (str(uuid.uuid4()) for _ in range(3))
    git = _repository("GIT_REPO", repositoryUrl="https://git.example/models.git", branch="main",
                      repositoryName="models", credentials=None)
    primary = {"assetId": str(uuid.uuid4()), "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
               "name": filename, "filename": filename, "sourceCodeFilePath": filename,
               "sourceCodeType": "MODEL", "primaryModelSource": True, "sourceCode": source,
               "repositoryInfo": git}
    meta = {"name": "sparkrunner-realistic", "type": "PYSPARK", "custom": {}, "tags": ["spark"],
            "description": "A realistic PySpark model", "classicModel": False, "attachments": [],
            "repositoryInfo": git, "enableInputSchemaChecking": False, "enableOutputSchemaChecking": False}
    if SEND_SCHEMA_ARRAYS:
        meta.update(inputSchema=[], outputSchema=[])
    engine = {"id": engine_id, "engineType": "SPARK_RUNTIME", "name": "spark-runtime-1", "group": "default",
              "version": 1, "createdDate": CREATED, "state": "INIT", "inputEndpoints": [], "outputEndpoints": [],
              "tags": ["spark", "batch"], "executorMemory": "512MB"}
    if SEND_MASTER_OVERRIDE:
        engine["sparkConf"] = {"--master": "yarn"}
    doc = {
        "jobType": "MODEL_BATCH_JOB",
        "jobStatus": "CREATED",
        "group": "default",
        "createdDate": CREATED,
        "lastModifiedBy": "admin",
        "jobResult": None,
        "modelWritesOutput": True,
        "_links": {"self": {"href": f"http://modelop.example:8090/model-manage/api/jobs/{uuid.uuid4()}"}},
        "model": {
            "id": model_id, "version": 1, "group": "default", "createdDate": CREATED,
            "metaData": {"name": "sparkrunner-realistic", "description": "", "tags": [], "custom": {}},
            "targetRuntimes": [], "associatedModels": [], "modelDocuments": [], "gitDifferences": [],
            "storedModel": {"id": stored_id, "modelMetaData": meta,
                            "modelAssets": [primary, *(file_asset(n, t) for n, t in (files or {}).items())]},
        },
        "inputData": list(inputs),
        "outputData": list(outputs),
        "targetEngine": engine,
    }
    doc.update(fields)
    return doc


def test_the_realistic_document_is_accepted_as_built():
    spec = validate(modelop_job(files={"threshold.txt": "5"}))
    job_settings(spec, ())
    assert (spec.function, spec.init_function, spec.primary.filename) == ("action", "begin", "model.py")


@pytest.mark.parametrize("switch", [
    pytest.param(name, marks=pytest.mark.xfail(raises=JobInvalid, reason=f"refused today: turn {name} on once it is accepted"))
    for name in ("SEND_SCHEMA_ARRAYS", "SEND_REAL_FILE_ASSETS", "SEND_MASTER_OVERRIDE")])
def test_each_real_shape_switch_is_accepted_when_on(monkeypatch, switch):
    # An XPASS here means the validator now takes that field as ModelOp sends it: turn the switch
    # on above, and take it out of this list.
    monkeypatch.setitem(globals(), switch, True)
    spec = validate(modelop_job(files={"threshold.txt": "5"}))
    job_settings(spec, ())


# -- the app under uvicorn, in this process ---------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(settings: Settings, start: bool = False):
    """The REST app over a JobService on 127.0.0.1, in a thread; yields its base URL. With
    ``start``, the service schedules and runs jobs; without, they stay CREATED."""
    service = JobService(settings)
    if start:
        service.start()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, service), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        service.close()


def settings_for(tmp_path: Path, **service) -> Settings:
    return Settings(data_dir=tmp_path / "data", policy=PolicySettings(local_roots=(str(tmp_path),)),
                    service=ServiceSettings(**service))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def poll(base: str, job_id: str, timeout: float = 60, **kwargs) -> dict:
    """Polls the job as ModelOp does until it ends; returns its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{base}{JOBS}/{job_id}", timeout=10, **kwargs)
        response.raise_for_status()
        job = response.json()
        if job["jobStatus"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['jobStatus']} after {timeout} s"
        time.sleep(0.1)


@pytest.fixture
def queued(tmp_path):
    """A service that stores and shows jobs but never starts one."""
    with served(settings_for(tmp_path)) as base:
        yield base


def test_a_modelop_client_submits_with_a_plain_json_post_and_reads_the_id(queued):
    doc = modelop_job(files={"threshold.txt": "5"})
    response = requests.post(f"{queued}{JOBS}", json=doc)  # exactly what ModelOp's clients send
    response.raise_for_status()
    assert response.status_code == 201
    job = response.json()
    assert response.headers["Location"] == f"{JOBS}/{job['id']}"
    assert job["id"] != doc["_links"]["self"]["href"].rsplit("/", 1)[1]  # ours, not the document's
    assert (job["jobStatus"], job["jobType"]) == ("CREATED", "MODEL_BATCH_JOB")
    # The document's own fields come back as they were sent...
    assert job["model"] == doc["model"]
    assert job["inputData"] == doc["inputData"] and job["targetEngine"] == doc["targetEngine"]
    assert (job["group"], job["lastModifiedBy"], job["modelWritesOutput"]) == ("default", "admin", True)
    # ...and ours win where both have one.
    assert job["createdDate"] != CREATED and job["createdDate"].endswith("Z")
    assert job["_links"]["self"]["href"] == f"{JOBS}/{job['id']}"
    assert (job["jobWaitTime"], job["jobRunTime"], job["jobEndTime"]) == (None, None, None)
    received, *warned = job["jobMessages"]
    year, month, day = job["createdDate"][:10].split("-")
    assert received.startswith(f"{int(year)}/{int(month)}/{int(day)} ") and received.endswith(" batch job received")
    assert bool(job["warnings"]) == SEND_MASTER_OVERRIDE and len(warned) == len(job["warnings"])

    shown = requests.get(f"{queued}{JOBS}/{job['id']}").json()
    assert shown["id"] == job["id"] and shown["model"] == doc["model"]
    assert shown["lastModifiedDate"] == shown["createdDate"]
    # The same job on sparkrunner's own path.
    assert requests.get(f"{queued}/jobs/{job['id']}").json()["jobStatus"] == "CREATED"


def test_a_bad_document_is_refused_with_every_problem_as_on_jobs(queued):
    doc = modelop_job("def untagged(): pass\n")
    doc["inputData"] = [{"assetType": "EXTERNAL_FILE"}]
    ours = requests.post(f"{queued}{JOBS}", json=doc)
    theirs = requests.post(f"{queued}/jobs", json=doc)
    assert ours.status_code == theirs.status_code == 422
    assert ours.json() == theirs.json()
    assert ours.json()["errors"] == [{"path": "$.inputData[0]", "message": ours.json()["errors"][0]["message"]}]
    not_json = requests.post(f"{queued}{JOBS}", data=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["errors"][0]["message"]
    assert requests.get(f"{queued}{JOBS}").json()["page"]["totalElements"] == 0


def test_the_list_is_a_spring_data_rest_page(queued):
    def named(i: int) -> dict:
        doc = modelop_job()
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
    listed = last["_embedded"]["jobs"][0]
    assert listed["name"] == "job 0" and listed["model"]["storedModel"]["modelMetaData"]["type"] == "PYSPARK"
    assert listed["jobMessages"] and listed["jobStatus"] == "CREATED"
    beyond = requests.get(f"{queued}{JOBS}", params={"page": 9}).json()
    assert beyond["_embedded"]["jobs"] == [] and beyond["page"]["totalElements"] == 5
    for bad in ({"page": -1}, {"size": 0}, {"size": 1001}, {"page": "x"}):
        assert requests.get(f"{queued}{JOBS}", params=bad).status_code == 422, bad
    assert requests.get(f"{queued}{JOBS}/no-such-job").status_code == 404


def test_a_job_whose_stored_document_is_damaged_is_still_shown(tmp_path):
    with served(settings_for(tmp_path)) as base:
        job_id = requests.post(f"{base}{JOBS}", json=modelop_job()).json()["id"]
        with sqlite3.connect(tmp_path / "data" / "jobs.db") as db:
            db.execute("UPDATE jobs SET document = ? WHERE id = ?", ('{"model": {"stor', job_id))
        response = requests.get(f"{base}{JOBS}/{job_id}")
        assert response.status_code == 200, response.text
        assert response.json()["id"] == job_id and "model" not in response.json()
        assert requests.get(f"{base}{JOBS}").json()["_embedded"]["jobs"][0]["id"] == job_id


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "text/plain", "text/plain; charset=utf-8", "", "application/jsonp",
                                          "application/x-json-not", "+json"])
def test_a_post_a_browser_form_could_send_is_refused(queued, content_type):
    # text/plain is the classic JSON-in-a-form attack: the body is a valid job.
    headers = {"Content-Type": content_type} if content_type else {}
    for path in (JOBS, "/jobs", "/jobs/any/cancel"):
        response = requests.post(f"{queued}{path}", data=json.dumps(modelop_job()), headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert "X-Requested-By" in response.json()["detail"] and "application/json" in response.json()["detail"]
    assert requests.get(f"{queued}{JOBS}").json()["page"]["totalElements"] == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.modelop.job+json"])
def test_a_body_declared_as_json_passes_the_cross_site_check(queued, content_type):
    response = requests.post(f"{queued}{JOBS}", data=json.dumps(modelop_job()), headers={"Content-Type": content_type})
    assert response.status_code == 201, response.text


def test_with_tokens_another_users_job_is_404_and_lists_are_per_user(tmp_path):
    settings = settings_for(tmp_path, tokens={"alice": ALICE_TOKEN, "bob": BOB_TOKEN})
    with served(settings) as base:
        assert requests.post(f"{base}{JOBS}", json=modelop_job()).status_code == 401
        alices = requests.post(f"{base}{JOBS}", json=modelop_job(), headers=bearer(ALICE_TOKEN)).json()["id"]
        response = requests.get(f"{base}{JOBS}/{alices}", headers=bearer(BOB_TOKEN))
        assert response.status_code == 404 and response.json()["detail"] == f"no job with id {alices!r}"
        assert requests.get(f"{base}{JOBS}", headers=bearer(BOB_TOKEN)).json()["page"]["totalElements"] == 0
        assert requests.get(f"{base}{JOBS}/{alices}", headers=bearer(ALICE_TOKEN)).json()["id"] == alices
        mine = requests.get(f"{base}{JOBS}", headers=bearer(ALICE_TOKEN)).json()
        assert [j["id"] for j in mine["_embedded"]["jobs"]] == [alices]
        # HTTP basic, which a browser replays by itself, needs the JSON type or the header.
        basic = {"Authorization": "Basic " + base64.b64encode(f"bob:{BOB_TOKEN}".encode()).decode()}
        assert requests.post(f"{base}{JOBS}", data={"job": "x"}, headers=basic).status_code == 403
        assert requests.post(f"{base}{JOBS}", json=modelop_job(), headers=basic).status_code == 201


# -- a whole run, with a stand-in spark-submit ------------------------------------------------------

#: What spark-submit would do under sparkrunner: print the driver's reports, write result.json, exit.
STAND_IN = '''\
#!{python}
import json, time
time.sleep(0.3)
print("sparkrunner: application: local-1700000000000 is running; Spark UI off", flush=True)
time.sleep(0.3)
with open("result.json", "w") as f:
    json.dump({{"rows": 3}}, f)
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
    data = tmp_path / "in.csv"
    data.write_text("id,value\n1,1.5\n2,7\n3,10\n")
    doc = modelop_job(files={"threshold.txt": "5"}, inputs=[data_asset(data.as_uri())],
                      outputs=[data_asset((tmp_path / "out").as_uri())])
    with served(settings, start=True) as base:
        submitted = requests.post(f"{base}{JOBS}", json=doc)
        submitted.raise_for_status()
        job = poll(base, submitted.json()["id"])
    assert job["jobStatus"] == "COMPLETE", job
    assert job["result"] == {"rows": 3}
    times = [job["jobWaitTime"], job["jobRunTime"], job["jobEndTime"]]
    assert all(type(t) is int for t in times), times
    assert times == sorted(times)
    assert abs(job["jobEndTime"] / 1000 - time.time()) < 60  # epoch milliseconds, not seconds
    messages = [line.split(" ", 2) for line in job["jobMessages"]]
    if SEND_MASTER_OVERRIDE:  # the configuration's master won, and the job says so
        assert any("yarn" in warning for warning in job["warnings"]), job["warnings"]
        assert [f"warning: {warning}" for warning in job["warnings"]] == [text for _, _, text in messages[1:-3]]
        messages = [messages[0], *messages[-3:]]
    assert [text for _, _, text in messages] == [
        "batch job received",
        "batch job started: spark-submit is starting the application",
        "batch job running: Spark application local-1700000000000",
        "batch job ended COMPLETE: exit code 0"]
    for day, clock, _ in messages:
        assert len(day.split("/")) == 3 and len(clock.split(":")) == 3
    assert job["lastModifiedDate"] == job["endDate"]
    assert job["inputData"] == doc["inputData"] and job["model"]["id"] == doc["model"]["id"]


class WithWarnings:
    """A stored job as it will be once records carry warnings (settings the configuration overrode)."""

    def __init__(self, record, warnings):
        self.record, self.warnings = record, warnings

    def __getattr__(self, name):
        return getattr(self.record, name)


def test_warnings_on_a_record_become_messages_and_a_field(tmp_path):
    doc = modelop_job()
    doc["targetEngine"].pop("sparkConf", None)  # nothing for the configuration to override
    service = JobService(settings_for(tmp_path))
    try:
        record, _ = service.submit(doc)
    finally:
        service.close()
    assert modelop_view(record)["warnings"] == []  # a record from before warnings
    overridden = "$.targetEngine.sparkConf.--master: 'yarn' is overridden by the configuration's 'local[*]'"
    for warnings in ((overridden,), [{"path": "$.targetEngine.sparkConf.--master",
                                      "message": "'yarn' is overridden by the configuration's 'local[*]'"}]):
        view = modelop_view(WithWarnings(record, warnings))
        assert view["warnings"] == [overridden]
        assert view["jobMessages"][1].endswith(f" warning: {overridden}")


# -- real spark-submit ------------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_realistic_job_runs_unchanged_through_modelops_path(tmp_path):
    data = tmp_path / "in.csv"
    data.write_text("id,value\n1,1.5\n2,7\n3,10\n")
    out = tmp_path / "scored"
    doc = modelop_job(files={"threshold.txt": "5"}, inputs=[data_asset(data.as_uri())],
                      outputs=[data_asset(out.as_uri())])
    service = Service(tmp_path / "data", max_jobs=1).start()
    try:
        response = requests.post(f"{service.url}{JOBS}", json=doc)  # no header but JSON's type
        response.raise_for_status()
        job = poll(service.url, response.json()["id"], timeout=240)
    finally:
        service.stop()
    assert job["jobStatus"] == "COMPLETE", job
    assert job["result"] == {"rows": 3, "high": 2, "lists": [1, 1, 0]}
    assert job["sparkApplicationId"].startswith("local-")
    times = [job["jobWaitTime"], job["jobRunTime"], job["jobEndTime"]]
    assert all(type(t) is int for t in times) and times == sorted(times)
    assert job["jobMessages"][-1].endswith("batch job ended COMPLETE: exit code 0")
    assert job["model"] == doc["model"] and job["inputData"] == doc["inputData"]
    scored = next(out.glob("part-*.csv")).read_text().splitlines()
    assert scored == ["id,value,high", "1,1.5,false", "2,7.0,true", "3,10.0,true"]
