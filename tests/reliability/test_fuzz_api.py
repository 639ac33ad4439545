"""Schemathesis over the service's own OpenAPI document, against a real ``sparkrunner serve`` on a
real SQLite file: every operation, the examples, coverage, fuzzing and stateful phases, once
without credentials and once with an API token. No answer may be a server error, and every answer
must match the document: its status code, content type, headers and body schema."""

from __future__ import annotations

import dataclasses
import json
import uuid

import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from conftest import make_job
from sparkrunner.api import create_app
from sparkrunner.config import ServiceSettings, Settings
from reliability_helpers import TERMINAL, Client, start_service

pytestmark = pytest.mark.e2e

#: Fuzzing examples per operation; the coverage phase adds its own deterministic cases.
MAX_EXAMPLES = 25
STATEFUL_EXAMPLES = 15
STATEFUL_STEPS = 10
#: A real stored job for the fuzzer to find; it runs under the stand-in spark-submit (its hdfs://
#: input is not checked: no namenode is configured), so without a JVM.
NO_JVM_JOB = make_job(inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": "hdfs:///fuzz/in.csv"}])


@schemathesis.serializer("application/x-ndjson")
def json_lines(ctx, value) -> dict:
    """Bulk scoring's body (JSON lines, a string in the document): sent as generated."""
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")}


TOKEN = "fuzz-" + uuid.uuid4().hex
TOKENS = {"fuzzer": TOKEN}


def serve(tmp_path_factory, tokens, spark_home):
    """A service and a client of it: anonymous, or with a bearer token."""
    # A generated document that happens to be valid runs under the stand-in spark-submit; one
    # job at a time and a short default timeout keep even those short.
    service = start_service(tmp_path_factory.mktemp("fuzz"), "data", tokens=tokens, max_jobs=1,
                            default_timeout=20, spark_home=spark_home)
    client = Client(service.url, tokens and tokens["fuzzer"])
    try:
        seeded = [client.post("/jobs", json=NO_JVM_JOB).json()["id"] for _ in range(2)]
        client.post(f"/jobs/{seeded[1]}/cancel")
        yield service, client
        # Whatever the fuzzer got accepted is cancelled; no stored job may be left unfinished.
        ids = client.listed_ids()
        final = client.cancel_all(ids)
        assert all(job["jobStatus"] in TERMINAL for job in final.values())
        assert set(seeded) <= set(ids)
    finally:
        service.stop()


def load_schema(settings: Settings) -> schemathesis.BaseSchema:
    """The OpenAPI document the app builds with ``settings`` (each target must serve the same)."""
    config = SchemathesisConfig.from_dict({
        "seed": 7,  # the same cases each run: a failure reproduces
        "generation": {"max-examples": MAX_EXAMPLES},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
        },
        "checks": {
            # A document can match the schema and still be refused: its source must parse and
            # define the function the job runs (422; on Livy's path 400, as Livy answers a
            # batch it refuses). Unknown ids are 404.
            "positive_data_acceptance": {"expected-statuses": ["2XX", 400, 404, 422]},
        },
    })
    return schemathesis.openapi.from_dict(create_app(settings).openapi(), config=config)


def served_as(target, schema):
    """``target``, once it is seen to serve ``schema``'s document: the one the tests come from."""
    service, client = target
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.json() == schema.raw_schema
    return target


def run_stateful(schema, target) -> None:
    """Schemathesis' state machine for ``schema`` (its links, or random calls) against ``target``."""
    service, client = target

    class Machine(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": service.url, "headers": client.headers}

    hypothesis.stateful.run_state_machine_as_test(Machine, settings=hypothesis.settings(
        max_examples=STATEFUL_EXAMPLES, stateful_step_count=STATEFUL_STEPS, deadline=None,
        database=None, suppress_health_check=list(hypothesis.HealthCheck)))


# The documents are built in-process when the module loads: schemathesis makes one test per
# operation at collection, before any service runs (its lazy loader fails on pytest 9.2).
ANONYMOUS = load_schema(Settings())


@pytest.fixture(scope="module")
def anonymous(tmp_path_factory, standin_spark_home):
    for target in serve(tmp_path_factory, None, standin_spark_home):
        yield served_as(target, ANONYMOUS)


@pytest.fixture(scope="module")
def with_token(tmp_path_factory, standin_spark_home):
    for target in serve(tmp_path_factory, TOKENS, standin_spark_home):
        yield served_as(target, WITH_TOKEN)


@ANONYMOUS.parametrize()
def test_every_operation_answers_as_documented_without_credentials(case, anonymous):
    service, client = anonymous
    case.call_and_validate(base_url=service.url, headers=client.headers)


def test_stateful_sequences_answer_as_documented_without_credentials(anonymous):
    run_stateful(ANONYMOUS, anonymous)


WITH_TOKEN = load_schema(Settings().with_overrides(
    service=dataclasses.replace(ServiceSettings(), tokens=TOKENS)))


@WITH_TOKEN.parametrize()
def test_every_operation_answers_as_documented_with_a_token(case, with_token):
    service, client = with_token
    case.call_and_validate(base_url=service.url, headers=client.headers)


def test_stateful_sequences_answer_as_documented_with_a_token(with_token):
    run_stateful(WITH_TOKEN, with_token)
