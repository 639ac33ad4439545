"""Livy's batch API in-process, with no JVM: shapes, codes, state names, paging, ownership, the
cross-site rule, the prefix; and Livy's real clients (Airflow's LivyHook, the livy package)
reading every state. The service is not started, so jobs stay where the tests put them."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from conftest import make_job
from sparkrunner.api import create_app
from sparkrunner.config import PolicySettings, ServiceSettings, Settings
from sparkrunner.service import JobService
from sparkrunner.states import JobStatus

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"}
BATCH_FIELDS = {"id", "name", "owner", "proxyUser", "state", "appId", "appInfo", "log",
                "jobId", "jobType", "jobStatus", "reason"}


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "jobs" / "pi.py"
    path.parent.mkdir()
    path.write_text("print('pi')\n")
    return path


def settings_for(tmp_path: Path, **service) -> Settings:
    return Settings(data_dir=tmp_path / "data", policy=PolicySettings(local_roots=(str(tmp_path / "jobs"),)),
                    service=ServiceSettings(**service))


@pytest.fixture
def served(tmp_path):
    """(client, service) of an app whose service never runs a job; closed at the end."""
    made = []

    def serve(**service_settings):
        service = JobService(settings_for(tmp_path, **service_settings))
        made.append(service)
        return TestClient(create_app(service.settings, service, manage=False)), service

    yield serve
    for service in made:
        service.close()


def move(service: JobService, job_id: str, *states: JobStatus, **changes) -> None:
    for state in states:
        service.store.move(job_id, state, None if not state.is_terminal else f"ended {state}", **changes)


def test_a_batch_is_submitted_shown_and_listed_as_livy_shows_it(served, script):
    client, service = served()
    created = client.post("/batches", json={"file": str(script), "args": ["10"], "name": "pi"})

    assert created.status_code == 201
    batch = created.json()
    assert created.headers["location"] == f"/batches/{batch['id']}"
    assert set(batch) == BATCH_FIELDS and isinstance(batch["id"], int)
    assert {k: batch[k] for k in ("name", "owner", "proxyUser", "state", "appId", "appInfo", "log")} == {
        "name": "pi", "owner": None, "proxyUser": None, "state": "starting", "appId": None,
        "appInfo": {"driverLogUrl": None, "sparkUiUrl": None}, "log": []}
    assert client.get(f"/batches/{batch['id']}").json() == batch
    assert client.get(f"/batches/{batch['id']}/state").json() == {"id": batch["id"], "state": "starting"}
    # The same job on the native path, with its own type; the document is the request.
    job = client.get(f"/jobs/{batch['jobId']}").json()
    assert (job["jobType"], job["batchId"], job["name"]) == ("SPARK_SCRIPT_JOB", batch["id"], "pi")
    assert json.loads(service.get(batch["jobId"]).document) == {
        "jobType": "SPARK_SCRIPT_JOB", "file": str(script), "args": ["10"], "name": "pi"}
    assert client.get("/jobs", params={"jobType": "SPARK_SCRIPT_JOB"}).json()["total"] == 1


def test_batch_ids_are_integers_and_every_job_is_a_batch(served, script):
    client, _ = served()
    model = client.post("/jobs", json=make_job()).json()
    batch = client.post("/batches", json={"file": str(script)}).json()

    assert (model["batchId"], batch["id"]) == (1, 2)
    shown = client.get("/batches/1").json()
    assert (shown["jobId"], shown["jobType"], shown["name"]) == (model["id"], "MODEL_BATCH_JOB", "test-model")


def test_states_have_livys_names(served, script):
    client, service = served()
    ids = [client.post("/batches", json={"file": str(script)}).json() for _ in range(6)]
    move(service, ids[1]["jobId"], JobStatus.WAITING)
    move(service, ids[2]["jobId"], JobStatus.WAITING)
    move(service, ids[2]["jobId"], JobStatus.RUNNING, app_id="local-1", ui_url="http://127.0.0.1:4040")
    move(service, ids[3]["jobId"], JobStatus.COMPLETE)
    move(service, ids[4]["jobId"], JobStatus.ERROR)
    move(service, ids[5]["jobId"], JobStatus.CANCELLED)

    states = [client.get(f"/batches/{b['id']}/state").json()["state"] for b in ids]
    assert states == ["starting", "starting", "running", "success", "dead", "killed"]
    running = client.get(f"/batches/{ids[2]['id']}").json()
    assert (running["appId"], running["appInfo"]["sparkUiUrl"]) == ("local-1", "http://127.0.0.1:4040")


def test_batches_are_paged_oldest_first(served, script):
    client, _ = served()
    ids = [client.post("/batches", json={"file": str(script), "name": f"b{i}"}).json()["id"] for i in range(5)]

    page = client.get("/batches", params={"from": 1, "size": 2}).json()
    assert (page["from"], page["total"]) == (1, 5)
    assert [b["id"] for b in page["sessions"]] == ids[1:3]
    assert client.get("/batches").json()["total"] == 5
    assert client.get("/batches", params={"from": 9}).json() == {"from": 9, "total": 5, "sessions": []}


def test_the_log_is_paged_as_livy_pages_it(served, script):
    client, service = served()
    batch = client.post("/batches", json={"file": str(script)}).json()
    move(service, batch["jobId"], JobStatus.WAITING, workdir=str(service.jobs_dir / batch["jobId"]))
    workdir = service.jobs_dir / batch["jobId"]
    workdir.mkdir()
    (workdir / "driver.log").write_text("".join(f"line {i}\n" for i in range(250)))

    first = client.get(f"/batches/{batch['id']}/log", params={"from": 0, "size": 100}).json()
    assert (first["id"], first["from"], first["total"], len(first["log"])) == (batch["id"], 0, 250, 100)
    assert client.get(f"/batches/{batch['id']}/log", params={"from": 200}).json()["log"] == [
        f"line {i}" for i in range(200, 250)]
    last = client.get(f"/batches/{batch['id']}/log", params={"size": 3}).json()  # no from: the end
    assert (last["from"], last["log"]) == (247, ["line 247", "line 248", "line 249"])
    assert client.get(f"/batches/{batch['id']}").json()["log"] == [f"line {i}" for i in range(240, 250)]


@pytest.mark.parametrize("path", ["/batches/99", "/batches/abc", "/batches/-1", "/batches/99/state",
                                  "/batches/99/log", "/batches/1.0", "/batches/99999999999999999999999"])
def test_an_unknown_batch_is_404_with_a_msg(served, path):
    client, _ = served()
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json() == {"msg": f"Session '{path.split('/')[2]}' not found."}
    assert client.delete(path.removesuffix("/state").removesuffix("/log")).status_code == 404


@pytest.mark.parametrize("body,msg", [
    ({"file": "hdfs:///jobs/app.jar", "className": "org.example.Main"},
     "$.className: names a JVM application's main class; sparkrunner runs PySpark scripts only (a Python "
     "file in 'file'); $.file: 'hdfs:///jobs/app.jar' is not a Python file (*.py); sparkrunner runs "
     "PySpark scripts, not JVM applications"),
    ({"file": "hdfs:///jobs/etl.py", "jars": ["hdfs:///x.jar"]},
     "$.jars: adds jars to the JVMs; sparkrunner runs PySpark scripts only, and jars are the operator's "
     "(spark.jars)"),
    ({"file": "hdfs:///jobs/etl.py", "conf": {"spark.driver.extraJavaOptions": "-Dx=1"}},
     "$.conf['spark.driver.extraJavaOptions']: 'spark.driver.extraJavaOptions' is chosen by the operator, "
     "not by a job (the configuration's policy.allow can permit it)"),
    ({"file": "hdfs:///jobs/etl.py", "proxyUser": "hdfs"},
     "$.proxyUser: 'spark.submit.proxyUser' is chosen by the operator, not by a job (the configuration's "
     "policy.allow can permit it)"),
    ({"file": "/etc/cron.daily/job.py"},
     "$.file: '/etc/cron.daily/job.py' resolves to '/etc/cron.daily/job.py', which is outside "
     "policy.local_roots (ROOT)"),
    ({"file": "hdfs:///jobs/etl.py", "executorMemory": "2 gigs"},
     "$.executorMemory: '2 gigs' is not a size: use a whole number with an optional unit k, m, g or t "
     "(e.g. 512m, 512MB, 2g)"),
    ({"file": "hdfs:///jobs/etl.py", "jobType": "MODEL_BATCH_JOB"},
     "$.jobType: 'MODEL_BATCH_JOB': a batch is a script job, 'SPARK_SCRIPT_JOB'"),
    ([1, 2], "$: must be a JSON object, not list"),
    # Found by fuzzing (a 500 once): a NUL in a path, a lone surrogate anywhere.
    ({"file": "\x00job.py"}, "$.file: its file name '\\x00job.py' is not a plain file name: it may not "
     "contain NUL or control characters; $.file: '\\x00job.py' holds a NUL or another control character"),
    ({"file": "job.py", "args": ["\udadb"]}, "$: holds '\\udadb', a lone surrogate, which is not a "
     "character: it cannot be stored as UTF-8"),
])
def test_a_refused_batch_is_400_with_every_problem_and_nothing_is_stored(served, tmp_path, body, msg):
    client, service = served()
    answer = client.post("/batches", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json() == {"msg": msg.replace("ROOT", str(tmp_path / "jobs"))}
    assert service.store.list()[1] == 0


@pytest.mark.parametrize("query", [{"size": 0}, {"from": -1}, {"size": "ten"}, {"size": 10**6}])
def test_bad_paging_is_400_with_a_msg(served, script, query):
    client, _ = served()
    client.post("/batches", json={"file": str(script)})
    for path in ("/batches", "/batches/1/log"):
        answer = client.get(path, params=query)
        assert answer.status_code == 400 and set(answer.json()) == {"msg"}, (path, answer.text)


def test_delete_kills_a_batch_which_stays_listed(served, script):
    client, service = served()
    queued, done = (client.post("/batches", json={"file": str(script)}).json() for _ in range(2))
    move(service, done["jobId"], JobStatus.COMPLETE)

    # No Content-Type, no header: as the livy package sends it (no form can send a DELETE).
    answer = client.delete(f"/batches/{queued['id']}")
    assert (answer.status_code, answer.json()) == (200, {"msg": "deleted"})
    assert client.get(f"/batches/{queued['id']}").json()["state"] == "killed"
    assert client.delete(f"/batches/{queued['id']}").json() == {"msg": "deleted"}  # repeatable
    assert client.delete(f"/batches/{done['id']}").json() == {"msg": "deleted"}
    assert client.get(f"/batches/{done['id']}").json()["state"] == "success"  # a finished job stays
    assert client.get("/batches").json()["total"] == 2


def test_a_post_a_form_could_send_is_403_with_a_msg(served, script):
    client, service = served()
    body = json.dumps({"file": str(script)})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        answer = client.post("/batches", content=body, headers={"Content-Type": content_type})
        assert answer.status_code == 403 and "cross-site" in answer.json()["msg"]
    assert client.post("/batches", content=body, headers={"Content-Type": "text/plain",
                                                          "X-Requested-By": "curl"}).status_code == 201
    assert client.post("/jobs", content=b"{}", headers={"Content-Type": "text/plain"}).json().keys() == {"detail"}


def test_users_see_only_their_own_batches(served, script):
    client, _ = served(tokens=TOKENS)
    alice, bob = ({"Authorization": f"Bearer {TOKENS[user]}"} for user in ("alice", "bob"))

    refused = client.get("/batches")
    assert (refused.status_code, set(refused.json())) == (401, {"msg"})
    batch = client.post("/batches", json={"file": str(script)}, headers=alice).json()
    assert (batch["owner"], batch["proxyUser"]) == ("alice", "alice")
    for path in (f"/batches/{batch['id']}", f"/batches/{batch['id']}/state", f"/batches/{batch['id']}/log"):
        assert client.get(path, headers=bob).status_code == 404
    assert client.delete(f"/batches/{batch['id']}", headers=bob).status_code == 404
    assert client.get(f"/batches/{batch['id']}/state", headers=alice).json()["state"] == "starting"
    assert client.get("/batches", headers=bob).json()["total"] == 0
    assert client.get("/batches", headers=alice).json()["total"] == 1


def test_a_prefix_moves_the_routes(served, script):
    client, _ = served(livy_prefix="livy/")
    created = client.post("/livy/batches", json={"file": str(script)})
    assert created.status_code == 201 and created.headers["location"] == "/livy/batches/1"
    assert client.get("/livy/batches/1/state").json() == {"id": 1, "state": "starting"}
    assert client.get("/batches/1").status_code == 404


def test_the_openapi_document_describes_livys_routes(served):
    client, _ = served()
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/batches"]) == {"get", "post"}
    assert set(paths["/batches/{batch_id}"]) == {"get", "delete"}
    assert "file" in paths["/batches"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"]


# -- Livy's real clients, against the app served on a port --------------------------------------

@pytest.fixture
def live(served, monkeypatch):
    """Serves the app by uvicorn in this process: live(**service settings) -> (base URL, service),
    with Airflow's livy_default connection pointing at it."""
    # Airflow writes a home directory when imported: the tests' own, as test_airflow_units'.
    monkeypatch.setenv("AIRFLOW_HOME", os.environ.get("AIRFLOW_HOME") or str(
        Path(__file__).resolve().parent.parent / "build" / "airflow-test-home"))
    servers = []

    def serve(**service_settings):
        _, service = served(**service_settings)
        server = uvicorn.Server(uvicorn.Config(create_app(service.settings, service, manage=False),
                                               host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        monkeypatch.setenv("AIRFLOW_CONN_LIVY_DEFAULT", json.dumps(
            {"conn_type": "livy", "host": "127.0.0.1", "port": port}))
        return f"http://127.0.0.1:{port}", service

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def test_livys_clients_read_every_state_and_page_the_log(live, script):
    from airflow.providers.apache.livy.hooks.livy import BatchState, LivyHook
    from livy import LivyBatch, SessionState

    url, service = live()
    hook = LivyHook()
    batch_id = hook.post_batch(file=str(script), args=[1, 2], driver_memory="512m", conf={"spark.x": 1})
    assert isinstance(batch_id, int)
    job_id = service.get_batch(batch_id).id
    assert hook.get_batch_state(batch_id) is BatchState.STARTING
    assert LivyBatch(url, batch_id).state is SessionState.STARTING
    move(service, job_id, JobStatus.WAITING, workdir=str(service.jobs_dir / job_id))
    move(service, job_id, JobStatus.RUNNING, app_id="local-7")
    assert hook.get_batch_state(batch_id) is BatchState.RUNNING
    assert hook.get_batch(batch_id)["appId"] == "local-7"
    (service.jobs_dir / job_id).mkdir()
    (service.jobs_dir / job_id / "driver.log").write_text("".join(f"line {i}\n" for i in range(230)))
    move(service, job_id, JobStatus.COMPLETE)
    assert hook.get_batch_state(batch_id) is BatchState.SUCCESS
    assert LivyBatch(url, batch_id).wait() is SessionState.SUCCESS
    assert LivyBatch(url, batch_id).log(from_=228) == ["line 228", "line 229"]
    pages = []
    hook.get_batch_logs = lambda *args, wrapped=hook.get_batch_logs: pages.append(args) or wrapped(*args)
    hook.dump_batch_logs(batch_id)  # pages while from <= total, as Livy's clients do
    assert [start for _, start, _ in pages] == [0, 100, 200]
    assert hook.delete_batch(batch_id) == {"msg": "deleted"}

    other = LivyBatch.create(url, file=str(script))
    other.kill()
    assert other.wait() is SessionState.KILLED
    with pytest.raises(ValueError, match="not found"):
        LivyBatch(url, 999).state


def test_livys_clients_authenticate_with_a_token_as_their_password(live, script, monkeypatch):
    from airflow.providers.apache.livy.hooks.livy import BatchState, LivyHook
    from livy import LivyBatch, SessionState

    url, service = live(tokens=TOKENS)
    port = url.rsplit(":", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_LIVY_DEFAULT", json.dumps(
        {"conn_type": "livy", "host": "127.0.0.1", "port": int(port), "login": "alice",
         "password": TOKENS["alice"]}))
    batch_id = LivyHook().post_batch(file=str(script))  # HTTP basic alice:<token>
    assert service.get_batch(batch_id).owner == "alice"
    assert LivyHook().get_batch_state(batch_id) is BatchState.STARTING

    as_bob = LivyBatch(url, batch_id, auth=("bob", TOKENS["bob"]))
    with pytest.raises(ValueError, match="not found"):  # another user's batch does not exist
        as_bob.state
    as_alice = LivyBatch(url, batch_id, auth=("alice", TOKENS["alice"]))
    as_alice.kill()
    assert as_alice.state is SessionState.KILLED
