"""The shipped profiles: the whole spark-submit command line each one produces."""

from pathlib import Path

from conftest import REPO, admitted, make_job
from sparkrunner import config
from sparkrunner.command import build_argv, child_env, properties_text, spark_properties

WORKDIR = Path("/srv/runs/j1")
JOB = make_job(jobParameters={"--executor-memory": "2GB", "--queue": "analytics"},
               targetEngine={"sparkConf": {"spark.sql.ansi.enabled": "false"}})


HEADER = "# Written by sparkrunner: spark-submit's --properties-file for this run.\n"


def argv_and_properties(profile: str, defaults: dict | None = None) -> tuple[list[str], str]:
    settings = config.load(REPO / "conf" / f"{profile}.yaml")
    job = admitted(JOB, settings)
    return (build_argv(settings, job, WORKDIR, "spark-submit"),
            properties_text(spark_properties(job, defaults)))


def test_yarn():
    argv, properties = argv_and_properties("yarn")
    assert argv == [
        "spark-submit", "--master", "yarn", "--deploy-mode", "client",
        "--properties-file", "/srv/runs/j1/sparkrunner_spark.properties",
        "/srv/runs/j1/sparkrunner_driver.py"]
    assert properties == HEADER + (
        "spark.app.name=sparkrunner-test-model\n"
        "spark.executor.cores=1\n"
        "spark.executor.instances=2\n"
        "spark.executor.memory=2g\n"
        "spark.sql.ansi.enabled=false\n"
        "spark.ui.showConsoleProgress=false\n"
        "spark.yarn.queue=analytics\n")
    env = child_env(config.load(REPO / "conf" / "yarn.yaml"), {})
    assert env["HADOOP_CONF_DIR"] == "/etc/hadoop/conf"


def test_kubernetes():
    argv, properties = argv_and_properties("kubernetes")
    assert argv == ["spark-submit", "--master", "k8s://https://kubernetes.default.svc:443",
                    "--deploy-mode", "client", "--properties-file", "/srv/runs/j1/sparkrunner_spark.properties",
                    "/srv/runs/j1/sparkrunner_driver.py"]
    assert properties == HEADER + (
        "spark.app.name=sparkrunner-test-model\n"
        "spark.driver.host=sparkrunner-driver.sparkrunner.svc\n"
        "spark.executor.cores=1\n"
        "spark.executor.instances=2\n"
        "spark.executor.memory=2g\n"
        "spark.kubernetes.authenticate.driver.serviceAccountName=sparkrunner\n"
        "spark.kubernetes.container.image=apache/spark-py\\:4.3.0\n"
        "spark.kubernetes.namespace=sparkrunner\n"
        "spark.sql.ansi.enabled=false\n"
        "spark.ui.showConsoleProgress=false\n"
        "spark.yarn.queue=analytics\n")


def test_standalone_points_at_the_local_cluster_and_gives_the_driver_its_secret_in_the_file():
    # What `cluster up` writes into the profile's spark.conf_dir.
    argv, properties = argv_and_properties(
        "standalone", {"spark.authenticate": "true", "spark.authenticate.secret": "c0ffee"})
    assert argv == ["spark-submit", "--master", "spark://127.0.0.1:7077", "--deploy-mode", "client",
                    "--properties-file", "/srv/runs/j1/sparkrunner_spark.properties",
                    "/srv/runs/j1/sparkrunner_driver.py"]
    assert properties == HEADER + (
        "spark.app.name=sparkrunner-test-model\n"
        "spark.authenticate=true\n"
        "spark.authenticate.secret=c0ffee\n"
        "spark.cores.max=2\n"
        "spark.executor.cores=1\n"
        "spark.executor.memory=2g\n"
        "spark.sql.ansi.enabled=false\n"
        "spark.ui.showConsoleProgress=false\n"
        "spark.yarn.queue=analytics\n")
    env = child_env(config.load(REPO / "conf" / "standalone.yaml"), {})
    assert env["SPARK_CONF_DIR"] == str(REPO / "build" / "cluster" / "client-conf")
