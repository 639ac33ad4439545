"""HDFS checks and staging through the `hdfs` package, against the WebHDFS test server answering
as a NameNode does: alone, and as the service runs them before spark-submit (the service in this
process, its jobs run by the stand-in spark-submit)."""

from __future__ import annotations

import pytest
from hdfs import InsecureClient

from conftest import make_job
from service_helpers import InProcessService
from sparkrunner.config import HdfsSettings
from sparkrunner.errors import HdfsCheckFailed
from sparkrunner.hdfs import Hdfs, needs_hdfs, split_url
from sparkrunner.jobspec import validate
from support.spark_submit_standin import calls, standin_job
from support.webhdfs import WebHdfsServer

TERMINAL = {"COMPLETE", "ERROR", "CANCELLED"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with WebHdfsServer(tmp_path_factory.mktemp("hdfs")) as srv:
        yield srv


def asset(name, url):
    return {"assetType": "EXTERNAL_FILE", "name": name, "fileUrl": url, "fileFormat": "CSV"}


def test_urls_map_to_webhdfs_addresses():
    settings = HdfsSettings(namenode="http://nn:9870")
    assert split_url("webhdfs://127.0.0.1:5/a/b%20c", settings) == ("http://127.0.0.1:5", "/a/b c")
    assert split_url("hdfs://nn:8020/data/x", settings) == ("http://nn:9870", "/data/x")
    assert split_url("hdfs:///data/x", settings) == ("http://nn:9870", "/data/x")
    assert split_url("file:///data/x", settings) is None
    with pytest.raises(HdfsCheckFailed, match="hdfs.namenode: is not configured"):
        split_url("hdfs:///data/x", HdfsSettings())


def test_missing_inputs_and_attachments_are_named(server):
    client = InsecureClient(server.url, user="sparkrunner")
    client.write("/data/present.csv", data=b"a\n1\n", overwrite=True)
    base = server.webhdfs_url
    spec = validate(make_job(
        inputData=[asset("present", f"{base}/data/present.csv"), asset("gone", f"{base}/data/gone.csv"),
                   asset("local", "file:///not/checked.csv")],
        assets=[asset("weights", f"{base}/models/w.bin")]))
    assert needs_hdfs(spec)
    with pytest.raises(HdfsCheckFailed) as info:
        Hdfs(HdfsSettings(user="sparkrunner")).check(spec)
    assert [str(e) for e in info.value.errors] == [
        f"$.inputData[1]: 'gone' ({base}/data/gone.csv) does not exist",
        f"$.model.storedModel.modelAssets[1]: 'weights' ({base}/models/w.bin) does not exist",
    ]


def test_existing_outputs_fail_or_are_overwritten_by_policy(server):
    client = InsecureClient(server.url, user="sparkrunner")
    client.write("/out/scores/part-0.csv", data=b"old\n", overwrite=True)
    spec = validate(make_job(outputData=[asset("scores", f"{server.webhdfs_url}/out/scores")]))
    with pytest.raises(HdfsCheckFailed, match="already exists, and the configured policy for existing outputs is 'fail'"):
        Hdfs(HdfsSettings(existing_outputs="fail")).check(spec)
    assert client.status("/out/scores/part-0.csv", strict=False) is not None  # untouched
    Hdfs(HdfsSettings(existing_outputs="overwrite")).check(spec)
    assert client.status("/out/scores", strict=False) is None


def test_staging_uploads_the_working_directory(server, tmp_path):
    (tmp_path / "model.py").write_text("x = 1\n")
    (tmp_path / "job.json").write_text("{}")
    staged = Hdfs(HdfsSettings(staging_root=f"{server.webhdfs_url}/staging", user="sparkrunner")).stage(tmp_path, "job-7")
    assert staged == "/staging/job-7"
    client = InsecureClient(server.url, user="sparkrunner")
    assert sorted(client.list("/staging/job-7")) == ["job.json", "model.py"]
    with client.read("/staging/job-7/model.py") as f:
        assert f.read() == b"x = 1\n"
    assert client.status("/staging/job-7")["permission"] == "700"


def test_an_unreachable_namenode_is_a_clear_failure():
    spec = validate(make_job(inputData=[asset("in", "webhdfs://127.0.0.1:1/data/in.csv")]))
    with pytest.raises(HdfsCheckFailed, match="cannot reach WebHDFS"):
        Hdfs(HdfsSettings(timeout_seconds=2)).check(spec)


def test_staging_that_fails_is_a_check_failure_not_a_crash(server):
    client = InsecureClient(server.url, user="sparkrunner")
    client.write("/blocked", data=b"a file where a directory should be", overwrite=True)
    with pytest.raises(HdfsCheckFailed, match="staging failed"):
        Hdfs(HdfsSettings(staging_root=f"{server.webhdfs_url}/blocked")).stage(server.root, "job-1")


def test_an_hdfs_url_naming_another_cluster_is_refused():
    with pytest.raises(HdfsCheckFailed, match="names the cluster 'other'"):
        split_url("hdfs://other:8020/data/x", HdfsSettings(namenode="http://nn:9870"))


@pytest.fixture(scope="module")
def service(server, tmp_path_factory, standin_spark_home):
    """A service that checks and stages on the server, overwriting existing outputs."""
    extra = (f"hdfs:\n  user: sparkrunner\n  existing_outputs: overwrite\n"
             f"  staging_root: {server.webhdfs_url}/user/sparkrunner/staging\n")
    svc = InProcessService(tmp_path_factory.mktemp("hdfs-service") / "data", max_jobs=1, extra=extra,
                           spark_home=standin_spark_home).start()
    yield svc
    svc.stop()


def test_a_missing_hdfs_input_fails_the_job_before_spark_submit(server, service):
    doc = standin_job(inputData=[asset("numbers", f"{server.webhdfs_url}/data/missing.csv")])
    job = service.wait_for(service.submit(doc)["id"], TERMINAL, timeout=60)
    assert job["jobStatus"] == "ERROR"
    assert job["reason"] == (f"before spark-submit: $.inputData[0]: 'numbers' "
                             f"({server.webhdfs_url}/data/missing.csv) does not exist")
    assert job["startDate"] is None and job["waitSeconds"] < 10  # ended straight from the queue
    workdir = service.data_dir / "jobs" / job["id"]
    assert not (workdir / "driver.log").exists() and calls(workdir) == []  # spark-submit never ran


def test_the_service_overwrites_existing_outputs_and_stages_the_job_before_running_it(server, service):
    client = InsecureClient(server.url, user="sparkrunner")
    client.write("/data/numbers.csv", data=b"n\n1\n2\n", overwrite=True)
    client.write("/out/squares/stale.csv", data=b"from an earlier run\n", overwrite=True)
    doc = standin_job(inputData=[asset("numbers", f"{server.webhdfs_url}/data/numbers.csv")],
                      outputData=[asset("squares", f"{server.webhdfs_url}/out/squares")])
    job = service.wait_for(service.submit(doc)["id"], TERMINAL, timeout=60)
    assert job["jobStatus"] == "COMPLETE", job
    assert client.status("/out/squares", strict=False) is None  # deleted by the check: the stand-in writes none
    staged = f"/user/sparkrunner/staging/{job['id']}"
    assert {"model.py", "job.json", "sparkrunner_driver.py", "sparkrunner_job_metadata.py"} <= set(client.list(staged))
    assert client.status(staged)["permission"] == "700"
    [call] = calls(service.data_dir / "jobs" / job["id"])
    assert call["argv"][-1].endswith("sparkrunner_driver.py")
