"""The `sparkrunner` command: exit codes, what it prints, Ctrl-C, and the client commands.

Jobs run with the stand-in spark-submit (tests/support/spark_submit_standin.py), chosen by the
configuration's spark.home; tests/test_run_e2e.py runs `sparkrunner run` with the real one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import SPARKRUNNER, make_job
from service_helpers import InProcessService, pids_in_group
from support.spark_submit_standin import CHILD_PID, calls, standin_job
from test_run_e2e import kitchen_sink_job


def run(args, **kw):
    return subprocess.run([SPARKRUNNER, *args], capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def standin_config(tmp_path, standin_spark_home):
    """A configuration that runs jobs with the stand-in spark-submit."""
    path = tmp_path / "standin.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\nspark:\n  home: {standin_spark_home}\n")
    return path


def test_run_completes_with_exit_0_and_says_where_the_result_is(tmp_path, job_file, standin_config):
    job = job_file(standin_job(result={"rows": 3}))
    done = run(["--config", str(standin_config), "run", "--workdir", str(tmp_path / "wd"), str(job)])
    assert done.returncode == 0, done.stderr
    assert "sparkrunner: application: local-" in done.stdout  # spark-submit's output, echoed
    assert 'sparkrunner: result: {"rows": 3}' in done.stdout
    wd = tmp_path / "wd"
    assert done.stderr.splitlines()[-2:] == [
        "sparkrunner: COMPLETE: exit code 0",
        f"sparkrunner: log {wd / 'driver.log'}, result {wd / 'result.json'}"]
    assert json.loads((wd / "result.json").read_text()) == {"rows": 3}
    [call] = calls(wd)
    assert call["argv"][-1] == str(wd / "sparkrunner_driver.py") and call["cwd"] == str(wd)


def test_run_of_a_failing_job_exits_1_with_its_reason_and_quiet_echoes_nothing(tmp_path, job_file, standin_config):
    job = job_file(standin_job(exit=1, error="score function 'score' raised ValueError: row 3 has no age"))
    done = run(["--config", str(standin_config), "run", "-q", "--workdir", str(tmp_path / "wd"), str(job)])
    assert done.returncode == 1
    assert done.stdout == ""
    assert "sparkrunner: ERROR: exit code 1: score function 'score' raised ValueError: row 3 has no age" \
        in done.stderr.splitlines()
    assert not (tmp_path / "wd" / "result.json").exists()


def test_an_invalid_job_exits_2_names_every_problem_and_leaves_nothing(tmp_path, job_file):
    doc = make_job("def f(): pass\n", jobParameters={"--jars": "evil.jar", "--executor-memory": "big"})
    job = job_file(doc)
    data = tmp_path / "data"
    done = run(["run", "--data-dir", str(data), str(job)])
    assert done.returncode == 2
    assert "error: the job is invalid (3 problems):" in done.stderr
    assert "$.model.storedModel.modelAssets[0]: names no score function" in done.stderr
    assert "$.jobParameters['--jars']: 'spark.jars' is chosen by the operator" in done.stderr
    assert "$.jobParameters['--executor-memory']: 'big' is not a size" in done.stderr
    assert not data.exists()
    assert run(["run", str(tmp_path / "missing.json")]).returncode == 2
    assert run(["run"]).returncode == 2  # argparse's usage error


def test_stopping_run_cancels_the_whole_spark_submit(tmp_path, job_file, standin_config):
    job = job_file(standin_job(seconds=300, child=True))
    cli = subprocess.Popen([SPARKRUNNER, "--config", str(standin_config), "run", "-q", "--workdir",
                            str(tmp_path / "wd"), str(job)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log, child = tmp_path / "wd" / "driver.log", tmp_path / "wd" / CHILD_PID
    deadline = time.monotonic() + 60
    while not (log.exists() and "sparkrunner: application: " in log.read_text() and child.exists()):
        assert time.monotonic() < deadline and cli.poll() is None, "the job never started running"
        time.sleep(0.02)
    [supervisor] = open(f"/proc/{cli.pid}/task/{cli.pid}/children").read().split()
    assert int(child.read_text()) in pids_in_group(int(supervisor))
    cli.send_signal(signal.SIGTERM)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 1
    assert "sparkrunner: CANCELLED: cancelled by user" in err
    assert pids_in_group(int(supervisor)) == []


def test_validate_and_render(tmp_path, job_file):
    job = job_file(kitchen_sink_job(tmp_path))
    done = run(["validate", str(job)])
    assert done.returncode == 0
    assert done.stdout.strip().splitlines() == [
        "ok: MODEL_BATCH_JOB job 'test-model' calls score function action(), "
        "init load() in my-model.py; 1 input(s), 1 output(s), 1 attachment(s)",
        "execution: cold: its settings spark.driver.memory need a JVM of their own (a warm session "
        "takes only spark.sql.* settings)"]
    done = run(["render", str(job), "--workdir", str(tmp_path / "wd")])
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "wd")) == ["helpers.py", "job.json", "my-model.py", "sparkrunner_driver.py",
                                                   "sparkrunner_job_metadata.py", "threshold.txt"]
    assert "--py-files " + str(tmp_path / "wd" / "helpers.py") in done.stdout
    assert "--properties-file " + str(tmp_path / "wd" / "sparkrunner_spark.properties") in done.stdout
    [properties] = [line for line in done.stdout.splitlines() if line.startswith("properties: ")]
    assert "spark.app.name=sparkrunner-test-model" in properties
    assert run(["render", str(job), "--workdir", str(tmp_path / "wd")]).returncode == 2  # not empty


def test_schema_is_printable():
    done = run(["schema"])
    assert done.returncode == 0
    assert json.loads(done.stdout)["title"] == "modelBatchJob"


def test_submit_wait_follows_the_job_to_its_end_and_list_shows_it(tmp_path, job_file, standin_spark_home):
    service = InProcessService(tmp_path / "data", spark_home=standin_spark_home).start()
    try:
        done = run(["submit", "--url", service.url, "--wait", str(job_file(standin_job(result={"n": 1})))])
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.splitlines()[0]
        assert service.job(job_id)["jobStatus"] == "COMPLETE"
        assert 'sparkrunner: result: {"n": 1}' in done.stdout.splitlines()  # the log, followed
        assert done.stderr.splitlines()[-1] == "sparkrunner: COMPLETE: exit code 0"

        failing = job_file(standin_job(exit=1, error="score function 'score' raised KeyError: 'Age'"), "failing.json")
        done = run(["submit", "--url", service.url, "--wait", str(failing)])
        assert done.returncode == 1
        assert done.stderr.splitlines()[-1] == \
            "sparkrunner: ERROR: exit code 1: score function 'score' raised KeyError: 'Age'"

        listed = run(["list", "--url", service.url])
        assert listed.returncode == 0
        assert (listed.stdout.count("COMPLETE"), listed.stdout.count("ERROR")) == (1, 1)
    finally:
        service.stop()
