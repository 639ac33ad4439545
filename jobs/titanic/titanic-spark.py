"""Titanic survival: a PySpark model for ModelOp-style batch jobs.

The runner finds each function by the smart-tag comment above it and calls it with three lists of
EXTERNAL_FILE asset dicts (inputs, outputs, model attachments); a JSON-serializable return value is
the job's result. The init function runs first, in the job's working directory, where the job's
FILE asset ``features.json`` has been written.

The numeric columns are read as text and cast to double. The data carries malformed values (``?``
in Age) and the jobs set ``spark.sql.ansi.enabled=false``, so the cast yields null and the Imputer
fills it; under Spark 4's default ANSI mode the same cast fails the job (CAST_INVALID_INPUT).
"""

import json

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

# Set by begin(): {"categorical": [...], "numeric": [...], "label": "...", "id": "..."}
FEATURES = None


# modelop.init
def begin():
    global FEATURES
    with open("features.json", encoding="utf-8") as f:
        FEATURES = json.load(f)


# modelop.train
def train(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    label = FEATURES["label"]
    data = _prepare(_read(spark, inputs[0]), with_label=True)
    # A row without a label teaches nothing (and LogisticRegression refuses null labels).
    data = data.where(F.col(label).isNotNull())

    categorical, numeric = FEATURES["categorical"], FEATURES["numeric"]
    indexed = [f"{c}_idx" for c in categorical]
    encoded = [f"{c}_vec" for c in categorical]
    imputed = [f"{c}_imp" for c in numeric]
    pipeline = Pipeline(stages=[
        # "keep" gives unseen and missing categories (e.g. an empty Embarked) their own index
        # instead of failing, at training and at scoring time.
        StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep"),
        # One-hot, so that the model does not read an order into the ports of embarkation.
        OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"),
        Imputer(inputCols=numeric, outputCols=imputed, strategy="median"),
        VectorAssembler(inputCols=encoded + imputed, outputCol="features"),
        # Fixed parameters: training is deterministic for a given data set.
        LogisticRegression(featuresCol="features", labelCol=label, maxIter=100, regParam=0.01,
                           elasticNetParam=0.0, standardization=True),
    ])
    data = data.cache()
    rows = data.count()
    model = pipeline.fit(data)
    data.unpersist()
    model.write().overwrite().save(outputs[0]["fileUrl"])
    return {"trainingRows": rows, "features": categorical + numeric, "label": label}


# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    model = PipelineModel.load(attachments[0]["fileUrl"])
    source = _read(spark, inputs[0])
    label = FEATURES["label"]
    has_label = label in source.columns

    columns = [F.col(FEATURES["id"])]
    if has_label:
        columns.append(F.col(label).cast("int").alias(label))
    columns += [
        F.col("prediction").cast("int").alias("prediction"),
        # probability is a vector [P(0), P(1)]; CSV has no vector type, so keep P(1) only.
        vector_to_array("probability")[1].alias("probability"),
    ]
    scored = model.transform(_prepare(source, with_label=has_label)).select(*columns).cache()
    rows = scored.count()
    # One part file: the scores are small, and one file is what people expect to open.
    _write(scored.coalesce(1), outputs[0])
    scored.unpersist()
    return {"scoredRows": rows}


# modelop.metrics
def metrics(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    label = FEATURES["label"]
    scored = _read(spark, inputs[0])
    missing = {label, "prediction", "probability"} - set(scored.columns)
    if missing:
        raise ValueError(f"the scored data lacks the columns {sorted(missing)}; "
                         f"it has {scored.columns}")
    scored = scored.select(*(F.col(c).cast("double").alias(c)
                             for c in (label, "prediction", "probability")))
    scored = scored.where(F.col(label).isNotNull()).cache()

    totals = scored.agg(F.count(F.lit(1)).alias("rows"),
                        F.sum((F.col("prediction") == F.col(label)).cast("int")).alias("hits"),
                        ).first()
    rows = totals["rows"]
    if rows == 0:
        raise ValueError("the scored data has no labelled rows to evaluate")
    # BinaryClassificationEvaluator accepts a double score column (here P(1)) as rawPrediction.
    auc = BinaryClassificationEvaluator(rawPredictionCol="probability", labelCol=label,
                                        metricName="areaUnderROC").evaluate(scored)
    scored.unpersist()

    result = {"accuracy": round(totals["hits"] / rows, 4), "auc": round(auc, 4), "rows": rows}
    if outputs:
        _write(spark.createDataFrame([result]).coalesce(1), outputs[0], default_format="JSON")
    return result


def _prepare(df: DataFrame, with_label: bool) -> DataFrame:
    """Cast the numeric features (and the label) to double; malformed values become null."""
    casts = list(FEATURES["numeric"]) + ([FEATURES["label"]] if with_label else [])
    return df.withColumns({c: F.col(c).cast("double") for c in casts})


def _read(spark: SparkSession, asset) -> DataFrame:
    """Read an EXTERNAL_FILE asset by its fileFormat; CSV (with a header) unless it says otherwise.

    CSV columns stay strings (no inferSchema): the casts in _prepare decide what a number is.
    """
    fmt = (asset.get("fileFormat") or "CSV").upper()
    url = asset["fileUrl"]
    if fmt == "PARQUET":
        return spark.read.parquet(url)
    if fmt == "JSON":
        return spark.read.json(url)
    return spark.read.option("header", True).csv(url)


def _write(df: DataFrame, asset, default_format: str = "CSV") -> None:
    """Write to an EXTERNAL_FILE asset (a directory of part files), replacing what is there."""
    fmt = (asset.get("fileFormat") or "UNKNOWN").upper()
    if fmt not in ("CSV", "JSON", "PARQUET"):
        fmt = default_format
    writer = df.write.mode("overwrite")
    url = asset["fileUrl"]
    if fmt == "PARQUET":
        writer.parquet(url)
    elif fmt == "JSON":
        writer.json(url)
    else:
        writer.option("header", True).csv(url)
