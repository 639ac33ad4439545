"""sparkrunner's distributed scoring path for plain Python models (copied in as sparkrunner_scoring.py).

The driver calls :func:`run` with the job's scoring plan (see sparkrunner/scoringspec.py) and the
model's source. It reads every input by its fileFormat, applies the model's one-parameter score
function to Arrow batches with ``mapInPandas`` on the Python workers, and writes the scores, and
rejected records when schema checking is on, in their fileFormat.

An MLflow model (``modelMetaData.type`` MLFLOW) has no source: its directory, a model attachment,
is loaded with ``mlflow.pyfunc.load_model`` instead, and its ``predict`` takes each batch as a
DataFrame function would.

Each Python worker process loads the model's source and calls its init function once, the first
time it needs the model, from Spark's directory of shipped files (the worker's working directory
on a cluster), so ``open("model.pkl", "rb")`` finds a model attachment or a FILE asset. Spark
reuses Python workers (``spark.python.worker.reuse``), so later batches and tasks find the model
ready.

The same code runs on a cold run (spark-submit, a classic SparkSession) and on a warm one (a Spark
Connect session, which has no SparkContext): model attachments reach the workers by
``SparkContext.addFile`` when cold and as session artifacts when warm (the driver adds those),
and the counts of the result come from one ``Observation`` of the scored frame on both, not from
accumulators, which Spark Connect does not have.

Like the driver it depends only on the standard library, pyspark, pandas and pyarrow: it runs on
the Spark driver and on every worker, shipped with ``--py-files`` (a session artifact when warm).
"""

import functools
import hashlib
import json
import os
import pickle
import sys
import types
import uuid

import numpy as np
import pandas as pd

RECORD = "record"
DATAFRAME = "dataframe"
#: An MLflow model (no source): mlflow.pyfunc scores each batch, as a DataFrame function would.
MLFLOW = "mlflow"
#: The column of a single unnamed output (sparkrunner/mlflow_model.py names it so too).
PREDICTION = "prediction"
#: MLflow's column types -> the numpy dtype a column is handed to the model in, when it has no
#: missing value (mlflow.pyfunc refuses, say, a float64 column for a long one).
MLFLOW_DTYPES = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32",
                 "boolean": "bool"}
#: Rows of the first input the model scores to infer the output schema when none is given.
SAMPLE_ROWS = 100
# Extra columns of the combined frame when checking is on; a rejected row has a reason.
REASON = "sparkrunner_reject_reason"
REJECTED_RECORD = "sparkrunner_rejected_record"
# Extra columns of the combined frame, set only in the one tally row each batch ends with: how
# many records the batch read, handed to the model and rejected. The tally rows are never written.
READ = "sparkrunner_records_read"
SCORED = "sparkrunner_records_scored"
REJECTED = "sparkrunner_records_rejected"
COUNTERS = ("recordsRead", "recordsScored", "recordsRejected", "rowsWritten")

# Per Python worker process: model key -> the score function, after its module's init ran.
_READY = {}


class ScoringError(Exception):
    """The model or its data cannot be scored as the job asks; the message says why."""


# ---------------------------------------------------------------------------------------------
# On the driver


def run(spark, plan, model):
    """Scores the job's inputs into its outputs; returns the counts that become the job's result.

    ``plan`` is the job metadata's ``scoring_plan``; ``model`` holds the primary source's
    ``source`` and ``filename``, the ``function`` and ``init`` names and a ``key`` unique to the job.

    Without schema checking, one pass writes the scores. With output checking, a rejected row is
    known only once the model has scored it, so the scored frame is kept (``persist``) and written
    twice: scores, then rejects. With input checking alone, a record's fate is known before the
    model sees it: one pass scores and writes, counting the rejects, and a second pass that never
    calls the model writes the rejected records, only when there are any.
    """
    ship_attachments(spark, plan)
    job = {"plan": plan, "model": dict(model, key=_model_key(model), mlflow=_mlflow_model(plan))}
    inputs = read_inputs(spark, plan)
    scores_schema = output_schema(spark, inputs, job)
    score_columns = [f.name for f in scores_schema.fields]
    checking = plan["check_input"] or plan["check_output"]
    # The reject columns travel with the scores only where the scores' pass also writes the rejects.
    with_rejects = _with_tally_columns(_with_reject_columns(scores_schema))
    schema = with_rejects if plan["check_output"] else _with_tally_columns(scores_schema)
    combined, observation = _observed(_scored(inputs, job, schema), rows_rejected=plan["check_output"])
    if plan["check_output"]:
        _write_scores_and_rejects(combined, plan, score_columns)
    else:
        write(_records(combined).select(*score_columns), plan["output"])
    counts = {name: observation.get[name] for name in COUNTERS}
    if checking and not plan["check_output"]:
        rejects = _rejected_output(inputs.mapInPandas(
            functools.partial(input_reject_batches, plan, _names(with_rejects)), with_rejects), plan)
        write(rejects if counts["recordsRejected"] else rejects.where("false"), plan["rejected"])
    return counts


def _scored(inputs, job, schema):
    """The scores of ``inputs`` (and what :func:`score_batches` adds) as ``schema``."""
    return inputs.mapInPandas(functools.partial(score_batches, job, _names(schema)), schema)


def _names(schema):
    return [field.name for field in schema.fields]


def _mlflow_model(plan):
    """An MLflow model's part of the plan, with the output columns its unnamed outputs take."""
    if not plan.get("mlflow"):
        return None
    names = [rule["name"] for rule in plan["output_fields"] or () if rule["name"] != plan["id_field"]]
    return dict(plan["mlflow"], output_names=names)


def ship_attachments(spark, plan):
    """Makes the model attachments reach the Python workers' directory of shipped files: on a
    cold run with ``SparkContext.addFile`` (which also fetches hdfs and http URLs); a warm run
    (Spark Connect: no SparkContext) has them already, added by the driver as session artifacts."""
    if _is_connect(spark):
        return
    model_dir = (plan.get("mlflow") or {}).get("url")
    for url in plan["attachments"]:
        # fetched into each worker's working directory, as ModelOp promises; a directory (an
        # MLflow model) with everything in it
        spark.sparkContext.addFile(url, recursive=url == model_dir)


def _is_connect(spark):
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _observed(combined, rows_rejected):
    """(``combined`` observed, the Observation holding the four counts once it has been written).

    Observed metrics are computed by the tasks that compute ``combined`` and sent back with the
    query's result: one pass, on a classic session and on Spark Connect alike. ``rows_rejected``:
    ``combined`` holds the rejected records as rows (with a reason), which are not written as scores.
    """
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    tally = F.col(READ).isNotNull()
    rejected = F.col(REASON).isNotNull() if rows_rejected else F.lit(False)
    observation = Observation("sparkrunner_counts_" + uuid.uuid4().hex)
    observed = combined.observe(
        observation,
        F.coalesce(F.sum(READ), F.lit(0)).alias("recordsRead"),
        F.coalesce(F.sum(SCORED), F.lit(0)).alias("recordsScored"),
        F.coalesce(F.sum(REJECTED), F.lit(0)).alias("recordsRejected"),
        F.count(F.when(~tally & ~rejected, 1)).alias("rowsWritten"))
    return observed, observation


def _records(combined):
    """``combined`` without its tally rows."""
    from pyspark.sql import functions as F

    return combined.where(F.col(READ).isNull())


def _model_key(model):
    text = "\0".join(str(model.get(k)) for k in ("key", "filename", "function", "init", "source"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_scores_and_rejects(combined, plan, score_columns):
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    # Two outputs from one pass: keep it, so the model scores each record once.
    combined = combined.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        write(_records(combined).where(F.col(REASON).isNull()).select(*score_columns), plan["output"])
        write(_rejected_output(combined, plan), plan["rejected"])
    finally:
        combined.unpersist()


def _rejected_output(combined, plan):
    """The rejected-records output of ``combined``'s rows that have a reason: id, record, reason."""
    from pyspark.sql import functions as F

    id_column = [plan["id_field"]] if plan["id_field"] else []
    return _records(combined).where(F.col(REASON).isNotNull()).select(
        *id_column, F.col(REJECTED_RECORD).alias("record"), F.col(REASON).alias("reason"))


def read_inputs(spark, plan):
    """Every input asset read by its fileFormat, as one DataFrame (columns matched by name)."""
    frames = [read(spark, asset, typed_csv=plan["input_fields"] is None) for asset in plan["inputs"]]
    return functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def read(spark, asset, typed_csv=True):
    """One input asset. CSV has a header; its types are inferred unless an inputSchema gives them."""
    if asset.get("in_workdir"):
        return read_in_workdir(spark, asset["url"])
    reader = spark.read
    if asset["format"] == "CSV":
        return reader.option("header", True).option("inferSchema", typed_csv).csv(asset["url"])
    if asset["format"] == "JSON":
        return reader.json(asset["url"])
    return reader.parquet(asset["url"])


def write(frame, asset):
    """Writes ``frame`` to ``asset`` in its fileFormat, replacing what was there (as Spark jobs do)."""
    if asset.get("in_workdir"):
        return write_in_workdir(frame, asset["url"])
    writer = frame.write.mode("overwrite")
    if asset["format"] == "CSV":
        # Quotes doubled inside quoted fields (RFC 4180), not Spark's default backslash.
        writer.option("header", True).option("escape", '"').csv(asset["url"])
    elif asset["format"] == "JSON":
        writer.json(asset["url"])
    else:
        writer.parquet(asset["url"])


def read_in_workdir(spark, filename):
    """The JSON lines of a file in the job's working directory (the driver's), as a DataFrame
    made here and sent to Spark: a warm job's server cannot see the job's directory.

    A column whose values are all booleans, all integers or all numbers gets that type; any other
    column is text (an object or list as its JSON), so that one record's odd value does not fail
    the batch: the input schema's check converts text as it converts CSV's, and rejects the record.
    """
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType

    with open(filename, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    names = list(dict.fromkeys(name for record in records for name in record))
    fields, columns = [], []
    for name in names:
        values = [record.get(name) for record in records]
        kinds = {_kind(value) for value in values if value is not None}
        if kinds == {"boolean"}:
            spark_type = BooleanType()
        elif kinds == {"integer"}:
            spark_type = LongType()
        elif kinds and kinds <= {"integer", "number"}:
            spark_type, values = DoubleType(), [None if v is None else float(v) for v in values]
        else:
            spark_type = StringType()
            values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
        fields.append(StructField(name, spark_type))
        columns.append(values)
    return spark.createDataFrame(list(zip(*columns)), StructType(fields))


def _kind(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) and -2**63 <= value < 2**63:
        return "integer"
    if isinstance(value, float):
        return "number"
    return "text"


def write_in_workdir(frame, filename):
    """Writes ``frame`` as JSON lines into a file in the job's working directory: the rows are
    collected to the driver (a batch small enough for an HTTP request) and written one a line,
    flushed as they go, so that a reader can follow the file as it grows."""
    rows = frame.collect()
    with open(filename, "w", encoding="utf-8", buffering=1) as out:
        for row in rows:
            out.write(json.dumps(_json_safe(row.asDict(recursive=True)), default=str) + "\n")


def _json_safe(value):
    """``value`` with NaN and infinities as None: JSON has no such numbers."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def output_schema(spark, inputs, job):
    """The Spark schema of the scores: from outputSchema when given, else from a scored sample."""
    from pyspark.sql.types import StructField, StructType

    plan = job["plan"]
    if plan["output_fields"] is not None:
        fields = [StructField(rule["name"], _spark_type(rule["type"])) for rule in plan["output_fields"]]
        id_field = plan["id_field"]
        if id_field and id_field not in [f.name for f in fields]:
            fields.insert(0, StructField(id_field, _input_type(inputs, plan, id_field)))
        return StructType(fields)
    return _inferred_schema(inputs, job)


def _inferred_schema(inputs, job):
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StringType, StructField, StructType

    sample = inputs.limit(SAMPLE_ROWS).mapInPandas(
        functools.partial(sample_scores, job), "frame binary").collect()
    frames = [pickle.loads(row.frame) for row in sample]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.columns.empty:
        raise ScoringError(
            "cannot infer the output schema: the model returned no output for the first %d "
            "records; give modelMetaData.outputSchema" % SAMPLE_ROWS)
    fields = []
    for field in pa.Schema.from_pandas(frame, preserve_index=False):
        # A column that was null throughout the sample has no type: it is written as text.
        spark_type = StringType() if pa.types.is_null(field.type) else from_arrow_type(field.type)
        fields.append(StructField(str(field.name), spark_type))
    # The id first, where sparkrunner added it after the model's own fields.
    fields.sort(key=lambda f: f.name != job["plan"]["id_field"])
    return StructType(fields)


def _spark_type(rule_type):
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType

    return {"number": DoubleType(), "integer": LongType(), "boolean": BooleanType()}.get(
        rule_type, StringType())


def _input_type(inputs, plan, name):
    rules = {rule["name"]: rule for rule in plan["input_fields"] or ()}
    if name in rules:
        return _spark_type(rules[name]["type"])
    if name in inputs.columns:
        return inputs.schema[name].dataType
    raise ScoringError("idField %r is not a column of the input (columns: %s)"
                       % (name, ", ".join(inputs.columns)))


def _with_tally_columns(schema):
    from pyspark.sql.types import LongType, StructField, StructType

    return StructType(list(schema.fields) + [StructField(name, LongType()) for name in (READ, SCORED, REJECTED)])


def _with_reject_columns(schema):
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType(list(schema.fields) + [StructField(REASON, StringType()),
                                             StructField(REJECTED_RECORD, StringType())])


# ---------------------------------------------------------------------------------------------
# On the Python workers


def model_function(model):
    """The model's score function, its module loaded and init called once in this process."""
    fn = _READY.get(model["key"])
    if fn is None:
        fn = _READY[model["key"]] = _load_and_init(model)
    return fn


def _load_and_init(model):
    from pyspark import SparkFiles

    # Attachments and FILE assets are here: on a cluster it is already the working directory,
    # in local mode it is the driver's directory of shipped files.
    os.chdir(SparkFiles.getRootDirectory())
    if model.get("mlflow"):
        return MlflowScorer(model["mlflow"])
    name = "sparkrunner_model_" + model["key"][:16]
    module = types.ModuleType(name)
    module.__file__ = os.path.abspath(model["filename"])
    sys.modules[name] = module
    exec(compile(model["source"], model["filename"], "exec"), module.__dict__)
    if model["init"]:
        getattr(module, model["init"])()
    return getattr(module, model["function"])


class MlflowScorer:
    """An MLflow model as a DataFrame score function: its signature's columns in, in the dtypes
    it names; ``predict``'s answer (a DataFrame, Series, array or dict) out as a DataFrame with the
    input's index. Built once per Python worker: ``mlflow.pyfunc.load_model`` runs here once."""

    def __init__(self, plan_model):
        try:
            import mlflow.pyfunc
        except ImportError as exc:
            raise ScoringError("MLflow is not installed where the model is scored: "
                               "pip install 'sparkrunner[mlflow]'") from exc
        self.model = mlflow.pyfunc.load_model(os.path.abspath(plan_model["dirname"]))
        self.input_types = [tuple(pair) for pair in plan_model["input_types"]]
        self.output_names = plan_model.get("output_names") or []

    def __call__(self, frame):
        if not len(frame):
            return pd.DataFrame(index=frame.index)
        return self.as_frame(self.model.predict(self.model_input(frame)), frame.index)

    def model_input(self, frame):
        """The signature's columns of ``frame`` (all of them without one), in its dtypes."""
        if not self.input_types:
            return frame
        columns = {}
        for name, mlflow_type in self.input_types:
            if name not in frame.columns:
                continue  # an optional column the records lack
            column = frame[name]
            dtype = MLFLOW_DTYPES.get(mlflow_type)
            if dtype and not column.isna().any():
                column = column.astype(dtype, copy=False)  # conform made most of them so already
            elif mlflow_type == "string":
                column = column.astype(object)
            columns[name] = column
        return pd.DataFrame(columns, index=frame.index)

    def as_frame(self, out, index):
        names = self.output_names
        if isinstance(out, pd.DataFrame):
            out = out.copy()
        elif isinstance(out, pd.Series):
            name = out.name if isinstance(out.name, str) else (names[0] if len(names) == 1 else PREDICTION)
            out = out.to_frame(name)
        elif isinstance(out, dict):
            out = pd.DataFrame(out)
        else:
            values = np.asarray(out)
            if values.ndim == 1:
                out = pd.DataFrame({names[0] if len(names) == 1 else PREDICTION: values})
            elif values.ndim == 2:
                columns = names if len(names) == values.shape[1] else [
                    "%s_%d" % (PREDICTION, i) for i in range(values.shape[1])]
                out = pd.DataFrame(values, columns=columns)
            else:
                raise ScoringError("the MLflow model returned an array of %d dimensions; sparkrunner "
                                   "writes one or two" % values.ndim)
        if len(out) != len(index):
            raise ScoringError("the MLflow model returned %d rows for %d records" % (len(out), len(index)))
        out.index = index
        return out


def score_batches(job, columns, batches):
    """mapInPandas function: the scores of each batch (and its rejected records, when ``columns``
    has room for them), as ``columns``, then a tally row saying how many records the batch read,
    handed to the model and rejected."""
    fn = model_function(job["model"])
    with_rejects = REASON in columns
    for batch in batches:
        scored = score_batch(fn, batch, job["plan"])
        rows = scored.outputs
        if with_rejects and len(scored.rejected):
            rows = pd.concat([rows, scored.rejected])
        if len(rows):
            yield _in_columns(rows, columns)
        yield _tally_row(columns, len(batch), scored.scored, len(scored.rejected))


def input_reject_batches(plan, columns, batches):
    """mapInPandas function: the records of each batch that the input schema rejects, as
    ``columns`` (those of the scores with their rejects), without calling the model."""
    for batch in batches:
        _, rejected = checked_input(batch, plan)
        if len(rejected):
            yield _in_columns(rejected, columns)


def _in_columns(rows, columns):
    """``rows`` with exactly ``columns``: those the schema lacks dropped, missing ones null.

    Missing ones are None (object), not reindex's NaN: an all-NaN float column does not convert
    to a string column (pyarrow gives a ChunkedArray, which Spark cannot take), as a batch with
    no rejected record would have in its reason column."""
    return pd.DataFrame({name: rows[name] if name in rows.columns else _nulls(rows.index) for name in columns},
                        index=rows.index, columns=columns)


def _nulls(index):
    """A column of None for ``index`` (filled by numpy: a list of None is several times slower)."""
    return pd.Series(np.full(len(index), None, dtype=object), index=index)


def _tally_row(columns, read, scored, rejected):
    # None, not NaN, in the other columns: NaN would not convert to a string column.
    row = pd.DataFrame({name: pd.Series([None], dtype=object) for name in columns})
    row[READ], row[SCORED], row[REJECTED] = read, scored, rejected
    return row


def sample_scores(job, batches):
    """mapInPandas function: the outputs of a sample, pickled, for inferring the output schema."""
    fn = model_function(job["model"])
    for batch in batches:
        yield pd.DataFrame({"frame": [pickle.dumps(score_batch(fn, batch, job["plan"]).outputs)]})


class BatchScores:
    """What one batch gave: the output rows, the rejected rows, and how many records were scored."""

    def __init__(self, outputs, rejected, scored):
        self.outputs = outputs
        self.rejected = rejected
        self.scored = scored


def score_batch(fn, batch, plan):
    """Checks ``batch`` against the input schema, scores what passes, checks the outputs."""
    id_field = plan["id_field"]
    conformed, input_rejected = checked_input(batch, plan)
    rejected = [input_rejected] if len(input_rejected) else []
    outputs = apply_model(fn, conformed, plan["form"], id_field)
    if plan["check_output"] and len(outputs):
        outputs, out_reasons = conform(outputs, plan["output_fields"])
        bad = out_reasons.notna()
        if bad.any():
            rejected.append(rejected_rows(outputs[bad], outputs[bad], "output: " + out_reasons[bad], id_field))
            outputs = outputs[~bad]
    return BatchScores(outputs, pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame(),
                       len(conformed))


def checked_input(batch, plan):
    """(``batch`` conformed to the input schema, less the records it rejects when input checking
    is on; the rejected-records rows of those)."""
    conformed, reasons = conform(batch, plan["input_fields"])
    if plan["check_input"] and reasons.notna().any():
        bad = reasons.notna()
        return conformed[~bad], rejected_rows(conformed[bad], batch[bad], "input: " + reasons[bad],
                                              plan["id_field"])
    return conformed, pd.DataFrame()


def rejected_rows(conformed, original, reasons, id_field):
    """Rows for the rejected-records output: the id, the record as JSON text, the reason."""
    frame = pd.DataFrame({REASON: reasons.to_numpy(),
                          REJECTED_RECORD: [json.dumps(r, default=str) for r in to_records(original)]})
    if id_field:
        frame.insert(0, id_field, conformed[id_field].to_numpy() if id_field in conformed else None)
    return frame


# ----- applying the model


def apply_model(fn, frame, form, id_field):
    """The model's outputs for the records of ``frame``, each carrying its record's id."""
    if form in (DATAFRAME, MLFLOW):
        return _apply_to_frame(fn, frame, id_field)
    return _apply_to_records(fn, frame, id_field)


def _apply_to_frame(fn, frame, id_field):
    out = fn(frame)
    if not isinstance(out, pd.DataFrame):
        raise ScoringError("the score function returned a %s; a function taking a pandas DataFrame "
                           "must return one" % type(out).__name__)
    if id_field and id_field not in out.columns and id_field in frame.columns:
        if not out.index.isin(frame.index).all():
            raise ScoringError(
                "the score function returned rows whose index is not its input's, so their %r "
                "cannot be found: keep the input's index, or return the %r column" % (id_field, id_field))
        out = out.copy()
        out.insert(0, id_field, frame[id_field].reindex(out.index).to_numpy())
    return out


def _apply_to_records(fn, frame, id_field):
    outputs = []
    for record in to_records(frame):
        record_id = record.get(id_field) if id_field else None
        for out in _outputs_of(fn(record)):
            if id_field and id_field not in out:
                out[id_field] = record_id
            outputs.append(out)
    return _frame_of(outputs) if outputs else pd.DataFrame()


def _outputs_of(result):
    """A record function's outputs as a list of dicts: it may return one, a list, or yield them."""
    if isinstance(result, dict):
        return (result,)
    if result is None:
        return ()
    if isinstance(result, (list, tuple)) or hasattr(result, "__next__"):
        outputs = list(result)
        for out in outputs:
            if not isinstance(out, dict):
                raise ScoringError("the score function gave a %s among its outputs; a record "
                                   "function returns or yields dicts" % type(out).__name__)
        return outputs
    raise ScoringError("the score function returned a %s; a record function returns a dict, a list "
                       "of dicts, or yields dicts" % type(result).__name__)


def to_records(frame):
    """The rows of ``frame`` as dicts of plain Python values, missing values as None."""
    # Column by column: several times faster than DataFrame.to_dict("records").
    names = list(frame.columns)
    columns = [_plain_values(frame[name]) for name in names]
    return [dict(zip(names, row)) for row in zip(*columns)]


def _plain_values(column):
    values = column.tolist()
    missing = column.isna()
    if missing.any():
        return [None if gone else value for value, gone in zip(values, missing.tolist())]
    return values


def _frame_of(outputs):
    """A DataFrame of output dicts, columns in the order their keys first appear."""
    keys = dict.fromkeys(key for out in outputs for key in out)
    return pd.DataFrame({key: [out.get(key) for out in outputs] for key in keys})


# ----- schema checking


def conform(frame, rules):
    """(frame with each field converted to its schema type, reasons a row does not conform or None).

    CSV carries no types, so a value conforms when it converts: '3.5' is a number, '?' is not.
    A value that does not convert becomes null, whether or not the job checks schemas.
    """
    reasons = _nulls(frame.index)
    if not rules:
        return frame, reasons
    frame = frame.copy()
    for rule in rules:
        name = rule["name"]
        if name not in frame.columns:
            if rule["optional"]:
                continue  # e.g. a label: records without it reach the model without it
            frame[name] = None
        values, problems = _convert(frame[name], rule)
        frame[name] = values
        for mask, text in problems:
            _add_reasons(reasons, mask, frame.index, text)
    return frame, reasons


def _add_reasons(reasons, mask, index, text):
    for label in index[mask]:
        message = text(label)
        reasons[label] = message if reasons[label] is None else reasons[label] + "; " + message


def _convert(column, rule):
    """(converted column, [(mask, label -> message)]) for one field of a schema."""
    name, kind = rule["name"], rule["type"]
    present = column.notna()
    problems = []
    values = column
    if kind == "number" and column.dtype.kind in "iuf":
        # Numbers already (Parquet, typed CSV): each converts, none is bad. The usual case, made quick.
        values = column.astype("float64")
    elif kind in ("number", "integer"):
        values = pd.to_numeric(column, errors="coerce").astype("float64")
        bad = present & values.isna()
        if kind == "integer":
            fractional = values.notna() & (values % 1 != 0)
            bad |= fractional
        problems.append((bad, lambda i: "%s: %s is not %s" % (name, _shown(column[i]), _a(kind))))
        values = values.where(~bad)
        if kind == "integer":
            values = values.astype("Int64")
    elif kind == "boolean":
        values = column.map(_to_bool, na_action="ignore")
        bad = present & values.isna()
        problems.append((bad, lambda i: "%s: %s is not a boolean" % (name, _shown(column[i]))))
    elif kind == "string":
        values = column.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore")
    if not rule["nullable"]:
        problems.append((~present, lambda i: "%s: missing" % name))
    if rule["enum"] is not None:
        problems.append((values.notna() & ~values.isin(rule["enum"]),
                         lambda i: "%s: %s is not one of %s" % (name, _shown(values[i]), rule["enum"])))
    for bound, outside, word in (("minimum", lambda v, b: v < b, "below"),
                                 ("maximum", lambda v, b: v > b, "above")):
        if rule[bound] is not None:
            limit = rule[bound]
            numeric = pd.to_numeric(values, errors="coerce")
            problems.append((numeric.notna() & outside(numeric, limit).fillna(False).astype(bool),
                             lambda i, limit=limit, word=word: "%s: %s is %s the %s %r"
                             % (name, _shown(values[i]), word, "minimum" if word == "below" else "maximum", limit)))
    return values, [(mask.fillna(False).astype(bool).to_numpy(), text) for mask, text in problems]


def _shown(value):
    """``value`` as a reason shows it: numpy scalars as plain Python values."""
    return repr(value.item() if hasattr(value, "item") else value)


def _a(kind):
    return "an integer" if kind == "integer" else "a number"


_BOOLEANS = {"true": True, "false": False}


def _to_bool(value):
    if isinstance(value, bool):
        return value
    return _BOOLEANS.get(str(value).strip().lower())
