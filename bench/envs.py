"""Benchmark: what a model's own packages cost a job.

    python bench/envs.py [--rounds N] [--build-rounds N]

1. The first job with a new set: building its environment (``inflection==0.5.1``, a small
   package the base lacks) into an empty cache, uv's download cache empty too, as the launcher
   does before spark-submit; median of ``--build-rounds``.
2. The next job with the same set: ``sparkrunner run`` of a small Spark job (start a session,
   count 1,000 rows in a UDF, stop) that brings the set, its environment built already, against
   the same job bringing none; alternating (A B A B ...) after one warm-up of each. Prints the
   medians and the difference, the extra start time (target: under 1 s).
"""

from __future__ import annotations

import argparse
import base64
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
from sparkrunner.environments import EnvironmentCache  # noqa: E402
from sparkrunner.requirements import Requirements  # noqa: E402

SPARKRUNNER = str(Path(sys.executable).with_name("sparkrunner"))
SET = ("inflection==0.5.1",)

MODEL = '''\
from pyspark.sql import SparkSession
from pyspark.sql.functions import udf

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    length = udf(lambda s: len(s), "int")
    return {"rows": spark.range(1000).selectExpr("cast(id as string) s").select(length("s")).count()}
'''


def job(with_set: bool) -> dict:
    assets = [{"assetType": "SOURCE_CODE", "primaryModelSource": True, "name": "model.py", "sourceCode": MODEL}]
    if with_set:
        assets.append({"assetType": "FILE", "filename": "requirements.txt",
                       "fileContent": base64.b64encode("\n".join(SET).encode()).decode()})
    return {"model": {"storedModel": {"modelAssets": assets, "modelMetaData": {"name": "bench"}}}}


def build_once(work: Path) -> float:
    root = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    _, hold = EnvironmentCache(root, Settings()).ensure(Requirements("bench", SET))
    elapsed = time.perf_counter() - started
    hold.close()
    shutil.rmtree(root)
    return elapsed


def run_once(document: Path, env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run([SPARKRUNNER, "run", str(document)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"sparkrunner run failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--build-rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-envs-") as tmp:
        work = Path(tmp)
        builds = [build_once(work) for _ in range(args.build_rounds)]
        print(f"first job with a new set: building {' '.join(SET)}: median {statistics.median(builds):.2f} s "
              f"({args.build_rounds} builds, empty caches)")

        env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
        env.pop("SPARKRUNNER_CONFIG", None)
        documents = {}
        for name, with_set in (("with the set", True), ("without", False)):
            documents[name] = work / f"{name.replace(' ', '-')}.json"
            documents[name].write_text(json.dumps(job(with_set)))
        times: dict[str, list[float]] = {name: [] for name in documents}
        for name, path in documents.items():  # warm-up; builds the set's environment once
            run_once(path, env)
        for _ in range(args.rounds):
            for name, path in documents.items():
                times[name].append(run_once(path, env))
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, value in medians.items():
            print(f"sparkrunner run, {name}: median {value:.2f} s ({args.rounds} runs)")
        extra = medians["with the set"] - medians["without"]
        print(f"extra start time with a built environment: {extra:+.2f} s "
              f"(ratio {medians['with the set'] / medians['without']:.2f})")


if __name__ == "__main__":
    main()
