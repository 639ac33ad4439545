"""Warm runs: the driver in a Spark Connect session (tests/conftest.py's ``connect_server``), run
as the service's fork child runs it, compared with cold runs of the same jobs by `sparkrunner run`.

The fork child is stood in for by ``python -c "...driver.main()"`` with the working directory as
its cwd, its output in driver.log, and the warm run's environment (``ConnectServer.client_env``).
A second session, when a test needs one, runs in another process: a Spark Connect client in this
one would keep the shared classic SparkSession of other tests from starting.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, SPARKRUNNER, admitted, make_job, write_job
from sparkrunner.launcher import LogWatcher
from sparkrunner.workdir import render

pytestmark = pytest.mark.e2e

DRIVER_CALL = "import sys; from sparkrunner.inside import driver; sys.exit(driver.main())"
RESUBMIT = '; this is not available on a warm (Spark Connect) run: resubmit the job with "executionMode": "cold"'


def run_cold(doc: dict, tmp_path: Path, name: str = "cold") -> Path:
    """The job's working directory after `sparkrunner run` (spark-submit) ran it to success."""
    job = write_job(tmp_path / f"{name}.json", doc)
    workdir = tmp_path / name
    done = subprocess.run([SPARKRUNNER, "run", "-q", "--workdir", str(workdir), str(job)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + (workdir / "driver.log").read_text()[-3000:]
    return workdir


def start_warm(server, doc: dict, workdir: Path) -> subprocess.Popen:
    """The driver started on ``doc`` as the service's fork child would be, laid out in ``workdir``."""
    job = admitted(doc)
    render(job.spec, workdir, workdir.name, job.settings.conf)
    with open(workdir / "driver.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-c", DRIVER_CALL], cwd=workdir, env=server.client_env(),
                                stdout=log, stderr=subprocess.STDOUT)


def run_warm(server, doc: dict, workdir: Path, expect: int = 0) -> Path:
    code = start_warm(server, doc, workdir).wait(timeout=300)
    assert code == expect, (workdir / "driver.log").read_text()[-3000:]
    return workdir


def last_line(workdir: Path) -> str:
    return (workdir / "driver.log").read_text().strip().splitlines()[-1]


def another_session(server, code: str, timeout: float = 120) -> dict:
    """What ``code`` (given ``spark``, a new session of its own) prints as JSON, from another process."""
    program = "import json\nfrom pyspark.sql import SparkSession\nspark = SparkSession.builder.getOrCreate()\n" + code
    done = subprocess.run([sys.executable, "-c", program], env=server.client_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def json_lines(directory: Path) -> list[dict]:
    return [json.loads(line) for part in sorted(directory.glob("part-*.json")) for line in part.read_text().splitlines()]


# ----- a Spark job of three lists

SPARK_JOB = '''\
from pyspark.sql import SparkSession
from pyspark.sql.functions import udf
import helpers

THRESHOLD = None

# modelop.init
def load():
    global THRESHOLD
    THRESHOLD = float(open("threshold.txt").read())

def label(value):
    # On the Python workers: the secondary module, and a FILE asset by its name.
    return None if value is None else helpers.PREFIX + open("suffix.txt").read()

# modelop.score
def action(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    df = spark.read.option("header", True).csv(inputs[0]["fileUrl"])
    df = df.selectExpr("cast(id as int) as id", "cast(value as double) as value")  # '?' is null: ANSI off
    df = df.withColumn("label", udf(label, "string")("value")).withColumn("high", df.value > THRESHOLD)
    df.write.mode("overwrite").json(outputs[0]["fileUrl"])
    yield {"rows": df.count(), "nulls": df.filter("value is null").count(),
           "partitions": spark.conf.get("spark.sql.shuffle.partitions"),
           "ansi": spark.conf.get("spark.sql.ansi.enabled"),
           "high": sorted(row[0] for row in df.where("high").select("id").collect()),
           "attachments": [a["name"] for a in attachments]}
'''


def spark_job(data: Path, out: Path) -> dict:
    return make_job(
        SPARK_JOB, name="my-model.py",
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers.py",
                 "sourceCode": "PREFIX = 'seen-'\n"},
                {"assetType": "FILE", "filename": "threshold.txt", "content": "5"},
                {"assetType": "FILE", "filename": "suffix.txt", "content": "by-worker"},
                {"assetType": "EXTERNAL_FILE", "name": "weights", "fileUrl": "hdfs:///m/w", "assetRole": "MODEL_ATTACHMENT"}],
        inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": data.as_uri(), "fileFormat": "CSV"}],
        outputData=[{"assetType": "EXTERNAL_FILE", "name": "out", "fileUrl": out.as_uri(), "fileFormat": "JSON"}],
        targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false", "spark.sql.shuffle.partitions": "3",
                                    "--executor-memory": "512MB"}})


def test_a_spark_job_runs_warm_as_it_runs_cold(connect_server, tmp_path):
    data = tmp_path / "in.csv"
    data.write_text("id,value\n1,1.5\n2,?\n3,10\n4,7\n")
    cold = run_cold(spark_job(data, tmp_path / "out-cold"), tmp_path)
    warm = run_warm(connect_server, spark_job(data, tmp_path / "out-warm"), tmp_path / "warm")
    result = json.loads((warm / "result.json").read_text())
    assert result == json.loads((cold / "result.json").read_text())
    assert result == [{"rows": 4, "nulls": 1, "partitions": "3", "ansi": "false", "high": [3, 4],
                       "attachments": ["weights"]}]
    rows = sorted(json_lines(tmp_path / "out-warm"), key=lambda r: r["id"])
    assert rows == sorted(json_lines(tmp_path / "out-cold"), key=lambda r: r["id"])
    assert [r.get("label") for r in rows] == ["seen-by-worker", None, "seen-by-worker", "seen-by-worker"]
    # The service learns the application from the log, as from a cold run's.
    watcher = LogWatcher(warm / "driver.log")
    lines = watcher.poll(final=True)
    assert watcher.application.startswith("local-") and watcher.error is None
    assert f"sparkrunner: application: {watcher.application} is running; Spark UI off" in lines
    assert lines[-1] == "sparkrunner: result: " + json.dumps(result)


# ----- the scoring path

SCORED_MODEL = '''\
import pickle

WEIGHTS = None

# modelop.init
def begin():
    global WEIGHTS
    WEIGHTS = pickle.load(open("weights.pkl", "rb"))  # a model attachment, by its name
    assert open("scale.txt").read() == "10"  # a FILE asset

# modelop.score
def action(record):
    yield {"y": record["x"] * WEIGHTS["slope"] + WEIGHTS["intercept"], "band": "high" if record["x"] > 50 else "low"}
'''


def scoring_job(data: Path, weights: Path, out: Path, check_output: bool = True) -> dict:
    doc = make_job(
        SCORED_MODEL,
        assets=[{"assetType": "FILE", "filename": "scale.txt", "content": "10"},
                {"assetType": "EXTERNAL_FILE", "name": "weights", "fileUrl": weights.as_uri(),
                 "assetRole": "MODEL_ATTACHMENT"}],
        inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": data.as_uri(), "fileFormat": "CSV"}],
        outputData=[{"assetType": "EXTERNAL_FILE", "name": "scores", "fileUrl": out.as_uri(), "fileFormat": "CSV"}],
        idField="id")
    doc["model"]["storedModel"]["modelMetaData"].update(
        type="PYTHON", enableInputSchemaChecking=True, enableOutputSchemaChecking=check_output,
        inputSchema={"type": "object", "required": ["id", "x"],
                     "properties": {"id": {"type": "integer"}, "x": {"type": "number"}}},
        outputSchema={"type": "object", "properties": {"y": {"type": "number", "maximum": 250},
                                                       "band": {"enum": ["low", "high"]}}})
    return doc


def read_csv_parts(directory: Path) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted(directory.glob("part-*.csv")) if p.stat().st_size]
    return pd.concat(frames, ignore_index=True).sort_values("id", ignore_index=True)


# Output checking keeps the scored frame to write scores and rejects from it; input checking
# alone scores in one pass and finds the rejects in a second one that does not call the model.
@pytest.mark.parametrize("check_output", [True, False], ids=["output-checked", "input-checked-only"])
def test_the_scoring_path_scores_and_counts_alike_warm_and_cold(connect_server, tmp_path, check_output):
    data = tmp_path / "numbers.csv"
    data.write_text("id,x\n" + "".join(f"{i},{'?' if i % 37 == 0 else i / 10}\n" for i in range(1, 1001)))
    weights = tmp_path / "models" / "weights.pkl"
    weights.parent.mkdir()
    weights.write_bytes(pickle.dumps({"slope": 3.0, "intercept": 1.0}))
    cold = run_cold(scoring_job(data, weights, tmp_path / "scores-cold", check_output), tmp_path)
    warm = run_warm(connect_server, scoring_job(data, weights, tmp_path / "scores-warm", check_output), tmp_path / "warm")
    counts = json.loads((warm / "result.json").read_text())
    assert counts == json.loads((cold / "result.json").read_text())
    # 27 ids are multiples of 37 ('?' is not a number); y above 250 (x > 83: ids 831 to 1000, but
    # for 5 multiples of 37) fails the output schema, when it is checked.
    output_rejects = 165 if check_output else 0
    assert counts == {"recordsRead": 1000, "recordsScored": 973, "recordsRejected": 27 + output_rejects,
                      "rowsWritten": 973 - output_rejects}
    scores = read_csv_parts(tmp_path / "scores-warm")
    pd.testing.assert_frame_equal(scores, read_csv_parts(tmp_path / "scores-cold"))
    assert list(scores.columns) == ["id", "y", "band"]
    assert scores.loc[0].to_dict() == {"id": 1, "y": pytest.approx(1.3), "band": "low"}
    rejected = read_csv_parts(tmp_path / "scores-warm_rejected")
    pd.testing.assert_frame_equal(rejected, read_csv_parts(tmp_path / "scores-cold_rejected"))
    assert len(rejected) == 27 + output_rejects
    assert rejected.loc[0, "reason"] == "input: x: '?' is not a number"


# ----- two warm sessions on one server

ISOLATED_JOB = '''\
import os
import time
from pyspark.sql import SparkSession
from pyspark.sql.functions import udf
import helper

def on_worker(_):
    import helper
    return helper.VALUE + ":" + open("model.txt").read()

# modelop.score
def action(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    spark.createDataFrame([(helper.VALUE,)], "v string").createOrReplaceTempView("shared_name")
    barrier = {barrier!r}
    open(os.path.join(barrier, helper.VALUE), "w").close()
    deadline = time.monotonic() + 120
    while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:  # both are set up
        time.sleep(0.1)
    return {{"together": len(os.listdir(barrier)), "view": spark.table("shared_name").first()[0],
            "timezone": spark.conf.get("spark.sql.session.timeZone"),
            "workers": spark.range(1).select(udf(on_worker, "string")("id")).first()[0]}}
'''


def isolated_job(barrier: Path, value: str, attachment: str, timezone: str) -> dict:
    return make_job(
        ISOLATED_JOB.format(barrier=str(barrier)),
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helper.py",
                 "sourceCode": f"VALUE = {value!r}\n"},
                {"assetType": "FILE", "filename": "model.txt", "content": attachment}],
        targetEngine={"sparkConf": {"spark.sql.session.timeZone": timezone}})


def test_two_warm_jobs_at_once_keep_their_settings_views_and_artifacts_apart(connect_server, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    jobs = {"one": isolated_job(barrier, "one", "first", "Asia/Tokyo"),
            "two": isolated_job(barrier, "two", "second", "America/Lima")}
    started = {name: start_warm(connect_server, doc, tmp_path / name) for name, doc in jobs.items()}
    for name, process in started.items():
        assert process.wait(timeout=300) == 0, (tmp_path / name / "driver.log").read_text()[-3000:]
    results = {name: json.loads((tmp_path / name / "result.json").read_text()) for name in jobs}
    assert results == {
        "one": {"together": 2, "view": "one", "timezone": "Asia/Tokyo", "workers": "one:first"},
        "two": {"together": 2, "view": "two", "timezone": "America/Lima", "workers": "two:second"}}
    # Nor does anything stay behind for the next session.
    after = another_session(connect_server, 'print(json.dumps({"timezone": spark.conf.get("spark.sql.session.timeZone"), '
                                            '"views": [t.name for t in spark.catalog.listTables()]}))')
    assert after["timezone"] not in ("Asia/Tokyo", "America/Lima") and after["views"] == []


# ----- what a warm run cannot do

def failing_job(body: str, **fields) -> dict:
    source = ("from pyspark import SparkContext\nfrom pyspark.sql import SparkSession\nfrom pyspark.sql.functions import udf\n\n"
              "# modelop.score\ndef action(inputs, outputs, attachments):\n"
              "    spark = SparkSession.builder.getOrCreate()\n    " + body + "\n")
    return make_job(source, **fields)


@pytest.mark.parametrize("body,line", [
    ("return spark.sparkContext.parallelize([1, 2]).count()",
     "score function 'action' raised PySparkAttributeError: [JVM_ATTRIBUTE_NOT_SUPPORTED] Attribute "
     "`sparkContext` is not supported in Spark Connect as it depends on the JVM" + RESUBMIT),
    ("return spark.range(3).rdd.count()",
     "score function 'action' raised PySparkNotImplementedError: [NOT_IMPLEMENTED] rdd is not implemented" + RESUBMIT),
    ("return SparkContext.getOrCreate().defaultParallelism",
     "score function 'action' raised PySparkRuntimeError: [CONTEXT_UNAVAILABLE_FOR_REMOTE_CLIENT] Remote client "
     "cannot create a SparkContext" + RESUBMIT),
    # The model's own errors read as on a cold run: on the driver, and on a Python worker.
    ("raise ValueError('row 3 has no age')", "score function 'action' raised ValueError: row 3 has no age"),
    ("return spark.range(1).select(udf(lambda i: {}['nope'], 'string')('id')).collect()",
     "score function 'action' raised PythonException: KeyError: 'nope'"),
], ids=["sparkContext", "rdd", "SparkContext", "driver error", "worker error"])
def test_a_warm_job_ends_with_one_error_line(connect_server, tmp_path, body, line):
    workdir = run_warm(connect_server, failing_job(body), tmp_path / "warm", expect=1)
    assert last_line(workdir) == "sparkrunner: error: " + line
    assert not (workdir / "result.json").exists()


def test_a_static_sql_setting_the_warm_server_does_not_have_ends_the_job_before_its_code(connect_server, tmp_path):
    doc = failing_job("raise AssertionError('never called')",
                      targetEngine={"sparkConf": {"spark.sql.sources.schemaStringLengthThreshold": "100"}})
    workdir = run_warm(connect_server, doc, tmp_path / "warm", expect=1)
    assert last_line(workdir) == (
        "sparkrunner: error: setting up the Spark Connect session raised WarmUnavailable: the Spark setting "
        "spark.sql.sources.schemaStringLengthThreshold=100 is fixed when Spark starts, and the warm server has "
        "'4000'" + RESUBMIT)


# ----- cancel

LONG_QUERY = '''\
import os
import time
from pyspark.sql import SparkSession

def slow(batches):
    open(os.path.join({marks!r}, str(os.getpid())), "w").close()
    time.sleep(600)
    yield from batches

# modelop.score
def action(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    return spark.range(2, numPartitions=2).mapInPandas(slow, "id long").count()
'''


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_interrupts_a_long_warm_query_and_ends_the_driver_by_it(connect_server, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    process = start_warm(connect_server, make_job(LONG_QUERY.format(marks=str(marks))), tmp_path / "warm")
    # Both of local[2]'s task slots hold a sleeping Python worker.
    wait_for(lambda: len(os.listdir(marks)) == 2, 120, "both tasks started")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == -signal.SIGTERM
    workers = [int(name) for name in os.listdir(marks)]
    wait_for(lambda: not any(alive(pid) for pid in workers), 60, "the interrupted tasks' Python workers ended")
    # The server's slots are free again: a query needing both runs now, not in ten minutes.
    started = time.monotonic()
    counted = another_session(connect_server, "def same(batches):\n    yield from batches\n"
                                              'print(json.dumps(spark.range(2, numPartitions=2).mapInPandas(same, "id long").count()))')
    assert counted == 2 and time.monotonic() - started < 60
    assert "sparkrunner: error" not in (tmp_path / "warm" / "driver.log").read_text()


# ----- the Titanic example (PySpark ML), warm and cold

def test_the_titanic_example_trains_scores_and_evaluates_warm_as_cold(connect_server, titanic_run, tmp_path):
    sys.path.insert(0, str(REPO / "jobs"))
    from build_examples import build

    jobs = build(tmp_path / "example")  # the same data, its own outputs
    results = {}
    for role in ("train", "score", "metrics"):  # in order: each reads what the one before wrote
        workdir = run_warm(connect_server, json.loads(jobs[role].read_text()), tmp_path / role)
        results[role] = json.loads((workdir / "result.json").read_text())
    cold = {role: json.loads((titanic_run.workdirs[role] / "result.json").read_text()) for role in results}
    assert results == cold
    scores = {role: pd.concat([pd.read_csv(p) for p in sorted(Path(json.loads(doc.read_text())["outputData"][0]["fileUrl"]
                                                                      .removeprefix("file://")).glob("part-*.csv"))])
              .sort_values("PassengerId", ignore_index=True)
              for role, doc in (("warm", jobs["score"]), ("cold", titanic_run.jobs["score"]))}
    pd.testing.assert_frame_equal(scores["warm"], scores["cold"])
