"""A Hypothesis state machine over a real ``sparkrunner serve``: submit, cancel, kill -9 and restart,
poll. Whatever the order, a job's states only move forward, a terminal state and its reason never
change, every accepted job stays listed, and an invalid job is refused and never stored.

Jobs run under the stand-in spark-submit (tests/support/spark_submit_standin.py): the states are
the service's, and a JVM per job (~8 s on 2 cores) would leave room for only a few steps. What
the real driver reports is tested in tests/test_service.py and tests/reliability/test_faults.py."""

from __future__ import annotations

import collections
import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test)

from conftest import make_job
from reliability_helpers import (RANK, TERMINAL, Client, job_pids, kill_groups,
                                 start_service, wait_groups_gone)
from support.spark_submit_standin import standin_job

pytestmark = pytest.mark.e2e

#: Documents the service must refuse, each for a different reason, as the raw bytes sent.
INVALID_BODIES = {
    "not JSON": b"{not json",
    "not an object": b"[1, 2]",
    "schema": json.dumps(make_job(jobType="MODEL_BATCH_JOB", inputData=[{"assetType": "EXTERNAL_FILE"}])).encode(),
    "no score function": json.dumps(make_job("def nothing_tagged(a, b, c):\n    pass\n")).encode(),
    "refused setting": json.dumps(make_job(jobParameters={"--jars": "evil.jar"})).encode(),
    "unsafe file name": json.dumps(make_job(assets=[{"assetType": "FILE", "filename": "../x", "content": ""}])).encode(),
}

#: What an accepted job does: (document, what it must end as when nobody cancels it).
JOBS = {
    "quick": (standin_job(start_seconds=0.5, result={"sum": 4950}), "COMPLETE"),
    "sleeps 4 s": (standin_job(start_seconds=0.5, seconds=4, child=True), "COMPLETE"),
    "fails": (standin_job(start_seconds=0.5, exit=1, error="score function 'score' raised ValueError: row 3 has no age"),
              "ERROR"),
    "times out": (standin_job(start_seconds=0.5, seconds=300, child=True, timeoutSeconds=2), "ERROR"),
}

#: What the runs did, over all of them: rules taken and states seen (printed, and checked at the end).
STATS: collections.Counter = collections.Counter()

MAX_JOBS_PER_RUN = 6  # keeps a run's length bounded


class JobLifecycle(RuleBasedStateMachine):
    """One run: a handful of jobs, whatever the service goes through meanwhile."""

    service = None  # set by the test: the shared service process
    token: str | None = None

    accepted = Bundle("accepted")

    def __init__(self):
        super().__init__()
        self.client = Client(self.service.url, self.token)
        self.run_id = uuid.uuid4().hex[:8]
        self.kinds: dict[str, str] = {}           # id -> which JOBS entry
        self.seen: dict[str, list[tuple[str, str | None]]] = {}  # id -> (state, reason) seen, in order
        self.cancelled_active: set[str] = set()   # ids whose cancel found them WAITING or RUNNING
        self.keys: dict[str, str] = {}            # idempotency key -> id

    # -- what the client sees ------------------------------------------------------------------

    def observe(self, job: dict, where: str) -> None:
        """Records one view of a job and checks it against every earlier view."""
        job_id, state, reason = job["id"], job["jobStatus"], job["reason"]
        assert state in RANK, f"{where}: unknown state {state!r}"
        history = self.seen.setdefault(job_id, [])
        if history:
            last_state, last_reason = history[-1]
            assert RANK[state] >= RANK[last_state], (
                f"{where}: job {job_id} went back from {last_state} to {state}; seen {history}")
            if last_state in TERMINAL:
                assert (state, reason) == (last_state, last_reason), (
                    f"{where}: terminal job {job_id} changed from {last_state} ({last_reason!r}) to "
                    f"{state} ({reason!r})")
        if state in TERMINAL:
            assert reason, f"{where}: job {job_id} is {state} without a reason"
            assert job["endDate"], f"{where}: job {job_id} is {state} without an endDate"
        if not history or history[-1] != (state, reason):
            history.append((state, reason))

    def unfinished(self) -> list[str]:
        return [i for i, h in self.seen.items() if h[-1][0] not in TERMINAL]

    # -- rules ---------------------------------------------------------------------------------

    @initialize(target=accepted)
    def first_job(self):
        """Every run has a job under way from its first step, so every step meets one."""
        return self.submit(kind="quick", key=None)

    @rule(target=accepted, kind=st.sampled_from(list(JOBS)), key=st.none() | st.sampled_from(["a", "b"]))
    def submit(self, kind, key):
        if len(self.kinds) >= MAX_JOBS_PER_RUN and (key is None or key not in self.keys):
            return next(iter(self.kinds))  # enough JVMs for one run: an accepted id keeps it going
        headers = {"Idempotency-Key": f"{self.run_id}-{key}"} if key else {}
        response = self.client.post("/jobs", json=JOBS[kind][0], headers=headers)
        job = response.json()
        if key in self.keys:
            # The same key again: the earlier job, whatever this document is; nothing new is stored.
            assert response.status_code == 200, response.text
            assert job["id"] == self.keys[key]
            STATS["submit again (same key)"] += 1
        else:
            assert response.status_code == 201, response.text
            assert response.headers["Location"] == f"/jobs/{job['id']}"
            assert job["id"] not in self.seen
            self.kinds[job["id"]] = kind
            if key:
                self.keys[key] = job["id"]
            STATS[f"submit {kind}"] += 1
        self.observe(job, "POST /jobs")
        return job["id"]

    @initialize(reason=st.sampled_from(list(INVALID_BODIES)))
    def first_refused(self, reason):
        """Every run sends at least one invalid job (rules alone are chosen at random)."""
        self.submit_invalid(reason)

    @initialize(how=st.sampled_from(["kill -9", "stop"]))
    def first_restart(self, how):
        """Every run restarts the service at least once, before or after its first job."""
        self.restart(how)

    @rule(reason=st.sampled_from(list(INVALID_BODIES)))
    def submit_invalid(self, reason):
        before = set(self.client.listed_ids())
        response = self.client.post("/jobs", data=INVALID_BODIES[reason],
                                    headers={"Content-Type": "application/json"})
        assert response.status_code == 422, f"{reason}: {response.status_code} {response.text}"
        body = response.json()
        assert body["errors"] and all(e["message"] for e in body["errors"]), body
        assert set(self.client.listed_ids()) == before, f"{reason}: a refused job was stored"
        STATS["submit refused"] += 1

    @rule(job_id=accepted)
    def cancel(self, job_id):
        before = self.seen[job_id][-1][0]
        response = self.client.post(f"/jobs/{job_id}/cancel")
        assert response.status_code == 200, response.text
        job = response.json()
        self.observe(job, "POST /jobs/{id}/cancel")
        # A queued job is cancelled there and then; a running one is asked to stop.
        assert job["jobStatus"] != "CREATED", job
        if job["jobStatus"] in ("WAITING", "RUNNING"):
            assert job["cancelRequested"], job
            self.cancelled_active.add(job_id)
        if before in TERMINAL:
            assert job["jobStatus"] == before
        STATS[f"cancel {before}"] += 1

    @rule(how=st.sampled_from(["kill -9", "stop"]))
    def restart(self, how):
        """The service goes away (crashes, or is stopped) and comes back on the same data."""
        if how == "kill -9":
            self.service.kill()
        else:
            self.service.stop()
        self.service.start()
        STATS[f"restart ({how}) with {len(self.unfinished())} unfinished"] += 1

    # No preconditions on what the service did: rules enabled by real time would make Hypothesis's
    # choices inconsistent between runs (FlakyStrategyDefinition). Nothing to wait for is a no-op.
    @rule()
    def wait_for_a_move(self):
        """Time passes until some job moves on (or 8 s), every job polled four times a second."""
        before = {job_id: self.seen[job_id][-1][0] for job_id in self.unfinished()}
        if not before:
            return  # no job could move
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            time.sleep(0.25)
            for job_id in before:
                self.observe(self.client.get(f"/jobs/{job_id}").json(), "GET /jobs/{id} (waiting)")
            if any(self.seen[job_id][-1][0] != state for job_id, state in before.items()):
                return

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def poll(self):
        listed = self.client.listed_ids()
        assert len(listed) == len(set(listed)), "GET /jobs lists a job twice"
        missing = set(self.seen) - set(listed)
        assert not missing, f"accepted jobs not listed by GET /jobs: {missing}"
        for job_id in self.seen:
            response = self.client.get(f"/jobs/{job_id}")
            assert response.status_code == 200, response.text
            self.observe(response.json(), "GET /jobs/{id}")

    def teardown(self):
        try:
            final = self.client.cancel_all(self.unfinished())
            for job_id in self.seen:
                job = final.get(job_id) or self.client.get(f"/jobs/{job_id}").json()
                self.observe(job, "teardown")
                STATS["seen " + " > ".join(h[0] for h in self.seen[job_id])] += 1
                # A cancelled job ends CANCELLED, or COMPLETE if it finished first; never ERROR.
                if job_id in self.cancelled_active:
                    assert job["jobStatus"] in ("CANCELLED", "COMPLETE"), job
                # Never cancelled: each job ends as its document says.
                if not any(h[0] == "CANCELLED" for h in self.seen[job_id]) and job_id not in self.cancelled_active:
                    if job["jobStatus"] != "CANCELLED":  # the teardown's own cancel may have won
                        assert job["jobStatus"] == JOBS[self.kinds[job_id]][1], job
        finally:
            # Whatever failed above, leave no spark-submit behind for the next run.
            self.client.cancel_all(self.unfinished())
        pgids = [pid for job_id, pid in job_pids(self.service).items() if job_id in self.seen]
        alive = wait_groups_gone(pgids)
        kill_groups(alive)
        assert not alive, "a finished job left processes running"


def run_machine(service, token, max_examples, steps):
    JobLifecycle.service, JobLifecycle.token = service, token
    run_state_machine_as_test(JobLifecycle, settings=settings(
        max_examples=max_examples, stateful_step_count=steps, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each replay would start JVMs
        suppress_health_check=list(HealthCheck)))


def test_job_states_only_move_forward_through_submit_cancel_restart_and_poll(tmp_path, standin_spark_home):
    tokens = {"fuzzer": "fuzzer-token-" + uuid.uuid4().hex}
    service = start_service(tmp_path, "machine", tokens=tokens, max_jobs=1, default_timeout=0,
                            spark_home=standin_spark_home)
    try:
        run_machine(service, tokens and tokens["fuzzer"], max_examples=5, steps=10)
    finally:
        service.stop()
        print("\n".join(f"{count:4} {what}" for what, count in sorted(STATS.items())))
