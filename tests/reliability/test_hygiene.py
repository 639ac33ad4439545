"""Hygiene: private files, and no token or cluster secret in any log, file or API response.

One real job runs with spark-submit's verbose flag (which prints every Spark property) under a
configuration whose spark-defaults.conf holds spark.authenticate.secret, on a service with API
tokens. Then everything the service wrote and answered is searched for both.
"""

from __future__ import annotations

import os
import stat

import pytest

from service_helpers import Service, sleepy_job

pytestmark = pytest.mark.e2e

TOKEN = "hygiene-token-5f1c9a0e7d3b"
SECRET = "cluster-secret-8e2d4c6a1b9f"


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    base = tmp_path_factory.mktemp("hygiene")
    conf_dir = base / "client-conf"
    conf_dir.mkdir(mode=0o700)
    (conf_dir / "spark-defaults.conf").write_text(f"spark.authenticate true\nspark.authenticate.secret {SECRET}\n")
    service = Service(base / "data", extra=f"  tokens: {{ops: {TOKEN}}}\n")
    service.config.write_text(service.config.read_text().replace("spark:\n", f"spark:\n  conf_dir: {conf_dir}\n", 1))
    service.start()
    service.headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        job = service.submit(sleepy_job(0, jobParameters={"-v": ""}))
        job = service.wait_for(job["id"], {"COMPLETE", "ERROR", "CANCELLED"})
        responses = [service.get(path).text for path in
                     (f"/jobs/{job['id']}", f"/jobs/{job['id']}/log?from=0&size=10000", "/jobs")]
    finally:
        service.stop()
    return service, job, responses


def test_the_job_ran_verbosely_with_the_secret_configured(ran):
    service, job, _ = ran
    assert job["jobStatus"] == "COMPLETE", job
    log = (service.data_dir / "jobs" / job["id"] / "driver.log").read_text()
    # spark-submit -v listed the secret's property, with Spark's redaction in place of the value.
    assert "spark.authenticate.secret" in log and "*********(redacted)" in log


def every_file(*roots):
    for root in roots:
        for directory, _, files in os.walk(root):
            for name in files:
                yield os.path.join(directory, name)


def test_no_token_or_secret_in_any_file_or_response(ran):
    service, job, responses = ran
    for text in responses:
        assert TOKEN not in text and SECRET not in text
    files = list(every_file(service.data_dir)) + [str(service.log_path)]
    assert any(f.endswith("driver.log") for f in files) and len(files) > 5
    for path in files:
        data = open(path, "rb").read()
        assert TOKEN.encode() not in data, path
        assert SECRET.encode() not in data, path


def test_the_data_directory_is_private_to_the_service_user(ran):
    service, job, _ = ran
    workdir = service.data_dir / "jobs" / job["id"]
    for directory in (service.data_dir, service.data_dir / "jobs", workdir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    wrote = sorted(every_file(service.data_dir))
    assert {"jobs.db", "service.lock", "driver.log", "exit.json", "result.json", "job.json",
            "sparkrunner_driver.py"} <= {os.path.basename(f) for f in wrote}
    loose = {f: oct(stat.S_IMODE(os.stat(f).st_mode)) for f in wrote if stat.S_IMODE(os.stat(f).st_mode) & 0o077}
    assert loose == {}
