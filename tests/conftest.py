"""Shared helpers: job documents built the way ModelOp clients send them; the guard that keeps
the fast suite free of JVMs; the expensive fixtures, made once per session."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPARKRUNNER = str(Path(sys.executable).with_name("sparkrunner"))

#: Every JVM the tests start (spark-submit, drivers, executors, the cluster's daemons, Connect
#: servers) compiles with C1 only and collects with one thread: the tests' jobs are small and
#: short, and C2's compiler threads were about 40% of a job's CPU on 2 cores (the Titanic
#: training job: 33 s of CPU, 19 s with these). JVMs print "Picked up JAVA_TOOL_OPTIONS" on
#: stderr. A developer's own JAVA_TOOL_OPTIONS is kept.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
os.environ.setdefault("JAVA_TOOL_OPTIONS", TEST_JVM_OPTIONS)

SCORE_SOURCE = '''\
# modelop.init
def begin():
    pass

# modelop.score
def score(inputs, outputs, attachments):
    return {"inputs": len(inputs)}
'''


def make_job(source: str = SCORE_SOURCE, *, name: str = "model.py", job_type: str | None = None,
             assets: list | None = None, **fields) -> dict:
    """A modelBatchJob with ``source`` as its primary SOURCE_CODE asset, plus ``fields``."""
    primary = {"assetType": "SOURCE_CODE", "primaryModelSource": True, "name": name,
               "sourceCode": source}
    doc = {"model": {"storedModel": {"modelAssets": [primary, *(assets or [])],
                                     "modelMetaData": {"name": "test-model", "type": "PYSPARK"}}}}
    if job_type:
        doc["jobType"] = job_type
    doc.update(copy.deepcopy(fields))
    return doc


def write_job(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def job_file(tmp_path):
    """Writes a job document to a file in the test's directory and returns its path."""
    def write(doc: dict, name: str = "job.json") -> Path:
        return write_job(tmp_path / name, doc)
    return write


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch):
    # A developer's SPARKRUNNER_CONFIG must not change what the tests run.
    monkeypatch.delenv("SPARKRUNNER_CONFIG", raising=False)


def admitted(doc: dict, settings=None):
    """``doc`` admitted as ``sparkrunner run`` admits it (or JobInvalid)."""
    from sparkrunner.admission import Origin, admit
    from sparkrunner.config import Settings

    return admit(doc, settings or Settings(), Origin.LOCAL)
# --- no JVM outside e2e tests -------------------------------------------------------------------

#: The stand-in ``java`` of a session without e2e tests: it logs who called it and fails.
_JAVA_STUB = """#!/bin/sh
printf '%s\\t%s\\n' "${PYTEST_CURRENT_TEST:-outside any test}" "java $*" | cut -c1-400 >> "$0.calls"
echo "sparkrunner tests: java started outside an e2e test (${PYTEST_CURRENT_TEST:-?}); mark it e2e" >&2
exit 97
"""


@pytest.fixture(scope="session", autouse=True)
def _no_jvm_unless_e2e(request, tmp_path_factory):
    """In a session that selected no e2e test (``pytest -m "not e2e"``), ``java`` is a stub
    that fails and logs its caller: JAVA_HOME and PATH lead to it, for this process and every
    child (spark-submit, spark-class, pyspark's gateway, ``sparkrunner serve``). Yields the
    stub's log, or None when e2e tests run."""
    if any(item.get_closest_marker("e2e") for item in request.session.items):
        yield None
        return
    home = tmp_path_factory.mktemp("no-jvm")
    (home / "bin").mkdir()
    stub = home / "bin" / "java"
    stub.write_text(_JAVA_STUB)
    stub.chmod(0o755)
    calls = Path(f"{stub}.calls")
    calls.touch()
    saved = {name: os.environ.get(name) for name in ("JAVA_HOME", "PATH")}
    os.environ["JAVA_HOME"] = str(home)
    os.environ["PATH"] = f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        yield calls
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _no_jvm_in_this_test(_no_jvm_unless_e2e):
    """Fails the test (at teardown) when java was started while it ran."""
    calls = _no_jvm_unless_e2e
    before = calls.stat().st_size if calls else 0
    yield
    if calls and calls.stat().st_size > before:
        with open(calls) as f:
            f.seek(before)
            started = f.read().strip()
        pytest.fail(f"a JVM was started outside an e2e test (mark the test e2e or use the "
                    f"stand-in spark-submit):\n{started}", pytrace=False)


#: The e2e files that share an expensive session fixture, by the fixture: with ``-n 2 --dist
#: loadfile`` (``make test``'s e2e part) each file runs on one worker, and these files on the
#: same worker, which starts the fixture once (:func:`pytest_xdist_make_scheduler`).
SHARED_FIXTURE_FILES = {
    "standalone_cluster": ("test_cluster.py", "test_distributed.py", "test_environments_e2e.py"),
    "connect_server": ("test_warm.py", "test_mlflow.py", "test_examples.py"),  # and the examples
}
_FIXTURES_OF_GROUP = {"standalone_cluster": {"standalone_cluster"},
                      "connect_server": {"connect_server", "examples", "titanic_run"}}


def pytest_collection_modifyitems(config, items):
    # Tests marked "last" stop a fixture the whole session shares (the standalone cluster).
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
    for item in items:
        for group, fixtures in _FIXTURES_OF_GROUP.items():
            if (item.get_closest_marker("e2e") and fixtures & set(item.fixturenames)
                    and item.path.name not in SHARED_FIXTURE_FILES[group]):
                raise pytest.UsageError(f"{item.path.name} uses the {group} fixture: add it to "
                                        f"SHARED_FIXTURE_FILES[{group!r}] in tests/conftest.py")


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with the files sharing an expensive session fixture as one unit.

    (xdist's own ``loadgroup`` marks do not reach its scheduler under pytest 9: the group is
    appended to ``item._nodeid``, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    group_of = {name: group for group, names in SHARED_FIXTURE_FILES.items() for name in names}

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return group_of.get(path.rsplit("/", 1)[-1], path)

    return SharedFixtureScheduling(config, log)


# --- shared, expensive fixtures ------------------------------------------------------------------

@pytest.fixture(scope="session")
def standin_spark_home(tmp_path_factory) -> Path:
    """A Spark home whose bin/spark-submit is the stand-in (tests/support/spark_submit_standin.py)."""
    from support.spark_submit_standin import make_spark_home

    return make_spark_home(tmp_path_factory.mktemp("standin-spark"))


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for every test that needs one in this process."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("sparkrunner-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               # Small batches: many batches per worker, so "init once" means something.
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "50")
               .getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """One Spark standalone cluster for the session: a master and two one-core workers from the
    pyspark wheel, on free ports (a developer's own cluster on 7077/8080 is neither used nor
    disturbed). Starting one takes tens of seconds; test_cluster.py's last test stops it."""
    from service_helpers import free_ports
    from sparkrunner import devcluster as cluster

    cluster_dir = tmp_path_factory.mktemp("cluster")
    master_port, webui_port = free_ports(2)
    info = cluster.up(cluster_dir, workers=2, cores_per_worker=1, memory_per_worker="1g",
                      master_port=master_port, webui_port=webui_port, worker_webui_port=0, timeout=180)
    yield info
    cluster.down(cluster_dir)  # nothing to do when the test of down has run


@dataclass(frozen=True)
class ConnectServer:
    """A Spark Connect server on 127.0.0.1: its port and the token its clients send."""

    port: int
    token: str
    log: Path

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a warm run's driver (the service's fork child) with a new session
        of its own; the driver is imported from this checkout."""
        import uuid

        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
        env.update(SPARK_REMOTE=f"sc://localhost:{self.port}/;session_id={uuid.uuid4()}",
                   SPARK_CONNECT_AUTHENTICATE_TOKEN=self.token, SPARKRUNNER_WARM="1",
                   PYTHONPATH=str(REPO), **extra)
        return env


#: org.apache.spark.sql.connect.service.SparkConnectServer's time to listen, generously.
CONNECT_START_SECONDS = 180


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory):
    """One Spark Connect server (local[2], from the pyspark wheel) for the session's warm runs,
    listening on a free port of 127.0.0.1 and requiring a token, which travels in its
    environment, never on its command line. It takes about 20 s to start on 2 cores."""
    import secrets
    import signal
    import socket
    import time

    from service_helpers import free_ports
    from sparkrunner.command import spark_submit_path
    from sparkrunner.config import Settings

    [port] = free_ports(1)
    token = secrets.token_hex(16)
    log = tmp_path_factory.mktemp("connect-server") / "server.log"
    argv = [spark_submit_path(Settings()), "--master", "local[2]",
            "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
            "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
            "--conf", f"spark.connect.grpc.binding.port={port}",
            "--conf", "spark.ui.enabled=false", "spark-internal"]
    env = {**os.environ, "SPARK_CONNECT_AUTHENTICATE_TOKEN": token, "PYSPARK_PYTHON": sys.executable}
    with open(log, "wb") as out:
        # Its own cwd: whatever Spark writes beside itself (a warehouse) stays out of the checkout.
        server = subprocess.Popen(argv, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + CONNECT_START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"the Spark Connect server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the Spark Connect server did not listen on {port} in "
                                f"{CONNECT_START_SECONDS} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.25)
        yield ConnectServer(port, token, log)
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@dataclass(frozen=True)
class ExampleRun:
    """An example's jobs run by `sparkrunner run`: job files, working directories, the command's
    stderr and the job's result, by role (train, score, metrics; or train, score-records,
    score-frames)."""

    jobs: dict[str, Path]
    workdirs: dict[str, Path]
    stderr: dict[str, str]
    results: dict[str, dict]


def run_in_stages(jobs: dict[str, Path], stages: list[list[str]], runs: Path) -> ExampleRun:
    """Runs the jobs with `sparkrunner run`, stage after stage; the jobs of a stage together."""
    runs.mkdir(parents=True)
    workdirs, stderr, results = {}, {}, {}
    for stage in stages:
        started = {}
        for role in stage:
            workdirs[role] = runs / role
            with open(runs / f"{role}.stderr", "wb") as err:
                started[role] = subprocess.Popen([SPARKRUNNER, "run", "-q", "--workdir", str(workdirs[role]),
                                                  str(jobs[role])], stdout=subprocess.DEVNULL, stderr=err)
        for role, process in started.items():
            code = process.wait(timeout=600)
            stderr[role] = (runs / f"{role}.stderr").read_text()
            assert code == 0, stderr[role] + (workdirs[role] / "driver.log").read_text()[-3000:]
            results[role] = json.loads((workdirs[role] / "result.json").read_text())
    return ExampleRun(jobs, workdirs, stderr, results)


@pytest.fixture(scope="session")
def examples(tmp_path_factory) -> dict[str, ExampleRun]:
    """Both examples, run once for the session's tests to read what they wrote (test_examples.py,
    and test_warm.py compares warm runs with them): the Titanic jobs
    (PySpark ML) one after another, and beside them the scikit-learn jobs, trained, then scored
    both ways at once (the two forms read the same pickle and write apart). Each example's jobs
    need the one before; the two examples do not, and two Spark jobs on two cores overlap better
    than they follow each other."""
    sys.path.insert(0, str(REPO / "jobs"))
    from build_examples import build, build_sklearn

    titanic, sklearn = tmp_path_factory.mktemp("titanic"), tmp_path_factory.mktemp("sklearn")
    with ThreadPoolExecutor(2) as pool:
        runs = {"titanic": pool.submit(run_in_stages, build(titanic / "example"),
                                       [["train"], ["score"], ["metrics"]], titanic / "runs"),
                "sklearn": pool.submit(run_in_stages, build_sklearn(sklearn / "example"),
                                       [["train"], ["score-records", "score-frames"]], sklearn / "runs")}
        return {name: run.result() for name, run in runs.items()}


@pytest.fixture(scope="session")
def titanic_run(examples) -> ExampleRun:
    return examples["titanic"]


AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow command with its own home; the caller's Airflow settings
    are left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"), **extra)
    return env


@pytest.fixture(scope="session")
def migrated_airflow_db(tmp_path_factory) -> Path:
    """An Airflow metadata database (SQLite), migrated once (`airflow db migrate` takes tens of
    seconds); each test copies it into an AIRFLOW_HOME of its own."""
    home = tmp_path_factory.mktemp("airflow-template")
    done = subprocess.run([AIRFLOW, "db", "migrate"], env=airflow_env(home), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home / "airflow.db"
