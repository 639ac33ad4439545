"""Authentication, ownership and cross-site protection, over HTTP against the service's app in
this process, its jobs run by the stand-in spark-submit (tests/support/spark_submit_standin.py);
`sparkrunner serve` itself for what it refuses to start with."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import subprocess

import pytest
import requests

from conftest import SPARKRUNNER
from service_helpers import InProcessService
from support.spark_submit_standin import standin_job

ALICE_TOKEN = "alice-token-0123456789abcdef"
BOB_TOKEN = "bob-token-fedcba9876543210"
CAROL_TOKEN = "carol-token-with-a-stored-digest"
CAROL_DIGEST = "sha256:" + hashlib.sha256(CAROL_TOKEN.encode()).hexdigest()
def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, token: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


@pytest.fixture(scope="module")
def service(tmp_path_factory, standin_spark_home):
    extra = ("  tokens:\n"
             f"    alice: {ALICE_TOKEN}\n"
             f"    bob: {BOB_TOKEN}\n"
             f"    carol: '{CAROL_DIGEST}'\n")
    # The configuration ends inside service:, where the tokens belong.
    svc = InProcessService(tmp_path_factory.mktemp("auth") / "data", max_jobs=1, extra=extra,
                           spark_home=standin_spark_home).start()
    yield svc
    for job in svc.get("/jobs", headers=bearer(ALICE_TOKEN), params={"size": 1000}).json()["jobs"]:
        svc.post(f"/jobs/{job['id']}/cancel", headers=bearer(ALICE_TOKEN))
    svc.stop()


@pytest.fixture(scope="module")
def alices_job(service):
    """A job of alice's that sleeps long enough for the whole module; cancelled at the end."""
    return service.submit(standin_job(seconds=120), **bearer(ALICE_TOKEN))


@pytest.mark.parametrize("method,path", [("GET", "/jobs"), ("GET", "/jobs/x"), ("GET", "/jobs/x/log"),
                                         ("POST", "/jobs"), ("POST", "/jobs/x/cancel"),
                                         ("GET", "/model-manage/api/jobs"), ("GET", "/model-manage/api/jobs/x"),
                                         ("POST", "/model-manage/api/jobs")])
@pytest.mark.parametrize("headers,detail", [
    ({}, "authentication required"),
    (bearer("not-a-token-of-anyone"), "the token is not valid"),
    (basic("alice", BOB_TOKEN), "the token is not valid"),       # a real token, the wrong user
    (basic("mallory", ALICE_TOKEN), "the token is not valid"),   # an unknown user
    ({"Authorization": "Basic %%%"}, "the token is not valid"),
    ({"Authorization": f"Token {ALICE_TOKEN}"}, "the token is not valid"),
])
def test_every_job_endpoint_needs_a_valid_token(service, method, path, headers, detail):
    response = requests.request(method, service.url + path, timeout=10,
                                headers={"X-Requested-By": "tests", **headers}, json={})
    assert response.status_code == 401, response.text
    assert response.json()["detail"].startswith(detail)
    assert "Bearer" in response.headers["WWW-Authenticate"] and "Basic" in response.headers["WWW-Authenticate"]
    assert ALICE_TOKEN not in response.text and BOB_TOKEN not in response.text


def test_health_and_the_openapi_document_stay_open_and_declare_the_schemes(service):
    assert service.get("/healthz").json()["status"] == "ok"
    spec = service.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"},
                                                     "basic": {"type": "http", "scheme": "basic"}}


def test_bearer_basic_and_digest_tokens_name_their_users(service, alices_job):
    job_id = alices_job["id"]
    assert service.get(f"/jobs/{job_id}", headers=bearer(ALICE_TOKEN)).json()["id"] == job_id
    assert service.get(f"/jobs/{job_id}", headers=basic("alice", ALICE_TOKEN)).json()["id"] == job_id
    carols = service.submit(standin_job(), **bearer(CAROL_TOKEN))
    assert service.get(f"/jobs/{carols['id']}", headers=basic("carol", CAROL_TOKEN)).status_code == 200
    assert service.post(f"/jobs/{carols['id']}/cancel", headers=bearer(CAROL_TOKEN)).status_code == 200


def test_another_users_job_does_not_exist_for_you(service, alices_job):
    job_id = alices_job["id"]
    for path, call in ((f"/jobs/{job_id}", service.get), (f"/jobs/{job_id}/log", service.get),
                       (f"/jobs/{job_id}/cancel", service.post), (f"/model-manage/api/jobs/{job_id}", service.get)):
        response = call(path, headers=bearer(BOB_TOKEN))
        assert response.status_code == 404, (path, response.text)
        assert response.json()["detail"] == f"no job with id {job_id!r}"
    listed = service.get("/jobs", headers=bearer(BOB_TOKEN), params={"size": 1000}).json()
    assert job_id not in [j["id"] for j in listed["jobs"]]
    modelops = service.get("/model-manage/api/jobs", headers=bearer(BOB_TOKEN), params={"size": 1000}).json()
    assert job_id not in [j["id"] for j in modelops["_embedded"]["jobs"]]
    # Bob's cancel did nothing: alice's job runs on, uncancelled.
    mine = service.get(f"/jobs/{job_id}", headers=bearer(ALICE_TOKEN)).json()
    assert mine["jobStatus"] in ("CREATED", "WAITING", "RUNNING") and not mine["cancelRequested"]
    assert job_id in [j["id"] for j in service.get("/jobs", headers=bearer(ALICE_TOKEN),
                                                   params={"size": 1000}).json()["jobs"]]


def test_idempotency_keys_are_per_user(service, alices_job):
    first = service.post("/jobs", json=standin_job(), headers={"Idempotency-Key": "k1", **bearer(BOB_TOKEN)})
    again = service.post("/jobs", json=standin_job(), headers={"Idempotency-Key": "k1", **bearer(BOB_TOKEN)})
    other = service.post("/jobs", json=standin_job(), headers={"Idempotency-Key": "k1", **bearer(CAROL_TOKEN)})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    for response, token in ((first, BOB_TOKEN), (other, CAROL_TOKEN)):
        service.post(f"/jobs/{response.json()['id']}/cancel", headers=bearer(token))


def test_basic_auth_alone_does_not_pass_the_cross_site_check(service):
    """A browser replays a remembered basic password on a cross-site form post; a bearer token,
    the X-Requested-By header or a JSON content type, none of which a form can send, is required
    as well."""
    before = service.get("/jobs", headers=bearer(BOB_TOKEN)).json()["total"]
    response = requests.post(service.url + "/jobs", data={"job": "x"}, headers=basic("bob", BOB_TOKEN), timeout=10)
    assert response.status_code == 403
    assert "X-Requested-By" in response.json()["detail"]
    # A form can send a job's JSON as text/plain: still a form's type, still refused.
    response = requests.post(service.url + "/jobs", data=json.dumps(standin_job()), timeout=10,
                             headers={"Content-Type": "text/plain", **basic("bob", BOB_TOKEN)})
    assert response.status_code == 403
    # With a bearer token (which browsers never add by themselves) no header is needed; with
    # basic, a body declared as JSON (which a form cannot declare) is enough.
    for headers in (bearer(BOB_TOKEN), basic("bob", BOB_TOKEN)):
        accepted = requests.post(service.url + "/jobs", json=standin_job(), headers=headers, timeout=30)
        assert accepted.status_code == 201, accepted.text
        service.post(f"/jobs/{accepted.json()['id']}/cancel", headers=bearer(BOB_TOKEN))
    assert service.get("/jobs", headers=bearer(BOB_TOKEN)).json()["total"] == before + 2


#: What an HTML form on another site can post: its three types, or none at all.
FORM_TYPES = (None, "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain",
              "text/plain; charset=utf-8")


def test_without_authentication_a_form_post_cannot_submit_or_cancel(tmp_path, standin_spark_home):
    service = InProcessService(tmp_path / "data", spark_home=standin_spark_home).start()
    try:
        for content_type, path in itertools.product(FORM_TYPES, ("/jobs", "/jobs/any/cancel",
                                                                  "/model-manage/api/jobs")):
            headers = {"Content-Type": content_type} if content_type else {}
            # A job's JSON as the body: text/plain lets a form send exactly that.
            response = requests.post(service.url + path, data=json.dumps(standin_job()), timeout=10,
                                     headers=headers)
            assert response.status_code == 403, (content_type, path, response.text)
            response = requests.post(service.url + path, data=json.dumps(standin_job()), timeout=10,
                                     headers={"X-Requested-By": "", **headers})
            assert response.status_code == 403, (content_type, path)  # an empty value is no value
        assert service.get("/jobs").json()["total"] == 0
        assert list((tmp_path / "data" / "jobs").iterdir()) == []
    finally:
        service.stop()


def test_without_authentication_a_json_post_needs_no_header(tmp_path, standin_spark_home):
    """As ModelOp's and Livy's clients send it: requests.post(url, json=job), nothing else. A
    form cannot declare its body as JSON."""
    service = InProcessService(tmp_path / "data", spark_home=standin_spark_home).start()
    try:
        for path in ("/jobs", "/model-manage/api/jobs"):
            response = requests.post(service.url + path, json=standin_job(), timeout=30)
            assert response.status_code == 201, response.text
            assert response.request.headers["Content-Type"] == "application/json"
            assert "X-Requested-By" not in response.request.headers
            job = service.wait_for(response.json()["id"], {"COMPLETE", "ERROR", "CANCELLED"}, timeout=60)
            assert job["jobStatus"] == "COMPLETE", job
        assert service.get("/jobs").json()["total"] == 2
    finally:
        service.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_serve_refuses_a_public_address_without_tokens(tmp_path, host):
    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {tmp_path / 'd'}\n")
    result = subprocess.run([SPARKRUNNER, "--config", str(config), "serve", "--host", host],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"refusing to serve on {host!r} without authentication: configure service.tokens" in result.stderr


@pytest.mark.parametrize("tokens,message", [
    ("{alice: short}", "service.tokens.alice: a token needs at least 16 characters"),
    ("{'a:b': 0123456789abcdefgh}", "user name 'a:b' must be non-empty and hold no ':'"),
    ("{alice: 'sha256:abc'}", "'sha256:' must be followed by the 64 hex digits"),
])
def test_bad_tokens_are_configuration_errors_that_do_not_show_the_token(tmp_path, tokens, message):
    config = tmp_path / "c.yaml"
    config.write_text(f"data_dir: {tmp_path / 'd'}\nservice:\n  tokens: {tokens}\n")
    result = subprocess.run([SPARKRUNNER, "--config", str(config), "serve"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "0123456789abcdefgh" not in result.stderr and "short" not in result.stderr.replace(message, "")
