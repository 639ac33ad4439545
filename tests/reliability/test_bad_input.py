"""Bad input gets a 4xx naming the field and the value, never a 500, and leaves nothing behind.

One service with small limits serves the module: its app in this process over HTTP on
127.0.0.1 and a temporary SQLite file, with the stand-in spark-submit. Every refused request is
followed by a check that no job was stored and no working directory made.
"""

from __future__ import annotations

import http.client
import json
import os
import socket

import pytest

from conftest import make_job
from service_helpers import InProcessService

MAX_REQUEST = 64 * 1024
MAX_ASSET = 16 * 1024


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("badinput")


@pytest.fixture(scope="module")
def roots(base):
    root = base / "data-root"
    (root / "in").mkdir(parents=True)
    (root / "in" / "rows.csv").write_text("a,b\n1,2\n")
    (root / "escape").symlink_to("/etc")
    (base / "data-rootX").mkdir()  # a sibling whose name starts like the root's
    return root


@pytest.fixture(scope="module")
def service(base, roots, standin_spark_home):
    config = base / "sparkrunner.yaml"
    config.write_text(f"""
data_dir: {base / 'data'}
spark:
  home: {standin_spark_home}
  conf: {{spark.ui.enabled: "false"}}
policy:
  local_roots: [{roots}]
hdfs:
  namenode: http://127.0.0.1:9
  timeout_seconds: 2
service:
  max_concurrent_jobs: 1
  max_request_bytes: {MAX_REQUEST}
limits:
  max_json_depth: 32
  max_assets: 20
  max_asset_bytes: {MAX_ASSET}
""")
    svc = InProcessService(base / "data", config=config).start()
    yield svc
    svc.stop()


@pytest.fixture
def nothing_kept(service):
    """Asserts, after the test, that the service stored no job and made no directory."""
    jobs, dirs = service.get("/jobs").json()["total"], sorted(os.listdir(service.data_dir / "jobs"))
    yield
    assert service.get("/jobs").json()["total"] == jobs
    assert sorted(os.listdir(service.data_dir / "jobs")) == dirs


def ends_before_spark(service, job_id: str) -> None:
    """Accepted jobs here name HDFS paths, and the configured namenode is a closed port: they
    end at once, without a JVM, which keeps this module fast."""
    job = service.wait_for(job_id, {"CANCELLED", "COMPLETE", "ERROR"}, timeout=30)
    assert job["jobStatus"] == "ERROR", job
    assert job["reason"].startswith("before spark-submit: http://127.0.0.1:9: cannot reach WebHDFS"), job


def refused(service, doc: dict | str | bytes, status: int = 422) -> dict:
    if isinstance(doc, dict):
        response = service.post("/jobs", json=doc)
    else:
        response = service.post("/jobs", data=doc, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    return response.json()


def problem(body: dict, path: str) -> str:
    """The message of the problem reported at ``path``."""
    found = [e["message"] for e in body.get("errors", []) if e["path"] == path]
    assert found, f"no problem at {path}: {body}"
    return found[0]


# -- the request ----------------------------------------------------------------------------

def test_a_body_over_the_limit_is_413(service, nothing_kept):
    body = refused(service, b"{" + b" " * MAX_REQUEST + b"}", status=413)
    assert body["detail"] == f"the request body is larger than {MAX_REQUEST} bytes (service.max_request_bytes)"


def chunked_post(service, chunks) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    conn.request("POST", "/jobs", body=iter(chunks), encode_chunked=True,
                 headers={"Content-Type": "application/json", "X-Requested-By": "tests"})
    response = conn.getresponse()
    status, body = response.status, json.loads(response.read())
    conn.close()
    return status, body


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(service, nothing_kept):
    sent = []

    def endless():  # 1 MiB in 4 KiB chunks: far past the limit; the server must not read it all
        for _ in range(256):
            sent.append(1)
            yield b" " * 4096

    try:
        status, body = chunked_post(service, endless())
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the service closed the connection instead of answering 413")
    assert status == 413 and "service.max_request_bytes" in body["detail"]


def test_a_chunked_body_within_the_limit_is_accepted(service):
    text = json.dumps(url_job("hdfs:///data/rows.csv")).encode()
    status, body = chunked_post(service, [text[i:i + 100] for i in range(0, len(text), 100)])
    assert status == 201, body
    assert service.job(body["id"])["name"] == "test-model"
    ends_before_spark(service, body["id"])


@pytest.mark.parametrize("text,message", [
    (b"{not json", "is not valid JSON"),
    (b"[1, 2]", "must be a JSON object, not list"),
    (b'{"a": NaN}', "NaN is not a JSON value"),
    (b"\xff\xfe{}", "is not valid JSON"),
    (b"[" * 30_000 + b"]" * 30_000, "is not valid JSON"),  # deeper than Python's parser goes
])
def test_malformed_documents_are_422(service, nothing_kept, text, message):
    assert message in problem(refused(service, text), "$")


def test_deep_nesting_is_refused_before_the_schema_walks_it(service, nothing_kept):
    doc = make_job()
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    doc["unknownField"] = deep  # unknown fields are kept: they still may not nest without end
    assert problem(refused(service, doc), "$") == "is nested more than 32 levels deep (limits.max_json_depth)"


def test_too_many_assets_are_refused(service, nothing_kept):
    inputs = [{"assetType": "EXTERNAL_FILE", "fileUrl": "hdfs:///d/%d.csv" % i} for i in range(25)]
    message = problem(refused(service, make_job(inputData=inputs)), "$")
    assert message == ("holds 26 assets in modelAssets, inputData and outputData; at most 20 are "
                       "accepted (limits.max_assets)")


@pytest.mark.parametrize("where", ["source", "file"])
def test_an_oversized_source_or_file_is_refused(service, nothing_kept, where):
    big = "# " + "x" * MAX_ASSET + "\n"
    if where == "source":
        big += "# modelop.score\ndef s(a, b, c):\n    pass\n"
        doc, path = make_job(big), "$.model.storedModel.modelAssets[0].sourceCode"
    else:
        doc, path = make_job(assets=[{"assetType": "FILE", "filename": "big.txt", "content": big}]), \
            "$.model.storedModel.modelAssets[1].content"
    assert problem(refused(service, doc), path) == \
        f"holds {len(big)} bytes; at most {MAX_ASSET} are accepted (limits.max_asset_bytes)"


# -- file names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,message", [
    ("sub/evil.py", "may not contain '/' or '\\'"),
    ("..\\evil.py", "may not contain '/' or '\\'"),
    ("/etc/cron.d/evil", "may not contain '/' or '\\'"),
    ("..", "'.' and '..' are refused"),
    ("%2e%2e", "'.' and '..' are refused"),
    ("..%2fevil", "may not contain '/' or '\\'"),
    ("evil\u0000.txt", "may not contain NUL or control characters"),
    ("../jobsX/evil.txt", "may not contain '/' or '\\'"),  # a sibling of the working directory
    ("sparkrunner_driver.py", "is reserved for sparkrunner's own files"),
])
def test_file_names_that_leave_the_working_directory_are_refused(service, nothing_kept, name, message):
    doc = make_job(assets=[{"assetType": "FILE", "filename": name, "content": "x"}])
    got = problem(refused(service, doc), "$.model.storedModel.modelAssets[1].filename")
    assert got.startswith(repr(name)) and message in got


# -- where data may live ------------------------------------------------------------------------

def url_job(url: str) -> dict:
    return make_job(inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": url, "fileFormat": "CSV"}])


@pytest.mark.parametrize("url,message", [
    ("http://169.254.169.254/latest/meta-data/", "names the address 169.254.169.254, a metadata"),
    ("s3a://[fd00:ec2::254]/data.csv", "names the address fd00:ec2::254, a metadata"),
    ("local:///etc/passwd", "uses the scheme 'local:', which the service refuses"),
    ("har:///etc/x.har/passwd", "uses the scheme 'har:', which the service refuses"),
    ("jar:file:/etc/x.jar!/passwd", "uses the scheme 'jar:', which the service refuses"),
    ("webhdfs://169.254.169.254:80/x.csv", "names the address 169.254.169.254, a metadata"),
    ("hdfs://[fe80::1]:8020/x.csv", "names the address fe80::1, a metadata, link-local"),
    ("file://otherhost/x.csv", "names the host 'otherhost'; a file: URL may only name this machine"),
    ("in/rows.csv", "is a relative path; local paths must be absolute"),
    ("/etc/passwd", "resolves to '/etc/passwd', which is outside policy.local_roots"),
])
def test_urls_the_policy_refuses_are_refused(service, nothing_kept, url, message):
    got = problem(refused(service, url_job(url)), "$.inputData[0].fileUrl")
    assert got.startswith(repr(url)) and message in got, got


@pytest.mark.parametrize("suffix", ["/../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                                    "/escape/passwd", "X/secret.csv"])
def test_local_paths_that_escape_the_roots_are_refused(service, roots, nothing_kept, suffix):
    for url in (f"{roots}{suffix}", f"file://{roots}{suffix}"):
        got = problem(refused(service, url_job(url)), "$.inputData[0].fileUrl")
        assert "which is outside policy.local_roots" in got, got


def test_the_service_data_directory_is_never_a_data_source(service, nothing_kept):
    url = str(service.data_dir / "jobs.db")
    assert "lies inside the service's data directory" in problem(
        refused(service, url_job(url)), "$.inputData[0].fileUrl")


def test_every_refused_url_is_reported_at_once(service, nothing_kept):
    doc = url_job("local:///x")
    doc["outputData"] = [{"assetType": "EXTERNAL_FILE", "fileUrl": "/tmp/out"}]
    doc["model"]["storedModel"]["modelAssets"].append(
        {"assetType": "EXTERNAL_FILE", "fileUrl": "http://169.254.169.254/m/model.pkl"})
    paths = {e["path"] for e in refused(service, doc)["errors"]}
    assert paths == {"$.inputData[0].fileUrl", "$.outputData[0].fileUrl",
                     "$.model.storedModel.modelAssets[1].fileUrl"}


# -- Spark settings ------------------------------------------------------------------------------

@pytest.mark.parametrize("field,key,value", [
    ("sparkConf", "spark.driver.extraClassPath", "/tmp/evil.jar"),
    ("sparkConf", "spark.executor.extraJavaOptions", "-javaagent:/tmp/evil.jar"),
    ("sparkConf", "spark.submit.proxyUser.allowCustomClasspathInClusterMode", "true"),
    ("sparkConf", "spark.redaction.regex", "nothing"),
    ("sparkConf", "spark.authenticate.secret", "guess"),
    ("sparkConf", "spark.jars.packages", "org.evil:evil:1.0"),
    ("jobParameters", "--jars", "/tmp/evil.jar"),
    ("jobParameters", "--driver-java-options", "-Dx=y"),
    ("jobParameters", "--proxy-user", "root"),
])
def test_settings_a_job_may_not_choose_are_refused(service, nothing_kept, field, key, value):
    doc = make_job(**({"targetEngine": {"sparkConf": {key: value}}} if field == "sparkConf"
                      else {"jobParameters": {key: value}}))
    path = f"$.targetEngine.sparkConf[{key!r}]" if field == "sparkConf" else f"$.jobParameters[{key!r}]"
    assert "is chosen by the operator, not by a job" in problem(refused(service, doc), path)


def test_the_operators_settings_are_overridden_with_a_warning(service):
    doc = url_job("hdfs:///data/rows.csv")
    doc["jobParameters"] = {"--deploy-mode": "cluster"}
    doc["targetEngine"] = {"sparkConf": {"--master": "yarn", "spark.master": "local[*]"}}
    response = service.post("/jobs", json=doc)
    assert response.status_code == 201, response.text
    assert response.json()["warnings"] == [
        "$.jobParameters['--deploy-mode']: 'cluster' is overridden: spark.submit.deployMode is chosen "
        "by the operator, and the configuration's 'client' is used",
        "$.targetEngine.sparkConf['--master']: 'yarn' is overridden: spark.master is chosen by the "
        "operator, and the configuration's 'local[*]' is used",
    ]  # spark.master: 'local[*]' is the configuration's own value: no warning
    ends_before_spark(service, response.json()["id"])


# -- the schema -----------------------------------------------------------------------------------

def test_fields_sparkrunner_only_carries_are_kept_in_any_shape(service):
    doc = url_job("hdfs:///data/rows.csv")
    doc.update(createdDate="last tuesday", lastModifiedDate=1616767940345, jobStatus="CREATED", _links={})
    response = service.post("/jobs", json=doc)
    assert response.status_code == 201, response.text
    ends_before_spark(service, response.json()["id"])


def test_a_ref_in_a_job_is_data_and_never_fetched(service, nothing_kept):
    """Job documents are data: a "$ref" in one is an unknown field, never a reference to follow."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    remote = {"$ref": f"http://127.0.0.1:{port}/schema.json"}
    doc = make_job(timeoutSeconds=0, **remote)  # refused for its timeout, after the whole walk
    doc["model"]["storedModel"]["modelMetaData"].update(remote)
    doc["inputData"] = [dict(remote, assetType="EXTERNAL_FILE", fileUrl="hdfs:///x")]
    refused(service, doc)
    connections = []
    try:
        while True:
            connections.append(listener.accept())
    except socket.timeout:
        pass
    finally:
        listener.close()
    assert connections == []


def test_the_shipped_schema_has_only_local_references():
    from sparkrunner.jobspec import schema

    refs = []

    def walk(node):
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema())
    assert refs and all(ref.startswith("#/") for ref in refs)


def test_a_good_job_is_still_accepted_alongside(service, roots):
    """The allowlist lets through what it should: a path under the root, and HDFS."""
    doc = url_job(str(roots / "in" / "rows.csv"))
    doc["outputData"] = [{"assetType": "EXTERNAL_FILE", "fileUrl": f"file://{roots}/out"},
                         {"assetType": "EXTERNAL_FILE", "fileUrl": "hdfs:///user/me/out"}]
    response = service.post("/jobs", json=doc)
    assert response.status_code == 201, response.text
    ends_before_spark(service, response.json()["id"])
