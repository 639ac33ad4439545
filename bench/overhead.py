"""Benchmark: `sparkrunner run` against a bare `spark-submit` of an equivalent hand-written script.

    python bench/overhead.py [--rounds N]

Both run the same work on the same data, on local[*] with the same Spark settings: read a CSV of
20,000 rows, compute a column, aggregate, write CSV. The two commands alternate (A B A B ...) after
one warm-up each, so drifts in the machine's load hit both alike. Prints each median and the
ratio sparkrunner / bare (target: at most 1.05).
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

from sparkrunner.command import child_env, spark_submit_path  # noqa: E402
from sparkrunner.config import Settings  # noqa: E402

SPARKRUNNER = str(Path(sys.executable).with_name("sparkrunner"))
CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"}

MODEL = '''\
from pyspark.sql import SparkSession

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    df = spark.read.option("header", True).csv(inputs[0]["fileUrl"])
    df = df.selectExpr("cast(k as int) k", "cast(v as double) * 2 as v2")
    out = df.groupBy("k").sum("v2").orderBy("k")
    out.write.mode("overwrite").option("header", True).csv(outputs[0]["fileUrl"])
    return {"groups": out.count()}
'''

BARE = '''\
import json
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
df = spark.read.option("header", True).csv({inp!r})
df = df.selectExpr("cast(k as int) k", "cast(v as double) * 2 as v2")
out = df.groupBy("k").sum("v2").orderBy("k")
out.write.mode("overwrite").option("header", True).csv({out!r})
print(json.dumps({{"groups": out.count()}}))
spark.stop()
'''


def timed(argv: list[str], **kwargs) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"benchmark command failed ({done.returncode}): {argv}\n{done.stderr.decode()[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sparkrunner-bench-"))
    try:
        data = work / "in.csv"
        data.write_text("k,v\n" + "".join(f"{i % 97},{i * 0.5}\n" for i in range(20_000)))
        job = {"model": {"storedModel": {"modelAssets": [
                   {"assetType": "SOURCE_CODE", "primaryModelSource": True, "name": "bench-model.py",
                    "sourceCode": MODEL}], "modelMetaData": {"name": "bench"}}},
               "inputData": [{"assetType": "EXTERNAL_FILE", "fileUrl": data.as_uri(), "fileFormat": "CSV"}],
               "outputData": [{"assetType": "EXTERNAL_FILE", "fileUrl": (work / "out-a").as_uri(), "fileFormat": "CSV"}],
               "targetEngine": {"sparkConf": CONF}}
        (work / "job.json").write_text(json.dumps(job))
        (work / "bare").mkdir()
        (work / "bare" / "bare.py").write_text(BARE.format(inp=data.as_uri(), out=(work / "out-b").as_uri()))
        settings = Settings()
        env = child_env(settings)
        bare_argv = [spark_submit_path(settings), "--master", "local[*]", "--deploy-mode", "client",
                     "--conf", "spark.app.name=bench"]
        for key, value in sorted(CONF.items()):
            bare_argv += ["--conf", f"{key}={value}"]
        bare_argv.append(str(work / "bare" / "bare.py"))

        def sparkrunner(i: int) -> float:
            return timed([SPARKRUNNER, "run", "-q", "--workdir", str(work / f"run-{i}"), str(work / "job.json")])

        def bare(i: int) -> float:
            return timed(bare_argv, cwd=work / "bare", env=env)

        print(f"warming up (one run of each) in {work} ...", flush=True)
        sparkrunner(-1), bare(-1)
        times: dict[str, list[float]] = {"sparkrunner run": [], "bare spark-submit": []}
        for i in range(args.rounds):
            times["sparkrunner run"].append(sparkrunner(i))
            times["bare spark-submit"].append(bare(i))
            print(f"round {i + 1}/{args.rounds}: sparkrunner {times['sparkrunner run'][-1]:.2f} s, "
                  f"bare {times['bare spark-submit'][-1]:.2f} s", flush=True)
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, value in medians.items():
            print(f"{name:18} median {value:6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in times[name])})")
        ratio = medians["sparkrunner run"] / medians["bare spark-submit"]
        print(f"ratio sparkrunner / bare: {ratio:.3f} (target <= 1.05) on {os.cpu_count()} cores")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
