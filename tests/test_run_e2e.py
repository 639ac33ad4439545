"""`sparkrunner run`, `render` and `validate` on real ModelOp-style documents, with real spark-submit."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import SPARKRUNNER, make_job

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


def run(args, **kw):
    return subprocess.run([SPARKRUNNER, *args], capture_output=True, text=True, **kw)


@pytest.mark.e2e
def test_a_modelop_job_runs_with_files_modules_udfs_and_its_spark_conf(tmp_path, job_file):
    job = job_file(kitchen_sink_job(tmp_path, targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false"}}))
    done = run(["run", "--workdir", str(tmp_path / "wd"), str(job)], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    expected = {"rows": 3, "nulls": 1, "assets": [1, 1, 1], "attachment": "weights", "ansi": "false"}
    assert json.loads((tmp_path / "wd" / "result.json").read_text()) == expected
    assert f"sparkrunner: result: {json.dumps(expected)}" in done.stdout  # echoed as it ran
    [part] = (tmp_path / "out").glob("part-*.csv")
    assert part.read_text().splitlines() == ["id,value,doubled,high", "1,1.5,3.0,false", "2,,,", "3,10.0,20.0,true"]
    log = (tmp_path / "wd" / "driver.log").read_text()
    assert "spark.executor.memory=512m" in log.splitlines()[0] and "spark.driver.memory=1g" in log.splitlines()[0]


@pytest.mark.e2e
def test_model_code_failing_exits_1_with_one_clear_line(tmp_path, job_file):
    # Spark 4's ANSI default turns the '?' cast into an error raised in model code.
    job = job_file(kitchen_sink_job(tmp_path))
    done = run(["run", "-q", "--workdir", str(tmp_path / "wd"), str(job)])
    assert done.returncode == 1
    assert "sparkrunner: ERROR: exit code 1: score function 'action' raised NumberFormatException: " \
        "[CAST_INVALID_INPUT]" in done.stderr
    log = (tmp_path / "wd" / "driver.log").read_text()
    assert "Traceback (most recent call last):" in log  # the traceback stays in the log
    assert not (tmp_path / "wd" / "result.json").exists()


def test_an_invalid_job_exits_2_names_every_problem_and_leaves_nothing(tmp_path, job_file):
    doc = make_job("def f(): pass\n", jobParameters={"--jars": "evil.jar", "--executor-memory": "big"})
    job = job_file(doc)
    data = tmp_path / "data"
    done = run(["run", "--data-dir", str(data), str(job)])
    assert done.returncode == 2
    assert "error: the job is invalid (3 problems):" in done.stderr
    assert "$.model.storedModel.modelAssets[0]: names no score function" in done.stderr
    assert "$.jobParameters['--jars']: 'spark.jars' is chosen by the operator" in done.stderr
    assert "$.jobParameters['--executor-memory']: 'big' is not a size" in done.stderr
    assert not data.exists()
    assert run(["run", str(tmp_path / "missing.json")]).returncode == 2
    assert run(["run"]).returncode == 2  # argparse's usage error


def test_validate_and_render(tmp_path, job_file):
    job = job_file(kitchen_sink_job(tmp_path))
    done = run(["validate", str(job)])
    assert done.returncode == 0
    assert done.stdout.strip() == ("ok: MODEL_BATCH_JOB job 'test-model' calls score function action(), "
                                   "init load() in my-model.py; 1 input(s), 1 output(s), 1 attachment(s)")
    done = run(["render", str(job), "--workdir", str(tmp_path / "wd")])
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "wd")) == ["helpers.py", "job.json", "my-model.py", "sparkrunner_driver.py",
                                                   "sparkrunner_job_metadata.py", "threshold.txt"]
    assert "--py-files " + str(tmp_path / "wd" / "helpers.py") in done.stdout
    assert run(["render", str(job), "--workdir", str(tmp_path / "wd")]).returncode == 2  # not empty


def test_schema_is_printable():
    done = run(["schema"])
    assert done.returncode == 0
    assert json.loads(done.stdout)["title"] == "modelBatchJob"


def test_the_service_refuses_a_public_address_without_authentication():
    done = run(["serve", "--host", "0.0.0.0", "--port", "1"], timeout=30)
    assert done.returncode == 2
    assert "refusing to serve on '0.0.0.0'" in done.stderr


@pytest.mark.e2e
def test_stopping_run_cancels_the_whole_spark_submit(tmp_path, job_file):
    import signal
    import time

    from service_helpers import pids_in_group, sleepy_job

    cli = subprocess.Popen([SPARKRUNNER, "run", "-q", "--workdir", str(tmp_path / "wd"), str(job_file(sleepy_job(300)))],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "wd" / "driver.log"
    deadline = time.monotonic() + 180
    while not (log.exists() and "sparkrunner: application: " in log.read_text()):
        assert time.monotonic() < deadline and cli.poll() is None, "the job never started running"
        time.sleep(0.2)
    [supervisor] = open(f"/proc/{cli.pid}/task/{cli.pid}/children").read().split()
    assert pids_in_group(int(supervisor))
    cli.send_signal(signal.SIGTERM)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 1
    assert "sparkrunner: CANCELLED: cancelled by user" in err
    assert pids_in_group(int(supervisor)) == []
