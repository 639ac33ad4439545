"""The spark-submit command line: the whole argv, the whole properties file, the child
environment, masking."""

from pathlib import Path

import pytest

from conftest import admitted, make_job
from sparkrunner.command import (MASK, build_argv, child_env, mask_argv, mask_properties, parse_properties,
                                 properties_text, spark_properties)
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
    job = admitted(doc, settings)
    argv = build_argv(settings, job, WORKDIR, "/opt/spark/bin/spark-submit")
    assert argv == [
        "/opt/spark/bin/spark-submit", "--master", "spark://10.0.0.1:7077", "--deploy-mode", "client",
        "--properties-file", "/data/runs/r1/sparkrunner_spark.properties",
        # On a cluster, the executors' Python daemon goes first (see test_profiles for why).
        "--py-files", "/data/runs/r1/sparkrunner_daemon.py,/data/runs/r1/helpers.py",
        "--files", "/data/runs/r1/notes.txt",
        "--verbose",
        "/data/runs/r1/sparkrunner_driver.py",
    ]
    # The operator's spark-defaults.conf lies under the configuration and the job.
    defaults = {"spark.authenticate": "true", "spark.authenticate.secret": "s3cr3t", "spark.executor.memory": "2g"}
    assert properties_text(spark_properties(settings, job, defaults)) == (
        "# Written by sparkrunner: spark-submit's --properties-file for this run.\n"
        "spark.app.name=sparkrunner-test-model\n"
        "spark.authenticate=true\n"
        "spark.authenticate.secret=s3cr3t\n"
        "spark.cores.max=10\n"
        "spark.driver.memory=1g\n"
        "spark.eventLog.enabled=true\n"
        "spark.executor.memory=512m\n"  # the job's choice overrides the operator's default
        "spark.python.daemon.module=sparkrunner_daemon\n"
        "spark.sql.ansi.enabled=false\n"
        "spark.sql.shuffle.partitions=8\n")


def test_the_smallest_command_line_uses_local_and_no_file_lists():
    job = admitted(make_job())
    argv = build_argv(Settings(), job, WORKDIR, "spark-submit")
    assert argv == ["spark-submit", "--master", "local[*]", "--deploy-mode", "client",
                    "--properties-file", "/data/runs/r1/sparkrunner_spark.properties",
                    "/data/runs/r1/sparkrunner_driver.py"]
    assert properties_text(spark_properties(Settings(), job)) == (
        "# Written by sparkrunner: spark-submit's --properties-file for this run.\n"
        "spark.app.name=sparkrunner-test-model\n")


def test_no_property_is_on_the_command_line():
    settings = Settings(spark=SparkSettings(conf={"spark.hadoop.fs.s3a.secret.key": "s3cr3t"}))
    argv = build_argv(settings, admitted(make_job(), settings), WORKDIR, "spark-submit")
    assert "--conf" not in argv and not any("s3cr3t" in a for a in argv)


@pytest.mark.parametrize("value, written", [
    ("x\nspark.jars=evil.jar", "x\\nspark.jars\\=evil.jar"),  # one value, never a second property
    ("a\\b c", "a\\\\b c"),
    (" lead", "\\ lead"),
    ("#!:=", "\\#\\!\\:\\="),
    ("é😀\t\r", "\\u00e9\\ud83d\\ude00\\t\\r"),
])
def test_values_are_escaped_as_java_properties_and_read_back(value, written):
    text = properties_text({"spark.x": value})
    assert text.splitlines()[1:] == [f"spark.x={written}"]
    assert parse_properties(text) == {"spark.x": value.strip()}  # Spark strips values too


def test_spark_defaults_are_read_as_java_reads_them():
    text = ("# comment\n! comment\n  spark.a   1  \nspark.b=2\nspark.c : x\\\n    y\n"
            "spark.d\nspark.e\\:f g\r\nspark.u \\u00e9\n")
    assert parse_properties(text) == {"spark.a": "1", "spark.b": "2", "spark.c": "xy", "spark.d": "",
                                      "spark.e:f": "g", "spark.u": "é"}


def test_secret_properties_are_masked_for_the_log():
    assert mask_properties({"spark.authenticate.secret": "s", "spark.app.name": "a"}) == {
        "spark.authenticate.secret": MASK, "spark.app.name": "a"}


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


def test_prepare_writes_the_whole_properties_file_private_with_the_spark_defaults_under_it(tmp_path):
    import stat

    from sparkrunner.hdfs import Hdfs
    from sparkrunner.prepare import prepare

    conf_dir = tmp_path / "client-conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text("spark.authenticate true\nspark.authenticate.secret c0ffee\n"
                                                  "spark.executor.memory 4g\n")
    settings = Settings(spark=SparkSettings(conf_dir=str(conf_dir), conf={"spark.executor.memory": "1g"}))
    job = admitted(make_job(), settings)
    workdir = tmp_path / "wd"
    prepared = prepare(settings, job, workdir, "j1", "spark-submit", Hdfs(settings.hdfs))
    path = workdir / "sparkrunner_spark.properties"
    assert prepared.argv[5:7] == ["--properties-file", str(path)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == (
        "# Written by sparkrunner: spark-submit's --properties-file for this run.\n"
        "spark.app.name=sparkrunner-test-model\n"
        "spark.authenticate=true\n"
        "spark.authenticate.secret=c0ffee\n"
        "spark.executor.memory=1g\n")  # the configuration's over spark-defaults.conf's
    assert prepared.properties == parse_properties(path.read_text())
