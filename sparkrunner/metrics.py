"""Prometheus metrics at ``/metrics``: the jobs, read from the store at each scrape, and the
API's requests, counted as they are answered.

Names follow the Kubeflow Spark operator's where they mean the same (``spark_app_submit_count``,
``spark_app_running_count``, ``spark_app_start_latency_seconds``, …), under ``sparkrunner_job_``.
prometheus-client writes a counter with a ``_total`` suffix (``sparkrunner_job_submit_count_total``).

The jobs' counts and durations are computed from the store when scraped, never counted in
memory: they match the store, and survive a restart of the service. Each app has a registry of
its own (several apps may live in one process, as in the tests).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from starlette.routing import Match

from .states import JobStatus
from .store import JobStore

#: Seconds: from submit to a running application, and a job's run time.
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
#: Job counters: metric name, help, the states they count.
_ENDED = (("sparkrunner_job_success_count", "Jobs that ended COMPLETE", JobStatus.COMPLETE),
          ("sparkrunner_job_failure_count", "Jobs that ended ERROR", JobStatus.ERROR),
          ("sparkrunner_job_cancelled_count", "Jobs that ended CANCELLED", JobStatus.CANCELLED))
#: Execution-time histograms: metric name, help, the state of the jobs they measure.
_RUN_TIMES = (("sparkrunner_job_success_execution_time_seconds", "Run time (start to end) of jobs "
               "that ended COMPLETE", JobStatus.COMPLETE),
              ("sparkrunner_job_failure_execution_time_seconds", "Run time (start to end) of jobs "
               "that ended ERROR", JobStatus.ERROR))


class JobCollector:
    """The store's jobs as Prometheus metrics, by job type; ``store`` gives the store (the app's
    service may start after its metrics are made)."""

    def __init__(self, store: Callable[[], JobStore]):
        self._store = store

    @property
    def store(self) -> JobStore:
        return self._store()

    def collect(self):
        counts = self.store.counts()
        types = sorted({job_type for job_type, _ in counts})

        def total(job_type: str, states: Iterable[JobStatus] | None = None) -> int:
            return sum(n for (t, status), n in counts.items()
                       if t == job_type and (states is None or status in states))

        def family(kind, name: str, help: str, states: Iterable[JobStatus] | None):
            metric = kind(name, help, labels=["job_type"])
            for job_type in types:
                metric.add_metric([job_type], total(job_type, states))
            return metric

        yield family(CounterMetricFamily, "sparkrunner_job_submit_count", "Jobs submitted (stored)", None)
        for name, help, state in _ENDED:
            yield family(CounterMetricFamily, name, help, (state,))
        yield family(GaugeMetricFamily, "sparkrunner_job_running_count",
                     "Jobs running now (WAITING or RUNNING)", (JobStatus.WAITING, JobStatus.RUNNING))
        yield family(GaugeMetricFamily, "sparkrunner_job_queued_count", "Jobs queued now (CREATED)",
                     (JobStatus.CREATED,))
        yield self._histogram("sparkrunner_job_start_latency_seconds",
                              "Time from submit to the application running (to spark-submit's start "
                              "when it reported none)", "start_latency", LATENCY_BUCKETS)
        for name, help, state in _RUN_TIMES:
            yield self._histogram(name, help, "execution_time", DURATION_BUCKETS, (state,))

    def _histogram(self, name: str, help: str, seconds: str, buckets: tuple[float, ...],
                   states: Iterable[JobStatus] | None = None) -> HistogramMetricFamily:
        metric = HistogramMetricFamily(name, help, labels=["job_type"])
        for job_type, (under, count, total) in sorted(self.store.histogram(seconds, buckets, states).items()):
            points = [(floatToGoString(bound), n) for bound, n in zip(buckets, under)]
            metric.add_metric([job_type], [*points, ("+Inf", count)], total)
        return metric


class Metrics:
    """One app's metrics: its registry, the jobs of the store ``store()`` gives and the API's requests."""

    def __init__(self, store: Callable[[], JobStore]):
        self.registry = CollectorRegistry()
        self.registry.register(JobCollector(store))
        self.requests = Counter("sparkrunner_api_requests", "API requests answered, by route, method "
                                "and status", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("sparkrunner_api_request_duration_seconds", "Time to answer an API "
                                 "request, by route and method", ["route", "method"], registry=self.registry)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware that counts every HTTP request with its route (the path's template, such
    as ``/jobs/{job_id}``, so that job ids do not make a series each), method and status, and
    times it. Outermost: requests the guard refuses are counted too."""

    def __init__(self, app, metrics: Metrics, routes):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self._route(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - began)

    def _route(self, scope) -> str:
        found = scope.get("route")
        if found is None:  # refused before routing (the guard): match it here
            for candidate in self.routes():
                if candidate.matches(scope)[0] is not Match.NONE:
                    found = candidate
                    break
        return getattr(found, "path", None) or "unmatched"
