"""The policy: which settings a job may choose (refused, the operator's, its own), and sizes."""

import pytest

from conftest import admitted, make_job
from sparkrunner.command import build_argv, spark_properties
from sparkrunner.config import PolicySettings, Settings, SparkSettings
from sparkrunner.errors import JobInvalid
from sparkrunner.policy import normalize_size

WORKDIR = "/data/runs/r1"


def job_settings(doc, settings=Settings()):
    return admitted(doc, settings).settings


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


@pytest.mark.parametrize("field,key,value,refused", [
    ("jobParameters", "--driver-class-path", "/tmp/x.jar", "spark.driver.extraClassPath"),
    ("jobParameters", "--driver-java-options", "-Dx=1", "spark.driver.extraJavaOptions"),
    ("jobParameters", "--jars", "/tmp/evil.jar", "spark.jars"),
    ("jobParameters", "--conf", "spark.executor.extraJavaOptions=-agentlib:x", "spark.executor.extraJavaOptions"),
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
        job_settings(doc)
    [error] = info.value.errors
    where = "$.jobParameters" if field == "jobParameters" else "$.targetEngine.sparkConf"
    assert error.path == f"{where}[{key!r}]"
    assert f"{refused!r} is chosen by the operator, not by a job" in error.message


def test_the_operator_can_allow_a_refused_setting():
    doc = make_job(targetEngine={"sparkConf": {"spark.driver.extraJavaOptions": "-Dlog4j.level=WARN"}})
    with pytest.raises(JobInvalid):
        job_settings(doc)
    settings = Settings(policy=PolicySettings(allow=("spark.*.extraJavaOptions",)))
    allowed = job_settings(doc, settings)
    assert allowed.conf == {"spark.app.name": "sparkrunner-test-model",
                            "spark.driver.extraJavaOptions": "-Dlog4j.level=WARN"}
    properties = spark_properties(settings, admitted(doc, settings))
    assert properties["spark.driver.extraJavaOptions"] == "-Dlog4j.level=WARN"


def test_every_bad_setting_is_reported_at_once():
    doc = make_job(jobParameters={"--executor-memory": "lots", "--frobnicate": "1", "-v": "yes",
                                  "--conf": "no-equals-sign"})
    with pytest.raises(JobInvalid) as info:
        job_settings(doc)
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
        job_settings(doc)


@pytest.mark.parametrize("key", [
    "spark.sql.extensions", "spark.sql.catalog.evil", "spark.eventLog.dir", "spark.sql.warehouse.dir",
    "spark.python.daemon.module", "spark.plugins.x", "spark.driver.resource.gpu.discoveryScript",
    "spark.yarn.jars", "spark.ui.filters", "spark.submit.pyFiles", "spark.hadoop.hadoop.security.authentication",
])
def test_properties_that_load_code_change_security_or_write_elsewhere_are_refused(key):
    with pytest.raises(JobInvalid, match="chosen by the operator, not by a job"):
        job_settings(make_job(targetEngine={"sparkConf": {key: "x"}}))


def test_a_job_may_pick_its_queue_and_turn_its_ui_off():
    doc = make_job(jobParameters={"--queue": "q1"}, targetEngine={"sparkConf": {"spark.ui.enabled": "false"}})
    assert job_settings(doc).conf == {"spark.app.name": "sparkrunner-test-model",
                                      "spark.yarn.queue": "q1", "spark.ui.enabled": "false"}


@pytest.mark.parametrize("field,key,value,prop", [
    ("sparkConf", "--master", "yarn", "spark.master"),  # as ModelOp's engine record carries it
    ("jobParameters", "--master", "yarn", "spark.master"),
    ("jobParameters", "--deploy-mode", "cluster", "spark.submit.deployMode"),
    ("sparkConf", "spark.master", "local[1]", "spark.master"),
    ("sparkConf", "spark.driver.bindAddress", "0.0.0.0", "spark.driver.bindAddress"),
    ("sparkConf", "spark.hadoop.fs.defaultFS", "hdfs://elsewhere:8020", "spark.hadoop.fs.defaultFS"),
    ("sparkConf", "spark.ui.port", "4050", "spark.ui.port"),
])
def test_the_operators_settings_are_overridden_with_a_warning_not_refused(field, key, value, prop):
    doc = make_job(**({"jobParameters": {key: value}} if field == "jobParameters"
                      else {"targetEngine": {"sparkConf": {key: value}}}))
    settings = Settings(spark=SparkSettings(master="spark://10.0.0.1:7077"))
    job = admitted(doc, settings)
    where = "$.jobParameters" if field == "jobParameters" else "$.targetEngine.sparkConf"
    [warning] = job.warnings
    assert warning.startswith(f"{where}[{key!r}]: {value!r} is overridden: {prop} is chosen by the operator")
    assert prop not in job.settings.conf
    argv = build_argv(settings, job, WORKDIR, "spark-submit")
    assert argv[1:5] == ["--master", "spark://10.0.0.1:7077", "--deploy-mode", "client"]
    assert prop not in spark_properties(settings, job)


def test_the_configurations_own_value_is_accepted_without_a_warning():
    settings = Settings(spark=SparkSettings(master="yarn", conf={"spark.ui.port": "4050"}))
    doc = make_job(targetEngine={"sparkConf": {"--master": "yarn", "spark.ui.port": "4050"}},
                   jobParameters={"--deploy-mode": "client"})
    job = admitted(doc, settings)
    assert job.warnings == ()
    assert job.settings.conf["spark.ui.port"] == "4050"


def test_a_different_master_says_which_one_is_used():
    job = admitted(make_job(targetEngine={"sparkConf": {"--master": "yarn"}}))
    assert job.warnings == ("$.targetEngine.sparkConf['--master']: 'yarn' is overridden: spark.master "
                            "is chosen by the operator, and the configuration's 'local[*]' is used",)


def test_target_engine_executor_memory_is_honoured_as_a_size_below_the_jobs_flags():
    engine = {"engineType": "SPARK_RUNTIME", "executorMemory": "512MB", "sparkConf": {}}
    assert job_settings(make_job(targetEngine=engine)).conf["spark.executor.memory"] == "512m"
    flagged = make_job(targetEngine=engine, jobParameters={"--executor-memory": "2GB"})
    assert job_settings(flagged).conf["spark.executor.memory"] == "2g"
    with pytest.raises(JobInvalid) as info:
        job_settings(make_job(targetEngine={"executorMemory": "lots"}))
    assert [e.path for e in info.value.errors] == ["$.targetEngine.executorMemory"]


def test_null_settings_containers_are_empty():
    doc = make_job(jobParameters=None, targetEngine={"sparkConf": None, "executorMemory": None})
    assert job_settings(doc).conf == {"spark.app.name": "sparkrunner-test-model"}


def test_a_local_path_inside_a_hidden_path_is_refused_though_it_lies_under_a_root(tmp_path):
    from sparkrunner.policy import url_problem

    (tmp_path / "cluster").mkdir()
    policy = PolicySettings(local_roots=(str(tmp_path),), hidden=(str(tmp_path / "cluster"),))
    assert url_problem(str(tmp_path / "data.csv"), policy, None, local=True) is None
    problem = url_problem(f"file://{tmp_path}/x/../cluster/secret", policy, None, local=True)
    assert problem == f"lies inside {str(tmp_path / 'cluster')!r}, which policy.hidden keeps from every job"
