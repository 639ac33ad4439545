"""The spark-submit command line: the whole argv, the settings policy, sizes, masking."""

from pathlib import Path

import pytest

from conftest import make_job
from sparkrunner.command import (MASK, build_argv, child_env, job_settings, mask_argv,
                                 normalize_size)
from sparkrunner.config import PolicySettings, Settings, SparkSettings
from sparkrunner.errors import JobInvalid
from sparkrunner.jobspec import validate

WORKDIR = Path("/data/runs/r1")


@pytest.mark.parametrize("given,spark", [
    ("512MB", "512m"), ("512mb", "512m"), ("2GB", "2g"), ("2 GiB", "2g"), ("1g", "1g"),
    ("1024", "1024"), ("100k", "100k"), ("3T", "3t"), ("64b", "64"),
])
def test_sizes_are_normalized_to_sparks_form(given, spark):
    assert normalize_size(given) == spark


@pytest.mark.parametrize("bad", ["", "1.5g", "-1g", "lots", "5 zb", "1gg"])
def test_a_malformed_size_is_refused(bad):
    with pytest.raises(ValueError):
        normalize_size(bad)


def test_the_whole_command_line():
    doc = make_job(
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers.py", "sourceCode": ""},
                {"assetType": "FILE", "filename": "notes.txt", "content": "hi"}],
        jobParameters={"--executor-memory": "512MB", "--total-executor-cores": "10", "-v": "",
                       "--conf": "spark.sql.shuffle.partitions=8"},
        targetEngine={"sparkConf": {"spark.sql.ansi.enabled": False, "--driver-memory": "1GB"}})
    settings = Settings(spark=SparkSettings(master="spark://10.0.0.1:7077",
                                            conf={"spark.executor.memory": "1g", "spark.eventLog.enabled": "true"}))
    argv = build_argv(settings, validate(doc), WORKDIR, "/opt/spark/bin/spark-submit")
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
    argv = build_argv(Settings(), validate(make_job()), WORKDIR, "spark-submit")
    assert argv == ["spark-submit", "--master", "local[*]", "--deploy-mode", "client",
                    "--conf", "spark.app.name=sparkrunner-test-model", "/data/runs/r1/sparkrunner_driver.py"]


@pytest.mark.parametrize("field,key,value,refused", [
    ("jobParameters", "--master", "yarn", "spark.master"),
    ("jobParameters", "--deploy-mode", "cluster", "spark.submit.deployMode"),
    ("jobParameters", "--driver-class-path", "/tmp/x.jar", "spark.driver.extraClassPath"),
    ("jobParameters", "--driver-java-options", "-Dx=1", "spark.driver.extraJavaOptions"),
    ("jobParameters", "--jars", "/tmp/evil.jar", "spark.jars"),
    ("jobParameters", "--conf", "spark.executor.extraJavaOptions=-agentlib:x", "spark.executor.extraJavaOptions"),
    ("sparkConf", "spark.master", "local[1]", "spark.master"),
    ("sparkConf", "spark.submit.proxyUser.allowCustomClasspathInClusterMode", "true",
     "spark.submit.proxyUser.allowCustomClasspathInClusterMode"),
    ("sparkConf", "spark.executor.extraClassPath", "/x", "spark.executor.extraClassPath"),
    ("sparkConf", "spark.authenticate.secret", "guess", "spark.authenticate.secret"),
    ("sparkConf", "--proxy-user", "root", "spark.submit.proxyUser"),
])
def test_settings_a_job_may_not_choose_are_refused_by_name(field, key, value, refused):
    doc = make_job(**({"jobParameters": {key: value}} if field == "jobParameters"
                      else {"targetEngine": {"sparkConf": {key: value}}}))
    with pytest.raises(JobInvalid) as info:
        job_settings(validate(doc))
    [error] = info.value.errors
    where = "$.jobParameters" if field == "jobParameters" else "$.targetEngine.sparkConf"
    assert error.path == f"{where}[{key!r}]"
    assert f"{refused!r} is chosen by the operator, not by a job" in error.message


def test_the_operator_can_allow_a_refused_setting():
    doc = make_job(targetEngine={"sparkConf": {"spark.driver.extraJavaOptions": "-Dlog4j.level=WARN"}})
    spec = validate(doc)
    with pytest.raises(JobInvalid):
        job_settings(spec)
    allowed = job_settings(spec, allow=("spark.*.extraJavaOptions",))
    assert allowed.conf == {"spark.driver.extraJavaOptions": "-Dlog4j.level=WARN"}
    settings = Settings(policy=PolicySettings(allow=("spark.driver.extraJavaOptions",)))
    assert "spark.driver.extraJavaOptions=-Dlog4j.level=WARN" in build_argv(settings, spec, WORKDIR, "s")


def test_every_bad_setting_is_reported_at_once():
    doc = make_job(jobParameters={"--executor-memory": "lots", "--frobnicate": "1", "-v": "yes",
                                  "--conf": "no-equals-sign"})
    with pytest.raises(JobInvalid) as info:
        job_settings(validate(doc))
    errors = {e.path: e.message for e in info.value.errors}
    assert "'lots' is not a size" in errors["$.jobParameters['--executor-memory']"]
    assert "e.g. 512m" in errors["$.jobParameters['--executor-memory']"]
    assert "'--frobnicate' is not a spark-submit option" in errors["$.jobParameters['--frobnicate']"]
    assert "--executor-memory" in errors["$.jobParameters['--frobnicate']"]  # lists what is accepted
    assert "takes no value" in errors["$.jobParameters['-v']"]
    assert "spark.some.property=value" in errors["$.jobParameters['--conf']"]


def test_a_value_with_a_newline_or_nul_is_refused():
    doc = make_job(targetEngine={"sparkConf": {"spark.app.name": "a\nb"}})
    with pytest.raises(JobInvalid, match="control characters"):
        job_settings(validate(doc))


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


@pytest.mark.parametrize("key", [
    "spark.sql.extensions", "spark.sql.catalog.evil", "spark.hadoop.fs.defaultFS", "spark.driver.bindAddress",
    "spark.eventLog.dir", "spark.sql.warehouse.dir", "spark.python.daemon.module", "spark.plugins.x",
    "spark.driver.resource.gpu.discoveryScript", "spark.yarn.jars", "spark.ui.port",
])
def test_properties_that_load_code_move_the_job_or_write_elsewhere_are_refused(key):
    with pytest.raises(JobInvalid, match="chosen by the operator"):
        job_settings(validate(make_job(targetEngine={"sparkConf": {key: "x"}})))


def test_a_job_may_pick_its_queue_and_turn_its_ui_off():
    doc = make_job(jobParameters={"--queue": "q1"}, targetEngine={"sparkConf": {"spark.ui.enabled": "false"}})
    assert job_settings(validate(doc)).conf == {"spark.yarn.queue": "q1", "spark.ui.enabled": "false"}
