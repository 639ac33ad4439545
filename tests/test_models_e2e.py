"""Registered models and bulk scoring through a real `sparkrunner serve` with warm jobs on (real
Spark: a warm Spark Connect server, and spark-submit for a cold job): a model registered once
runs as score, metrics and training jobs by name over REST and from the command line, a trained
version is registered and scores; bulk scoring answers JSON lines with ids and errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from service_helpers import Service, stored
from test_cli import run
from test_models import MODEL_SOURCE, json_asset, model_part

pytestmark = pytest.mark.e2e

INPUT_SCHEMA = {"type": "object", "required": ["id", "x"],
                "properties": {"id": {"type": "integer"}, "x": {"type": "number"}}}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-roots")


@pytest.fixture(scope="module")
def warm(tmp_path_factory, roots):
    """A service with warm jobs on; its warm server started ahead of the first job."""
    service = Service(tmp_path_factory.mktemp("model-service") / "data", warm=True, local_roots=[roots],
                      extra="  max_concurrent_jobs: 2\n").start()
    yield service
    service.stop()


def register(service: Service, body: dict) -> dict:
    response = service.post("/models", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def write_records(path: Path, xs: list[float]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "x": x}) + "\n" for i, x in enumerate(xs, 1)))
    return path


def read_json_dir(path: Path) -> list[dict]:
    return [json.loads(line) for part in sorted(path.glob("part-*")) for line in part.read_text().splitlines()]


def test_a_registered_model_scores_evaluates_and_trains_by_name_and_its_trained_version_scores(warm, roots):
    register(warm, {"name": "weighted", "model": model_part(), "defaults": {"idField": "id"}})
    data = write_records(roots / "train.json", [1.0, 2.0, 4.0])

    # score by REST, as a ModelOp client posts a job (warm)
    response = requests.post(f"{warm.url}/models/weighted/jobs", timeout=30, json={
        "inputData": [json_asset(str(data))], "outputData": [json_asset(str(roots / "scores-v1"))]})
    assert response.status_code == 201, response.text
    job = warm.wait_for(response.json()["id"], {"COMPLETE", "ERROR"})
    assert job["jobStatus"] == "COMPLETE", job
    assert sorted((r["id"], r["score"]) for r in read_json_dir(roots / "scores-v1")) == [(1, 1.0), (2, 2.0), (3, 4.0)]

    # metrics and training from the command line, by name; the trained model registered as version 2
    client = ["--url", warm.url]
    done = run(["job", "create", "testjob", "weighted", str(data), str(roots / "metrics.json"), "--wait", *client])
    assert done.returncode == 0, done.stderr
    assert warm.job(done.stdout.splitlines()[0])["result"] == {"rows": 3, "mean_x": 7 / 3}
    weights = roots / "v2" / "weights.json"
    weights.parent.mkdir()
    done = run(["job", "create", "trainingjob", "weighted:1", str(data), str(weights), "--register", "weighted",
                *client])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "weighted:2"
    assert json.loads(weights.read_text()) == {"weight": 4.0}
    v2 = warm.get("/models/weighted/versions/2").json()
    assert v2["trainedBy"] == done.stdout.splitlines()[0] and v2["defaults"] == {"idField": "id"}
    assert [a["fileUrl"] for a in v2["model"]["storedModel"]["modelAssets"] if a["assetType"] == "EXTERNAL_FILE"] \
        == [str(weights)]

    # the trained version scores with its weights, here with a spark-submit of its own
    response = requests.post(f"{warm.url}/jobs", timeout=30, json={
        "model": {"ref": "weighted"}, "executionMode": "cold",
        "inputData": [json_asset(str(data))], "outputData": [json_asset(str(roots / "scores-v2"))]})
    job = warm.wait_for(response.json()["id"], {"COMPLETE", "ERROR"})
    assert (job["jobStatus"], job["executionMode"]) == ("COMPLETE", "cold"), job
    assert sorted((r["id"], r["score"]) for r in read_json_dir(roots / "scores-v2")) == [(1, 4.0), (2, 8.0), (3, 16.0)]


def bulk_lines(response: requests.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.iter_lines() if line]


def test_bulk_scoring_answers_each_line_with_its_id_and_each_bad_one_with_an_error(warm):
    register(warm, {"name": "checked", "model": model_part(inputSchema=INPUT_SCHEMA, enableInputSchemaChecking=True)})
    body = "\n".join([json.dumps({"id": 10, "x": 1.5}), json.dumps({"id": 11, "x": "heavy"}), "not json",
                      json.dumps({"id": 12, "x": 2}), "", json.dumps([1, 2])]) + "\n"
    response = requests.post(f"{warm.url}/models/checked/score", data=body.encode(), timeout=120,
                             headers={"Content-Type": "application/x-ndjson"})
    lines = bulk_lines(response)
    batch = response.headers["Location"].rsplit("/", 1)[1]
    by_id = {line["sparkrunner_id"]: line for line in lines}
    assert sorted(by_id) == [1, 2, 3, 4, 6]  # line numbers: the empty line 5 is no record
    assert {(n, line["result"]["score"]) for n, line in by_id.items() if "result" in line} == {(1, 1.5), (4, 2.0)}
    assert by_id[1]["result"] == {"id": 10, "score": 1.5}
    assert by_id[2]["error"].startswith("input: ") and "'heavy'" in by_id[2]["error"]
    assert by_id[2]["record"] == {"sparkrunner_id": 2, "id": 11, "x": "heavy"}
    assert by_id[3]["error"].startswith("line 3 is not JSON")
    assert by_id[6]["error"] == "line 6 is a JSON list, not an object (one record a line)"
    for line in lines:
        assert (line["batchId"], line["model"], line["modelVersion"]) == (batch, "checked", 1)
        assert line["startTime"] <= line["endTime"]
    job = warm.job(batch)  # recorded like any other job
    assert (job["jobStatus"], job["jobType"], job["executionMode"]) == ("COMPLETE", "MODEL_BATCH_JOB", "warm")
    assert batch in [j["id"] for j in warm.get("/jobs").json()["jobs"]]

    # the model's own idField; the next batches of the model take over the session the first
    # left, its Python workers started: a small batch answers in about a second
    register(warm, {"name": "keyed", "model": model_part(), "defaults": {"idField": "id"}})
    seconds, sessions = [], []
    for n in range(3):
        began = time.monotonic()
        response = requests.post(f"{warm.url}/models/keyed/score", timeout=120,
                                 data="".join(json.dumps({"id": f"r{i}", "x": i + n}) + "\n" for i in range(20)),
                                 headers={"Content-Type": "application/x-ndjson"})
        lines = bulk_lines(response)
        seconds.append(time.monotonic() - began)
        assert sorted((line["id"], line["result"]["score"]) for line in lines) == sorted(
            (f"r{i}", float(i + n)) for i in range(20))
        assert "sparkrunner_id" not in lines[0] and lines[0]["model"] == "keyed"
        sessions.append(stored(warm, response.headers["Location"].rsplit("/", 1)[1], "session_id"))
    print("20 records answered in " + ", ".join(f"{s:.2f}" for s in seconds) + " s")
    assert sessions[0] == sessions[1] == sessions[2] != stored(warm, batch, "session_id")
    assert max(seconds[1:]) < 5, f"a small batch took {max(seconds[1:]):.1f} s in a kept session"


MODEL_DAG = '''\
from airflow.sdk import DAG

from sparkrunner.airflow import SparkRunnerJobOperator

ASSET = {{"assetType": "EXTERNAL_FILE", "fileFormat": "JSON"}}

with DAG("registered_model", schedule=None, default_args={{"retries": 0}}):
    SparkRunnerJobOperator(task_id="score", model="airflow-model:1", poll_interval=1,
                           input_data=[dict(ASSET, name="in", fileUrl={data!r})],
                           output_data=[dict(ASSET, name="out", fileUrl={out!r} + "/scores-{{{{ ds }}}}")])
'''


def test_the_airflow_operator_runs_a_registered_model_by_name(warm, roots, migrated_airflow_db, tmp_path):
    from test_airflow import LOGICAL_DATE, Airflow

    register(warm, {"name": "airflow-model", "model": model_part(), "defaults": {"idField": "id"}})
    data = write_records(roots / "airflow-in.json", [3.0, 5.0])
    airflow = Airflow(tmp_path / "airflow", migrated_airflow_db, warm)
    airflow.add("registered_model.py", MODEL_DAG.format(data=str(data), out=str(roots)))
    returncode, log = airflow.dags_test("registered_model")
    assert returncode == 0, log[-5000:]
    assert airflow.tasks("registered_model") == {"score": ("success", 1)}
    assert airflow.xcom("registered_model", "score") == {
        "recordsRead": 2, "recordsScored": 2, "recordsRejected": 0, "rowsWritten": 2}
    scores = roots / f"scores-{LOGICAL_DATE}"  # the operator's templates rendered
    assert sorted((r["id"], r["score"]) for r in read_json_dir(scores)) == [(1, 3.0), (2, 5.0)]
    job = warm.job(airflow.xcom("registered_model", "score", key="job_id"))
    assert (job["jobStatus"], job["name"]) == ("COMPLETE", "weighted")
