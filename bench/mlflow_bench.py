"""MLflow benchmark: one MLflow model over the same rows, sparkrunner's MLflow path against
``mlflow.pyfunc.spark_udf``, in alternating rounds.

    make bench-mlflow                       # in build/bench-venv (with mlflow), like bench-scoring
    python bench/mlflow_bench.py [--rows 1000000] [--rounds 3]

The model is the scoring benchmark's (bench/scoring.py: StandardScaler + MLPClassifier(64, 64) on
six features), saved with ``mlflow.sklearn.save_model`` (``predict_proba``, with a signature of its
six columns). Both contenders read the same Parquet input in one SparkSession (local[2]) and
write Parquet:

  sparkrunner  a modelMetaData.type MLFLOW job, admitted as any job is (the model directory read,
               its requirements checked), run by sparkrunner.inside.scoring.run as the driver runs
               it: the id and both probability columns (prediction_0, prediction_1)
  spark_udf    mlflow.pyfunc.spark_udf(env_manager="local") on the same model directory: the id
               and both probability columns, named as sparkrunner names them (one UDF call)

Every process computes with one BLAS thread. One untimed job first starts the Python workers and
imports scikit-learn and MLflow in them, so neither contender pays for it; each sparkrunner run
loads the model anew (a new job), as each job does.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # inherited by the Python workers
# The model was fitted on an array; both contenders hand it a DataFrame with column names.
os.environ["PYTHONWARNINGS"] = "ignore:X has feature names:UserWarning"

import argparse
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
sys.path.insert(0, str(REPO / "bench"))
from scoring import FEATURES, make_data, train  # noqa: E402  (the scoring benchmark's data and model)

TARGET = 1.5  # sparkrunner's MLflow path at least this many times spark_udf's speed
NAMES = ("sparkrunner", "spark_udf")


class Bench:
    def __init__(self, work: Path, rows: int, check: bool = True):
        import pickle

        import mlflow.sklearn
        from mlflow.models import infer_signature
        from pyspark.sql import SparkSession

        os.environ["PYSPARK_PYTHON"] = sys.executable
        self.work = work
        self.check_input = check
        self.data = make_data(work, rows)
        model = pickle.loads(train(work).read_bytes())
        self.model_dir = work / "mlflow-model"
        shutil.rmtree(self.model_dir, ignore_errors=True)
        sample = pd.read_parquet(self.data).head(100)[FEATURES]
        mlflow.sklearn.save_model(model, str(self.model_dir), pyfunc_predict_fn="predict_proba",
                                  serialization_format="cloudpickle",
                                  signature=infer_signature(sample, model.predict_proba(sample.to_numpy())))
        self.spark = (SparkSession.builder.master("local[2]").appName("bench-mlflow")
                      .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                      .config("spark.driver.memory", "2g").getOrCreate())
        self.spark.sparkContext.setLogLevel("ERROR")
        self._udf = None
        self.warm_up()

    def warm_up(self):
        """Starts the Python workers and imports what both contenders import, untimed."""
        def imports(batches):
            import mlflow.pyfunc  # noqa: F401
            import sklearn.neural_network  # noqa: F401
            yield from batches
        self.spark.range(4).repartition(2).mapInPandas(imports, "id long").collect()

    def output(self, name: str) -> Path:
        path = self.work / "out" / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def run(self, name: str) -> float:
        started = time.perf_counter()
        getattr(self, name)()
        return time.perf_counter() - started

    def sparkrunner(self) -> None:
        from sparkrunner.admission import Origin, admit
        from sparkrunner.config import Settings
        from sparkrunner.inside import scoring

        asset = lambda name, path: {"assetType": "EXTERNAL_FILE", "name": name,  # noqa: E731
                                    "fileUrl": path.as_uri(), "fileFormat": "PARQUET"}
        doc = {"model": {"storedModel": {
                   "modelMetaData": {"type": "MLFLOW", "name": "bench-mlflow",
                                     "enableInputSchemaChecking": self.check_input},
                   "modelAssets": [{"assetType": "EXTERNAL_FILE", "name": "model", "fileUrl": str(self.model_dir)}]}},
               "inputData": [asset("in", self.data)], "outputData": [asset("out", self.output("sparkrunner"))],
               "idField": "id"}
        job = admit(doc, Settings(), Origin.LOCAL)
        model = {"source": None, "filename": None, "key": uuid.uuid4().hex, "function": "predict", "init": None}
        counts = scoring.run(self.spark, job.spec.scoring.as_metadata(), model)
        assert counts["rowsWritten"] == counts["recordsRead"], counts

    def spark_udf(self) -> None:
        if self._udf is None:
            import mlflow.pyfunc

            self._udf = mlflow.pyfunc.spark_udf(self.spark, self.model_dir.as_uri(), result_type="array<double>",
                                                env_manager="local")
        df = self.spark.read.parquet(str(self.data))
        # Both probabilities, as sparkrunner writes; Spark calls the one UDF once for both.
        probabilities = self._udf(*FEATURES)
        df.select("id", probabilities[0].alias("prediction_0"), probabilities[1].alias("prediction_1")) \
            .write.parquet(str(self.output("spark_udf")))

    def check(self) -> None:
        """Both wrote the same columns and the same probabilities, for every id."""
        ours = pd.read_parquet(self.work / "out" / "sparkrunner").set_index("id").sort_index()
        theirs = pd.read_parquet(self.work / "out" / "spark_udf").set_index("id").sort_index()
        assert list(ours.columns) == list(theirs.columns) == ["prediction_0", "prediction_1"]
        assert ours.index.equals(theirs.index) and np.allclose(ours.to_numpy(), theirs.to_numpy())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-check", action="store_true",
                        help="sparkrunner without checking records against the signature (on by default)")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "bench-mlflow")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.work.resolve(), args.rows, check=not args.no_check)
    print(f"{args.rows:,} rows, {args.rounds} alternating rounds, local[2], one BLAS thread per process; "
          f"sparkrunner {'without' if args.no_check else 'with'} input checking", flush=True)
    times: dict[str, list[float]] = {name: [] for name in NAMES}
    for round_ in range(args.rounds):
        order = NAMES if round_ % 2 == 0 else NAMES[::-1]  # each goes first in turn
        for name in order:
            times[name].append(bench.run(name))
            print(f"  round {round_ + 1}: {name:<12} {times[name][-1]:8.2f} s", flush=True)
    bench.check()
    medians = {name: statistics.median(values) for name, values in times.items()}
    print("\nmedians:")
    for name, value in medians.items():
        print(f"  {name:<12} {value:8.2f} s  {args.rows / value:12,.0f} rows/s")
    ratio = medians["spark_udf"] / medians["sparkrunner"]
    verdict = "meets" if ratio >= TARGET else f"misses by {TARGET / ratio:.2f}x"
    print(f"\nsparkrunner vs spark_udf: {ratio:.2f}x  (target >= {TARGET}x: {verdict})")
    bench.spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
