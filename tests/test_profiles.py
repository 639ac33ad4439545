"""The shipped profiles: the whole spark-submit command line each one produces."""

from pathlib import Path

from conftest import REPO, admitted, make_job
from sparkrunner import config
from sparkrunner.command import build_argv, child_env

WORKDIR = Path("/srv/runs/j1")
JOB = make_job(jobParameters={"--executor-memory": "2GB", "--queue": "analytics"},
               targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false"}})


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
