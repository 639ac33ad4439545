"""Registered models through the REST API, in this process (jobs under the stand-in
spark-submit): register, versions, list, show, delete, ownership, bad input, and jobs made from a
model by reference and by ``POST /models/{name}/jobs``."""

from __future__ import annotations

import json
import time

import pytest
import requests

from service_helpers import InProcessService, stored

ALICE = {"Authorization": "Bearer alice-token-0123456789abcdef"}
BOB = {"Authorization": "Bearer bob-token-fedcba9876543210"}

#: A model that scores records (the distributed path), computes metrics and trains (three lists).
MODEL_SOURCE = '''\
import json

WEIGHT = None

# modelop.init
def begin():
    global WEIGHT
    try:
        with open("weights.json") as f:
            WEIGHT = json.load(f)["weight"]
    except FileNotFoundError:
        WEIGHT = 1.0

# modelop.score
def score(record):
    return {"id": record["id"], "score": record["x"] * WEIGHT}

# modelop.metrics
def metrics(inputs, outputs, attachments):
    from pyspark.sql import SparkSession
    rows = SparkSession.builder.getOrCreate().read.json(inputs[0]["fileUrl"]).collect()
    return {"rows": len(rows), "mean_x": sum(r["x"] for r in rows) / len(rows)}

# modelop.train
def train(inputs, outputs, attachments):
    from pyspark.sql import SparkSession
    rows = SparkSession.builder.getOrCreate().read.json(inputs[0]["fileUrl"]).collect()
    weight = max(r["x"] for r in rows)
    with open(outputs[0]["fileUrl"], "w") as f:
        json.dump({"weight": weight}, f)
    return {"weight": weight}
'''


def model_part(source: str = MODEL_SOURCE, **meta) -> dict:
    """The model part of a modelBatchJob, as ModelOp sends it."""
    primary = {"assetType": "SOURCE_CODE", "primaryModelSource": True, "name": "weighted.py",
               "sourceCode": source}
    return {"storedModel": {"modelAssets": [primary],
                            "modelMetaData": {"name": "weighted", "type": "PYTHON", **meta}}}


def json_asset(url: str, role: str | None = None) -> dict:
    asset = {"assetType": "EXTERNAL_FILE", "name": url.rsplit("/", 1)[-1], "fileUrl": url, "fileFormat": "JSON"}
    return {**asset, "assetRole": role} if role else asset


@pytest.fixture(scope="module")
def service(tmp_path_factory, standin_spark_home):
    extra = ("  tokens:\n"
             f"    alice: {ALICE['Authorization'].split()[1]}\n"
             f"    bob: {BOB['Authorization'].split()[1]}\n")
    svc = InProcessService(tmp_path_factory.mktemp("models") / "data", max_jobs=1, extra=extra,
                           spark_home=standin_spark_home).start()
    yield svc
    svc.stop()


def register(service, body: dict, who: dict = ALICE) -> dict:
    response = service.post("/models", json=body, headers=who)
    assert response.status_code == 201, response.text
    return response.json()


def test_registering_again_makes_the_next_version_and_the_list_shows_the_latest(service):
    first = register(service, {"name": "versions", "model": model_part(), "defaults": {"idField": "id"}})
    assert (first["name"], first["version"], first["ref"]) == ("versions", 1, "versions:1")
    assert first["jobTypes"] == ["MODEL_BATCH_JOB", "MODEL_BATCH_TEST_JOB", "MODEL_BATCH_TRAINING_JOB"]
    assert first["model"] == model_part() and first["defaults"] == {"idField": "id"}
    second = register(service, {"name": "versions", "model": model_part(description="v2")})
    assert second["version"] == 2

    versions = service.get("/models/versions", headers=ALICE).json()
    assert versions["latest"] == 2 and [v["version"] for v in versions["versions"]] == [2, 1]
    listed = {m["name"]: m for m in service.get("/models", headers=ALICE).json()["models"]}
    assert listed["versions"]["version"] == 2 and "model" not in listed["versions"]
    one = service.get("/models/versions/versions/1", headers=ALICE).json()
    assert one["model"] == model_part() and one["defaults"] == {"idField": "id"}


def test_the_name_defaults_to_the_models_metadata_name(service):
    assert register(service, {"model": model_part()})["name"] == "weighted"


def test_a_model_that_only_trains_runs_only_training_jobs(service):
    source = MODEL_SOURCE.replace("# modelop.score\n", "").replace("# modelop.metrics\n", "")
    assert register(service, {"name": "trainer", "model": model_part(source)})["jobTypes"] == [
        "MODEL_BATCH_TRAINING_JOB"]


def test_deleting_a_version_never_gives_its_number_again_and_deleting_the_name_removes_all(service):
    register(service, {"name": "doomed", "model": model_part()})
    register(service, {"name": "doomed", "model": model_part()})
    gone = service.delete("/models/doomed/versions/2", headers=ALICE)
    assert gone.status_code == 200 and gone.json()["deleted"] == 1
    assert service.get("/models/doomed/versions/2", headers=ALICE).status_code == 404
    assert register(service, {"name": "doomed", "model": model_part()})["version"] == 3
    assert service.delete("/models/doomed", headers=ALICE).json()["deleted"] == 2
    assert service.get("/models/doomed", headers=ALICE).status_code == 404
    missing = service.delete("/models/doomed", headers=ALICE)
    assert missing.status_code == 404 and missing.json()["detail"] == "no registered model 'doomed'"


def test_another_users_model_does_not_exist_for_you(service):
    register(service, {"name": "alices", "model": model_part()})
    assert "alices" not in [m["name"] for m in service.get("/models", headers=BOB).json()["models"]]
    for path in ("/models/alices", "/models/alices/versions/1"):
        assert service.get(path, headers=BOB).status_code == 404
    assert service.delete("/models/alices", headers=BOB).status_code == 404
    refused = service.post("/models/alices/jobs", headers=BOB, json={"inputData": [], "outputData": []})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["path"] == "$.model.ref"
    assert "no registered model 'alices'" in refused.json()["errors"][0]["message"]
    # bob's own model of the same name is his: versions are counted per user
    assert register(service, {"name": "alices", "model": model_part()}, BOB)["version"] == 1
    assert service.get("/models/alices", headers=ALICE).json()["latest"] == 1
    assert service.get("/models", headers={}).status_code == 401


@pytest.mark.parametrize("body, path, words", [
    ({"name": "bad name!", "model": model_part()}, "$.name", "'bad name!' is not a model name: 1 to 100"),
    ({"name": "x:1", "model": model_part()}, "$.name", "'x:1' is not a model name"),
    ({"model": {"storedModel": {"modelAssets": []}}}, "$.name", "is missing, and so is"),
    ({"name": "m", "model": "a model"}, "$.model", "must be the model part of a modelBatchJob"),
    ({"name": "m", "model": {"ref": "other"}}, "$.model.ref", "cannot name another one"),
    ({"name": "m", "model": model_part(), "defaults": {"inputData": []}}, "$.defaults.inputData",
     "is not a job default; accepted: jobParameters, targetEngine, idField, timeoutSeconds, executionMode"),
    ({"name": "m", "model": model_part(), "defaults": {"jobParameters": {"--master": "yarn-x", "--jars": "/x.jar"}}},
     "$.defaults.jobParameters['--jars']", "'spark.jars' is chosen by the operator"),
    ({"name": "m", "model": {"storedModel": {"modelAssets": []}}}, "$.model.storedModel.modelAssets",
     "should be non-empty"),
    ({"name": "m", "model": model_part("def nothing():\n    pass\n")}, "$.model.storedModel.modelAssets[0]",
     "names no score function"),
])
def test_a_bad_registration_is_refused_naming_field_value_and_what_is_accepted(service, body, path, words):
    response = service.post("/models", json=body, headers=ALICE)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["path"] == path and words in e["message"] for e in errors), errors
    assert response.json()["detail"].startswith("the model is invalid")
    assert "m" not in [m["name"] for m in service.get("/models", headers=ALICE).json()["models"]]


def test_a_model_that_runs_no_job_type_lists_what_each_lacks(service):
    response = service.post("/models", json={"name": "m", "model": model_part("def nothing():\n    pass\n")},
                            headers=ALICE)
    messages = [e["message"] for e in response.json()["errors"]]
    for role in ("score", "metrics", "train"):
        assert any(f"names no {role} function" in m for m in messages), messages


def test_a_job_naming_a_model_is_stored_complete_saying_which_version(service, tmp_path):
    register(service, {"name": "reffed", "model": model_part(), "defaults": {"idField": "id", "timeoutSeconds": 600}})
    register(service, {"name": "reffed", "model": model_part(description="latest")})
    inputs, outputs = [json_asset(str(tmp_path / "in.json"))], [json_asset(str(tmp_path / "out"))]
    job = service.submit({"model": {"ref": "reffed:1"}, "inputData": inputs, "outputData": outputs}, **ALICE)
    document = json.loads(stored(service, job["id"], "document"))
    assert document["model"] == model_part() and document["registeredModel"] == {"name": "reffed", "version": 1}
    assert document["idField"] == "id" and job["timeoutSeconds"] == 600
    assert job["name"] == "weighted"

    # no version: the latest; the job's own fields win over the model's defaults
    response = service.post("/models/reffed/jobs", headers=ALICE, json={
        "jobType": "MODEL_BATCH_TEST_JOB", "inputData": inputs, "outputData": outputs, "timeoutSeconds": 60})
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/jobs/{response.json()['id']}"
    document = json.loads(stored(service, response.json()["id"], "document"))
    assert document["registeredModel"] == {"name": "reffed", "version": 2}
    assert document["jobType"] == "MODEL_BATCH_TEST_JOB" and document["timeoutSeconds"] == 60
    assert "idField" not in document  # a default of score jobs only
    assert document["model"]["storedModel"]["modelMetaData"]["description"] == "latest"
    for made in (job["id"], response.json()["id"]):
        service.post(f"/jobs/{made}/cancel", headers=ALICE)


@pytest.mark.parametrize("model, path, words", [
    ({"ref": "nobody"}, "$.model.ref", "no registered model 'nobody' (your models: "),
    ({"ref": "reffed2:9"}, "$.model.ref", "no registered model 'reffed2' version 9"),
    ({"ref": "bad ref"}, "$.model.ref", "'bad ref' is not a registered model's reference: 'name'"),
    ({"ref": "x:latest"}, "$.model.ref", "'name:version'"),
    ({"ref": 3}, "$.model.ref", "3 is not a registered model's reference"),
    ({"ref": "reffed2", "storedModel": {}}, "$.model", "holds nothing else; found storedModel"),
])
def test_a_job_naming_a_missing_or_malformed_model_is_refused_and_nothing_stored(service, tmp_path, model, path, words):
    register(service, {"name": "reffed2", "model": model_part()})
    before = service.get("/jobs", headers=ALICE).json()["total"]
    response = service.post("/jobs", headers=ALICE, json={
        "model": model, "inputData": [json_asset(str(tmp_path / "in.json"))],
        "outputData": [json_asset(str(tmp_path / "out"))]})
    assert response.status_code == 422, response.text
    assert any(e["path"] == path and words in e["message"] for e in response.json()["errors"]), response.json()
    assert service.get("/jobs", headers=ALICE).json()["total"] == before


def training_job(service, name: str, tmp_path) -> dict:
    """A training job of model ``name``, followed to its end (its run under the stand-in)."""
    response = service.post(f"/models/{name}/jobs", headers=ALICE, json={
        "jobType": "MODEL_BATCH_TRAINING_JOB", "inputData": [json_asset(str(tmp_path / "in.json"))],
        "outputData": [json_asset(str(tmp_path / "weights.json"))]})
    assert response.status_code == 201, response.text
    deadline = time.monotonic() + 60
    while (job := service.get(f"/jobs/{response.json()['id']}", headers=ALICE).json())["jobStatus"] not in (
            "COMPLETE", "ERROR", "CANCELLED"):
        assert time.monotonic() < deadline, job
        time.sleep(service.poll_seconds)
    return job


def with_standin(model: dict, **told) -> dict:
    """``model`` with the FILE asset that tells the stand-in spark-submit how its runs end."""
    from support.spark_submit_standin import instructions

    model["storedModel"]["modelAssets"].append(instructions(**told))
    return model


def test_a_completed_training_job_registers_its_outputs_as_the_next_versions_attachments(service, tmp_path):
    register(service, {"name": "trainable", "model": with_standin(model_part()), "defaults": {"idField": "id"}})
    job = training_job(service, "trainable", tmp_path)
    assert job["jobStatus"] == "COMPLETE", job
    response = service.post("/models", headers=ALICE, json={"name": "trainable", "fromJob": job["id"]})
    assert response.status_code == 201, response.text
    trained = response.json()
    assert (trained["version"], trained["trainedBy"], trained["defaults"]) == (2, job["id"], {"idField": "id"})
    attachments = [a for a in trained["model"]["storedModel"]["modelAssets"] if a["assetType"] == "EXTERNAL_FILE"]
    assert attachments == [dict(json_asset(str(tmp_path / "weights.json")), assetRole="MODEL_ATTACHMENT")]
    assert trained["jobTypes"] == ["MODEL_BATCH_JOB", "MODEL_BATCH_TEST_JOB", "MODEL_BATCH_TRAINING_JOB"]


def test_registering_from_a_job_that_did_not_complete_training_is_refused(service, tmp_path):
    register(service, {"name": "untrained", "model": with_standin(model_part(), exit=1, error="no rows")})
    job = training_job(service, "untrained", tmp_path)
    refused = service.post("/models", headers=ALICE, json={"name": "untrained", "fromJob": job["id"]})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"path": "$.fromJob", "message": (
        f"job {job['id']} is a ERROR MODEL_BATCH_TRAINING_JOB; only a COMPLETE "
        "MODEL_BATCH_TRAINING_JOB has trained a model")}]
    bobs = service.post("/models", headers=BOB, json={"name": "untrained", "fromJob": job["id"]})
    assert bobs.status_code == 422 and "is none of your jobs" in bobs.json()["errors"][0]["message"]
    assert [v["version"] for v in service.get("/models/untrained", headers=ALICE).json()["versions"]] == [1]


def test_the_command_line_registers_lists_shows_deletes_and_creates_jobs(service, tmp_path):
    from test_cli import run

    token = tmp_path / "token"
    token.write_text(ALICE["Authorization"].split()[1])
    client = ["--url", service.url, "--token-file", str(token)]
    job_file = tmp_path / "job.json"  # a whole modelBatchJob: its model and defaults are kept
    job_file.write_text(json.dumps({"model": model_part(), "idField": "id", "inputData": []}))
    done = run(["model", "register", str(job_file), "--name", "cli-model", *client])
    assert (done.returncode, done.stdout) == (0, "cli-model:1\n"), done.stderr
    (tmp_path / "part.json").write_text(json.dumps(model_part()))  # just the model part
    done = run(["model", "register", str(tmp_path / "part.json"), "--name", "cli-model", *client])
    assert done.stdout == "cli-model:2\n"
    assert service.get("/models/cli-model/versions/1", headers=ALICE).json()["defaults"] == {"idField": "id"}

    listed = run(["model", "list", *client]).stdout.splitlines()
    assert any(line.split()[:2] == ["cli-model", "2"] for line in listed), listed
    shown = json.loads(run(["model", "show", "cli-model", *client]).stdout)
    assert [v["version"] for v in shown["versions"]] == [2, 1]

    done = run(["job", "create", "testjob", "cli-model:1", str(tmp_path / "in.json"), str(tmp_path / "out.csv"), *client])
    assert done.returncode == 0, done.stderr
    document = json.loads(stored(service, done.stdout.strip(), "document"))
    assert document["jobType"] == "MODEL_BATCH_TEST_JOB"
    assert document["registeredModel"] == {"name": "cli-model", "version": 1}
    assert [(a["fileUrl"], a["fileFormat"]) for a in document["inputData"] + document["outputData"]] == [
        (str(tmp_path / "in.json"), "JSON"), (str(tmp_path / "out.csv"), "CSV")]
    service.post(f"/jobs/{done.stdout.strip()}/cancel", headers=ALICE)

    refused = run(["job", "create", "batchjob", "nobody", "/in.json", "/out.json", *client])
    assert refused.returncode == 2 and "$.model.ref: no registered model 'nobody'" in refused.stderr
    refused = run(["job", "create", "batchjob", "cli-model", "/in.json", "/out.json", "--register", "x", *client])
    assert refused.returncode == 2 and "--register registers what a training job wrote" in refused.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"storedModel": {"modelAssets": []}}))
    refused = run(["model", "register", str(bad), "--name", "cli-model", *client])
    assert refused.returncode == 2 and "$.model.storedModel.modelAssets: [] should be non-empty" in refused.stderr

    done = run(["model", "delete", "cli-model", "--version", "1", *client])
    assert done.stdout == "cli-model: 1 version(s) deleted\n"
    assert [v["version"] for v in service.get("/models/cli-model", headers=ALICE).json()["versions"]] == [2]


def bulk(service, name: str, body: bytes, who: dict = ALICE, **params):
    return requests.post(f"{service.url}/models/{name}/score", data=body, params=params, timeout=30,
                         headers={"Content-Type": "application/x-ndjson", **who})


@pytest.fixture(scope="module")
def small_bulk(tmp_path_factory, standin_spark_home):
    """A service whose bulk requests may hold 200 bytes and 3 lines."""
    extra = ("  tokens:\n"
             f"    alice: {ALICE['Authorization'].split()[1]}\n"
             f"    bob: {BOB['Authorization'].split()[1]}\n"
             "bulk:\n  max_request_bytes: 200\n  max_lines: 3\n")
    svc = InProcessService(tmp_path_factory.mktemp("bulk") / "data", extra=extra,
                           spark_home=standin_spark_home).start()
    register(svc, {"name": "scorer", "model": model_part(), "defaults": {"idField": "id"}})
    yield svc
    svc.stop()


@pytest.mark.parametrize("body, status, words", [
    (b'{"id": 1, "x": 1}\n' * 12, 413, "the body holds 216 bytes; at most 200 are accepted (bulk.max_request_bytes)"),
    (b'{"id": 1}\n{"id": 2}\n\n{"id": 3}\n{"id": 4}\n', 400,
     "the body holds 4 records (lines); at most 3 are accepted (bulk.max_lines)"),
    (b"\n  \n", 400, "the body holds no records: send one JSON object a line"),
    (b'{"id": "\xff"}\n', 400, "the body is not UTF-8 text"),
])
def test_a_bulk_request_over_the_limits_or_without_records_is_refused_and_runs_nothing(small_bulk, body, status, words):
    before = small_bulk.get("/jobs", headers=ALICE).json()["total"]
    response = bulk(small_bulk, "scorer", body)
    assert response.status_code == status and response.json()["detail"].startswith(words), response.text
    assert small_bulk.get("/jobs", headers=ALICE).json()["total"] == before


def test_bulk_scoring_a_missing_or_another_users_model_is_404_and_needs_a_token(small_bulk):
    assert bulk(small_bulk, "scorer", b'{"id": 1}\n', BOB).status_code == 404
    assert bulk(small_bulk, "nobody", b'{"id": 1}\n').json()["detail"] == "no registered model 'nobody'"
    assert bulk(small_bulk, "scorer", b'{"id": 1}\n', version=7).status_code == 404
    assert bulk(small_bulk, "scorer", b'{"id": 1}\n', {}).status_code == 401


def test_lines_that_are_no_records_are_answered_with_errors_and_no_job_runs_for_them_alone(small_bulk):
    before = small_bulk.get("/jobs", headers=ALICE).json()["total"]
    response = bulk(small_bulk, "scorer", b'[1]\n{"x": 2}\n{"id": 3, "x": NaN}\n')
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.iter_lines()]
    assert [(line["line"], line["error"]) for line in lines] == [
        (1, "line 1 is a JSON list, not an object (one record a line)"),
        (2, "line 2 has no 'id', the model's idField, which each record must carry"),
        (3, "line 3 is not JSON: NaN is not a JSON value")]
    assert all(line["id"] is None and line["batchId"] is None for line in lines)
    assert all((line["model"], line["modelVersion"]) == ("scorer", 1) for line in lines)
    assert small_bulk.get("/jobs", headers=ALICE).json()["total"] == before
