"""Warm or cold, decided at admission: which jobs may run on a warm Spark Connect server, and why not."""

from __future__ import annotations

import pytest

from sparkrunner.admission import Origin, admit
from sparkrunner.config import Settings
from sparkrunner.errors import JobInvalid
from sparkrunner.execution import Mode
from tests.conftest import make_job
from tests.modelop_documents import python_job, spark_job

THREE_LISTS = '''\
from pyspark.sql import SparkSession

# modelop.metrics
def metrics(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    return {"rows": spark.range(10).count()}
'''


def warm_admitted(doc: dict, settings: Settings | None = None):
    """``doc`` admitted where warm jobs can run (the service with warm jobs on)."""
    return admit(doc, settings or Settings(), Origin.LOCAL, warm_unavailable=None)


def test_a_three_list_job_using_only_the_dataframe_api_runs_warm():
    job = warm_admitted(make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB"))
    assert job.execution.mode is Mode.WARM
    assert job.execution.reason.startswith("eligible")


def test_a_one_parameter_scoring_job_runs_warm(tmp_path):
    job = warm_admitted(python_job(tmp_path))
    assert job.spec.scoring is not None
    assert job.execution.mode is Mode.WARM


@pytest.mark.parametrize("line, found", [
    ("sc = spark.sparkContext", "'.sparkContext'"),
    ("rows = spark.read.csv('x').rdd.collect()", "'.rdd'"),
    ("from pyspark import SparkContext", "'SparkContext'"),
    ("n = spark.sparkContext.accumulator(0)", "'.accumulator'"),
    ("from pyspark.mllib.linalg import Vectors", "the module pyspark.mllib.linalg"),
    ("import pyspark.streaming", "the module pyspark.streaming"),
])
def test_a_job_using_the_jvm_api_runs_cold_naming_the_line(line, found):
    source = THREE_LISTS.replace("    return", f"    {line}\n    return")
    job = warm_admitted(make_job(source, job_type="MODEL_BATCH_TEST_JOB"))
    assert job.execution.mode is Mode.COLD
    assert job.execution.reason == f"model.py line 6 uses {found}, which Spark Connect does not offer"


def test_a_secondary_module_using_the_jvm_api_makes_the_job_cold():
    helper = {"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helper.py",
              "sourceCode": "def rows(df):\n    return df.rdd.count()\n"}
    job = warm_admitted(make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB", assets=[helper]))
    assert job.execution.mode is Mode.COLD
    assert job.execution.reason.startswith("helper.py line 2 uses '.rdd'")


def test_sql_settings_keep_a_job_warm_and_jvm_settings_make_it_cold():
    sql = warm_admitted(make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB",
                                 targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false",
                                                             "spark.sql.shuffle.partitions": "4"}}))
    assert sql.execution.mode is Mode.WARM
    jvm = warm_admitted(make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB",
                                 jobParameters={"--driver-memory": "2g", "--driver-cores": "2"},
                                 targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false"}}))
    assert jvm.execution.mode is Mode.COLD
    assert jvm.execution.reason == ("its settings spark.driver.cores, spark.driver.memory need a JVM "
                                    "of their own (a warm session takes only spark.sql.* settings)")


def test_executor_settings_make_a_job_cold_on_a_cluster_but_not_on_a_local_master():
    doc = make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB", jobParameters={"--executor-memory": "512MB"},
                   targetEngine={"executorMemory": "1g"})
    assert warm_admitted(doc).execution.mode is Mode.WARM  # local[*]: no executors, nothing lost
    on_cluster = Settings().with_overrides(spark=Settings().spark.__class__(master="spark://127.0.0.1:7077"))
    cold = warm_admitted(doc, on_cluster).execution
    assert cold.mode is Mode.COLD
    assert cold.reason.startswith("its settings spark.executor.memory need a JVM of their own")


def test_the_operators_own_settings_do_not_make_a_job_cold():
    settings = Settings().with_overrides(spark=Settings().spark.__class__(conf={"spark.executor.memory": "2g"}))
    job = warm_admitted(make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB"), settings)
    assert job.execution.mode is Mode.WARM


def test_a_real_modelop_document_runs_cold_only_for_what_its_model_uses(tmp_path):
    # ModelOp sends --master and executorMemory: the master is the operator's (a warning) and a
    # local master ignores the memory; but this model reads spark.sparkContext.master.
    job = warm_admitted(spark_job(tmp_path))
    assert job.execution.mode is Mode.COLD
    assert job.execution.reason.startswith("titanic_spark.py line 23 uses '.sparkContext'")


def test_execution_mode_cold_is_honoured():
    job = warm_admitted(make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB", executionMode="cold"))
    assert job.execution.mode is Mode.COLD
    assert job.execution.reason == "the job asks for it (executionMode 'cold')"


def test_execution_mode_warm_refuses_a_job_that_cannot_run_warm_saying_why():
    source = THREE_LISTS.replace("    return", "    spark.sparkContext.setLogLevel('WARN')\n    return")
    with pytest.raises(JobInvalid) as caught:
        warm_admitted(make_job(source, job_type="MODEL_BATCH_TEST_JOB", executionMode="warm"))
    [error] = caught.value.errors
    assert error.path == "$.executionMode"
    assert "'warm' was asked, but the job cannot run warm: model.py line 6 uses '.sparkContext'" in error.message


def test_an_unknown_execution_mode_is_refused_naming_what_is_accepted():
    with pytest.raises(JobInvalid) as caught:
        warm_admitted(make_job(THREE_LISTS, executionMode="lukewarm"))
    assert any(e.path == "$.executionMode" and "'auto'" in e.message and "'cold'" in e.message
               for e in caught.value.errors)


def test_where_warm_jobs_cannot_run_every_job_is_cold_with_that_reason():
    job = admit(make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB"), Settings(), Origin.LOCAL,
                warm_unavailable="warm jobs are off in the configuration (warm.enabled)")
    assert job.execution.mode is Mode.COLD
    assert job.execution.reason == "warm jobs are off in the configuration (warm.enabled)"
    with pytest.raises(JobInvalid):
        admit(make_job(THREE_LISTS, job_type="MODEL_BATCH_TEST_JOB", executionMode="warm"),
              Settings(), Origin.LOCAL, warm_unavailable="warm jobs are off in the configuration (warm.enabled)")


def test_a_script_job_is_always_cold(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("print('hi')\n")
    job = warm_admitted({"jobType": "SPARK_SCRIPT_JOB", "file": str(script)})
    assert job.execution.mode is Mode.COLD
    assert job.execution.reason.startswith("a script job (a Livy batch)")
