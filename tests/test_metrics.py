"""/metrics: Prometheus' text format, parsed with prometheus_client's own parser; the jobs'
counts match the store; API requests by route template and status; the API's authentication.
The in-process service with the stand-in spark-submit (no JVM)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service_helpers import InProcessService
from support.spark_submit_standin import standin_job

TOKENS = {"ann": "ann-token-0123456789", "bob": "bob-token-0123456789"}
METRICS_SOURCE = "# modelop.metrics\ndef metrics(inputs, outputs, attachments):\n    return {}\n"
EXTRA = "  tokens:\n" + "".join(f"    {user}: {token}\n" for user, token in TOKENS.items())


@pytest.fixture
def service(tmp_path, standin_spark_home):
    svc = InProcessService(tmp_path / "data", spark_home=standin_spark_home, max_jobs=1, extra=EXTRA).start()
    svc.headers = {"Authorization": "Bearer ann-token-0123456789"}
    yield svc
    svc.stop()


def scrape(service) -> dict[str, list]:
    """{sample name: [(labels, value)]} of one scrape."""
    response = service.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name: str, **labels) -> float:
    found = [v for l, v in samples.get(name, []) if all(l.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_metrics_need_the_apis_authentication(service):
    assert service.get("/metrics", headers={"Authorization": ""}).status_code == 401
    assert service.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert service.get("/metrics", headers={"Authorization": "Bearer bob-token-0123456789"}).status_code == 200


def test_job_counts_match_the_store(service):
    score, metrics = "MODEL_BATCH_JOB", "MODEL_BATCH_TEST_JOB"
    done = [service.submit(standin_job()) for _ in range(2)]
    failed = service.submit(standin_job(exit=1, error="score function 'score' raised ValueError: no"))
    tested = service.submit(standin_job(source=METRICS_SOURCE, jobType=metrics, result={"auc": 0.8}))
    for job in (*done, failed, tested):
        service.wait_for(job["id"], {"COMPLETE", "ERROR"}, timeout=30)
    running = service.submit(standin_job(seconds=30))
    service.wait_for(running["id"], {"RUNNING"}, timeout=30)
    queued = service.submit(standin_job(source=METRICS_SOURCE, jobType=metrics))  # one slot: it waits behind the running one
    cancelled = service.submit(standin_job(), Authorization="Bearer bob-token-0123456789")
    service.post(f"/jobs/{cancelled['id']}/cancel", headers={"Authorization": "Bearer bob-token-0123456789"})

    samples = scrape(service)
    store = service.service.store.counts()
    by_type: dict[str, dict[str, int]] = {}
    for (job_type, status), n in store.items():
        by_type.setdefault(job_type, {}).setdefault(status.value, 0)
        by_type[job_type][status.value] += n
    for job_type, states in by_type.items():
        assert value(samples, "sparkrunner_job_submit_count_total", job_type=job_type) == sum(states.values())
        for name, state in (("success", "COMPLETE"), ("failure", "ERROR"), ("cancelled", "CANCELLED")):
            assert value(samples, f"sparkrunner_job_{name}_count_total", job_type=job_type) == states.get(state, 0)
        assert (value(samples, "sparkrunner_job_running_count", job_type=job_type)
                == states.get("RUNNING", 0) + states.get("WAITING", 0))
        assert value(samples, "sparkrunner_job_queued_count", job_type=job_type) == states.get("CREATED", 0)
    # And the numbers themselves, as submitted above.
    assert value(samples, "sparkrunner_job_submit_count_total", job_type=score) == 5
    assert value(samples, "sparkrunner_job_success_count_total", job_type=score) == 2
    assert value(samples, "sparkrunner_job_failure_count_total", job_type=score) == 1
    assert value(samples, "sparkrunner_job_cancelled_count_total", job_type=score) == 1
    assert value(samples, "sparkrunner_job_running_count", job_type=score) == 1
    assert value(samples, "sparkrunner_job_queued_count", job_type=metrics) == 1
    # Histograms: every started job has a start latency; run times of the ended ones by outcome.
    assert value(samples, "sparkrunner_job_start_latency_seconds_count", job_type=score) == 4
    assert value(samples, "sparkrunner_job_start_latency_seconds_bucket", job_type=score, le="+Inf") == 4
    assert value(samples, "sparkrunner_job_success_execution_time_seconds_count", job_type=score) == 2
    assert value(samples, "sparkrunner_job_success_execution_time_seconds_count", job_type=metrics) == 1
    assert value(samples, "sparkrunner_job_failure_execution_time_seconds_count", job_type=score) == 1
    buckets = [(float(l["le"]), v) for l, v in samples["sparkrunner_job_start_latency_seconds_bucket"]
               if l["job_type"] == score]
    assert [v for _, v in sorted(buckets)] == sorted(v for _, v in buckets)  # cumulative
    assert value(samples, "sparkrunner_job_start_latency_seconds_sum", job_type=score) > 0


def test_api_requests_by_route_template_and_status(service):
    job = service.submit(standin_job())
    service.wait_for(job["id"], {"COMPLETE"}, timeout=30)
    assert service.get("/jobs/no-such-job").status_code == 404
    assert service.get(f"/jobs/{job['id']}", headers={"Authorization": "Bearer nope"}).status_code == 401
    samples = scrape(service)
    assert value(samples, "sparkrunner_api_requests_total", route="/jobs", method="POST", status="201") == 1
    assert value(samples, "sparkrunner_api_requests_total", route="/jobs/{job_id}", method="GET",
                 status="404") == 1
    assert value(samples, "sparkrunner_api_requests_total", route="/jobs/{job_id}", method="GET",
                 status="401") == 1  # refused by the guard, counted by its route all the same
    polls = value(samples, "sparkrunner_api_requests_total", route="/jobs/{job_id}", method="GET", status="200")
    assert polls >= 1
    assert value(samples, "sparkrunner_api_request_duration_seconds_count", route="/jobs/{job_id}",
                 method="GET") == polls + 2
    assert not any(job["id"] in labels["route"] for labels, _ in samples["sparkrunner_api_requests_total"])
