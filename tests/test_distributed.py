"""Jobs through the service on a real Spark standalone cluster, with data on (WebHDFS) HDFS.

The session's cluster (a master and two one-core workers from the pyspark wheel, shared with
tests/test_cluster.py), one WebHDFS server and one service configured like conf/standalone.yaml
serve the whole module.

The WebHDFS server leaves the JSON Content-Type out (``json_content_type=False``): the job's
executors read and write its data with Spark's own ``webhdfs://`` client, which fails on the header
a real NameNode sends (tests/test_webhdfs_double.py shows it). Here webhdfs:// stands in for
``hdfs://``, what a real cluster's jobs would use for data and which needs a real namenode: a
remote Hadoop file system that both workers' executors reach, written through Spark's output
committer. sparkrunner's own checks and staging go through the ``hdfs`` package, which works with
the header as without it (tests/test_hdfs.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hdfs import InsecureClient

from conftest import REPO, make_job
from service_helpers import Service
from support.webhdfs import WebHdfsServer

sys.path.insert(0, str(REPO / "jobs"))
from build_examples import build, build_sklearn  # noqa: E402
from test_examples import check_outputs, check_sklearn_scores, output_dir  # noqa: E402

pytestmark = pytest.mark.e2e

# Squares numbers read from HDFS on the executors, records which worker ran each partition
# (a Python worker runs in its executor's directory, <work-dir>/<app id>/<executor id>), and
# writes the squares back to HDFS through Spark's output committer.
SPREAD_SOURCE = '''\
import os, time
from pyspark.sql import SparkSession

def secret_in_environment():
    """Whether this process holds the cluster's secret in its environment, as Python or /proc sees it."""
    with open("/proc/self/environ", "rb") as f:
        return "_SPARK_AUTH_SECRET" in os.environ or b"_SPARK_AUTH_SECRET=" in f.read()

def where(index, rows):
    time.sleep(1)  # long enough that both one-core executors get tasks
    rows = list(rows)
    yield (index, os.getcwd(), sum(int(r["n"]) ** 2 for r in rows), len(rows), secret_in_environment())

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    df = spark.read.option("header", True).csv(inputs[0]["fileUrl"]).repartition(4)
    parts = df.rdd.mapPartitionsWithIndex(where).collect()
    squares = df.selectExpr("cast(n as int) n", "cast(n as int) * cast(n as int) as square")
    squares.coalesce(1).write.mode("overwrite").option("header", True).csv(outputs[0]["fileUrl"])
    return {"cwds": sorted({p[1] for p in parts}), "sum": sum(p[2] for p in parts),
            "rows": sum(p[3] for p in parts), "secret_in_workers": [p[4] for p in parts],
            "secret_in_driver": secret_in_environment()}
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory, standalone_cluster):
    info = standalone_cluster
    base = tmp_path_factory.mktemp("distributed")
    (base / "hdfs").mkdir()
    hdfs = WebHdfsServer(base / "hdfs", json_content_type=False).start()
    config = base / "standalone.yaml"
    config.write_text(f"""
data_dir: {base / 'data'}
spark:
  master: {info.master_url}
  conf_dir: {info.client_conf_dir}
  conf:
    spark.authenticate: true
    spark.executor.cores: 1
    spark.executor.memory: 512m
    spark.cores.max: 2
    spark.ui.showConsoleProgress: "false"
    # Tasks start only once both executors are up, or the first could take them all.
    spark.scheduler.minRegisteredResourcesRatio: "1.0"
    spark.scheduler.maxRegisteredResourcesWaitingTime: 300s
hdfs:
  user: sparkrunner
  existing_outputs: overwrite
  staging_root: {hdfs.webhdfs_url}/user/sparkrunner/staging
policy:
  # pytest's temporary root: the tests keep their data beside this module's directory.
  local_roots: [{base.parent}]
service:
  # Two: the scikit-learn model's two scoring jobs are submitted together. The second
  # application waits at the master for the first one's cores, its driver started meanwhile.
  max_concurrent_jobs: 2
""")
    service = Service(base / "data", config=config).start()
    yield info, hdfs, service
    service.stop()
    hdfs.stop()


def test_a_job_reads_and_writes_hdfs_on_both_workers(setup):
    info, hdfs, service = setup
    client = InsecureClient(hdfs.url, user="sparkrunner")
    client.write("/data/numbers.csv", data=("n\n" + "".join(f"{i}\n" for i in range(1, 201))).encode(),
                 overwrite=True)
    client.write("/out/squares/stale.csv", data=b"from an earlier run\n", overwrite=True)
    base = hdfs.webhdfs_url
    doc = make_job(SPREAD_SOURCE, name="spread.py",
                   inputData=[{"assetType": "EXTERNAL_FILE", "name": "numbers", "fileUrl": f"{base}/data/numbers.csv",
                               "fileFormat": "CSV"}],
                   outputData=[{"assetType": "EXTERNAL_FILE", "name": "squares", "fileUrl": f"{base}/out/squares",
                                "fileFormat": "CSV"}])
    job = service.wait_for(service.submit(doc)["id"], {"COMPLETE", "ERROR", "CANCELLED"}, timeout=400)
    assert job["jobStatus"] == "COMPLETE", job
    assert job["sparkApplicationId"].startswith("app-")  # a standalone application, not local-
    result = job["result"]
    assert (result["rows"], result["sum"]) == (200, sum(i * i for i in range(1, 201)))
    workers = {Path(cwd).relative_to(Path(info.cluster_dir) / "work").parts[0] for cwd in result["cwds"]}
    assert workers == {"worker-1", "worker-2"}
    # The Worker gives each executor JVM the cluster's secret in _SPARK_AUTH_SECRET (test_cluster
    # shows a plain spark-submit's Python workers inherit it); sparkrunner's daemon module starts
    # them without it. The driver, sandboxed, has it only in its configuration.
    assert result["secret_in_workers"] == [False] * 4 and result["secret_in_driver"] is False
    files = client.list("/out/squares")
    assert "_SUCCESS" in files and "stale.csv" not in files and "_temporary" not in files
    [part] = [f for f in files if f.startswith("part-")]
    with client.read(f"/out/squares/{part}") as f:
        lines = f.read().decode().splitlines()
    assert lines[0] == "n,square" and len(lines) == 201 and "7,49" in lines
    staged = client.list(f"/user/sparkrunner/staging/{job['id']}")
    assert {"spread.py", "job.json", "sparkrunner_driver.py", "sparkrunner_job_metadata.py"} <= set(staged)


def test_the_titanic_example_trains_scores_and_evaluates_on_the_cluster(setup, tmp_path):
    _, _, service = setup
    jobs = build(tmp_path / "example")
    results = {}
    for role in ("train", "score", "metrics"):
        job = service.submit(json.loads(jobs[role].read_text()))
        job = service.wait_for(job["id"], {"COMPLETE", "ERROR", "CANCELLED"}, timeout=400)
        assert job["jobStatus"] == "COMPLETE", job
        assert job["sparkApplicationId"].startswith("app-")
        results[role] = job["result"]
    assert results["train"]["trainingRows"] == 800
    assert results["score"] == {"scoredRows": 300}
    check_outputs(jobs, results["metrics"])  # the model, the scores, and figures that match them


def test_a_scikit_learn_model_scores_by_record_and_by_dataframe_on_the_cluster(setup, tmp_path):
    _, _, service = setup
    jobs = build_sklearn(tmp_path / "example")
    train = json.loads(jobs["train"].read_text())
    model = load_source(train["model"]["storedModel"]["modelAssets"][0])
    model.train(train["inputData"], train["outputData"], [])  # the pickle, without a third Spark job
    assert output_dir(jobs["train"]).is_file()
    # Both forms read the same pickle and write apart: they are submitted together.
    submitted = {role: service.submit(json.loads(jobs[role].read_text()))["id"]
                 for role in ("score-records", "score-frames")}
    results = {}
    for role, job_id in submitted.items():
        job = service.wait_for(job_id, {"COMPLETE", "ERROR", "CANCELLED"}, timeout=600)
        assert job["jobStatus"] == "COMPLETE", job
        assert job["sparkApplicationId"].startswith("app-")
        results[role] = job["result"]
    check_sklearn_scores(jobs, results)


def load_source(asset: dict):
    """A SOURCE_CODE asset as a module, to call its functions here."""
    import types

    module = types.ModuleType(asset["name"].removesuffix(".py"))
    exec(compile(asset["sourceCode"], asset["name"], "exec"), module.__dict__)
    return module
