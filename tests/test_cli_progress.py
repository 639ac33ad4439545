"""The command line's progress: `submit --wait`, `status --follow` and `run` print a line per
change off a terminal and draw rich's bar on one. The stand-in spark-submit serves a Spark UI
(no JVM)."""

from __future__ import annotations

import io
import re
import subprocess

import pytest

from conftest import SPARKRUNNER
from service_helpers import InProcessService
from sparkrunner.cli.progressbar import ProgressView
from support.spark_submit_standin import standin_job

PERCENT = re.compile(r"^sparkrunner: RUNNING (\d+\.\d)% \(tasks (\d+)/40 · Spark jobs \d done, \d active of 4\)$")


def run(args):
    return subprocess.run([SPARKRUNNER, *args], capture_output=True, text=True, timeout=120)


def percents(stderr: str) -> list[float]:
    return [float(m.group(1)) for line in stderr.splitlines() if (m := PERCENT.match(line))]


@pytest.fixture
def service(tmp_path, standin_spark_home):
    svc = InProcessService(tmp_path / "data", spark_home=standin_spark_home).start()
    yield svc
    svc.stop()


def test_submit_wait_prints_progress_lines_off_a_terminal(service, job_file):
    done = run(["submit", "--url", service.url, "--wait", str(job_file(standin_job(seconds=5, ui_jobs=4)))])
    assert done.returncode == 0, done.stderr
    seen = percents(done.stderr)
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] > seen[0], done.stderr
    assert "\x1b[" not in done.stderr  # no bar's control characters in a pipe
    assert done.stderr.splitlines()[-1] == "sparkrunner: COMPLETE: exit code 0"


def test_status_follow_draws_until_the_end_then_shows_the_job(service):
    job = service.submit(standin_job(seconds=4, ui_jobs=4))
    done = run(["status", "--url", service.url, "--follow", job["id"]])
    assert done.returncode == 0, done.stderr
    assert len(percents(done.stderr)) >= 2, done.stderr
    assert '"jobStatus": "COMPLETE"' in done.stdout
    failing = service.submit(standin_job(exit=1, error="no"))
    assert run(["status", "--url", service.url, "-f", failing["id"]]).returncode == 1


def test_run_reads_its_drivers_ui(tmp_path, job_file, standin_spark_home):
    config = tmp_path / "standin.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nspark:\n  home: {standin_spark_home}\n")
    done = run(["--config", str(config), "run", "-q", str(job_file(standin_job(seconds=4, ui_jobs=4)))])
    assert done.returncode == 0, done.stderr
    assert "sparkrunner: WAITING" in done.stderr.splitlines()
    assert len(percents(done.stderr)) >= 2, done.stderr
    assert done.stdout == ""


def test_on_a_terminal_a_bar_is_drawn():
    out = io.StringIO()
    progress = {"jobs": {"done": 1, "active": 1, "failed": 0, "total": 4},
                "stages": {"done": 1, "active": 1, "failed": 0, "total": 4},
                "tasks": {"done": 18, "active": 1, "failed": 0, "total": 40}, "percent": 45.0}
    with ProgressView(out, tty=True) as view:
        view.update("RUNNING", progress)
        view.update("COMPLETE", None)
    text = out.getvalue()
    assert "\x1b[" in text and "RUNNING" in text and "tasks 18/40" in text and "100%" in text
