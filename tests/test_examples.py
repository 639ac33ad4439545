"""The examples end to end with `sparkrunner run`: the Titanic PySpark model and the scikit-learn
model, trained then scored two ways. Both run once per session, side by side (conftest's ``examples``).

The Titanic jobs run through the service in tests/test_airflow.py (from Airflow) and on the
standalone cluster in tests/test_distributed.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest


pytestmark = pytest.mark.e2e


def read_scores(directory: Path) -> list[dict]:
    rows = []
    for part in sorted(directory.glob("part-*.csv")):
        with open(part, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def output_dir(job: Path, index: int = 0) -> Path:
    return Path(json.loads(job.read_text())["outputData"][index]["fileUrl"].removeprefix("file://"))


def check_outputs(jobs: dict[str, Path], metrics: dict) -> None:
    model = output_dir(jobs["train"])
    assert (model / "metadata").is_dir() and (model / "stages").is_dir()  # a saved PipelineModel
    scores = read_scores(output_dir(jobs["score"]))
    assert len(scores) == 300
    assert list(scores[0]) == ["PassengerId", "Survived", "prediction", "probability"]
    assert sorted(int(r["PassengerId"]) for r in scores) == list(range(801, 1101))
    for row in scores:
        p = float(row["probability"])
        assert 0.0 <= p <= 1.0
        assert int(row["prediction"]) == int(p > 0.5)
    accuracy = sum(int(r["prediction"]) == int(r["Survived"]) for r in scores) / len(scores)
    assert metrics["rows"] == 300
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-4)  # the job's figure is the data's
    assert metrics["accuracy"] > 0.78 and metrics["auc"] > 0.85


def test_titanic_train_score_and_metrics_complete_with_sparkrunner_run(titanic_run):
    for role in ("train", "score", "metrics"):
        assert "sparkrunner: COMPLETE: exit code 0" in titanic_run.stderr[role]
    assert json.loads((titanic_run.workdirs["train"] / "result.json").read_text())["trainingRows"] == 800
    assert json.loads((titanic_run.workdirs["score"] / "result.json").read_text()) == {"scoredRows": 300}


def test_titanic_writes_its_model_scores_and_metrics(titanic_run):
    jobs = titanic_run.jobs
    metrics = json.loads((titanic_run.workdirs["metrics"] / "result.json").read_text())
    check_outputs(jobs, metrics)
    written = json.loads(next(output_dir(jobs["metrics"]).glob("part-*.json")).read_text())
    assert written["accuracy"] == metrics["accuracy"]


def test_titanic_jobs_spark_conf_reaches_spark(titanic_run):
    # The log shows the setting the '?' ages need, as the job's sparkConf gave it: in the run's
    # properties (the line after the command, which names their file instead of carrying them).
    lines = (titanic_run.workdirs["train"] / "driver.log").read_text().splitlines()
    [properties] = [line for line in lines if line.startswith("sparkrunner: properties: ")]
    assert "spark.sql.ansi.enabled=false" in properties
    assert "--properties-file" in lines[0] and "spark.sql.ansi.enabled" not in lines[0]


def check_sklearn_scores(jobs: dict[str, Path], results: dict[str, dict]) -> None:
    """Both forms score the 281 well-formed passengers alike; the 19 with Age '?' are rejected."""
    counts = {"recordsRead": 300, "recordsScored": 281, "recordsRejected": 19, "rowsWritten": 281}
    assert results["score-records"] == counts and results["score-frames"] == counts
    by_record = {int(r["PassengerId"]): r for r in read_scores(output_dir(jobs["score-records"]))}
    import pandas as pd

    by_frame = pd.read_parquet(output_dir(jobs["score-frames"])).set_index("PassengerId")
    assert list(by_frame.columns) == ["Survived", "probability", "prediction"]  # as its outputSchema
    assert sorted(by_record) == sorted(by_frame.index)
    rejected = [json.loads(line) for part in output_dir(jobs["score-records"], 1).glob("part-*.json")
                for line in part.read_text().splitlines()]
    assert len(rejected) == 19 and {r["reason"] for r in rejected} == {"input: Age: '?' is not a number"}
    assert json.loads(rejected[0]["record"])["Age"] == "?"
    assert sorted([*by_record, *(r["PassengerId"] for r in rejected)]) == list(range(801, 1101))
    for passenger, row in by_record.items():
        assert float(row["probability"]) == pytest.approx(by_frame.loc[passenger, "probability"], abs=1e-12)
        assert int(row["prediction"]) == by_frame.loc[passenger, "prediction"] == int(float(row["probability"]) > 0.5)
    accuracy = (by_frame["prediction"] == by_frame["Survived"]).mean()
    assert accuracy > 0.75


def test_a_scikit_learn_model_trained_then_scored_by_record_and_by_dataframe(examples):
    jobs, results = examples["sklearn"].jobs, examples["sklearn"].results
    assert results["train"]["trainingRows"] == 800
    assert output_dir(jobs["train"]).is_file()  # the pickle: the training job's output
    check_sklearn_scores(jobs, results)
