"""Shared by the reliability tests: a real ``sparkrunner serve`` configured for them, and a client
that sends what every state-changing request must carry."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import requests

from service_helpers import Service, pids_in_group

#: Sent on every request: the service refuses a POST that carries neither a bearer token nor
#: this header (a browser cannot add it to a cross-site form post).
CLIENT_HEADERS = {"X-Requested-By": "sparkrunner-tests"}
TERMINAL = frozenset({"COMPLETE", "ERROR", "CANCELLED"})
#: The order a job's states may be seen in; the three terminal states share the last rank.
RANK = {"CREATED": 0, "WAITING": 1, "RUNNING": 2, "COMPLETE": 3, "ERROR": 3, "CANCELLED": 3}


def write_config(path: Path, data_dir: Path, *, tokens: dict[str, str] | None = None,
                 max_jobs: int = 1, default_timeout: int = 30, spark_home: Path | None = None) -> Path:
    """A configuration for a test service: one job at a time, no Spark UI, a short default
    timeout; ``spark_home`` replaces the pyspark wheel's Spark (e.g. by the stand-in)."""
    lines = [f"data_dir: {data_dir}",
             "spark:",
             *([f"  home: {spark_home}"] if spark_home else []),
             "  conf:",
             "    spark.ui.enabled: 'false'",
             "    spark.ui.showConsoleProgress: 'false'",
             "service:",
             f"  max_concurrent_jobs: {max_jobs}",
             f"  default_timeout_seconds: {default_timeout}"]
    if tokens:
        lines.append("  tokens:")
        lines += [f"    {user}: {token}" for user, token in tokens.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Client:
    """Requests to one service as one caller: the CSRF header always, a bearer token if given."""

    def __init__(self, url: str, token: str | None = None):
        self.url = url
        self.headers = dict(CLIENT_HEADERS)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def listed_ids(self) -> list[str]:
        """Every id GET /jobs lists for this caller, page by page."""
        ids, start = [], 0
        while True:
            response = self.get("/jobs", params={"from": start, "size": 1000})
            assert response.status_code == 200, response.text
            page = response.json()
            ids += [job["id"] for job in page["jobs"]]
            start += len(page["jobs"])
            if not page["jobs"] or start >= page["total"]:
                return ids

    def cancel_all(self, job_ids, timeout: float = 120) -> dict[str, dict]:
        """Cancels the jobs and waits until each is terminal; returns their last views."""
        for job_id in job_ids:
            response = self.post(f"/jobs/{job_id}/cancel")
            assert response.status_code == 200, response.text
        deadline = time.monotonic() + timeout
        final = {}
        for job_id in job_ids:
            while True:
                job = self.get(f"/jobs/{job_id}").json()
                if job["jobStatus"] in TERMINAL:
                    final[job_id] = job
                    break
                assert time.monotonic() < deadline, f"job {job_id} still {job['jobStatus']}: {job}"
                time.sleep(0.25)
        return final


def start_service(tmp: Path, name: str, **config) -> Service:
    data_dir = tmp / name
    data_dir.mkdir()
    return Service(data_dir, config=write_config(tmp / f"{name}.yaml", data_dir, **config)).start()


def job_pids(service: Service) -> dict[str, int]:
    """Each started job's spark-submit process group, as the service stored it."""
    with sqlite3.connect(service.data_dir / "jobs.db") as db:
        return dict(db.execute("SELECT id, pid FROM jobs WHERE pid IS NOT NULL").fetchall())


def wait_groups_gone(pgids, timeout: float = 30) -> list[int]:
    """The process groups among ``pgids`` that still have a live process after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pgid for pgid in pgids if pids_in_group(pgid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.25)


def kill_groups(pgids) -> None:
    """SIGKILLs what a failed test left running (only the groups the service recorded)."""
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
