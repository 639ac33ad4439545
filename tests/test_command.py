"""The spark-submit command line: the whole argv, the child environment, masking."""

from pathlib import Path

from conftest import admitted, make_job
from sparkrunner.command import MASK, build_argv, child_env, mask_argv
from sparkrunner.config import Settings, SparkSettings

WORKDIR = Path("/data/runs/r1")


def test_the_whole_command_line():
    doc = make_job(
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers.py", "sourceCode": ""},
                {"assetType": "FILE", "filename": "notes.txt", "content": "hi"}],
        jobParameters={"--executor-memory": "512MB", "--total-executor-cores": "10", "-v": "",
                       "--conf": "spark.sql.shuffle.partitions=8"},
        targetEngine={"sparkConf": {"spark.sql.ansi.enabled": False, "--driver-memory": "1GB"}})
    settings = Settings(spark=SparkSettings(master="spark://10.0.0.1:7077",
                                            conf={"spark.executor.memory": "1g", "spark.eventLog.enabled": "true"}))
    argv = build_argv(settings, admitted(doc, settings), WORKDIR, "/opt/spark/bin/spark-submit")
    assert argv == [
        "/opt/spark/bin/spark-submit", "--master", "spark://10.0.0.1:7077", "--deploy-mode", "client",
        "--conf", "spark.app.name=sparkrunner-test-model",
        "--conf", "spark.cores.max=10",
        "--conf", "spark.driver.memory=1g",
        "--conf", "spark.eventLog.enabled=true",
        "--conf", "spark.executor.memory=512m",  # the job's choice overrides the operator's default
        "--conf", "spark.sql.ansi.enabled=false",
        "--conf", "spark.sql.shuffle.partitions=8",
        "--py-files", "/data/runs/r1/helpers.py",
        "--files", "/data/runs/r1/notes.txt",
        "--verbose",
        "/data/runs/r1/sparkrunner_driver.py",
    ]


def test_the_smallest_command_line_uses_local_and_no_file_lists():
    argv = build_argv(Settings(), admitted(make_job()), WORKDIR, "spark-submit")
    assert argv == ["spark-submit", "--master", "local[*]", "--deploy-mode", "client",
                    "--conf", "spark.app.name=sparkrunner-test-model", "/data/runs/r1/sparkrunner_driver.py"]


def test_secrets_are_masked_in_a_logged_command():
    argv = ["spark-submit", "--conf", "spark.authenticate.secret=s3cr3t", "--conf",
            "spark.hadoop.fs.s3a.access.key=AKIA", "--conf", "spark.app.name=x", "job.py"]
    masked = mask_argv(argv)
    assert masked == ["spark-submit", "--conf", f"spark.authenticate.secret={MASK}", "--conf",
                      f"spark.hadoop.fs.s3a.access.key={MASK}", "--conf", "spark.app.name=x", "job.py"]
    assert "s3cr3t" not in " ".join(masked) and "AKIA" not in " ".join(masked)


def test_the_child_environment_pins_spark_and_python(tmp_path):
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "spark-submit").write_text("")
    settings = Settings(spark=SparkSettings(home=str(home), python="/usr/bin/python3",
                                            env={"HADOOP_CONF_DIR": "/etc/hadoop"}))
    env = child_env(settings, {"SPARK_HOME": "/elsewhere", "PYSPARK_DRIVER_PYTHON_OPTS": "notebook", "PATH": "/bin"})
    assert env == {"SPARK_HOME": str(home), "PYSPARK_PYTHON": "/usr/bin/python3",
                   "PYSPARK_DRIVER_PYTHON": "/usr/bin/python3", "HADOOP_CONF_DIR": "/etc/hadoop", "PATH": "/bin"}
