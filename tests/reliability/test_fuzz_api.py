"""Schemathesis over the service's own OpenAPI document, against a real ``sparkrunner serve`` on a
real SQLite file: every operation, the examples, coverage, fuzzing and stateful phases, once
without credentials and once with an API token. No answer may be a server error, and every answer
must match the document: its status code, content type, headers and body schema."""

from __future__ import annotations

import time
import uuid

import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from conftest import make_job
from sparkrunner.api import create_app
from sparkrunner.config import Settings
from reliability_helpers import TERMINAL, Client, service_has_tokens, start_service

pytestmark = pytest.mark.e2e

#: Fuzzing examples per operation; the coverage phase adds its own deterministic cases.
MAX_EXAMPLES = 25
#: A job that fails before spark-submit (an hdfs:// input with no namenode configured): a real
#: stored job for the fuzzer to find, without a JVM.
NO_JVM_JOB = make_job(inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": "hdfs:///fuzz/in.csv"}])


@pytest.fixture(scope="module", params=["anonymous", "bearer token"])
def target(request, tmp_path_factory):
    """A service, and a client of it: anonymous, or with a token when the service knows tokens."""
    tokens = None
    if request.param == "bearer token":
        if not service_has_tokens():
            pytest.skip("this service has no API tokens (service.tokens)")
        tokens = {"fuzzer": "fuzz-" + uuid.uuid4().hex}
    # One job at a time and a short default timeout: a generated document that happens to be
    # valid would start a real spark-submit.
    service = start_service(tmp_path_factory.mktemp("fuzz"), "data", tokens=tokens, max_jobs=1,
                            default_timeout=20)
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


def load_schema() -> schemathesis.BaseSchema:
    """The service's OpenAPI document, as the app builds it (the target must serve the same)."""
    config = SchemathesisConfig.from_dict({
        "seed": 7,  # the same cases each run: a failure reproduces
        "generation": {"max-examples": MAX_EXAMPLES},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": 10},
        },
        "checks": {
            # A document can match the schema and still be refused: its source must parse and
            # define the function the job runs. Unknown ids are 404.
            "positive_data_acceptance": {"expected-statuses": ["2XX", 404, 422]},
        },
    })
    return schemathesis.openapi.from_dict(APP_OPENAPI, config=config)


# Built in-process when the module loads, because schemathesis generates one test per operation
# at collection, before any service runs (its lazy loader fails on pytest 9.2).
APP_OPENAPI = create_app(Settings()).openapi()
schema = load_schema()


@pytest.fixture(scope="module")
def api(target):
    """The target, after checking it serves the document the tests were generated from."""
    service, client = target
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.json() == APP_OPENAPI
    return service, client


@schema.parametrize()
def test_every_operation_answers_without_server_errors_and_as_documented(case, api):
    service, client = api
    case.call_and_validate(base_url=service.url, headers=client.headers)


def test_stateful_sequences_answer_as_documented(api):
    service, client = api

    class Machine(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": service.url, "headers": client.headers}

    hypothesis.stateful.run_state_machine_as_test(Machine, settings=hypothesis.settings(
        max_examples=MAX_EXAMPLES, stateful_step_count=10, deadline=None, database=None,
        suppress_health_check=list(hypothesis.HealthCheck)))
