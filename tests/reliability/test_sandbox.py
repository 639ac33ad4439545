"""The sandbox against a hostile model: two users on one service, one of them attacking.

User B has a finished job (a result, a log, a FILE asset) and a running one. User A submits a
model that tries, from inside its spark-submit, every way the issue lists to reach B, the
service or its secrets, and reports each attempt and how it ended as its result. Everything
sensitive lies inside the local root A may read and write (as the local profile's data
directory lies inside build/), so it must be hidden, not merely out of the way.

Every attempt fails, A says so, and nothing of B's changes: B's running job goes on to
complete, B's files and records are as they were, the service lives. A second model of A's
leaves links in its working directory for the service to follow to B's files; it does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import make_job
from reliability_helpers import TERMINAL, Client
from service_helpers import Service, pids_in_group, stored
from sparkrunner.sandbox import probe

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(bool(probe()), reason=f"no working bwrap here ({probe()})")]

TOKEN_A = "ann-token-7c1e5a9b3d2f4e60"
TOKEN_B = "bob-token-2d9f6b1a8e4c7053"
B_FILE = "b-file-secret-5e0c"  # in B's FILE asset
B_RESULT = "b-result-secret-91af"  # in B's result
CLUSTER_SECRET = "cluster-secret-3b7d1f"
S3_SECRET = "operator-s3-secret-6a2e"  # an operator property every job gets (never on a command line)
MARKERS = (TOKEN_A, TOKEN_B, B_FILE, B_RESULT, CLUSTER_SECRET, "SQLite format 3", "jobs.db", "service.lock")

B_FINISHED = make_job('''
# modelop.score
def score(inputs, outputs, attachments):
    return {"marker": "%s", "file": open("b-notes.txt").read()}
''' % B_RESULT, name="b_model.py",
                      assets=[{"assetType": "FILE", "filename": "b-notes.txt", "content": B_FILE}])

B_RUNNING = make_job('''
import os, time
from pyspark.sql import SparkSession

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    release = open("release.txt").read().strip()
    deadline = time.time() + 300
    while not os.path.exists(release) and time.time() < deadline:
        time.sleep(0.2)
    return {"sum": spark.range(100).groupBy().sum("id").collect()[0][0], "file": open("b-notes.txt").read()}
''', name="b_running.py", assets=[{"assetType": "FILE", "filename": "b-notes.txt", "content": B_FILE}])

#: Each attempt: its kind decides what success would be: an "act" that raises nothing; a "write"
#: that reads back what it wrote; a "read" or "list" that returns something of B's, the
#: service's or a secret.
HOSTILE = r'''
import json, os, shutil, signal

def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")

def cmdlines():
    found = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                found[p] = read("/proc/%s/cmdline" % p).replace("\0", " ")
            except OSError as exc:
                found[p] = type(exc).__name__
    return found

# modelop.score
def score(inputs, outputs, attachments):
    t = json.load(open("targets.json"))
    attempts = []

    def attempt(kind, name, fn):
        try:
            got = fn()
            attempts.append({"kind": kind, "attempt": name, "outcome": "done",
                             "got": got if isinstance(got, str) else json.dumps(got)})
        except Exception as exc:
            attempts.append({"kind": kind, "attempt": name, "outcome": "%s: %s" % (type(exc).__name__, exc)})

    attempt("read", "read jobs.db", lambda: read(t["jobs_db"]))
    attempt("list", "list the data directory", lambda: os.listdir(t["data_dir"]))
    attempt("list", "list the jobs directory", lambda: os.listdir(os.path.join(t["data_dir"], "jobs")))
    for label, workdir in t["b_workdirs"].items():
        attempt("list", "list B's %s working directory" % label, lambda w=workdir: os.listdir(w))
        for name in t["b_files"]:
            attempt("read", "read B's %s %s" % (label, name), lambda w=workdir, n=name: read(os.path.join(w, n)))
    attempt("read", "read the configuration (every user's token)", lambda: read(t["config"]))
    attempt("read", "read B's token file in the service user's home", lambda: read(t["token_file"]))
    attempt("read", "read the cluster secret", lambda: read(t["cluster_secret"]))
    attempt("read", "read the cluster's spark-defaults.conf", lambda: read(t["cluster_defaults"]))
    attempt("read", "read the service's environment", lambda: read("/proc/%d/environ" % t["service_pid"]))
    attempt("read", "read the service's command line", lambda: read("/proc/%d/cmdline" % t["service_pid"]))
    attempt("act", "signal the service (kill 0)", lambda: os.kill(t["service_pid"], 0))
    attempt("act", "signal the service (SIGTERM)", lambda: os.kill(t["service_pid"], signal.SIGTERM))
    attempt("act", "signal B's running job (killpg SIGKILL)", lambda: os.killpg(t["b_pgid"], signal.SIGKILL))
    attempt("read", "read B's spark-submit environment", lambda: read("/proc/%d/environ" % t["b_pgid"]))
    attempt("read", "read every spark-submit's command line for secrets", cmdlines)
    def write(path):
        with open(path, "a") as f:
            f.write(t["mark"])
        return read(path)  # where it went: a hidden file takes it and keeps nothing

    for path in t["write_targets"]:
        attempt("write", "write %s" % path, lambda p=path: write(p))
    attempt("act", "delete B's finished working directory", lambda: shutil.rmtree(t["b_workdirs"]["finished"]))
    attempt("act", "link B's result into its own directory", lambda: os.link(
        os.path.join(t["b_workdirs"]["finished"], "result.json"), "stolen.json"))
    # What it may do: its own directory, its private /tmp, its output under the local root.
    allowed = {}
    for path in ("own.txt", "/tmp/own.txt", t["output"]):
        with open(path, "w") as f:
            f.write("mine")
        allowed[path] = read(path) == "mine"
    return {"attempts": attempts, "allowed": allowed, "pids_seen": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
'''

#: A model that leaves links behind for the service to follow: its result and its log.
LINKER = r'''
import json, os

# modelop.score
def score(inputs, outputs, attachments):
    t = json.load(open("targets.json"))
    finished = t["b_workdirs"]["finished"]
    for name in ("result.json", "driver.log"):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        os.symlink(os.path.join(finished, name), name)
    return None
'''


class LogOutside(Service):
    """The service, with its own log outside the local root (the helper puts it beside the data
    directory, which lies inside the root here, where jobs could read it)."""

    outside: Path

    @property
    def log_path(self) -> Path:
        return self.outside / "service.log"


def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def record_of(data_dir: Path, job_id: str) -> tuple:
    with sqlite3.connect(data_dir / "jobs.db") as db:
        return db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def wait(client: Client, job_id: str, states: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["jobStatus"] in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['jobStatus']}: {job}"
        time.sleep(0.25)


def submit(client: Client, doc: dict) -> str:
    answer = client.post("/jobs", json=doc)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    base = tmp_path_factory.mktemp("sandbox")
    shared = base / "shared"  # the one local root: A may read and write here
    data_dir, conf, cluster, home = shared / "data", shared / "conf", shared / "cluster", base / "home"
    for directory in (shared, conf, cluster / "client-conf", home, shared / "outputs"):
        directory.mkdir(parents=True)
    (cluster / "secret").write_text(CLUSTER_SECRET + "\n")
    (cluster / "client-conf" / "spark-defaults.conf").write_text(f"spark.authenticate.secret {CLUSTER_SECRET}\n")
    token_file = home / ".sparkrunner-token"
    token_file.write_text(TOKEN_B + "\n")
    config = conf / "sparkrunner.yaml"
    config.write_text(
        f"data_dir: {data_dir}\n"
        "spark:\n  conf:\n    spark.ui.enabled: 'false'\n    spark.ui.showConsoleProgress: 'false'\n"
        f"    spark.hadoop.fs.s3a.secret.key: {S3_SECRET}\n"
        f"policy:\n  local_roots: [{shared}]\n  hidden: [{cluster}]\n"
        f"service:\n  max_concurrent_jobs: 2\n  default_timeout_seconds: 400\n"
        f"  tokens: {{ann: {TOKEN_A}, bob: {TOKEN_B}}}\n")
    config_digest = hashlib.sha256(config.read_bytes()).hexdigest()
    mark = f"sparkrunner-sandbox-test-{os.getpid()}-{time.time_ns()}"  # what A writes, where it can
    service = LogOutside(data_dir, config=config)
    service.outside = base
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(home))  # the service user's home, where B keeps the token file
        service.start()
    ann, bob = Client(service.url, TOKEN_A), Client(service.url, TOKEN_B)
    try:
        finished = submit(bob, B_FINISHED)
        assert wait(bob, finished, TERMINAL)["jobStatus"] == "COMPLETE"
        release = shared / "release-b"
        running_doc = json.loads(json.dumps(B_RUNNING))
        running_doc["model"]["storedModel"]["modelAssets"].append(
            {"assetType": "FILE", "filename": "release.txt", "content": str(release)})
        running = submit(bob, running_doc)
        wait(bob, running, {"RUNNING"})
        workdirs = {"finished": data_dir / "jobs" / finished, "running": data_dir / "jobs" / running}
        before = {label: digest_tree(path) for label, path in workdirs.items()}
        finished_record = record_of(data_dir, finished)
        b_pgid = stored(service, running, "pid")
        targets = {
            "data_dir": str(data_dir), "jobs_db": str(data_dir / "jobs.db"),
            "b_workdirs": {label: str(path) for label, path in workdirs.items()},
            "b_files": ["driver.log", "result.json", "b-notes.txt", "job.json", "sparkrunner_job_metadata.py",
                        "sparkrunner_spark.properties", "supervisor.json"],
            "config": str(config), "token_file": str(token_file),
            "cluster_secret": str(cluster / "secret"),
            "cluster_defaults": str(cluster / "client-conf" / "spark-defaults.conf"),
            "service_pid": service.process.pid, "b_pgid": b_pgid,
            # Outside the test's directory only names of this run: were the sandbox broken (as
            # root, as here), what it leaves behind is found and removed.
            "write_targets": [str(data_dir / "evil"), str(data_dir / "jobs.db"),
                              str(workdirs["running"] / "driver.log"), str(config), str(cluster / "evil"),
                              f"/etc/{mark}", f"/usr/{mark}", f"/{mark}"],
            "mark": mark,
            "output": str(shared / "outputs" / "a.txt"),
        }
        target_asset = {"assetType": "FILE", "filename": "targets.json", "content": json.dumps(targets)}
        hostile = submit(ann, make_job(HOSTILE, name="hostile.py", assets=[target_asset]))
        linker = submit(ann, make_job(LINKER, name="linker.py", assets=[target_asset]))
        hostile_job = wait(ann, hostile, TERMINAL)
        linker_job = wait(ann, linker, TERMINAL)
        b_argv = " ".join(Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                          for p in pids_in_group(b_pgid) if Path(f"/proc/{p}/cmdline").exists())
        service_alive = service.process.poll() is None
        release.write_text("go")
        running_job = wait(bob, running, TERMINAL)
        yield {"markers": (*MARKERS, finished, running), "mark": mark, "hostile": hostile_job, "linker": linker_job, "linker_log": ann.get(f"/jobs/{linker}/log").json(),
               "running": running_job, "finished": finished, "bob": bob, "before": before, "workdirs": workdirs,
               "finished_record": finished_record, "data_dir": data_dir, "targets": targets, "b_argv": b_argv,
               "service_alive": service_alive, "config": config, "config_digest": config_digest,
               "shared": shared, "base": base}
    finally:
        service.stop()
        for outside in (f"/etc/{mark}", f"/usr/{mark}", f"/{mark}"):
            if os.path.exists(outside):
                os.unlink(outside)


def succeeded(attempt: dict, mark: str, markers: tuple[str, ...]) -> bool:
    if attempt["outcome"] != "done":
        return False
    if attempt["kind"] == "write":
        return mark in attempt["got"]
    return attempt["kind"] == "act" or any(marker in attempt["got"] for marker in markers)


def test_the_hostile_model_ran_and_reports_every_attempt(attacked):
    job = attacked["hostile"]
    assert job["jobStatus"] == "COMPLETE", job
    attempts = job["result"]["attempts"]
    assert len(attempts) == 40, [a["attempt"] for a in attempts]
    # It could do what a job may: its own directory, its private /tmp, its output.
    assert all(job["result"]["allowed"].values()), job["result"]["allowed"]


def test_every_attempt_fails(attacked):
    report = {a["attempt"]: a["outcome"] if a["outcome"] != "done" else "got: " + a["got"][:200]
              for a in attacked["hostile"]["result"]["attempts"]}
    won = [a for a in attacked["hostile"]["result"]["attempts"] if succeeded(a, attacked["mark"], attacked["markers"])]
    assert won == [], json.dumps(report, indent=1)


def test_it_sees_only_its_own_processes_and_no_secret_on_any_command_line(attacked):
    result = attacked["hostile"]["result"]
    assert max(result["pids_seen"]) < 100, result["pids_seen"]
    [cmdlines] = [a for a in result["attempts"] if a["attempt"].startswith("read every spark-submit")]
    seen = json.loads(cmdlines["got"])
    assert any("SparkSubmit" in line for line in seen.values())  # its own
    assert not any(marker in line for line in seen.values() for marker in (*attacked["markers"], S3_SECRET))
    # From outside too: B's spark-submit carries its properties in a file, not on its command line.
    assert "--properties-file" in attacked["b_argv"] and S3_SECRET not in attacked["b_argv"]


def test_nothing_of_b_changed(attacked):
    running = attacked["running"]
    assert attacked["service_alive"]
    assert running["jobStatus"] == "COMPLETE", running  # neither killed nor disturbed
    assert running["result"] == {"sum": 4950, "file": B_FILE}
    finished = attacked["bob"].get(f"/jobs/{attacked['finished']}").json()
    assert finished["result"] == {"marker": B_RESULT, "file": B_FILE}
    assert record_of(attacked["data_dir"], attacked["finished"]) == attacked["finished_record"]
    assert digest_tree(attacked["workdirs"]["finished"]) == attacked["before"]["finished"]
    # The running job's files only grew by its own run (its log, result, exit status).
    after = digest_tree(attacked["workdirs"]["running"])
    for name in ("b-notes.txt", "job.json", "b_running.py", "sparkrunner_job_metadata.py"):
        assert after[name] == attacked["before"]["running"][name], name
    assert hashlib.sha256(attacked["config"].read_bytes()).hexdigest() == attacked["config_digest"]
    written = [p for p in attacked["targets"]["write_targets"]
               if os.path.exists(p) and attacked["mark"] in open(p, errors="replace").read()]
    assert written == []
    # Nothing new anywhere on this host's side, but what A may write (its own directory, its output).
    assert not list(attacked["base"].rglob("evil")) and not list(attacked["base"].rglob("stolen.json"))
    assert {p.name for p in attacked["shared"].iterdir()} == {"data", "conf", "cluster", "outputs", "release-b"}
    assert {p.name for p in (attacked["shared"] / "cluster").iterdir()} == {"secret", "client-conf"}


def test_links_left_behind_do_not_make_the_service_read_another_job(attacked):
    linker = attacked["linker"]
    assert linker["jobStatus"] == "COMPLETE", linker
    assert linker["result"] is None
    text = json.dumps(linker) + json.dumps(attacked["linker_log"])
    assert B_RESULT not in text and B_FILE not in text and attacked["finished"] not in text
