"""`sparkrunner run` on real ModelOp-style documents, with the real spark-submit.

The command's own behaviour (exit codes, its last line, Ctrl-C, validate, render) is tested with
the stand-in spark-submit in tests/test_cli.py."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SPARKRUNNER, make_job, write_job

pytestmark = pytest.mark.e2e

# Exercises what a real ModelOp job leans on: a hyphenated primary file, a FILE asset read by
# relative path in init, a secondary module used inside a UDF on the executors, a smart tag with
# a comment between it and the def, the job's sparkConf (ANSI off makes cast('?') null), and a
# generator-free dict result.
KITCHEN_SINK = '''\
from pyspark.sql import SparkSession
from pyspark.sql.functions import udf
import helpers

THRESHOLD = None

# modelop.init
def load():
    global THRESHOLD
    THRESHOLD = float(open("threshold.txt").read())

def double_it(x):
    return helpers.twice(x)

# modelop.score
# scores the rows
def action(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    df = spark.read.option("header", True).csv(inputs[0]["fileUrl"])
    df = df.selectExpr("id", "cast(value as double) as value")
    twice = udf(double_it, "double")
    df = df.withColumn("doubled", twice("value")).withColumn("high", df.value > THRESHOLD)
    df.coalesce(1).write.mode("overwrite").option("header", True).csv(outputs[0]["fileUrl"])
    return {"rows": df.count(), "nulls": df.filter("value is null").count(),
            "assets": [len(inputs), len(outputs), len(attachments)],
            "attachment": attachments[0]["name"], "ansi": spark.conf.get("spark.sql.ansi.enabled")}
'''
HELPERS = "def twice(x):\n    return None if x is None else 2 * x\n"


def kitchen_sink_job(tmp_path, **fields):
    data = tmp_path / "in.csv"
    data.write_text("id,value\n1,1.5\n2,?\n3,10\n")
    return make_job(
        KITCHEN_SINK, name="my-model.py",
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers.py", "sourceCode": HELPERS},
                {"assetType": "FILE", "filename": "threshold.txt", "content": "5"},
                {"assetType": "EXTERNAL_FILE", "name": "weights", "fileUrl": "file:///nowhere/w.bin",
                 "assetRole": "MODEL_ATTACHMENT"}],
        inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": data.as_uri(), "fileFormat": "CSV"}],
        outputData=[{"assetType": "EXTERNAL_FILE", "name": "out", "fileUrl": (tmp_path / "out").as_uri(),
                     "fileFormat": "CSV"}],
        id="0b6a", createdBy="ds@example.com", _links={"self": {"href": "/jobs/0b6a"}},
        jobParameters={"--executor-memory": "512MB", "--driver-memory": "1GB"},
        **fields)


@dataclass
class Run:
    """One `sparkrunner run` of a kitchen-sink job in its own directory, and how it ended."""

    directory: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    """Both real runs, started together: two JVMs on two cores overlap better than they follow."""
    base = tmp_path_factory.mktemp("runs")
    for name in ("ok", "failing"):
        (base / name).mkdir()
    how = {
        # ANSI off makes the '?' cast null: the job succeeds.
        "ok": (kitchen_sink_job(base / "ok", targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false"}}), []),
        # Spark 4's ANSI default turns the '?' cast into an error raised in model code.
        "failing": (kitchen_sink_job(base / "failing"), ["-q"]),
    }
    started = {}
    for name, (doc, options) in how.items():
        directory = base / name
        job = write_job(directory / "job.json", doc)
        with open(directory / "stdout", "wb") as out, open(directory / "stderr", "wb") as err:
            started[name] = subprocess.Popen([SPARKRUNNER, "run", *options, "--workdir", str(directory / "wd"),
                                              str(job)], cwd=directory, stdout=out, stderr=err)
    return {name: Run(base / name, process.wait(timeout=600), (base / name / "stdout").read_text(),
                      (base / name / "stderr").read_text())
            for name, process in started.items()}


def test_a_modelop_job_runs_with_files_modules_udfs_and_its_spark_conf(runs):
    done = runs["ok"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    expected = {"rows": 3, "nulls": 1, "assets": [1, 1, 1], "attachment": "weights", "ansi": "false"}
    assert json.loads((done.directory / "wd" / "result.json").read_text()) == expected
    assert f"sparkrunner: result: {json.dumps(expected)}" in done.stdout  # echoed as it ran
    [part] = (done.directory / "out").glob("part-*.csv")
    assert part.read_text().splitlines() == ["id,value,doubled,high", "1,1.5,3.0,false", "2,,,", "3,10.0,20.0,true"]
    log = (done.directory / "wd" / "driver.log").read_text()
    [properties] = [line for line in log.splitlines() if line.startswith("sparkrunner: properties: ")]
    assert "spark.executor.memory=512m" in properties and "spark.driver.memory=1g" in properties
    assert "--properties-file" in log.splitlines()[0] and "spark.driver.memory" not in log.splitlines()[0]


def test_model_code_failing_exits_1_with_one_clear_line(runs):
    done = runs["failing"]
    assert done.returncode == 1
    assert "sparkrunner: ERROR: exit code 1: score function 'action' raised NumberFormatException: " \
        "[CAST_INVALID_INPUT]" in done.stderr
    log = (done.directory / "wd" / "driver.log").read_text()
    assert "Traceback (most recent call last):" in log  # the traceback stays in the log
    assert not (done.directory / "wd" / "result.json").exists()
