"""Benchmark: the REST service under load, while jobs run.

    python bench/api.py [--clients 50] [--seconds 15] [--burst 1000]

1. Latency of GET /jobs/{id} from --clients concurrent clients (keep-alive connections) for
   --seconds, while two real Spark jobs run: p50 and p99 (target p99 under 20 ms).
2. A burst of --burst POST /jobs from the same number of clients: every 2xx id must be stored
   (checked in the SQLite file afterwards), and a refused request must be a 429 or 503, never a 500.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from service_helpers import Service, sleepy_job  # noqa: E402


class Connection:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if method == "POST":
            headers["X-Requested-By"] = "sparkrunner-bench"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def latency(service: Service, job_ids: list[str], clients: int, seconds: float) -> list[float]:
    samples: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    errors = Counter()

    def client(n: int) -> None:
        conn, mine = Connection(service.port), []
        path = f"/jobs/{job_ids[n % len(job_ids)]}"
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status, _ = conn.request("GET", path)
            mine.append(time.perf_counter() - started)
            if status != 200:
                errors[status] += 1
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  non-200 answers: {dict(errors)}")
    return samples


def burst(service: Service, count: int, clients: int) -> tuple[Counter, list[str]]:
    body = json.dumps(sleepy_job(0)).encode()
    statuses: Counter = Counter()
    ids: list[str] = []
    lock = threading.Lock()
    todo = iter(range(count))

    def client() -> None:
        conn = Connection(service.port)
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            try:
                status, payload = conn.request("POST", "/jobs", body)
            except (OSError, http.client.HTTPException):
                conn = Connection(service.port)
                with lock:
                    statuses["connection error"] += 1
                continue
            with lock:
                statuses[status] += 1
                if 200 <= status < 300:
                    ids.append(json.loads(payload)["id"])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sparkrunner-bench-api-"))
    service = Service(work / "data", max_jobs=2).start()
    try:
        running = [service.submit(sleepy_job(600))["id"] for _ in range(2)]
        for job_id in running:
            service.wait_for(job_id, {"RUNNING"})
        print(f"GET /jobs/{{id}}: {args.clients} clients for {args.seconds:g} s, 2 Spark jobs running ...", flush=True)
        samples = latency(service, running, args.clients, args.seconds)
        p50, p99 = percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
        print(f"  {len(samples)} requests, {len(samples) / args.seconds:.0f}/s; "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < 20 ms)")

        print(f"burst: {args.burst} POST /jobs from {args.clients} clients ...", flush=True)
        started = time.perf_counter()
        statuses, ids = burst(service, args.burst, args.clients)
        elapsed = time.perf_counter() - started
        for job_id in running:
            service.post(f"/jobs/{job_id}/cancel")
        service.kill()  # the queued burst is not meant to run; the store is what we check
        with sqlite3.connect(work / "data" / "jobs.db") as db:
            stored = {row[0] for row in db.execute("SELECT id FROM jobs")}
            pgids = [row[0] for row in db.execute("SELECT pid FROM jobs WHERE pid IS NOT NULL")]
        for pgid in pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        lost = [i for i in ids if i not in stored]
        print(f"  {elapsed:.1f} s, {args.burst / elapsed:.0f} requests/s; answers: "
              + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str)))
        print(f"  2xx ids: {len(ids)}, unique: {len(set(ids))}, stored: {len(ids) - len(lost)}, lost: {len(lost)}; "
              f"500s: {statuses.get(500, 0)}")
        return 0 if not lost and not statuses.get(500) and len(set(ids)) == len(ids) else 1
    finally:
        service.stop()
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    sys.exit(main())
