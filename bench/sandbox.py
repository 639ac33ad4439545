"""Benchmark: what the sandbox adds to a job's start.

    python bench/sandbox.py [--rounds N] [--bare-rounds N]

Two comparisons, each alternating (A B A B ...) after one warm-up of each, so drifts in the
machine's load hit both alike; prints the medians and the ratio.

1. A whole job: ``sparkrunner run --sandbox`` against ``sparkrunner run`` of the same small
   Spark job (start a session, count 1,000 rows, stop) on local[*].
2. The sandbox alone: the launch sequence's supervisor and process group around a command that
   does nothing (``python -c pass`` in place of spark-submit), in the sandbox and without it;
   what remains is what bwrap and the second supervisor cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sparkrunner.config import Settings  # noqa: E402
from sparkrunner.launcher import SparkSubmit  # noqa: E402
from sparkrunner.sandbox import Sandbox, probe  # noqa: E402

SPARKRUNNER = str(Path(sys.executable).with_name("sparkrunner"))

MODEL = '''\
from pyspark.sql import SparkSession

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    return {"rows": spark.range(1000).count()}
'''


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"benchmark command failed ({done.returncode}): {argv}\n{done.stderr.decode()[-2000:]}")
    return elapsed


def alternate(rounds: int, contenders: dict, unit: str = "s", scale: float = 1.0) -> dict[str, float]:
    """Runs each contender once to warm up, then ``rounds`` times alternating; prints and
    returns the medians."""
    for run in contenders.values():
        run(-1)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(rounds):
        for name, run in contenders.items():
            times[name].append(run(i) * scale)
        if scale == 1.0:
            print(f"round {i + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f} {unit}" for n, t in times.items()),
                  flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        runs = ", ".join(f"{v:.2f}" for v in times[name][:10]) + (", ..." if len(times[name]) > 10 else "")
        print(f"  {name:28} median {value:8.2f} {unit}  (runs: {runs})")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="whole jobs of each (default 5)")
    parser.add_argument("--bare-rounds", type=int, default=30, help="empty runs of each (default 30)")
    args = parser.parse_args()
    why = probe()
    if why:
        sys.exit(f"no sandbox here: {why}")
    work = Path(tempfile.mkdtemp(prefix="sparkrunner-bench-sandbox-"))
    try:
        config = work / "sparkrunner.yaml"
        config.write_text(f"data_dir: {work / 'data'}\n"
                          "spark:\n  conf:\n    spark.ui.enabled: 'false'\n    spark.ui.showConsoleProgress: 'false'\n")
        job = {"model": {"storedModel": {"modelAssets": [
            {"assetType": "SOURCE_CODE", "primaryModelSource": True, "name": "bench.py", "sourceCode": MODEL}],
            "modelMetaData": {"name": "bench"}}}}
        (work / "job.json").write_text(json.dumps(job))

        def run(sandboxed: bool):
            def one(i: int) -> float:
                flag = ["--sandbox"] if sandboxed else []
                return timed([SPARKRUNNER, "--config", str(config), "run", "-q", *flag, "--workdir",
                              str(work / f"run-{'s' if sandboxed else 'p'}{i}"), str(work / "job.json")])
            return one

        print(f"1. a whole job, {args.rounds} rounds (in {work}) ...", flush=True)
        jobs = alternate(args.rounds, {"sparkrunner run --sandbox": run(True), "sparkrunner run": run(False)})
        ratio = jobs["sparkrunner run --sandbox"] / jobs["sparkrunner run"]
        added = jobs["sparkrunner run --sandbox"] - jobs["sparkrunner run"]
        print(f"  ratio sandboxed / not: {ratio:.3f} ({added:+.2f} s)")

        settings = Settings(data_dir=work / "data")
        sandbox = Sandbox("bwrap", settings, os.environ)

        def empty(sandboxed: bool):
            def one(i: int) -> float:
                workdir = work / f"empty-{'s' if sandboxed else 'p'}{i}"
                workdir.mkdir()
                wrap = sandbox.argv(workdir, workdir / "sparkrunner_tmp") if sandboxed else None
                started = time.perf_counter()
                submit = SparkSubmit([sys.executable, "-c", "pass"], workdir,
                                     sandbox.env(os.environ) if sandboxed else dict(os.environ),
                                     workdir / "driver.log", sandbox=wrap)
                submit.start()
                outcome = submit.wait()
                elapsed = time.perf_counter() - started
                if not outcome.succeeded:
                    sys.exit(f"an empty run failed: {outcome.reason}")
                return elapsed
            return one

        print(f"2. the sandbox alone: an empty command, {args.bare_rounds} rounds ...", flush=True)
        bare = alternate(args.bare_rounds, {"in the sandbox": empty(True), "without": empty(False)},
                         unit="ms", scale=1000.0)
        print(f"  the sandbox adds {bare['in the sandbox'] - bare['without']:.0f} ms to a start "
              f"(median {bare['in the sandbox']:.0f} ms vs {bare['without']:.0f} ms) on {os.cpu_count()} cores")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
