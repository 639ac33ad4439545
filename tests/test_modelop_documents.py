"""Documents shaped like ModelOp Center's own run unchanged: validated, laid out, run, served.

The documents come from :mod:`modelop_documents`, built field by field from real ones. The fast
tests admit and lay them out; the e2e tests run them with real spark-submit, through
``sparkrunner run`` and through the service with a client that posts as ModelOp's does.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import requests

import modelop_documents as modelop
from conftest import SPARKRUNNER, admitted, write_job
from sparkrunner.config import Settings, SparkSettings
from sparkrunner.errors import JobInvalid
from sparkrunner.workdir import render

MASTER_WARNING = ("$.targetEngine.sparkConf['--master']: 'yarn' is overridden: spark.master is chosen "
                  "by the operator, and the configuration's 'local[*]' is used")


def test_a_real_shaped_spark_job_is_admitted_with_a_warning_for_its_master(tmp_path):
    job = admitted(modelop.spark_job(tmp_path))
    assert job.warnings == (MASTER_WARNING,)
    assert job.settings.conf["spark.executor.memory"] == "512m"  # targetEngine.executorMemory
    spec = job.spec
    assert (spec.function, spec.init_function, spec.primary.filename) == ("action", "begin", "titanic_spark.py")
    # FILE assets never reach the three lists; the MinIO attachments do, unchanged.
    assert [a["filename"] for a in spec.inputs] == ["passengers.csv"]
    assert [a["fileUrl"] for a in spec.attachments] == [
        "http://minio:9000/modelop/6d1c0e2a-8a4f-4a7e-a3c1-readme/9f2b7c1d-readme.md",
        "http://minio:9000/modelop/6d1c0e2a-8a4f-4a7e-a3c1-comparator/9f2b7c1d-comparator.json"]
    assert spec.attachments[0]["name"] == "6d1c0e2a-8a4f-4a7e-a3c1-readme/9f2b7c1d-readme.md"


def test_the_same_master_as_the_configurations_brings_no_warning(tmp_path):
    settings = Settings(spark=SparkSettings(master="yarn"))
    assert admitted(modelop.spark_job(tmp_path), settings).warnings == ()


def test_file_assets_from_model_assets_and_input_data_are_written_byte_for_byte(tmp_path):
    doc = modelop.spark_job(tmp_path)
    workdir = render(admitted(doc).spec, tmp_path / "wd", "job-1")
    schema_asset = doc["model"]["storedModel"]["modelAssets"][1]
    assert (workdir / "df_sample_scored_input_schema.avsc").read_bytes() == \
        base64.b64decode(schema_asset["fileContent"])
    assert json.loads((workdir / "fare_bands.json").read_text()) == {"high": 50.0}
    # The document is kept as received: carried fields, the engine record, localFile untouched.
    kept = json.loads((workdir / "job.json").read_text())
    assert kept == doc
    assert not (workdir / "passengers.csv").exists()


@pytest.mark.parametrize("parsed,written", [
    ({"type": "record", "fields": []}, '{\n  "type": "record",\n  "fields": []\n}'),
    ("plain text\n", "plain text\n"),
])
def test_without_file_content_the_parsed_content_is_written(tmp_path, parsed, written):
    doc = modelop.spark_job(tmp_path)
    asset = doc["model"]["storedModel"]["modelAssets"][1]
    del asset["fileContent"]
    asset["fileContentString"] = parsed
    workdir = render(admitted(doc).spec, tmp_path / "wd", "job-1")
    assert (workdir / "df_sample_scored_input_schema.avsc").read_text() == written


def test_a_file_asset_with_no_content_is_refused_naming_the_fields(tmp_path):
    doc = modelop.spark_job(tmp_path)
    asset = doc["inputData"][1]
    del asset["fileContent"], asset["fileContentString"]
    with pytest.raises(JobInvalid) as info:
        admitted(doc)
    [error] = info.value.errors
    assert error.path == "$.inputData[1]"
    assert "needs fileContent (base64), fileContentString or content" in error.message
    assert "localFile" in error.message


def test_a_file_asset_in_output_data_is_written_and_its_name_checked(tmp_path):
    doc = modelop.spark_job(tmp_path)
    doc["outputData"].append(modelop.file_asset("../escape.txt", "x", role="OUTPUT_DATA"))
    with pytest.raises(JobInvalid) as info:
        admitted(doc)
    [error] = info.value.errors
    assert error.path == "$.outputData[1].filename"
    assert "may not contain '/'" in error.message
    doc["outputData"][1] = modelop.file_asset("notes.txt", "kept", role="OUTPUT_DATA")
    workdir = render(admitted(doc).spec, tmp_path / "wd", "job-1")
    assert (workdir / "notes.txt").read_text() == "kept"


def test_validate_prints_the_warning_and_accepts(tmp_path):
    path = write_job(tmp_path / "job.json", modelop.spark_job(tmp_path))
    done = subprocess.run([SPARKRUNNER, "validate", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"sparkrunner: warning: {MASTER_WARNING}"]
    assert done.stdout == ("ok: MODEL_BATCH_JOB job 'titanic-spark' calls score function action(), init begin() "
                           "in titanic_spark.py; 1 input(s), 1 output(s), 2 attachment(s)\n"
                           "execution: cold: titanic_spark.py line 23 uses '.sparkContext', which Spark "
                           "Connect does not offer\n")


def test_a_real_shaped_python_model_plans_its_checks_from_the_extended_schemas(tmp_path):
    job = admitted(modelop.python_job(tmp_path))
    assert job.warnings == (MASTER_WARNING,)
    plan = job.spec.scoring
    assert (plan.form, plan.check_input, plan.check_output) == ("record", True, False)
    assert [f["name"] for f in plan.output_fields] == ["PassengerId", "score"]
    assert plan.rejected.url == str(tmp_path / "rejected")


def read_json_lines(directory) -> list[dict]:
    return [json.loads(line) for part in sorted(directory.glob("part-*.json"))
            for line in part.read_text().splitlines()]


def check_python_job_ran(tmp_path) -> None:
    """Scores 0.5 * Fare / Pclass for the four good rows; the fifth's Fare is 'cheap'."""
    scores = sorted(read_json_lines(tmp_path / "scores"), key=lambda r: r["PassengerId"])
    assert [(r["PassengerId"], round(r["score"], 3)) for r in scores] == [
        (1, 1.208), (2, 35.642), (3, 1.321), (4, 26.55)]
    [rejected] = read_json_lines(tmp_path / "rejected")
    assert json.loads(rejected["record"])["PassengerId"] == "5"  # as read from the CSV
    assert "Fare" in rejected["reason"], rejected


def check_spark_job_ran(result: dict, tmp_path) -> None:
    """The three-list job's result and output, as the model computes them from PASSENGERS."""
    assert result["rows"] == 5
    assert result["columns"] == ["PassengerId", "Pclass", "Sex", "Age", "Fare"]
    assert result["executor_memory"] == "512m"
    assert result["master"] == "local[*]"
    assert result["attachments"][0].startswith("http://minio:9000/modelop/")
    rows = read_json_lines(tmp_path / "scored")
    assert [(r["PassengerId"], r["band"]) for r in rows] == [
        (1, "false"), (2, "true"), (3, "false"), (4, "true"), (5, "false")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Both real-shaped documents run with `sparkrunner run -q`, each in a directory of its own,
    started together (two JVMs on two cores overlap better than they follow):
    {kind: (the command's outcome, directory)}."""
    started = {}
    for kind, document in (("spark", modelop.spark_job), ("python", modelop.python_job)):
        directory = tmp_path_factory.mktemp(f"run-{kind}")
        path = write_job(directory / "job.json", document(directory))
        with open(directory / "stdout", "wb") as out, open(directory / "stderr", "wb") as err:
            started[kind] = (subprocess.Popen([SPARKRUNNER, "run", "-q", str(path), "--workdir", str(directory / "wd")],
                                              stdout=out, stderr=err), directory)
    done = {}
    for kind, (process, directory) in started.items():
        returncode = process.wait(timeout=600)
        done[kind] = (subprocess.CompletedProcess(process.args, returncode, (directory / "stdout").read_text(),
                                                  (directory / "stderr").read_text()), directory)
    return done


@pytest.mark.e2e
def test_a_real_shaped_spark_job_runs_unchanged_with_sparkrunner_run(runs):
    done, directory = runs["spark"]
    workdir = directory / "wd"
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"sparkrunner: warning: {MASTER_WARNING}" in done.stderr
    first = (workdir / "driver.log").read_text().splitlines()[0]
    assert first == f"sparkrunner: warning: {MASTER_WARNING}"
    check_spark_job_ran(json.loads((workdir / "result.json").read_text()), directory)


@pytest.mark.e2e
def test_a_real_shaped_python_model_runs_unchanged_with_sparkrunner_run(runs):
    done, directory = runs["python"]
    assert done.returncode == 0, done.stdout + done.stderr
    check_python_job_ran(directory)


@pytest.mark.e2e
def test_a_real_shaped_spark_job_runs_through_the_service_posted_as_modelop_posts(tmp_path):
    from service_helpers import Service

    service = Service(tmp_path / "data").start()
    try:
        # ModelOp's clients: requests.post(url, json=payload), no other header.
        response = requests.post(service.url + "/jobs", json=modelop.spark_job(tmp_path), timeout=30)
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["warnings"] == [MASTER_WARNING]
        job = service.wait_for(created["id"], {"COMPLETE", "ERROR", "CANCELLED"})
        assert job["jobStatus"] == "COMPLETE", job
        check_spark_job_ran(job["result"], tmp_path)
        log = service.get(f"/jobs/{created['id']}/log", params={"from": 0, "size": 1}).json()
        assert log["log"] == [f"sparkrunner: warning: {MASTER_WARNING}"]
    finally:
        service.stop()
