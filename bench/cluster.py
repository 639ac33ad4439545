"""Benchmark: the same job on local[*] and on a two-worker standalone cluster.

    python bench/cluster.py [--rounds N]

Starts a cluster (a master and two one-core workers on 127.0.0.1) in a temporary directory, then
runs one job with `sparkrunner run` under a local configuration and under a standalone one,
alternating, and prints each median and the ratio. For information: this machine has two cores,
so the cluster's separate JVMs cost more than they bring here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sparkrunner import devcluster as cluster  # noqa: E402

SPARKRUNNER = str(Path(sys.executable).with_name("sparkrunner"))

MODEL = '''\
from pyspark.sql import SparkSession

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    df = spark.read.option("header", True).csv(inputs[0]["fileUrl"]).repartition(4)
    df = df.selectExpr("cast(k as int) k", "cast(v as double) v")
    out = df.groupBy("k").agg({"v": "sum"}).orderBy("k")
    out.write.mode("overwrite").option("header", True).csv(outputs[0]["fileUrl"])
    return {"groups": out.count()}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sparkrunner-bench-cluster-"))
    info = None
    try:
        data = work / "in.csv"
        data.write_text("k,v\n" + "".join(f"{i % 101},{i * 0.25}\n" for i in range(200_000)))
        job = {"model": {"storedModel": {"modelAssets": [
                   {"assetType": "SOURCE_CODE", "primaryModelSource": True, "name": "m.py", "sourceCode": MODEL}]}},
               "inputData": [{"assetType": "EXTERNAL_FILE", "fileUrl": data.as_uri()}],
               "outputData": [{"assetType": "EXTERNAL_FILE", "fileUrl": (work / "out").as_uri()}],
               "targetEngine": {"sparkConf": {"spark.ui.enabled": "false"}}}
        (work / "job.json").write_text(json.dumps(job))
        info = cluster.up(work / "cluster", workers=2, master_port=free_port(), webui_port=free_port(),
                          worker_webui_port=0, timeout=180)
        (work / "local.yaml").write_text(f"data_dir: {work / 'data'}\nspark:\n  master: local[*]\n")
        (work / "standalone.yaml").write_text(
            f"data_dir: {work / 'data'}\nspark:\n  master: {info.master_url}\n  conf_dir: {info.client_conf_dir}\n"
            "  conf:\n    spark.authenticate: true\n    spark.executor.cores: 1\n"
            "    spark.executor.memory: 512m\n    spark.cores.max: 2\n"
            "    spark.scheduler.minRegisteredResourcesRatio: '1.0'\n")
        runs = {"local[*]": [], "standalone (2 workers)": []}
        configs = {"local[*]": work / "local.yaml", "standalone (2 workers)": work / "standalone.yaml"}

        def once(name: str, i: int) -> float:
            started = time.perf_counter()
            done = subprocess.run([SPARKRUNNER, "--config", str(configs[name]), "run", "-q",
                                   "--workdir", str(work / "runs" / f"{i}-{name[:5]}"), str(work / "job.json")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode:
                sys.exit(f"{name} run failed:\n{done.stderr.decode()[-2000:]}")
            return time.perf_counter() - started

        print("warming up (one run of each) ...", flush=True)
        for name in runs:
            once(name, -1)
        for i in range(args.rounds):
            for name in runs:
                runs[name].append(once(name, i))
            print(f"round {i + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in runs.items()), flush=True)
        medians = {n: statistics.median(v) for n, v in runs.items()}
        for name, value in medians.items():
            print(f"{name:24} median {value:6.2f} s")
        print(f"ratio standalone / local: {medians['standalone (2 workers)'] / medians['local[*]']:.2f} "
              f"on {os.cpu_count()} cores")
        return 0
    finally:
        if info is not None:
            cluster.down(work / "cluster")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
