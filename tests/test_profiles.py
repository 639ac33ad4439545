"""The shipped profiles (conf/*.yaml): every setting each one loads to, and the whole
spark-submit command line each one produces."""

from pathlib import Path

import pytest

from conftest import REPO, admitted, make_job
from sparkrunner import config
from sparkrunner.command import build_argv, child_env
from sparkrunner.config import (HdfsSettings, LimitSettings, PolicySettings, ServiceSettings, Settings,
                                SparkSettings)

WORKDIR = Path("/srv/runs/j1")
JOB = make_job(jobParameters={"--executor-memory": "2GB", "--queue": "analytics"},
               targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false"}})


LOCAL_ENV = {"SPARK_LOCAL_IP": "127.0.0.1"}
#: Every shipped profile, loaded from the repository, as it must load.
PROFILES = {
    "sparkrunner": Settings(
        data_dir=REPO / "build" / "data",
        spark=SparkSettings(master="local[*]", deploy_mode="client", home="", python="", conf_dir="",
                            conf={"spark.ui.showConsoleProgress": "false"}, env=LOCAL_ENV),
        policy=PolicySettings(allow=(), file_url_schemes=(), denied_url_schemes=(),
                              local_roots=(str(REPO / "build"), str(REPO / "jobs"))),
        service=ServiceSettings(host="127.0.0.1", port=8765, max_concurrent_jobs=2, default_timeout_seconds=0,
                                tokens={}, max_request_bytes=16 * 1024 * 1024),
        hdfs=HdfsSettings(),
        limits=LimitSettings(max_json_depth=64, max_assets=1000, max_asset_bytes=8 * 1024 * 1024)),
    "standalone": Settings(
        data_dir=REPO / "build" / "data",
        spark=SparkSettings(master="spark://127.0.0.1:7077", deploy_mode="client",
                            conf_dir=str(REPO / "build" / "cluster" / "client-conf"),
                            conf={"spark.authenticate": "true", "spark.executor.cores": "1",
                                  "spark.executor.memory": "512m", "spark.cores.max": "2",
                                  "spark.ui.showConsoleProgress": "false"},
                            env=LOCAL_ENV),
        policy=PolicySettings(local_roots=(str(REPO / "build"),)),
        service=ServiceSettings(max_concurrent_jobs=1)),
    "yarn": Settings(
        data_dir=REPO / "build" / "data",
        spark=SparkSettings(master="yarn", deploy_mode="client",
                            conf={"spark.yarn.queue": "default", "spark.executor.instances": "2",
                                  "spark.executor.cores": "1", "spark.executor.memory": "1g",
                                  "spark.ui.showConsoleProgress": "false"},
                            env={"HADOOP_CONF_DIR": "/etc/hadoop/conf", "YARN_CONF_DIR": "/etc/hadoop/conf"}),
        service=ServiceSettings(max_concurrent_jobs=4)),
    "kubernetes": Settings(
        data_dir=REPO / "build" / "data",
        spark=SparkSettings(master="k8s://https://kubernetes.default.svc:443", deploy_mode="client",
                            conf={"spark.kubernetes.namespace": "sparkrunner",
                                  "spark.kubernetes.container.image": "apache/spark-py:4.3.0",
                                  "spark.kubernetes.authenticate.driver.serviceAccountName": "sparkrunner",
                                  "spark.executor.instances": "2", "spark.executor.cores": "1",
                                  "spark.executor.memory": "1g",
                                  "spark.driver.host": "sparkrunner-driver.sparkrunner.svc",
                                  "spark.ui.showConsoleProgress": "false"},
                            env={}),
        service=ServiceSettings(max_concurrent_jobs=4)),
}


def test_every_shipped_profile_is_listed_here():
    assert sorted(p.stem for p in (REPO / "conf").glob("*.yaml")) == sorted(PROFILES)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_shipped_profile_loads_to_its_settings(profile):
    assert config.load(REPO / "conf" / f"{profile}.yaml") == PROFILES[profile]


def test_the_standalone_profile_fits_two_one_core_workers():
    spark = config.load(REPO / "conf" / "standalone.yaml").spark
    assert "spark.authenticate.secret" not in spark.conf  # it is in the 0600 conf_dir only
    assert (spark.conf["spark.executor.cores"], spark.conf["spark.cores.max"]) == ("1", "2")


def argv_for(profile: str) -> list[str]:
    settings = config.load(REPO / "conf" / f"{profile}.yaml")
    return build_argv(settings, admitted(JOB, settings), WORKDIR, "spark-submit")


def test_yarn():
    assert argv_for("yarn") == [
        "spark-submit", "--master", "yarn", "--deploy-mode", "client",
        "--conf", "spark.app.name=sparkrunner-test-model",
        "--conf", "spark.executor.cores=1",
        "--conf", "spark.executor.instances=2",
        "--conf", "spark.executor.memory=2g",
        "--conf", "spark.sql.ansi.enabled=false",
        "--conf", "spark.ui.showConsoleProgress=false",
        "--conf", "spark.yarn.queue=analytics",
        "/srv/runs/j1/sparkrunner_driver.py"]
    env = child_env(config.load(REPO / "conf" / "yarn.yaml"), {})
    assert env["HADOOP_CONF_DIR"] == "/etc/hadoop/conf"


def test_kubernetes():
    argv = argv_for("kubernetes")
    assert argv[:5] == ["spark-submit", "--master", "k8s://https://kubernetes.default.svc:443",
                        "--deploy-mode", "client"]
    confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    assert confs == [
        "spark.app.name=sparkrunner-test-model",
        "spark.driver.host=sparkrunner-driver.sparkrunner.svc",
        "spark.executor.cores=1",
        "spark.executor.instances=2",
        "spark.executor.memory=2g",
        "spark.kubernetes.authenticate.driver.serviceAccountName=sparkrunner",
        "spark.kubernetes.container.image=apache/spark-py:4.3.0",
        "spark.kubernetes.namespace=sparkrunner",
        "spark.sql.ansi.enabled=false",
        "spark.ui.showConsoleProgress=false",
        "spark.yarn.queue=analytics",
    ]
    assert argv[-1] == "/srv/runs/j1/sparkrunner_driver.py"


def test_standalone_points_at_the_local_cluster_and_its_secret_directory():
    settings = config.load(REPO / "conf" / "standalone.yaml")
    argv = build_argv(settings, admitted(JOB, settings), WORKDIR, "spark-submit")
    assert argv[1:3] == ["--master", "spark://127.0.0.1:7077"]
    assert "spark.authenticate=true" in argv
    assert not any("secret" in a for a in argv)  # the secret never travels on the command line
    env = child_env(settings, {})
    assert env["SPARK_CONF_DIR"] == str(REPO / "build" / "cluster" / "client-conf")
