"""The driver's handling of results and errors (its Spark path is covered end to end, warm runs'
in tests/test_warm.py)."""

import os
import subprocess
import sys

import numpy as np

from conftest import REPO, admitted, make_job
from sparkrunner.inside import driver
from sparkrunner.workdir import render


def test_results_with_numpy_values_and_nan_are_saved():
    result = {"auc": float("nan"), "accuracy": np.float64(0.8), "counts": np.array([1, 2]), "n": np.int64(3)}
    assert driver.to_json(result) == '{"auc": null, "accuracy": 0.8, "counts": [1, 2], "n": 3}'


def test_a_result_that_is_not_json_gives_none():
    assert driver.to_json({"model": object()}) is None


def test_on_a_warm_run_what_spark_connect_lacks_ends_with_the_resubmit_cold_line(monkeypatch, capsys):
    from pyspark.errors import PySparkAttributeError

    error = PySparkAttributeError(errorClass="JVM_ATTRIBUTE_NOT_SUPPORTED",
                                  messageParameters={"attr_name": "sparkContext"})
    assert driver.fail("score function 'action'", error) == 1  # cold: as it reads
    assert capsys.readouterr().err.endswith("sparkrunner: error: score function 'action' raised "
                                            "PySparkAttributeError: [JVM_ATTRIBUTE_NOT_SUPPORTED] Attribute "
                                            "`sparkContext` is not supported in Spark Connect as it depends on "
                                            "the JVM. If you need to use this attribute, do not use Spark Connect "
                                            "when creating your session. Visit https://spark.apache.org/docs/"
                                            "latest/sql-getting-started.html#starting-point-sparksession for "
                                            "creating regular Spark Session in detail.\n")
    monkeypatch.setenv("SPARKRUNNER_WARM", "1")
    try:
        raise RuntimeError("the model's own wrapper") from error
    except RuntimeError as wrapped:
        assert driver.fail("score function 'action'", wrapped) == 1
    assert capsys.readouterr().err.endswith(
        "sparkrunner: error: score function 'action' raised RuntimeError: the model's own wrapper; this is not "
        'available on a warm (Spark Connect) run: resubmit the job with "executionMode": "cold"\n')
    assert driver.fail("score function 'action'", ValueError("row 3. No age.")) == 1
    assert capsys.readouterr().err.endswith("raised ValueError: row 3. No age.\n")


def test_a_warm_run_that_needs_a_remote_attachment_ends_before_any_session(tmp_path):
    doc = make_job("# modelop.score\ndef action(record):\n    yield record\n",
                   assets=[{"assetType": "EXTERNAL_FILE", "name": "w", "fileUrl": "hdfs:///models/w.pkl",
                            "assetRole": "MODEL_ATTACHMENT"}],
                   inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": "file:///d/in.csv", "fileFormat": "CSV"}],
                   outputData=[{"assetType": "EXTERNAL_FILE", "name": "out", "fileUrl": "file:///d/out", "fileFormat": "CSV"}])
    job = admitted(doc)
    workdir = render(job.spec, tmp_path / "wd", "job-1", job.settings.conf)
    env = {**os.environ, "SPARKRUNNER_WARM": "1", "SPARK_REMOTE": "sc://localhost:1/", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", "import sys; from sparkrunner.inside import driver; sys.exit(driver.main())"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "sparkrunner: error: this job cannot run warm (Spark Connect): the model attachment 'hdfs:///models/w.pkl' "
        "is not a local file, and a warm run ships only local files to the Python workers; resubmit the job "
        'with "executionMode": "cold"')


def test_each_printed_line_reaches_the_log_whole_under_spark_s_unbuffered_python():
    """spark-submit runs the driver with PYTHONUNBUFFERED and copies its output beside the JVM's
    log lines: a print() written piece by piece could have a Spark line land inside it."""
    child = (
        "import time\n"
        "from sparkrunner.inside.driver import whole_lines_on_stdout\n"
        "whole_lines_on_stdout()\n"
        "class Slow:\n"
        "    def __str__(self):\n"
        "        time.sleep(0.3)  # print() has written what comes before by now, unbuffered\n"
        "        return '6'\n"
        "print('words:', Slow(), 'argv:', ['a b'])\n"
        "print('done')\n")
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "YES"})
    chunks = []
    while chunk := os.read(proc.stdout.fileno(), 4096):
        chunks.append(chunk)
    assert proc.wait(timeout=30) == 0
    assert b"".join(chunks) == b"words: 6 argv: ['a b']\ndone\n"
    assert all(chunk.endswith(b"\n") for chunk in chunks), chunks
