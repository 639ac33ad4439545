"""Scoring benchmark: one scikit-learn model over the same rows, five ways, in alternating rounds.

    make bench-scoring                      # creates build/bench-venv (with mlflow) and runs this
    build/bench-venv/bin/python bench/scoring.py [--rows 1000000] [--rounds 3] [--slow-rows N]

Contenders, each reading the same Parquet input and writing (id, probability) as Parquet:
  dataframe   sparkrunner's DataFrame path: predict(batch: pd.DataFrame) on Arrow batches
  record      sparkrunner's record path: action(record) -> {"probability": ...}, ModelOp style
  spark_udf   mlflow.pyfunc.spark_udf over the same model, saved with mlflow.sklearn
  naive_udf   a row-at-a-time Python UDF calling the model once per row
  pandas      one process: pandas.read_parquet, predict_proba, to_parquet

and, to see the machinery apart from the model, two contenders whose per-row work is nothing:
  record_copy   sparkrunner's record path with action(record) -> {"probability": record["f0"]}
  naive_copy    a row-at-a-time Python UDF returning its argument

The Spark contenders share one SparkSession (local[2]) and run in it back to back, so JVM start-up
is not measured; sparkrunner's paths run through sparkrunner.inside.scoring.run with a validated job, as
the driver runs them. Every process computes with one BLAS thread, so that "one process" means one
core. The model is a StandardScaler + MLPClassifier(64, 64) on six numeric features: enough work
per row that a batch is not all I/O, little enough that one row at a time finishes.

A Python worker's first task imports pandas and scikit-learn; one untimed job does that first, so
no contender pays it. The row-at-a-time contenders (record, naive_udf) may be run on the first
``--slow-rows`` rows only, when a full run of them would take too long; ratios are then of
throughput (rows per second), and the run says so.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # inherited by the Python workers
# spark_udf hands the model a DataFrame with column names; the model was fitted on an array.
os.environ["PYTHONWARNINGS"] = "ignore:X has feature names:UserWarning"

import argparse
import pickle
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FEATURES = ["f0", "f1", "f2", "f3", "f4", "f5"]
MODEL_FILE = "bench-scoring-model.pkl"
TARGETS = {  # contender: (what it is compared with, at least this ratio)
    "dataframe": [("spark_udf", 1.0), ("naive_udf", 20.0), ("pandas", 1.6)],
    "record": [("naive_udf", 5.0)],
    "record_copy": [("naive_copy", 5.0)],
}

MODEL_HEADER = f'''\
import pickle
import pandas as pd

FEATURES = {FEATURES!r}
MODEL = None

# modelop.init
def begin():
    global MODEL
    with open({MODEL_FILE!r}, "rb") as f:
        MODEL = pickle.load(f)
'''
DATAFRAME_SOURCE = MODEL_HEADER + '''
# modelop.score
def predict(batch: pd.DataFrame) -> pd.DataFrame:
    probability = MODEL.predict_proba(batch[FEATURES].to_numpy())[:, 1]
    return pd.DataFrame({"probability": probability}, index=batch.index)
'''
RECORD_SOURCE = MODEL_HEADER + '''
# modelop.score
def action(record):
    row = [[record[name] for name in FEATURES]]
    return {"probability": float(MODEL.predict_proba(row)[0, 1])}
'''

COPY_SOURCE = '''\
# modelop.score
def action(record):
    return {"probability": record["f0"]}
'''


def make_data(directory: Path, rows: int) -> Path:
    """The first ``rows`` of one fixed data set (six features and an id), as four Parquet files."""
    path = directory / f"input-{rows}"
    if path.exists():
        return path
    tmp = directory / f".input-{rows}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    frame = pd.DataFrame(np.random.default_rng(2026).normal(size=(rows, len(FEATURES))), columns=FEATURES)
    frame.insert(0, "id", np.arange(rows))
    for part, ids in enumerate(np.array_split(np.arange(rows), 4)):
        frame.iloc[ids].to_parquet(tmp / f"part-{part}.parquet", index=False)
    tmp.rename(path)
    return path


def train(directory: Path) -> Path:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    x = rng.normal(size=(20_000, len(FEATURES)))
    y = (x[:, 0] + x[:, 1] ** 2 - x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=len(x)) > 1).astype(int)
    model = make_pipeline(StandardScaler(), MLPClassifier((64, 64), max_iter=60, random_state=0)).fit(x, y)
    path = directory / MODEL_FILE
    path.write_bytes(pickle.dumps(model))
    return path


SLOW = ("record", "naive_udf")


class Bench:
    def __init__(self, work: Path, rows: int, slow_rows: int):
        from pyspark.sql import SparkSession

        os.environ["PYSPARK_PYTHON"] = sys.executable
        self.work = work
        self.full_data = make_data(work, rows)
        self.slow_data = make_data(work, slow_rows)
        self.data = self.full_data
        self.model_path = train(work)
        self.model = pickle.loads(self.model_path.read_bytes())
        self.spark = (SparkSession.builder.master("local[2]").appName("bench-scoring")
                      .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                      .config("spark.driver.memory", "2g")
                      .getOrCreate())
        self.spark.sparkContext.setLogLevel("ERROR")
        self._mlflow_udf = None
        self.warm_up()

    def warm_up(self):
        """Starts the Python workers and imports what every contender imports, untimed."""
        def imports(batches):
            import sklearn.neural_network  # noqa: F401
            for batch in batches:
                yield batch
        self.spark.range(4).repartition(2).mapInPandas(imports, "id long").collect()

    def run(self, name: str) -> float:
        """Seconds ``name`` took on its data."""
        self.data = self.slow_data if name in SLOW else self.full_data
        started = time.perf_counter()
        getattr(self, name)()
        return time.perf_counter() - started

    def output(self, name: str) -> Path:
        path = self.work / "out" / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def sparkrunner(self, name: str, source: str) -> None:
        from sparkrunner import jobspec
        from sparkrunner.inside import scoring

        asset = lambda n, p: {"assetType": "EXTERNAL_FILE", "name": n, "fileUrl": p.as_uri(),  # noqa: E731
                              "fileFormat": "PARQUET"}
        doc = {"model": {"storedModel": {
                   "modelAssets": [{"assetType": "SOURCE_CODE", "primaryModelSource": True, "name": "bench_model.py",
                                    "sourceCode": source},
                                   {"assetType": "EXTERNAL_FILE", "name": "model", "fileUrl": self.model_path.as_uri()}],
                   "modelMetaData": {"type": "PYTHON", "name": "bench",
                                     "outputSchema": {"type": "object", "properties": {"probability": {"type": "number"}}}}}},
               "inputData": [asset("in", self.data)], "outputData": [asset("out", self.output(name))],
               "idField": "id"}
        spec = jobspec.validate(doc)
        model = {"source": source, "filename": spec.primary.filename, "key": uuid.uuid4().hex,  # init anew each run
                 "function": spec.function, "init": spec.init_function}
        counts = scoring.run(self.spark, spec.scoring.as_metadata(), model)
        assert counts["rowsWritten"] == counts["recordsRead"], counts

    def dataframe(self):
        self.sparkrunner("dataframe", DATAFRAME_SOURCE)

    def record(self):
        self.sparkrunner("record", RECORD_SOURCE)

    def record_copy(self):
        self.sparkrunner("record_copy", COPY_SOURCE)

    def naive_copy(self):
        from pyspark.sql.functions import udf

        copy = udf(lambda value: value, "double")
        df = self.spark.read.parquet(str(self.data))
        df.select("id", copy("f0").alias("probability")).write.parquet(str(self.output("naive_copy")))

    def spark_udf(self):
        if self._mlflow_udf is None:
            import mlflow.pyfunc
            import mlflow.sklearn

            saved = self.work / "mlflow-model"
            shutil.rmtree(saved, ignore_errors=True)
            mlflow.sklearn.save_model(self.model, str(saved), pyfunc_predict_fn="predict_proba",
                                     serialization_format="cloudpickle")
            self._mlflow_udf = mlflow.pyfunc.spark_udf(self.spark, saved.as_uri(), result_type="array<double>",
                                                       env_manager="local")
        df = self.spark.read.parquet(str(self.data))
        df.select("id", self._mlflow_udf(*FEATURES)[1].alias("probability")) \
            .write.parquet(str(self.output("spark_udf")))

    def naive_udf(self):
        from pyspark.sql.functions import udf

        model = self.model

        @udf("double")
        def probability(*values):
            return float(model.predict_proba([values])[0, 1])

        df = self.spark.read.parquet(str(self.data))
        df.select("id", probability(*FEATURES).alias("probability")).write.parquet(str(self.output("naive_udf")))

    def pandas(self):
        frame = pd.read_parquet(self.data)
        probability = self.model.predict_proba(frame[FEATURES].to_numpy())[:, 1]
        out = self.output("pandas")
        out.mkdir(parents=True)
        pd.DataFrame({"id": frame["id"], "probability": probability}).to_parquet(out / "part-0.parquet", index=False)

    def check(self, names):
        """Every contender wrote the same probabilities (to float precision)."""
        expected = pd.read_parquet(self.work / "out" / "pandas").set_index("id")["probability"]
        for name in names:
            got = pd.read_parquet(self.work / "out" / name).set_index("id")["probability"].sort_index()
            assert np.allclose(got.to_numpy(), expected.loc[got.index].to_numpy()), name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-rows", type=int, help="rows for record and naive_udf (default: --rows)")
    parser.add_argument("--only", nargs="*", default=["dataframe", "record", "spark_udf", "naive_udf", "pandas"])
    parser.add_argument("--work", type=Path, default=REPO / "build" / "bench-scoring")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    slow_rows = args.slow_rows or args.rows
    bench = Bench(args.work.resolve(), args.rows, slow_rows)
    names = list(args.only)
    rows = {name: slow_rows if name in SLOW else args.rows for name in names}
    print(f"{args.rows:,} rows ({', '.join(SLOW)}: {slow_rows:,}), {args.rounds} alternating rounds, local[2], "
          "one BLAS thread per process", flush=True)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]  # each goes first once
        for name in order:
            times[name].append(bench.run(name))
            print(f"  round {round_ + 1}: {name:<10} {times[name][-1]:8.2f} s", flush=True)
    if "pandas" in names:
        bench.check([n for n in names if n not in ("pandas", "record_copy", "naive_copy")])
    medians = {name: statistics.median(values) for name, values in times.items()}
    throughput = {name: rows[name] / medians[name] for name in names}
    print("\nmedians:")
    for name, value in medians.items():
        print(f"  {name:<10} {value:8.2f} s for {rows[name]:>9,} rows  {throughput[name]:12,.0f} rows/s")
    print("\nratios of throughput (rows/s of the first over the second):")
    for name, targets in TARGETS.items():
        for other, target in targets:
            if name in medians and other in medians:
                ratio = throughput[name] / throughput[other]
                verdict = "meets" if ratio >= target else f"misses by {target / ratio:.1f}x"
                print(f"  {name} vs {other}: {ratio:6.2f}x  (target >= {target}x: {verdict})")
    bench.spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
