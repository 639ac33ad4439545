"""A model's own packages, end to end through the real service (sandboxed where bwrap works), as
a ModelOp client sends the job (``requests.post(json=...)``): a package the service lacks is
installed for the model only; two jobs pinning different versions run at the same time, each on
its own, in the driver and in a UDF, on local[*] and on the standalone cluster; the next job with
a set reuses its environment; a bad requirement is refused with the installer's words, or ends
the job ERROR with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_job
from service_helpers import Service, write_config
from test_requirements import requirements_file

pytestmark = pytest.mark.e2e

#: Absent from the base installation (the tests check it), two wheels apart.
PACKAGE, OLD, NEW = "inflection", "0.5.0", "0.5.1"

#: Each job marks its arrival in a shared directory and waits for the other's: they overlap.
MODEL = '''\
import os, time
import inflection
from pyspark.sql import SparkSession
from pyspark.sql.functions import udf

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    meet, expected = open("meet.txt").read().split()
    open(os.path.join(meet, inflection.__version__), "w").close()
    deadline = time.time() + 240
    while len(os.listdir(meet)) < int(expected) and time.time() < deadline:
        time.sleep(0.1)

    @udf("string")
    def on_worker(text):
        import inflection
        return inflection.__version__ + " " + inflection.camelize(text)

    row = spark.createDataFrame([("model_batch_job",)], ["s"]).select(on_worker("s")).collect()[0]
    return {"driver": inflection.__version__, "udf": row[0], "met": sorted(os.listdir(meet))}
'''


def job(version: str, meet: Path, expected: int) -> dict:
    return make_job(MODEL, assets=[
        requirements_file(f"# the model's own packages\n{PACKAGE}=={version}\n"),
        {"assetType": "FILE", "filename": "meet.txt", "content": f"{meet} {expected}"}])


def log_of(service: Service, job_id: str) -> str:
    return "\n".join(service.get(f"/jobs/{job_id}/log", params={"from": 0, "size": 10000}).json()["log"])


def run_two_versions_together(service: Service, meet: Path) -> dict[str, dict]:
    meet.mkdir()
    ids = {version: service.submit(job(version, meet, 2))["id"] for version in (OLD, NEW)}
    done = {version: service.wait_for(job_id, {"COMPLETE", "ERROR", "CANCELLED"}, timeout=420)
            for version, job_id in ids.items()}
    for version, record in done.items():
        assert record["jobStatus"] == "COMPLETE", (record, log_of(service, record["id"]))
        assert record["result"] == {"driver": version, "udf": f"{version} ModelBatchJob",
                                    "met": sorted([OLD, NEW])}
    return done


def test_the_package_is_absent_from_the_base():
    import importlib.util

    assert importlib.util.find_spec(PACKAGE) is None


@pytest.fixture(scope="module")
def local_service(tmp_path_factory):
    base = tmp_path_factory.mktemp("envs-local")
    service = Service(base / "data").start()
    yield service, base
    service.stop()


def test_two_versions_run_together_on_local_and_the_next_job_reuses_its_environment(local_service):
    service, base = local_service
    done = run_two_versions_together(service, base / "meet")
    first_log = log_of(service, done[NEW]["id"])
    assert f"environment: built " in first_log and f"+ {PACKAGE}=={NEW}" in first_log
    assert done[NEW]["executionMode"] == "cold" and "own packages" in done[NEW]["executionReason"]
    [meta] = [json.loads(p.read_text()) for p in (base / "data" / "environments").glob("*/meta.json")
              if json.loads(p.read_text())["requirements"] == [f"{PACKAGE}=={NEW}"]]

    (base / "meet-again").mkdir()
    again = service.submit(job(NEW, base / "meet-again", 1))
    record = service.wait_for(again["id"], {"COMPLETE", "ERROR"}, timeout=300)
    assert record["jobStatus"] == "COMPLETE" and record["result"]["udf"] == f"{NEW} ModelBatchJob"
    log = log_of(service, again["id"])
    assert f"environment: reusing {meta['key']}" in log and "environment: built" not in log
    [meta_after] = [json.loads(p.read_text()) for p in (base / "data" / "environments").glob(f"{meta['key']}/meta.json")]
    assert meta_after["built"] == meta["built"]  # not built again


def test_an_unknown_package_is_refused_at_submit_naming_it(local_service):
    service, _ = local_service
    response = service.post("/jobs", json=make_job(assets=[requirements_file("sparkrunner-no-such-package-zq==1.0\n")]))
    assert response.status_code == 422, response.text  # as every invalid job
    text = response.text
    assert "$.model.storedModel.modelAssets[1]" in text and "sparkrunner-no-such-package-zq" in text
    assert "not found" in text  # uv's own words


def test_without_the_submit_check_a_bad_requirement_ends_the_job_error_with_uv_s_lines(tmp_path):
    service = Service(tmp_path / "data", extra="environments:\n  check_on_submit: false\n").start()
    try:
        submitted = service.submit(make_job(assets=[requirements_file(f"{PACKAGE}==99.0\n")]))
        record = service.wait_for(submitted["id"], {"COMPLETE", "ERROR"}, timeout=120)
        assert record["jobStatus"] == "ERROR"
        assert record["reason"].startswith("building the job's Python environment failed:")
        assert f"{PACKAGE}==99.0" in record["reason"] and "unsatisfiable" in record["reason"]
        assert "environment: |" in log_of(service, submitted["id"])  # the build's log is the job's
    finally:
        service.stop()


def test_two_versions_run_together_on_the_standalone_cluster(tmp_path, standalone_cluster):
    info = standalone_cluster
    config = write_config(tmp_path / "standalone.yaml", tmp_path / "data", extra=f"""
environments:
  cache_dir: {tmp_path / 'envs'}
""")
    text = config.read_text().replace("spark:\n", f"""spark:
  master: {info.master_url}
  conf_dir: {info.client_conf_dir}
  env:
    SPARK_LOCAL_IP: 127.0.0.1
""", 1).replace("    spark.ui.enabled: 'false'\n", """    spark.ui.enabled: 'false'
    spark.authenticate: 'true'
    spark.executor.cores: '1'
    spark.executor.memory: 512m
    spark.cores.max: '1'
""")
    config.write_text(text)
    service = Service(tmp_path / "data", config=config).start()
    try:
        done = run_two_versions_together(service, tmp_path / "meet")
        log = log_of(service, done[OLD]["id"])
        assert "shipped to the executors as environment.tar.gz#environment" in log
        assert "spark.archives=" in log and "spark.pyspark.python=./environment/bin/python" in log
    finally:
        service.stop()
