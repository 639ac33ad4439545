"""`make demo`: build the Titanic examples and run them with `sparkrunner run`.

    python jobs/demo.py OUTDIR

First the PySpark model (train, score, metrics), then the scikit-learn model (train, score record
by record, score DataFrame by DataFrame). Each job runs with spark-submit on local[*], exactly as
`sparkrunner run JOB.json` would run it for a user; at the end it prints where each output is and
what it holds.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_examples import build, build_sklearn  # noqa: E402

SPARKRUNNER = str(Path(sys.executable).with_name("sparkrunner"))


def run(job: Path, runs: Path) -> Path:
    """Runs one job quietly; returns its working directory. Exits if it fails."""
    workdir = runs / job.stem
    started = time.monotonic()
    print(f"==> sparkrunner run {job}", flush=True)
    done = subprocess.run([SPARKRUNNER, "run", "--quiet", "--workdir", str(workdir), str(job)])
    if done.returncode != 0:
        print(f"demo: {job.name} failed (exit code {done.returncode}); see {workdir / 'driver.log'}",
              file=sys.stderr)
        sys.exit(1)
    print(f"    done in {time.monotonic() - started:.1f} s", flush=True)
    return workdir


def first_rows(directory: Path, count: int = 5) -> list[list[str]]:
    part = sorted(directory.glob("part-*.csv"))[0]
    with open(part, newline="") as f:
        return [row for _, row in zip(range(count + 1), csv.reader(f))]


def main(outdir: str) -> int:
    out = Path(outdir).resolve()
    runs = out / "runs"
    if runs.exists():
        import shutil

        shutil.rmtree(runs)  # each demo starts afresh; outputs are overwritten by the jobs
    jobs = build(out)
    workdirs = {role: run(path, runs) for role, path in jobs.items()}
    sklearn_jobs = build_sklearn(out)
    sklearn_workdirs = {role: run(path, runs) for role, path in sklearn_jobs.items()}

    doc = json.loads(jobs["score"].read_text())
    scores = Path(doc["outputData"][0]["fileUrl"].removeprefix("file://"))
    model = Path(json.loads(jobs["train"].read_text())["outputData"][0]["fileUrl"].removeprefix("file://"))
    metrics = json.loads((workdirs["metrics"] / "result.json").read_text())
    print()
    print(f"Trained model (Spark ML PipelineModel): {model}")
    print(f"Scores (CSV): {scores}")
    for row in first_rows(scores):
        print("    " + ",".join(row))
    print(f"Metrics (result of the metrics job, {workdirs['metrics'] / 'result.json'}):")
    print(f"    accuracy {metrics['accuracy']}, AUC {metrics['auc']} on {metrics['rows']} rows")
    record_doc = json.loads(sklearn_jobs["score-records"].read_text())
    record_scores, rejected = (Path(a["fileUrl"].removeprefix("file://")) for a in record_doc["outputData"])
    counts = json.loads((sklearn_workdirs["score-records"] / "result.json").read_text())
    print(f"scikit-learn model (pickled by the training job): "
          f"{json.loads(sklearn_jobs['train'].read_text())['outputData'][0]['fileUrl']}")
    print(f"Scores, record by record (CSV): {record_scores}")
    for row in first_rows(record_scores):
        print("    " + ",".join(row))
    print(f"    {counts['recordsRead']} read, {counts['recordsScored']} scored, "
          f"{counts['recordsRejected']} rejected by the input schema: {rejected}")
    frames_doc = json.loads(sklearn_jobs["score-frames"].read_text())
    print(f"Scores, DataFrame by DataFrame (Parquet): {frames_doc['outputData'][0]['fileUrl']}")
    print(f"Working directories and driver logs: {runs}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python jobs/demo.py OUTDIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
