"""Benchmark: bulk scoring against one record per request, through the same service.

    python bench/bulk.py [--records 10000] [--rounds 3] [--singles 5]

A service with warm jobs on (sandboxed where bwrap and Landlock work), one registered record
model (three features in, a score out; its outputSchema given, as a registered model's usually
is). After one small request that is not counted (the warm server's first scoring), each round
alternates, in turns:

- ``--records`` JSON lines in one ``POST /models/{name}/score``: seconds to the answer's first
  byte and to its last byte (every record answered, ids checked);
- ``--singles`` requests of one record each to the same endpoint, one after the other: seconds
  per request. Ten thousand of them would take hours, so the time of 10,000 is the median of the
  sample times 10,000 (an extrapolation, said so in the output).

Prints the medians and the ratio (10,000 single requests, extrapolated, over one bulk request's
last byte); the target is >= 50x.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from service_helpers import Service  # noqa: E402

SOURCE = '''\
import math

# modelop.score
def score(record):
    z = 0.8 * record["x1"] - 0.5 * record["x2"] + 0.3 * record["x3"] - 0.1
    return {"id": record["id"], "score": 1 / (1 + math.exp(-z))}
'''
OUTPUT_SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}, "score": {"type": "number"}}}
MODEL = {"storedModel": {"modelAssets": [{"assetType": "SOURCE_CODE", "primaryModelSource": True,
                                          "name": "logit.py", "sourceCode": SOURCE}],
                         "modelMetaData": {"name": "logit", "type": "PYTHON", "outputSchema": OUTPUT_SCHEMA}}}
HEADERS = {"Content-Type": "application/x-ndjson"}


def body_of(count: int, start: int = 0) -> bytes:
    rng = random.Random(start)
    return "".join(json.dumps({"id": i, "x1": rng.random(), "x2": rng.random(), "x3": rng.random()}) + "\n"
                   for i in range(start, start + count)).encode()


def score(url: str, body: bytes, expected: int) -> tuple[float, float, str]:
    """(seconds to the first byte, seconds to the last byte, how its job ran) of one bulk request."""
    began = time.monotonic()
    first = None
    lines = 0
    with requests.post(f"{url}/models/logit/score", data=body, headers=HEADERS, stream=True, timeout=600) as response:
        response.raise_for_status()
        job_path = response.headers["Location"]
        for line in response.iter_lines():
            if first is None:
                first = time.monotonic() - began
            if line:
                answer = json.loads(line)
                if "result" not in answer:
                    raise SystemExit(f"a record was not scored: {answer}")
                lines += 1
    last = time.monotonic() - began
    if lines != expected:
        raise SystemExit(f"{lines} answer lines for {expected} records")
    job = requests.get(url + job_path, timeout=30).json()
    return first or last, last, job["executionMode"] + ("" if job["executionMode"] == "warm" else f" ({job['executionReason']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--singles", type=int, default=5, help="single-record requests per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        roots = Path(tmp) / "roots"
        roots.mkdir()
        service = Service(Path(tmp) / "data", warm=True, local_roots=[roots],
                          extra="  max_concurrent_jobs: 2\n").start()
        try:
            registered = service.post("/models", json={"name": "logit", "model": MODEL, "defaults": {"idField": "id"}})
            registered.raise_for_status()
            print("warming up (the warm server starts, then scores 10 records) ...", flush=True)
            score(service.url, body_of(10), 10)
            bulk = {"first": [], "last": []}
            singles: list[float] = []
            for n in range(args.rounds):
                def run_bulk():
                    first, last, mode = score(service.url, body_of(args.records, n), args.records)
                    bulk["first"].append(first)
                    bulk["last"].append(last)
                    print(f"  round {n + 1}: {args.records} records in one request: first byte {first:.2f} s, "
                          f"last byte {last:.2f} s ({mode})", flush=True)

                def run_singles():
                    modes = set()
                    for i in range(args.singles):
                        _, last, mode = score(service.url, body_of(1, 1_000_000 + n * 100 + i), 1)
                        singles.append(last)
                        modes.add(mode)
                    print(f"  round {n + 1}: {args.singles} single-record requests: "
                          f"{', '.join(f'{s:.2f}' for s in singles[-args.singles:])} s ({', '.join(sorted(modes))})",
                          flush=True)

                for run in ((run_bulk, run_singles) if n % 2 == 0 else (run_singles, run_bulk)):
                    run()
        finally:
            service.stop()
            servers = [line.split(" INFO ", 1)[1].strip() for line in service.log_path.read_text().splitlines()
                       if "warm server" in line.lower() and " INFO " in line]
            print("warm servers: " + "; ".join(servers), flush=True)
    first, last, single = (statistics.median(bulk["first"]), statistics.median(bulk["last"]),
                           statistics.median(singles))
    extrapolated = single * args.records
    print(f"bulk, {args.records} records in one request: median first byte {first:.2f} s, last byte {last:.2f} s "
          f"({args.records / last:,.0f} records/s) over {args.rounds} rounds")
    print(f"one record per request: median {single:.2f} s a request over {len(singles)} requests; "
          f"{args.records} of them, extrapolated: {extrapolated:,.0f} s")
    print(f"ratio (one per request, extrapolated, / bulk last byte): {extrapolated / last:,.0f}x (target >= 50x)")


if __name__ == "__main__":
    main()
