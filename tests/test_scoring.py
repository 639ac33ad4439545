"""The distributed scoring path (sparkrunner/inside/scoring.py) in the session's one local[2] SparkSession
(conftest's ``spark``: small Arrow batches, so that "init once" means something).

Jobs are validated as documents (so the plan is the one a real job gets) and scored in process;
tests/test_examples.py runs the scikit-learn example's scoring jobs through spark-submit.
"""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_job
from sparkrunner import jobspec
from sparkrunner.inside import scoring

pytestmark = pytest.mark.e2e  # a real JVM, started once for the session


def data_asset(name: str, path: Path, file_format: str, **fields) -> dict:
    return {"assetType": "EXTERNAL_FILE", "name": name, "fileUrl": path.as_uri(), "fileFormat": file_format,
            **fields}


def score(spark, source: str, inputs: list[dict], outputs: list[dict], meta: dict | None = None,
          **fields) -> dict:
    """Validates a job around ``source`` and scores it; returns the counts."""
    doc = make_job(source, inputData=inputs, outputData=outputs, **fields)
    doc["model"]["storedModel"]["modelMetaData"].update(meta or {})
    spec = jobspec.validate(doc)
    assert spec.scoring is not None
    model = {"source": spec.primary.text, "filename": spec.primary.filename, "key": uuid.uuid4().hex,
             "function": spec.function, "init": spec.init_function}
    return scoring.run(spark, spec.scoring.as_metadata(), model)


def read_output(directory: Path, file_format: str) -> pd.DataFrame:
    if file_format == "PARQUET":
        return pd.read_parquet(directory)
    parts = sorted(directory.glob("part-*"))
    if file_format == "CSV":
        frames = [pd.read_csv(p) for p in parts if p.stat().st_size]
    else:
        frames = [pd.read_json(p, lines=True) for p in parts if p.stat().st_size]
    return pd.concat(frames, ignore_index=True)


def write_input(path: Path, frame: pd.DataFrame, file_format: str) -> Path:
    if file_format == "CSV":
        frame.to_csv(path, index=False)
    elif file_format == "JSON":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


NUMBERS = pd.DataFrame({"id": range(1, 1001), "x": [float(i) / 10 for i in range(1, 1001)]})

COUNTING_MODEL = '''\
import os
import pandas as pd

# modelop.init
def begin():
    with open({log!r}, "a") as f:
        f.write("init %d\\n" % os.getpid())

# modelop.score
def action(batch: pd.DataFrame) -> pd.DataFrame:
    with open({log!r}, "a") as f:
        f.write("batch %d\\n" % os.getpid())
    return pd.DataFrame({{"double": batch["x"] * 2}}, index=batch.index)
'''


def test_init_runs_once_per_python_worker_not_per_batch(spark, tmp_path):
    data = write_input(tmp_path / "numbers.parquet", NUMBERS, "PARQUET")
    spark.read.parquet(str(data)).repartition(4).write.parquet(str(tmp_path / "in"))
    log = tmp_path / "calls.log"
    counts = score(spark, COUNTING_MODEL.format(log=str(log)), [data_asset("in", tmp_path / "in", "PARQUET")],
                   [data_asset("out", tmp_path / "out", "PARQUET")], idField="id")
    assert counts == {"recordsRead": 1000, "recordsScored": 1000, "recordsRejected": 0, "rowsWritten": 1000}
    out = read_output(tmp_path / "out", "PARQUET").sort_values("id")
    assert list(out.columns) == ["id", "double"]  # inferred from a sample; the id carried
    assert out["double"].tolist() == [2 * x for x in NUMBERS["x"]]
    calls = [line.split() for line in log.read_text().splitlines()]
    inits = [pid for kind, pid in calls if kind == "init"]
    batches = [pid for kind, pid in calls if kind == "batch"]
    assert len(inits) == len(set(inits)) <= 2  # once per worker process; local[2] runs at most two
    assert set(batches) <= set(inits)  # every batch ran in a process that had run init
    assert len(batches) >= 20 > len(inits)  # 1000 rows in batches of 50, plus the sample


ATTACHMENT_MODEL = '''\
import pickle

WEIGHTS = None

# modelop.init
def begin():
    global WEIGHTS
    WEIGHTS = pickle.load(open({name!r}, "rb"))
    assert open("scale.txt").read() == "10"  # a FILE asset, present too

# modelop.score
def action(record):
    yield {{"y": record["x"] * WEIGHTS["slope"] + WEIGHTS["intercept"]}}
'''


def test_model_attachments_are_in_the_working_directory_of_init(spark, tmp_path):
    name = f"weights-{uuid.uuid4().hex[:8]}.pkl"  # one shared session: every shipped file is new
    (tmp_path / name).write_bytes(pickle.dumps({"slope": 3.0, "intercept": 1.0}))
    scale = tmp_path / "scale.txt"
    scale.write_text("10")
    spark.sparkContext.addFile(str(scale))  # what spark-submit --files does for FILE assets
    data = write_input(tmp_path / "in.csv", NUMBERS.head(10), "CSV")
    counts = score(spark, ATTACHMENT_MODEL.format(name=name), [data_asset("in", data, "CSV")],
                   [data_asset("out", tmp_path / "out", "JSON")], idField="id",
                   assets=[{"assetType": "EXTERNAL_FILE", "name": "weights", "fileUrl": (tmp_path / name).as_uri(),
                            "assetRole": "MODEL_ATTACHMENT"}])
    assert counts["rowsWritten"] == 10
    out = read_output(tmp_path / "out", "JSON").sort_values("id")
    assert out["y"].tolist() == pytest.approx([3.0 * x + 1.0 for x in NUMBERS["x"].head(10)])


CHECKED_MODEL = '''\
# modelop.score
def action(passenger):
    p = passenger["age"] / 100
    return {"probability": p, "label": "ancient" if p > 1 else "old" if p > 0.5 else "young"}
'''
INPUT_SCHEMA = {"type": "object", "required": ["id", "age", "sex"],
                "properties": {"id": {"type": "integer"}, "age": {"type": "number", "minimum": 0},
                               "sex": {"enum": ["male", "female"]}, "note": {"type": ["string", "null"]}}}
# ModelOp's Avro-style record schema for the outputs.
OUTPUT_SCHEMA = {"type": "record", "name": "scores", "fields": [
    {"name": "probability", "type": "double"},
    {"name": "label", "type": {"type": "enum", "name": "labels", "symbols": ["old", "young"]}}]}


def test_rejected_records_land_in_the_rejected_output_with_reasons(spark, tmp_path):
    data = tmp_path / "people.csv"
    data.write_text("id,age,sex,note\n1,30,male,\n2,?,female,x\n3,70,female,\n4,-5,male,\n"
                    "5,150,male,\n6,40,other,\nseven,20,male,\n8,,female,\n")
    meta = {"type": "PYTHON", "inputSchema": INPUT_SCHEMA, "outputSchema": json.dumps(OUTPUT_SCHEMA),
            "enableInputSchemaChecking": True, "enableOutputSchemaChecking": True}
    counts = score(spark, CHECKED_MODEL, [data_asset("in", data, "CSV")],
                   [data_asset("scores", tmp_path / "scores", "CSV")], meta=meta, idField="id")
    assert counts == {"recordsRead": 8, "recordsScored": 3, "recordsRejected": 6, "rowsWritten": 2}
    scores = read_output(tmp_path / "scores", "CSV").sort_values("id")
    assert scores.to_dict("records") == [{"id": 1, "probability": 0.3, "label": "young"},
                                         {"id": 3, "probability": 0.7, "label": "old"}]
    rejected = read_output(tmp_path / "scores_rejected", "CSV")  # <output>_rejected, in its format
    assert list(rejected.columns) == ["id", "record", "reason"]
    reasons = {str(json.loads(record)["id"]): reason for record, reason in zip(rejected["record"], rejected["reason"])}
    assert reasons == {
        "2": "input: age: '?' is not a number",
        "4": "input: age: -5.0 is below the minimum 0",
        "5": "output: label: 'ancient' is not one of ['old', 'young']",
        "6": "input: sex: 'other' is not one of ['male', 'female']",
        "seven": "input: id: 'seven' is not an integer",
        "8": "input: age: missing",
    }
    assert json.loads(rejected.loc[rejected["reason"].str.contains("ancient"), "record"].item()) == {
        "probability": 1.5, "label": "ancient", "id": 5}


def modelop_field(name: str, type_, role: str = "predictor", optional: bool = False) -> dict:
    """A field of ModelOp's extended schema, as ModelOp Center writes it."""
    return {"name": name, "type": type_, "dataClass": "categorical" if type_ in ("string", "boolean") else "numerical",
            "role": role, "protectedClass": name == "age_years", "driftCandidate": role == "predictor",
            "specialValues": [], "scoringOptional": optional}


CREDIT_MODEL = '''\
# modelop.score
def action(applicant):
    p = applicant["age_years"] / 100 + (0.25 if applicant["smoker"] else 0.0)
    yield {"id": applicant["id"], "probability": p, "seen": ",".join(sorted(applicant))}
'''
# modelMetaData as ModelOp Center sends it: schemas are arrays of {schemaId, name, schemaDefinition}.
CREDIT_META = {
    "type": "PYTHON", "description": "credit risk", "custom": {}, "tags": ["credit"], "classicModel": False,
    "attachments": [], "repositoryInfo": {"repositoryType": "GIT_REPO", "repositoryUrl": "", "branch": "main"},
    "inputSchema": [{"schemaId": "8c7e6f1a-1b2c-4d3e-9f00-000000000001", "name": "df_sample_scored_input_schema.avsc",
                     "schemaDefinition": [  # ModelOp's extended schema
                         modelop_field("id", "int", role="non-predictor"), modelop_field("age_years", "int"),
                         modelop_field("income", "double"), modelop_field("smoker", "boolean"),
                         modelop_field("defaulted", "int", role="label", optional=True)]}],
    "outputSchema": [{"schemaId": "8c7e6f1a-1b2c-4d3e-9f00-000000000002", "name": "df_sample_scored_output_schema.avsc",
                      "schemaDefinition": {"type": "record", "name": "credit_scores", "fields": [
                          modelop_field("id", "int", role="non-predictor"),
                          modelop_field("probability", "double", role="score", optional=True),
                          {"name": "seen", "type": "string"},
                          modelop_field("defaulted", ["null", "int"], role="label", optional=True)]}}],
    "enableInputSchemaChecking": True, "enableOutputSchemaChecking": False,
}


def test_modelop_schema_arrays_check_inputs_and_type_outputs(spark, tmp_path):
    # The label is scoringOptional and absent from the data: records without it are scored, and
    # the model does not see it; the row whose age is not an int is rejected.
    data = tmp_path / "applicants.csv"
    data.write_text("id,age_years,income,smoker\n1,30,52000.5,false\n2,forty,61000,true\n3,60,48000,TRUE\n"
                    "4,45,39000,false\n")
    counts = score(spark, CREDIT_MODEL, [data_asset("in", data, "CSV")],
                   [data_asset("scores", tmp_path / "scores", "PARQUET")], meta=CREDIT_META)
    assert counts == {"recordsRead": 4, "recordsScored": 3, "recordsRejected": 1, "rowsWritten": 3}
    scores = read_output(tmp_path / "scores", "PARQUET").sort_values("id", ignore_index=True)
    assert list(scores.columns) == ["id", "probability", "seen", "defaulted"]  # the output schema's fields, in order
    assert [str(t) for t in scores.dtypes] == ["int64", "float64", "object", "float64"]  # defaulted: all null
    seen = "age_years,id,income,smoker"
    assert scores[["id", "probability", "seen"]].to_dict("records") == [
        {"id": 1, "probability": pytest.approx(0.3), "seen": seen},
        {"id": 3, "probability": pytest.approx(0.85), "seen": seen},
        {"id": 4, "probability": pytest.approx(0.45), "seen": seen}]
    assert scores["defaulted"].isna().all()
    rejected = read_output(tmp_path / "scores_rejected", "PARQUET")
    assert rejected.to_dict("records") == [{
        "record": json.dumps({"id": "2", "age_years": "forty", "income": "61000", "smoker": "true"}),
        "reason": "input: age_years: 'forty' is not an integer"}]


REORDERING_MODEL = '''\
import pandas

# modelop.score
def predict(batch: pandas.DataFrame) -> pandas.DataFrame:
    out = pandas.DataFrame({"square": batch["x"] ** 2}, index=batch.index)
    return out.iloc[::-1]  # another order, the input's index kept
'''
SPLITTING_MODEL = '''\
# modelop.score
def action(record):
    return [{"part": "low", "value": record["x"] // 1}, {"part": "high", "value": record["x"] % 1}]
'''


def test_the_id_field_is_carried_to_every_output(spark, tmp_path):
    # The DataFrame model returns its rows in another order; the record model (in the next test)
    # gives two outputs per record: both keep their record's id.
    data = write_input(tmp_path / "in.json", NUMBERS.sample(frac=1, random_state=7).head(300), "JSON")
    score(spark, REORDERING_MODEL, [data_asset("in", data, "JSON")], [data_asset("out", tmp_path / "out", "PARQUET")],
          idField="id")
    out = read_output(tmp_path / "out", "PARQUET")
    x = dict(zip(NUMBERS["id"], NUMBERS["x"]))
    assert len(out) == 300 and all(row.square == pytest.approx(x[row.id] ** 2) for row in out.itertuples())


@pytest.mark.parametrize("source_format,output_format", [("CSV", "JSON"), ("JSON", "PARQUET"), ("PARQUET", "CSV")])
def test_each_file_format_in_and_out(spark, tmp_path, source_format, output_format):
    data = write_input(tmp_path / f"in.{source_format.lower()}", NUMBERS.head(120), source_format)
    counts = score(spark, SPLITTING_MODEL, [data_asset("in", data, source_format)],
                   [data_asset("out", tmp_path / "out", output_format)], idField="id")
    assert counts["rowsWritten"] == 240
    out = read_output(tmp_path / "out", output_format).sort_values(["id", "part"])
    assert list(out.columns) == ["id", "part", "value"]
    x = dict(zip(NUMBERS["id"], NUMBERS["x"]))
    for key, rows in out.groupby("id"):
        assert rows.set_index("part")["value"].sum() == pytest.approx(x[key])
    assert out.head(2).to_dict("records") == [{"id": 1, "part": "high", "value": pytest.approx(0.1)},
                                              {"id": 1, "part": "low", "value": 0.0}]


def test_several_inputs_are_scored_together(spark, tmp_path):
    first = write_input(tmp_path / "a.csv", NUMBERS.head(5), "CSV")
    second = write_input(tmp_path / "b.parquet", NUMBERS.iloc[5:8], "PARQUET")
    counts = score(spark, REORDERING_MODEL, [data_asset("a", first, "CSV"), data_asset("b", second, "PARQUET")],
                   [data_asset("out", tmp_path / "out", "CSV")], idField="id")
    assert counts["recordsRead"] == 8
    assert sorted(read_output(tmp_path / "out", "CSV")["id"]) == list(range(1, 9))


def test_a_model_raising_on_a_worker_is_reported_by_its_own_error_line(spark, tmp_path, capsys):
    from sparkrunner.inside import driver

    data = write_input(tmp_path / "in.csv", NUMBERS.head(3), "CSV")
    source = "# modelop.score\ndef action(record):\n    return {'y': record['nope']}\n"
    with pytest.raises(Exception) as caught:
        score(spark, source, [data_asset("in", data, "CSV")], [data_asset("out", tmp_path / "out", "CSV")])
    assert driver.fail("score function 'action'", caught.value) == 1
    assert capsys.readouterr().err.endswith(
        "sparkrunner: error: score function 'action' raised PythonException: KeyError: 'nope'\n")
    assert not (tmp_path / "out" / "_SUCCESS").exists()
