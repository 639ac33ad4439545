"""Benchmark: warm jobs against cold ones, through the service and with `sparkrunner run`.

    python bench/warm.py [--rounds 10] [--titanic-rounds 3] [--run-rounds 5]

1. A service with warm jobs on (sandboxed where bwrap and Landlock work): the first job after it
   starts (its warm server starting included), then a trivial job POST -> COMPLETE, alternating
   warm and cold (``executionMode: cold``) on the same document: medians and the ratio (targets:
   warm median <= 1.0 s, >= 8x faster than cold).
2. The Titanic scoring job (the example's model, trained once first), alternating warm and cold.
3. ``sparkrunner run --warm`` against ``sparkrunner run`` on the trivial job, alternating (the
   first --warm run starts the local warm server: it is reported, not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "jobs"))

from service_helpers import SPARKRUNNER, Service  # noqa: E402

TRIVIAL = {
    "jobType": "MODEL_BATCH_TEST_JOB",
    "model": {"storedModel": {"modelAssets": [{
        "assetType": "SOURCE_CODE", "primaryModelSource": True, "name": "trivial.py",
        "sourceCode": ("from pyspark.sql import SparkSession\n\n# modelop.metrics\n"
                       "def metrics(inputs, outputs, attachments):\n"
                       "    return {'rows': SparkSession.builder.getOrCreate().range(1000).count()}\n")}],
        "modelMetaData": {"type": "PYSPARK", "name": "trivial"}}},
    "inputData": [], "outputData": [],
}


def post_to_complete(service: Service, doc: dict) -> tuple[float, dict]:
    """Seconds from POST to COMPLETE (polled every 10 ms), and the job."""
    began = time.monotonic()
    job = service.submit(doc)
    while True:
        seen = service.job(job["id"])
        if seen["jobStatus"] in ("COMPLETE", "ERROR", "CANCELLED"):
            break
        time.sleep(0.01)
    elapsed = time.monotonic() - began
    if seen["jobStatus"] != "COMPLETE":
        raise SystemExit(f"a job failed: {seen['reason']}\n" + "\n".join(seen.get("logTail") or []))
    return elapsed, seen


def alternate(label: str, rounds: int, warm, cold) -> None:
    times = {"warm": [], "cold": []}
    for n in range(rounds):
        for kind, run in (("warm", warm), ("cold", cold)) if n % 2 == 0 else (("cold", cold), ("warm", warm)):
            times[kind].append(run())
    warm_median, cold_median = statistics.median(times["warm"]), statistics.median(times["cold"])
    print(f"{label}: warm median {warm_median:.3f} s (min {min(times['warm']):.3f}), "
          f"cold median {cold_median:.3f} s (min {min(times['cold']):.3f}); "
          f"cold/warm {cold_median / warm_median:.1f}x over {rounds} rounds each", flush=True)


def titanic_jobs(base: Path) -> tuple[dict, dict]:
    """The Titanic score job, its model trained first; (warm-able, cold) documents. The example
    asks for the driver's memory, which a warm job cannot have: both variants drop it."""
    from build_examples import build

    jobs = build(base / "example")
    done = subprocess.run([SPARKRUNNER, "run", "-q", str(jobs["train"])], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit("training the Titanic model failed:\n" + done.stderr[-2000:])
    score = json.loads(Path(jobs["score"]).read_text())
    score.pop("jobParameters", None)
    return score, {**score, "executionMode": "cold"}


def run_cli(job: Path, *extra: str) -> float:
    began = time.monotonic()
    done = subprocess.run([SPARKRUNNER, "run", "-q", *extra, str(job)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit("sparkrunner run failed:\n" + done.stderr[-2000:])
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--titanic-rounds", type=int, default=3)
    parser.add_argument("--run-rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sparkrunner-bench-warm-") as tmp:
        base = Path(tmp)
        roots = base / "roots"
        roots.mkdir()
        score_warm, score_cold = titanic_jobs(roots)
        service = Service(base / "data", warm=True, local_roots=[roots],
                          extra="  max_concurrent_jobs: 2\n").start()
        try:
            first, job = post_to_complete(service, TRIVIAL)
            print(f"first job after the service started: {first:.1f} s ({job['executionMode']}; "
                  "the warm server's start included)", flush=True)
            if job["executionMode"] != "warm":
                raise SystemExit(f"jobs do not run warm here: {job['executionReason']}")
            cold = {**TRIVIAL, "executionMode": "cold"}
            alternate("trivial job, POST -> COMPLETE", args.rounds,
                      lambda: post_to_complete(service, TRIVIAL)[0], lambda: post_to_complete(service, cold)[0])
            alternate("Titanic scoring job, POST -> COMPLETE", args.titanic_rounds,
                      lambda: post_to_complete(service, score_warm)[0],
                      lambda: post_to_complete(service, score_cold)[0])
        finally:
            service.stop()
        job_file = base / "trivial.json"
        job_file.write_text(json.dumps(TRIVIAL))
        subprocess.run([SPARKRUNNER, "stop-warm"], capture_output=True)
        print(f"first `run --warm` (starts the local warm server): {run_cli(job_file, '--warm'):.1f} s", flush=True)
        try:
            alternate("sparkrunner run (trivial job)", args.run_rounds,
                      lambda: run_cli(job_file, "--warm"), lambda: run_cli(job_file))
        finally:
            subprocess.run([SPARKRUNNER, "stop-warm"], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
