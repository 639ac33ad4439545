"""Script jobs (SPARK_SCRIPT_JOB, what Livy's batches become): admission, the command line, the
working directory. No JVM: the driver's script mode runs with a stand-in pyspark."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from sparkrunner.admission import Origin, admit
from sparkrunner.command import build_argv, properties_text, spark_properties
from sparkrunner.config import PolicySettings, Settings, SparkSettings
from sparkrunner.errors import JobInvalid, WorkdirError
from sparkrunner.script import SCRIPT_JOB_TYPE, ScriptSpec
from sparkrunner.workdir import render, script_metadata_source

SPARK_SUBMIT = "/opt/spark/bin/spark-submit"


@pytest.fixture
def root(tmp_path) -> Path:
    """A local root holding a script, as the operator's policy.local_roots names it."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "pi.py").write_text("print('pi')\n")
    return tmp_path / "jobs"


def settings_for(root: Path, **policy) -> Settings:
    return Settings(spark=SparkSettings(conf={"spark.ui.enabled": "false"}),
                    policy=PolicySettings(local_roots=(str(root),), **policy))


def script_job(**fields) -> dict:
    return {"jobType": SCRIPT_JOB_TYPE, **fields}


def problems(doc: dict, settings: Settings, origin: Origin = Origin.SERVICE) -> dict[str, str]:
    with pytest.raises(JobInvalid) as info:
        admit(doc, settings, origin)
    return {e.path: e.message for e in info.value.errors}


def test_a_local_script_is_copied_and_its_fields_become_spark_submit_settings(root, tmp_path):
    doc = script_job(file=str(root / "pi.py"), args=["10", 3], name="pi", driverMemory="1GB",
                     executorMemory="512m", driverCores=1, executorCores="2", numExecutors=3,
                     queue="etl", conf={"spark.sql.shuffle.partitions": 8},
                     pyFiles=["hdfs:///libs/helpers.py"], files=[str(root / "pi.py")],
                     archives=["hdfs:///envs/env.tar.gz#env"], timeoutSeconds=600)
    job = admit(doc, settings_for(root))

    spec = job.spec
    assert isinstance(spec, ScriptSpec)
    assert (spec.name, spec.filename, spec.local_path, spec.args, spec.timeout_seconds) == (
        "pi", "pi.py", str(root / "pi.py"), ("10", "3"), 600)
    assert build_argv(settings_for(root), job, Path("/data/jobs/j1"), SPARK_SUBMIT) == [
        SPARK_SUBMIT, "--master", "local[*]", "--deploy-mode", "client",
        "--properties-file", "/data/jobs/j1/sparkrunner_spark.properties",
        "--py-files", "hdfs:///libs/helpers.py",
        "--files", str(root / "pi.py"),
        "--archives", "hdfs:///envs/env.tar.gz#env",
        "/data/jobs/j1/sparkrunner_driver.py"]
    assert properties_text(spark_properties(settings_for(root), job)) == (
        "# Written by sparkrunner: spark-submit's --properties-file for this run.\n"
        "spark.app.name=pi\n"
        "spark.driver.cores=1\n"
        "spark.driver.memory=1g\n"
        "spark.executor.cores=2\n"
        "spark.executor.instances=3\n"
        "spark.executor.memory=512m\n"
        "spark.sql.shuffle.partitions=8\n"
        "spark.ui.enabled=false\n"
        "spark.yarn.queue=etl\n")
    assert job.warnings == ()  # Spark fetches the files, as under Livy

    workdir = render(spec, tmp_path / "wd", "j1")
    assert sorted(os.listdir(workdir)) == ["job.json", "pi.py", "sparkrunner_driver.py",
                                           "sparkrunner_job_metadata.py"]
    assert (workdir / "pi.py").read_text() == "print('pi')\n"
    assert runpy.run_path(str(workdir / "sparkrunner_job_metadata.py"))["script"] == {
        "file": str(root / "pi.py"), "filename": "pi.py", "copied": True, "args": ["10", "3"]}


def test_a_remote_script_is_shipped_first_in_py_files(root):
    doc = script_job(file="https://repo.example/jobs/etl.py", pyFiles=["https://repo.example/lib.zip"])
    job = admit(doc, settings_for(root))

    assert (job.spec.filename, job.spec.local_path, job.spec.name) == ("etl.py", None, "etl")
    argv = build_argv(settings_for(root), job, Path("/wd"), SPARK_SUBMIT)
    assert argv[argv.index("--py-files") + 1] == "https://repo.example/jobs/etl.py,https://repo.example/lib.zip"
    assert spark_properties(settings_for(root), job)["spark.app.name"] == "sparkrunner-etl"
    assert "'copied': False" in script_metadata_source(job.spec, "j2")


def test_every_problem_is_reported_at_once_with_its_field(root):
    doc = script_job(file="/etc/passwd", className="org.example.Main", jars=["/tmp/x.jar"],
                     driverMemory="lots", proxyUser="root", conf={"spark.jars": "/tmp/x.jar"},
                     pyFiles=["/etc/helpers.py", "hdfs:///a,b.py"], files=["local:/etc/shadow"])
    assert problems(doc, settings_for(root)) == {
        "$.className": "names a JVM application's main class; sparkrunner runs PySpark scripts only "
                       "(a Python file in 'file')",
        "$.jars": "adds jars to the JVMs; sparkrunner runs PySpark scripts only, and jars are the "
                  "operator's (spark.jars)",
        "$.file": f"'/etc/passwd' resolves to '/etc/passwd', which is outside policy.local_roots ({root})",
        "$.pyFiles[0]": f"'/etc/helpers.py' resolves to '/etc/helpers.py', which is outside "
                        f"policy.local_roots ({root})",
        "$.pyFiles[1]": "'hdfs:///a,b.py' may not contain ','",
        "$.files[0]": "'local:/etc/shadow' uses the scheme 'local:', which the service refuses "
                      "(refused: data, har, jar, javascript, local)",
        "$.driverMemory": "'lots' is not a size: use a whole number with an optional unit k, m, g "
                          "or t (e.g. 512m, 512MB, 2g)",
        "$.proxyUser": "'spark.submit.proxyUser' is chosen by the operator, not by a job (the "
                       "configuration's policy.allow can permit it)",
        "$.conf['spark.jars']": "'spark.jars' is chosen by the operator, not by a job (the "
                                "configuration's policy.allow can permit it)",
    }


@pytest.mark.parametrize("fields,path,message", [
    ({}, "$.file", "is required: the PySpark script to run"),
    ({"file": 7}, "$.file", "must be a string, not a number"),
    ({"file": "x.py", "args": "10"}, "$.args", "must be a list of strings, not a string"),
    ({"file": "x.py", "args": [["10"]]}, "$.args[0]", "must be a string, not a list"),
    ({"file": "x.py", "pyFiles": [3]}, "$.pyFiles[0]", "must be a string, not a number"),
    ({"file": "x.py", "driverCores": 0}, "$.driverCores", "must be a whole number of at least 1, not 0"),
    ({"file": "x.py", "numExecutors": "many"}, "$.numExecutors", "must be a whole number of at least 1, not 'many'"),
    ({"file": "x.py", "conf": ["a"]}, "$.conf", "must be an object of Spark properties, not a list"),
    ({"file": "x.py", "conf": {"spark.x": {"a": 1}}}, "$.conf['spark.x']", "must be a string or a number, not an object"),
    ({"file": "x.py", "timeoutSeconds": -5}, "$.timeoutSeconds", "must be a whole number of seconds, at least 1, not -5"),
    ({"file": "x.py", "kind": "pyspark"}, "$.kind", "is not a field of a script job (a Livy batch); accepted: "
     "jobType, file, name, driverMemory, executorMemory, queue, proxyUser, className, driverCores, "
     "executorCores, numExecutors, args, jars, pyFiles, files, archives, conf, timeoutSeconds"),
])
def test_fields_have_livys_types(root, fields, path, message):
    assert problems(script_job(**fields), settings_for(root), Origin.LOCAL) == {path: message}


@pytest.mark.parametrize("file,message", [
    ("hdfs:///jobs/app.jar", "'hdfs:///jobs/app.jar' is not a Python file (*.py); sparkrunner runs "
                             "PySpark scripts, not JVM applications"),
    ("hdfs:///jobs/sparkrunner_driver.py", "its file name 'sparkrunner_driver.py' is reserved for "
     "sparkrunner's own files (driver.log, exit.json, job.json, result.json, sparkrunner_daemon.py, "
     "sparkrunner_driver.py, sparkrunner_job_metadata.py, sparkrunner_scoring.py, sparkrunner_spark.properties, "
     "sparkrunner_tmp, supervisor.json)"),
])
def test_the_script_must_be_a_python_file_of_its_own_name(root, file, message):
    assert problems(script_job(file=file), settings_for(root)) == {"$.file": message}


def test_a_shipped_script_and_a_py_file_may_not_share_a_name(root):
    doc = script_job(file="hdfs:///jobs/etl.py", pyFiles=["hdfs:///lib/etl.py"])
    assert problems(doc, settings_for(root)) == {
        "$.pyFiles[0]": "'hdfs:///lib/etl.py' has the file name of the script itself ('etl.py')"}


def test_a_local_script_must_exist(root):
    assert problems(script_job(file=str(root / "missing.py")), settings_for(root)) == {
        "$.file": f"{str(root / 'missing.py')!r} is not a file on this machine"}


def test_sparkrunner_run_reads_scripts_anywhere_and_the_service_only_under_its_roots(root, tmp_path):
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("pass\n")
    doc = script_job(file=str(elsewhere))
    assert admit(doc, settings_for(root), Origin.LOCAL).spec.local_path == str(elsewhere)
    assert list(problems(doc, settings_for(root))) == ["$.file"]
    assert list(problems(doc, Settings())) == ["$.file"]  # no roots: no local files at all


def test_impersonation_needs_the_operators_consent_and_is_spark_submits_option(root):
    doc = script_job(file=str(root / "pi.py"), proxyUser="alice")
    settings = settings_for(root, allow=("spark.submit.proxyUser",))
    job = admit(doc, settings)
    argv = build_argv(settings, job, Path("/wd"), SPARK_SUBMIT)
    # spark-submit reads no property for it: only --proxy-user impersonates.
    assert argv[7:9] == ["--proxy-user", "alice"]
    assert not any(arg.startswith("spark.submit.proxyUser") for arg in argv)
    assert "spark.submit.proxyUser" not in spark_properties(settings, job)


def test_on_a_cluster_the_executors_daemon_goes_first_in_a_scripts_py_files(root):
    doc = script_job(file="https://repo.example/jobs/etl.py", pyFiles=["https://repo.example/lib.zip"])
    settings = settings_for(root).with_overrides(spark=SparkSettings(master="spark://10.0.0.1:7077"))
    argv = build_argv(settings, admit(doc, settings), Path("/wd"), SPARK_SUBMIT)
    assert argv[argv.index("--py-files") + 1] == (
        "/wd/sparkrunner_daemon.py,https://repo.example/jobs/etl.py,https://repo.example/lib.zip")


def test_a_link_put_in_place_of_an_admitted_script_is_not_read(root, tmp_path):
    job = admit(script_job(file=str(root / "pi.py")), settings_for(root))
    secret = tmp_path / "secret.py"
    secret.write_text("TOKEN = 'x'\n")
    (root / "pi.py").unlink()
    (root / "pi.py").symlink_to(secret)
    with pytest.raises(WorkdirError, match="cannot read the script"):
        render(job.spec, tmp_path / "wd", "j1")
    os.rename(root, tmp_path / "jobs-moved")
    (tmp_path / "jobs-moved" / "pi.py").unlink()
    (tmp_path / "jobs-moved" / "pi.py").write_text("print('pi')\n")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "pi.py").write_text("print('other')\n")
    root.symlink_to(tmp_path / "real")  # a directory above it replaced by a link
    with pytest.raises(WorkdirError, match="a link replaced part of its path"):
        render(job.spec, tmp_path / "wd2", "j1")
    assert not (tmp_path / "wd").exists() and not (tmp_path / "wd2").exists()


# -- the driver's script mode, with a stand-in pyspark ------------------------------------------

STANDIN_PYSPARK = '''\
class SparkContext:
    _active_spark_context = None

    def __init__(self, *args, **kwargs):
        SparkContext._active_spark_context = self
        self.applicationId, self.uiWebUrl = "local-42", None

    def stop(self):
        print("stopped")
        SparkContext._active_spark_context = None
'''


@pytest.mark.parametrize("script,status,lines", [
    ("import sys\nfrom pyspark import SparkContext\nsc = SparkContext()\nprint('argv', sys.argv[1:], __name__)\n",
     0, ["sparkrunner: application: local-42 is running; Spark UI off", "argv ['7', 'x'] __main__", "stopped"]),
    ("print('no spark')\n", 0, ["no spark"]),
    ("import sys\nsys.exit(3)\n", 3, ["sparkrunner: error: script 'job.py' exited with status 3"]),
    ("import sys\nsys.exit('bad input')\n", 1, ["bad input", "sparkrunner: error: script 'job.py' exited with status 1"]),
    ("from pyspark import SparkContext\nSparkContext()\nraise ValueError('no rows')\n", 1,
     ["sparkrunner: application: local-42 is running; Spark UI off",
      "sparkrunner: error: script 'job.py' raised ValueError: no rows", "stopped"]),
])
def test_the_driver_runs_a_script_as_python_would(root, tmp_path, script, status, lines):
    (root / "job.py").write_text(script)
    job = admit(script_job(file=str(root / "job.py"), args=["7", "x"]), settings_for(root))
    workdir = render(job.spec, tmp_path / "wd", "j1")
    (tmp_path / "standin" / "pyspark").mkdir(parents=True)
    (tmp_path / "standin" / "pyspark" / "__init__.py").write_text(STANDIN_PYSPARK)

    done = subprocess.run([sys.executable, "sparkrunner_driver.py"], cwd=workdir, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tmp_path / "standin")}, timeout=60)

    assert done.returncode == status, done.stderr
    output = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith(("Traceback", "  "))]
    assert set(lines) <= set(output), output
