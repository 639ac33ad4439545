"""The Airflow provider's parts that need no service: registration, connections, templating, keys."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO, SCORE_SOURCE, make_job

# Airflow writes a home directory when imported; keep this process's out of the user's.
os.environ["AIRFLOW_HOME"] = str(REPO / "build" / "airflow-test-home")
_root_handlers, _root_level = logging.root.handlers[:], logging.root.level
import airflow.sdk  # noqa: E402,F401
# Importing Airflow points the root logger at the sys.stdout of the moment, pytest's capture,
# which is closed by the time py4j logs from its finalizers at exit: undo that.
logging.root.handlers[:] = _root_handlers
logging.root.setLevel(_root_level)

import airflow  # noqa: E402
from airflow.sdk import DAG, Connection  # noqa: E402

from sparkrunner.airflow import (  # noqa: E402
    JobRefused, SparkRunnerHook, SparkRunnerJobOperator, SparkRunnerJobTrigger, get_provider_info)
from sparkrunner.airflow.hooks import endpoint  # noqa: E402
from sparkrunner.airflow.operators import idempotency_key  # noqa: E402
from sparkrunner.errors import ConfigError  # noqa: E402

ENTRY_POINT = "[apache_airflow_provider]\nprovider_info = sparkrunner.airflow:get_provider_info\n"


# -- the provider ----------------------------------------------------------------------------

def test_the_provider_info_satisfies_airflows_schema_and_names_real_classes():
    info = get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["package-name"] == "sparkrunner"
    [conn_type] = info["connection-types"]
    assert conn_type == {"connection-type": "sparkrunner",
                         "hook-class-name": "sparkrunner.airflow.hooks.SparkRunnerHook"}
    assert SparkRunnerHook.conn_type == "sparkrunner"
    assert SparkRunnerHook.default_conn_name == "sparkrunner_default"


def test_airflow_lists_the_provider_through_its_entry_point(tmp_path):
    # What `[project.entry-points.apache_airflow_provider]` in pyproject.toml installs, as a
    # throwaway distribution seen only by this one subprocess.
    dist = tmp_path / "sparkrunner-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sparkrunner\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path / "home"), PYTHONPATH=str(tmp_path))
    probe = ("from airflow.providers_manager import ProvidersManager as P; import json; p = P(); "
             "print(json.dumps([p.providers['sparkrunner'].version, p.hooks['sparkrunner'].hook_class_name, "
             "p.hooks['sparkrunner'].connection_type]))")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [
        "0.1.0", "sparkrunner.airflow.hooks.SparkRunnerHook", "sparkrunner"]


def test_the_installed_package_registers_the_provider():
    points = [e for e in metadata.entry_points(group="apache_airflow_provider") if e.dist.name == "sparkrunner"]
    assert points, "reinstall sparkrunner (make venv): its apache_airflow_provider entry point is missing"
    assert points[0].value == "sparkrunner.airflow:get_provider_info"
    assert points[0].load()() == get_provider_info()


# -- connections -----------------------------------------------------------------------------

@pytest.mark.parametrize("fields, expected", [
    ({"host": "127.0.0.1", "port": 8765}, ("http://127.0.0.1:8765", None)),
    ({"host": "runner.example.com", "schema": "HTTPS", "password": "s3cret"},
     ("https://runner.example.com", "s3cret")),
    ({"host": "https://gw.example.com/sparkrunner/", "port": 8443}, ("https://gw.example.com:8443/sparkrunner", None)),
    ({"host": "http://gw.example.com:9000", "port": 8443}, ("http://gw.example.com:9000", None)),
])
def test_a_connection_gives_the_services_url_and_token(fields, expected):
    assert endpoint(Connection(conn_id="c", conn_type="sparkrunner", **fields)) == expected


@pytest.mark.parametrize("fields, words", [
    ({}, "has no host"),
    ({"host": "h", "schema": "ftp"}, "has schema 'ftp'"),
])
def test_a_connection_without_a_usable_address_is_refused_by_name(fields, words):
    with pytest.raises(ConfigError, match=words) as caught:
        endpoint(Connection(conn_id="mine", conn_type="sparkrunner", **fields))
    assert "'mine'" in str(caught.value)


# -- templating ------------------------------------------------------------------------------

TEMPLATED_SOURCE = 'x = "{{ not_airflows }}"  # {# nor this #}\n' + SCORE_SOURCE


def templated_job() -> dict:
    return make_job(
        TEMPLATED_SOURCE,
        assets=[{"assetType": "FILE", "filename": "features.json", "content": "{{ ds }} stays"}],
        inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "filename": "in.json",
                    "fileUrl": "hdfs:///data/{{ ds }}/in.json", "fileFormat": "JSON"}])


def render(operator: SparkRunnerJobOperator) -> dict:
    operator.render_template_fields({"ds": "2024-01-02", "params": {"day": "2024-01-02"}})
    return operator.job


def test_urls_are_templated_but_code_and_file_contents_travel_verbatim():
    with DAG("d", schedule=None):
        operator = SparkRunnerJobOperator(task_id="t", job=templated_job())
    job = render(operator)
    assert job["inputData"][0]["fileUrl"] == "hdfs:///data/2024-01-02/in.json"
    # A nested name ending in .json is a name, not a template file to load.
    assert job["inputData"][0]["filename"] == "in.json"
    source, features = job["model"]["storedModel"]["modelAssets"]
    assert source["sourceCode"] == TEMPLATED_SOURCE
    assert features == {"assetType": "FILE", "filename": "features.json", "content": "{{ ds }} stays"}


def test_a_job_file_is_read_beside_the_dag_then_templated(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "2024-01-02.json").write_text(json.dumps(templated_job()))
    with DAG("d", schedule=None, template_searchpath=[str(tmp_path)]):
        relative = SparkRunnerJobOperator(task_id="relative", job="jobs/{{ params.day }}.json")
        absolute = SparkRunnerJobOperator(task_id="absolute", job=str(tmp_path / "jobs" / "2024-01-02.json"))
    for operator in (relative, absolute):
        job = render(operator)
        assert job["inputData"][0]["fileUrl"] == "hdfs:///data/2024-01-02/in.json"
        assert job["model"]["storedModel"]["modelAssets"][0]["sourceCode"] == TEMPLATED_SOURCE


@pytest.mark.parametrize("content, words", [
    (None, "cannot read the job file"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "holds a JSON list, not a job document"),
])
def test_an_unusable_job_file_fails_the_task_without_retries(tmp_path, content, words):
    path = tmp_path / "job.json"
    if content is not None:
        path.write_text(content)
    with DAG("d", schedule=None):
        operator = SparkRunnerJobOperator(task_id="t", job=str(path), retries=3)
    with pytest.raises(JobRefused, match=words):
        render(operator)


def test_the_operator_takes_a_job_from_an_upstream_task_and_refuses_what_it_cannot_use():
    with DAG("d", schedule=None):
        upstream = SparkRunnerJobOperator(task_id="upstream", job={})
        downstream = SparkRunnerJobOperator(task_id="downstream", job=upstream.output)
    assert downstream.upstream_task_ids == {"upstream"}
    with pytest.raises(TypeError, match="job must be a job document"):
        SparkRunnerJobOperator(task_id="t", job=["a.json"])
    with pytest.raises(ValueError, match="poll_interval must be > 0"):
        SparkRunnerJobOperator(task_id="t", job={}, poll_interval=0)


# -- keys and triggers -----------------------------------------------------------------------

def test_a_task_instances_idempotency_key_names_it_and_moves_on_per_failed_job():
    assert idempotency_key("dag", "task", "manual__2024-01-02T00:00:00+00:00", -1) == \
        "airflow:dag:task:manual__2024-01-02T00:00:00+00:00:-1"
    assert idempotency_key("dag", "task", "run", 3, generation=2) == "airflow:dag:task:run:3:2"


def test_the_trigger_survives_serialization():
    trigger = SparkRunnerJobTrigger("job-1", "conn", poll_interval=2.5, max_failed_polls=7, deadline=1e9)
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    again = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs == {"job_id": "job-1", "sparkrunner_conn_id": "conn", "poll_interval": 2.5,
                      "max_failed_polls": 7, "deadline": 1e9}
