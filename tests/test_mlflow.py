"""MLflow models with no source code (``modelMetaData.type`` MLFLOW): the model directory read at
admission (signature, requirements), and scored on the distributed path by `sparkrunner run`
(cold) and in a Spark Connect session (warm), compared with the model's own predictions.

The models are really saved by MLflow, once per session: a scikit-learn classifier on the iris
data with ``mlflow.sklearn.save_model``, and a custom ``mlflow.pyfunc.PythonModel``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import mlflow.pyfunc  # sparkrunner[mlflow] is part of the test extra
import mlflow.sklearn

from conftest import SPARKRUNNER, admitted, make_job, write_job
from sparkrunner.admission import Origin, admit
from sparkrunner.config import Settings
from sparkrunner.errors import JobInvalid, MlflowModelError
from sparkrunner.mlflow_model import check_requirements, installed_version, mlflow_installed, read_model

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class Banding(mlflow.pyfunc.PythonModel):
    """A custom pyfunc model: a score and a band from two columns. Each load and each predict
    call appends a line with its process id to ``calls_log``, so a test can see that the model is
    loaded once per Python worker, not per batch."""

    def __init__(self, calls_log: str):
        self.calls_log = calls_log

    def _note(self, what: str) -> None:
        with open(self.calls_log, "a") as log:
            log.write(f"{what} {os.getpid()}\n")

    def load_context(self, context):
        self._note("load")

    def predict(self, context, model_input, params=None):
        self._note("predict")
        score = model_input["x"] * 2 + model_input["k"]
        return pd.DataFrame({"score": score, "band": ["high" if s > 100 else "low" for s in score]})


@pytest.fixture(scope="session")
def saved(tmp_path_factory) -> dict:
    """The two models as MLflow saved them, the scikit-learn one's estimator, and the iris data."""
    import cloudpickle
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("mlflow-models")
    iris = load_iris(as_frame=True).frame
    iris.columns = [*FEATURES, "species"]
    estimator = LogisticRegression(max_iter=500).fit(iris[FEATURES], iris["species"])
    mlflow.sklearn.save_model(estimator, str(root / "iris"), serialization_format="cloudpickle",
                              signature=infer_signature(iris[FEATURES], estimator.predict(iris[FEATURES])))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this module
    calls_log = root / "banding-calls.log"
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", "x"), ColSpec("long", "k"), ColSpec("string", "note", required=False)]),
        outputs=Schema([ColSpec("double", "score"), ColSpec("string", "band")]))
    mlflow.pyfunc.save_model(str(root / "banding"), python_model=Banding(str(calls_log)), signature=signature)
    return {"iris": root / "iris", "banding": root / "banding", "calls_log": calls_log,
            "estimator": estimator, "data": iris}


def mlflow_job(model_dir: Path, inputs: list[dict], outputs: list[dict], **fields) -> dict:
    """A score job for an MLflow model: no source, the model directory its one attachment."""
    doc = {"model": {"storedModel": {
        "modelMetaData": {"type": "MLFLOW", "name": model_dir.name, "description": "saved by mlflow",
                          "custom": {}, "tags": []},
        "modelAssets": [{"assetType": "EXTERNAL_FILE", "name": model_dir.name, "fileUrl": str(model_dir),
                         "assetRole": "MODEL_ATTACHMENT"}]}},
        "inputData": inputs, "outputData": outputs}
    doc.update(fields)
    return doc


def data_asset(path: Path, file_format: str, **fields) -> dict:
    return {"assetType": "EXTERNAL_FILE", "name": path.name, "fileUrl": path.as_uri(), "fileFormat": file_format,
            **fields}


def copy_with_requirements(model_dir: Path, tmp_path: Path, requirements: str) -> Path:
    copied = tmp_path / model_dir.name
    shutil.copytree(model_dir, copied)
    (copied / "requirements.txt").write_text(requirements)
    return copied


# ----- reading the model directory


def test_a_saved_sklearn_model_gives_its_input_columns_prediction_and_requirements(saved):
    model = read_model(saved["iris"])
    assert [(r["name"], r["type"], r["nullable"]) for r in model.input_fields] == [
        (name, "number", False) for name in FEATURES]
    assert [(r["name"], r["type"]) for r in model.output_fields] == [("prediction", "integer")]
    assert model.pyfunc["loader_module"] == "mlflow.sklearn"
    names = {line.split("==")[0] for line in model.requirements}
    assert {"mlflow", "scikit-learn", "cloudpickle"} <= names


def test_a_custom_pyfunc_model_gives_named_outputs_and_an_optional_column(saved):
    model = read_model(saved["banding"])
    assert [(r["name"], r["type"], r["optional"]) for r in model.input_fields] == [
        ("x", "number", False), ("k", "integer", False), ("note", "string", True)]
    assert dict(model.input_types) == {"x": "double", "k": "long", "note": "string"}
    assert [(r["name"], r["type"]) for r in model.output_fields] == [("score", "number"), ("band", "string")]


def test_a_directory_without_mlmodel_or_without_a_pyfunc_flavor_is_refused(saved, tmp_path):
    with pytest.raises(MlflowModelError, match="holds no MLmodel file"):
        read_model(tmp_path)
    copied = tmp_path / "sklearn-only"
    shutil.copytree(saved["iris"], copied)
    import yaml
    mlmodel = yaml.safe_load((copied / "MLmodel").read_text())
    del mlmodel["flavors"]["python_function"]
    (copied / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(MlflowModelError, match=r"has no python_function flavor \(flavors: sklearn\)"):
        read_model(copied)


def test_a_text_file_of_the_model_directory_larger_than_mlflow_writes_is_refused_unread(saved, tmp_path):
    from sparkrunner.mlflow_model import MAX_TEXT_BYTES

    copied = copy_with_requirements(saved["iris"], tmp_path, "numpy\n" + "#" * MAX_TEXT_BYTES)
    with pytest.raises(MlflowModelError, match=r"requirements.txt' is larger than 1048576 bytes"):
        read_model(copied)


# ----- requirements against what is installed


def test_requirements_a_missing_package_and_another_major_version_are_unmet_a_pin_of_the_same_major_warned():
    sklearn = installed_version("scikit-learn")
    major = int(sklearn.split(".")[0])
    check = check_requirements([
        "sparkrunner-no-such-package==1.0", f"scikit-learn=={major - 1}.0.0", f"scikit-learn=={major}.0.0",
        f"scikit-learn>={major + 1}", "pandas; python_version < '3'", "mlflow==2.0.1", "-c constraints.txt"])
    assert check.unmet == ("sparkrunner-no-such-package==1.0", f"scikit-learn=={major - 1}.0.0", f"scikit-learn>={major + 1}")
    assert check.reasons == (
        "needs 'sparkrunner-no-such-package==1.0', and sparkrunner-no-such-package is not installed",
        f"needs 'scikit-learn=={major - 1}.0.0', and scikit-learn {sklearn} is installed (another major version)",
        f"needs 'scikit-learn>={major + 1}', and scikit-learn {sklearn} is installed")
    mlflow_provider = "mlflow" if installed_version("mlflow") else "mlflow-skinny"
    assert check.warnings == (
        f"needs 'scikit-learn=={major}.0.0', and scikit-learn {sklearn} is installed (the same major version: "
        "the model was saved with another release)",
        f"needs 'mlflow==2.0.1', and {mlflow_provider} {installed_version(mlflow_provider)} is installed "
        "(MLflow loads models saved by other releases)",
        "the requirement line '-c constraints.txt' is not a plain package requirement; not checked")


def test_without_mlflow_the_refusal_says_what_to_install():
    assert not mlflow_installed(lambda name: None)
    check = check_requirements(["mlflow==3.0"], version_of=lambda name: None)
    assert check.unmet == ("mlflow==3.0",)
    assert check.reasons == ("needs 'mlflow==3.0', and mlflow is not installed (pip install 'sparkrunner[mlflow]')",)


def test_sparkrunner_admits_other_jobs_without_importing_mlflow():
    program = ("import sys; sys.modules['mlflow'] = None\n"  # an import of mlflow would fail
               "from conftest import admitted, make_job\n"
               "import sparkrunner.cli, sparkrunner.api\n"
               "admitted(make_job())\n"
               "print('mlflow' in sys.modules and sys.modules['mlflow'] is not None)")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ----- admission


def test_admission_fills_the_plan_from_the_signature_and_warns_of_a_pin_of_the_same_major(saved, tmp_path):
    sklearn = installed_version("scikit-learn")
    other_release = f"{sklearn.split('.')[0]}.0.0"
    model_dir = copy_with_requirements(saved["iris"], tmp_path, f"scikit-learn=={other_release}\npandas\n")
    job = admit(mlflow_job(model_dir, [data_asset(tmp_path / "in.csv", "CSV")],
                           [data_asset(tmp_path / "out", "JSON")], idField="id"),
                Settings(), Origin.LOCAL, warm_unavailable=None)
    plan = job.spec.scoring
    assert job.spec.primary is None and job.spec.function == "predict" and plan.form == "mlflow"
    assert [r["name"] for r in plan.input_fields] == FEATURES and plan.check_input
    assert [r["name"] for r in plan.output_fields] == ["prediction"] and not plan.check_output
    assert dict(plan.mlflow.input_types) == dict.fromkeys(FEATURES, "double")
    assert job.warnings == (f"$.model.storedModel.modelAssets[0].fileUrl: the MLflow model needs "
                            f"'scikit-learn=={other_release}', and scikit-learn {sklearn} is installed (the same "
                            "major version: the model was saved with another release)",)
    assert job.execution.warm, job.execution.reason  # a local directory reaches a warm session too


def test_an_mlflow_model_needing_what_is_not_installed_gets_an_environment_of_its_own(saved, tmp_path):
    model_dir = copy_with_requirements(saved["iris"], tmp_path, "scikit-learn\nLightGBM_not_here>=4\n")
    job = admitted(mlflow_job(model_dir, [data_asset(tmp_path / "in.csv", "CSV")], [data_asset(tmp_path / "out", "CSV")]))
    where = "$.model.storedModel.modelAssets[0].fileUrl"
    # Only what the base lacks goes into the environment; what it has is reused.
    assert (job.requirements.source, job.requirements.lines) == (where, ("lightgbm-not-here>=4",))
    assert job.warnings == (f"{where}: the MLflow model needs 'LightGBM_not_here>=4', and LightGBM_not_here "
                            "is not installed: it runs in an environment of its own that has it",)
    assert not job.execution.warm and "brings its own packages" in job.execution.reason


def test_admission_refuses_what_an_mlflow_model_cannot_be(saved, tmp_path):
    inputs, outputs = [data_asset(tmp_path / "in.csv", "CSV")], [data_asset(tmp_path / "out", "CSV")]
    with_source = mlflow_job(saved["iris"], inputs, outputs)
    with_source["model"]["storedModel"]["modelAssets"].insert(0, make_job()["model"]["storedModel"]["modelAssets"][0])
    training = mlflow_job(saved["iris"], inputs, outputs, jobType="MODEL_BATCH_TRAINING_JOB")
    not_a_model = mlflow_job(tmp_path, inputs, outputs)
    no_attachment = mlflow_job(saved["iris"], inputs, outputs)
    no_attachment["model"]["storedModel"]["modelAssets"] = [{"assetType": "FILE", "filename": "x.txt", "content": "x"}]
    refusals = {}
    for name, doc in [("with_source", with_source), ("training", training), ("not_a_model", not_a_model),
                      ("no_attachment", no_attachment)]:
        with pytest.raises(JobInvalid) as refused:
            admitted(doc)
        refusals[name] = [str(e) for e in refused.value.errors]
    assert refusals["with_source"] == [
        "$.model.storedModel.modelAssets[0].primaryModelSource: is true, and a model of type 'MLFLOW' runs no "
        "source code of its own: its MLflow model directory is scored with mlflow.pyfunc; drop the primary "
        "source, or give the model another type"]
    assert refusals["training"][0].startswith("$.jobType: is a train job, and a model of type 'MLFLOW' is only scored")
    assert refusals["not_a_model"] == [
        f"$.model.storedModel.modelAssets[0].fileUrl: {str(tmp_path)!r} holds no MLmodel file: it is not an "
        "MLflow model directory"]
    assert refusals["no_attachment"][0].startswith("$.model.storedModel.modelAssets: holds no EXTERNAL_FILE asset")


# ----- scoring, cold and warm


def json_lines(directory: Path) -> list[dict]:
    return [json.loads(line) for part in sorted(directory.glob("part-*.json")) for line in part.read_text().splitlines()]


@pytest.mark.e2e
def test_sparkrunner_run_scores_an_mlflow_sklearn_model_as_the_model_predicts(saved, tmp_path):
    """Cold, through spark-submit: the rows and values are the estimator's own predictions, the
    records that break the signature are rejected with the reason, the id is carried."""
    data = saved["data"][FEATURES].copy()
    data.insert(0, "flower", [f"f{i:03d}" for i in range(len(data))])
    csv = data.to_csv(index=False).splitlines()
    csv[6] = csv[6].replace(csv[6].split(",")[2], "wide", 1)  # flower f005: sepal_width is not a number
    csv[11] = ",".join(csv[11].split(",")[:4]) + ","  # flower f010: petal_width missing
    source = tmp_path / "iris.csv"
    source.write_text("\n".join(csv) + "\n")
    job = write_job(tmp_path / "job.json", mlflow_job(
        saved["iris"], [data_asset(source, "CSV")], [data_asset(tmp_path / "species", "JSON")], idField="flower",
        targetEngine={"sparkConf": {"spark.sql.execution.arrow.maxRecordsPerBatch": "40"}}))
    done = subprocess.run([SPARKRUNNER, "run", "-q", "--workdir", str(tmp_path / "run"), str(job)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + (tmp_path / "run" / "driver.log").read_text()[-3000:]
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == {
        "recordsRead": 150, "recordsScored": 148, "recordsRejected": 2, "rowsWritten": 148}
    scored = pd.DataFrame(json_lines(tmp_path / "species")).set_index("flower").sort_index()
    assert list(scored.columns) == ["prediction"]
    kept = data.set_index("flower").drop(["f005", "f010"])
    expected = saved["estimator"].predict(kept[FEATURES])
    assert scored.index.tolist() == kept.index.tolist()
    assert scored["prediction"].tolist() == expected.tolist()
    rejected = {row["flower"]: row["reason"] for row in json_lines(tmp_path / "species_rejected")}
    assert rejected == {"f005": "input: sepal_width: 'wide' is not a number", "f010": "input: petal_width: missing"}


class Camelizing(mlflow.pyfunc.PythonModel):
    """A custom pyfunc model that needs a package the base installation lacks (inflection)."""

    def predict(self, context, model_input, params=None):
        import inflection

        return pd.DataFrame({"camel": [inflection.camelize(t) for t in model_input["text"]],
                             "version": inflection.__version__})


@pytest.mark.e2e
def test_an_mlflow_model_needing_a_package_the_base_lacks_runs_in_an_environment_built_from_its_requirements(tmp_path):
    """Issue 18 with issue 17: the requirements MLflow saved with the model name a package this
    installation lacks; the job is not refused but runs on an environment that has it."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    import cloudpickle

    assert installed_version("inflection") is None  # the base lacks it
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this module
    model_dir = tmp_path / "camelizing"
    mlflow.pyfunc.save_model(str(model_dir), python_model=Camelizing(), pip_requirements=["inflection==0.5.1"],
                             signature=ModelSignature(inputs=Schema([ColSpec("string", "text")]),
                                                      outputs=Schema([ColSpec("string", "camel"),
                                                                      ColSpec("string", "version")])))
    source = tmp_path / "words.csv"
    source.write_text("id,text\n1,device_type\n2,active_model\n")
    job = write_job(tmp_path / "job.json", mlflow_job(
        model_dir, [data_asset(source, "CSV")], [data_asset(tmp_path / "camel", "JSON")], idField="id"))
    config = tmp_path / "sparkrunner.yaml"
    config.write_text(f"environments:\n  cache_dir: {tmp_path / 'environments'}\n")
    done = subprocess.run([SPARKRUNNER, "--config", str(config), "run", "-q", "--workdir", str(tmp_path / "run"),
                           str(job)], capture_output=True, text=True, timeout=600)
    log = (tmp_path / "run" / "driver.log").read_text()
    assert done.returncode == 0, done.stderr + log[-3000:]
    assert "'inflection==0.5.1', and inflection is not installed: it runs in an environment of its own" in done.stderr
    assert "sparkrunner: environment: built" in log and "inflection==0.5.1" in log
    rows = sorted(json_lines(tmp_path / "camel"), key=lambda row: row["id"])
    assert rows == [{"id": "1", "camel": "DeviceType", "version": "0.5.1"},
                    {"id": "2", "camel": "ActiveModel", "version": "0.5.1"}]


@pytest.mark.e2e
def test_a_custom_pyfunc_model_scores_warm_loaded_once_per_python_worker(saved, connect_server, tmp_path):
    """Warm, in a Spark Connect session (the model directory reaches the workers as an archive):
    the signature's output columns with no sample, values as predict computes them, a record
    without a required column rejected, the model loaded once per worker over many batches."""
    from test_warm import run_warm

    saved["calls_log"].unlink(missing_ok=True)
    frame = pd.DataFrame({"id": range(1, 401), "x": [i * 0.5 for i in range(1, 401)], "k": [i % 7 for i in range(1, 401)],
                          "extra": "carried"})
    frame.loc[frame["id"] == 13, "k"] = None  # k is required by the signature
    source = tmp_path / "numbers.parquet"
    frame.to_parquet(source, index=False)
    doc = mlflow_job(saved["banding"], [data_asset(source, "PARQUET")], [data_asset(tmp_path / "scores", "PARQUET")],
                     idField="id", targetEngine={"sparkConf": {"spark.sql.execution.arrow.maxRecordsPerBatch": "25"}})
    workdir = run_warm(connect_server, doc, tmp_path / "warm")
    assert json.loads((workdir / "result.json").read_text()) == {
        "recordsRead": 400, "recordsScored": 399, "recordsRejected": 1, "rowsWritten": 399}
    scores = pd.read_parquet(tmp_path / "scores").sort_values("id", ignore_index=True)
    assert list(scores.columns) == ["id", "score", "band"]
    kept = frame[frame["id"] != 13].reset_index(drop=True)
    expected = kept["x"] * 2 + kept["k"]
    assert scores["id"].tolist() == kept["id"].tolist()
    assert scores["score"].tolist() == expected.tolist()
    assert scores["band"].tolist() == ["high" if s > 100 else "low" for s in expected]
    rejected = pd.read_parquet(tmp_path / "scores_rejected")
    assert rejected[["id", "reason"]].values.tolist() == [[13, "input: k: missing"]]
    calls = [line.split() for line in saved["calls_log"].read_text().splitlines()]
    loads = [pid for what, pid in calls if what == "load"]
    predicts = [pid for what, pid in calls if what == "predict"]
    assert len(loads) == len(set(loads)), f"a worker loaded the model twice: {calls}"
    assert set(predicts) <= set(loads) and len(predicts) >= 16 > len(loads)
