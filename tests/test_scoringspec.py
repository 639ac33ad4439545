"""Which path a score job takes, the form its function declares, and the plan: all at validation."""

from __future__ import annotations

import pytest

from conftest import admitted, make_job
from sparkrunner import jobspec
from sparkrunner.command import build_argv
from sparkrunner.config import Settings
from sparkrunner.errors import JobInvalid
from sparkrunner.workdir import render

CSV_IN = [{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": "file:///data/in.csv", "fileFormat": "CSV"}]
PARQUET_OUT = [{"assetType": "EXTERNAL_FILE", "name": "scores", "fileUrl": "file:///data/scores/",
                "fileFormat": "parquet"}]
RECORD_MODEL = "# modelop.score\ndef action(x):\n    yield x\n"


def scoring_job(source: str = RECORD_MODEL, meta: dict | None = None, **fields) -> dict:
    fields.setdefault("inputData", CSV_IN)
    fields.setdefault("outputData", PARQUET_OUT)
    doc = make_job(source, **fields)
    doc["model"]["storedModel"]["modelMetaData"].update(meta or {})
    return doc


def problems(doc: dict) -> list[str]:
    with pytest.raises(JobInvalid) as caught:
        jobspec.validate(doc)
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize("header,form", [
    ("def action(x):", "record"),
    ("def action(record: dict) -> dict:", "record"),
    ("import pandas as pd\n# modelop.score\ndef action(df: pd.DataFrame) -> pd.DataFrame:", "dataframe"),
    ("import pandas\n# modelop.score\ndef action(df: pandas.DataFrame):", "dataframe"),
    ("from pandas import DataFrame\n# modelop.score\ndef action(df: DataFrame):", "dataframe"),
    ("# modelop.score\ndef action(df: 'pd.DataFrame'):", "dataframe"),
])
def test_a_one_parameter_score_function_declares_its_form_by_annotation(header, form):
    source = header if header.startswith(("import", "from", "#")) else "# modelop.score\n" + header
    spec = jobspec.validate(scoring_job(source + "\n    return x\n"))
    assert spec.scoring.form == form
    assert spec.scoring.output.format == "PARQUET"  # fileFormat is read case-insensitively


def test_a_three_list_function_keeps_the_spark_native_path():
    spec = jobspec.validate(scoring_job("# modelop.score\ndef s(inputs, outputs, attachments):\n    pass\n"))
    assert spec.scoring is None


def test_a_pyspark_dataframe_annotation_is_refused_with_what_would_do():
    source = "from pyspark.sql import DataFrame\n# modelop.score\ndef action(df: DataFrame):\n    return df\n"
    [message] = problems(scoring_job(source))
    assert message.startswith("$.model.storedModel.modelAssets[0].sourceCode: score function 'action' annotates "
                              "its parameter as 'DataFrame' (pyspark.sql.DataFrame)")
    assert "receives a pandas.DataFrame" in message


def test_a_python_model_must_take_one_argument():
    source = "# modelop.score\ndef s(inputs, outputs, attachments):\n    pass\n"
    [message] = problems(scoring_job(source, meta={"type": "PYTHON"}))
    assert message == ("$.model.storedModel.modelAssets[0].sourceCode: score function 's' (from '# modelop.score') "
                       "must accept one argument, a record (a dict) or a pandas DataFrame, because "
                       "$.model.storedModel.modelMetaData.type is 'PYTHON'")


def test_a_python_model_trains_and_evaluates_with_three_lists():
    source = "# modelop.train\ndef t(inputs, outputs, attachments):\n    pass\n# modelop.score\ndef s(x):\n    return x\n"
    spec = jobspec.validate(scoring_job(source, meta={"type": "PYTHON"}, jobType="MODEL_BATCH_TRAINING_JOB"))
    assert spec.function == "t" and spec.scoring is None


def test_one_parameter_without_inputs_or_outputs_is_refused():
    messages = problems(scoring_job(inputData=[], outputData=[]))
    assert messages[0].startswith("$.inputData: holds no EXTERNAL_FILE asset: a one-parameter (record or "
                                  "DataFrame) score function needs at least one input file")
    assert messages[1].startswith("$.outputData: holds no EXTERNAL_FILE asset for the scores")


def test_unknown_and_missing_file_formats_name_what_is_accepted():
    inputs = [dict(CSV_IN[0], fileFormat="XLSX"), {"assetType": "EXTERNAL_FILE", "fileUrl": "file:///b"}]
    messages = problems(scoring_job(inputData=inputs))
    assert messages == [
        "$.inputData[0].fileFormat: is 'XLSX': a one-parameter (record or DataFrame) score function reads and "
        "writes fileFormat CSV (CSV with a header line), JSON (JSON lines), PARQUET (Parquet)",
        "$.inputData[1].fileFormat: is missing: a one-parameter (record or DataFrame) score function reads and "
        "writes fileFormat CSV (CSV with a header line), JSON (JSON lines), PARQUET (Parquet)"]


def test_rejected_records_go_to_the_marked_output_or_beside_the_scores():
    spec = jobspec.validate(scoring_job())
    assert (spec.scoring.rejected.url, spec.scoring.rejected.format) == ("file:///data/scores_rejected", "PARQUET")
    marked = {"assetType": "EXTERNAL_FILE", "name": "bad", "fileUrl": "file:///data/bad.csv", "fileFormat": "CSV",
              "assetRole": "REJECTED_RECORDS"}
    spec = jobspec.validate(scoring_job(outputData=[marked, *PARQUET_OUT]))
    assert spec.scoring.output.name == "scores" and spec.scoring.rejected.url == "file:///data/bad.csv"
    [message] = problems(scoring_job(outputData=[*PARQUET_OUT, dict(PARQUET_OUT[0], name="more")]))
    assert message.startswith("$.outputData[1]: is a second output for scores")


def test_id_field_is_for_the_distributed_path_only():
    [message] = problems(make_job(idField="id"))
    assert message.startswith("$.idField: is used only by a one-parameter (record or DataFrame) score function")
    assert jobspec.validate(scoring_job(idField="id")).scoring.id_field == "id"


def test_json_schema_and_avro_schemas_become_field_rules():
    json_schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                   "required": ["age"], "properties": {"age": {"type": "number", "minimum": 0},
                                                       "note": {"type": ["string", "null"]}}}
    avro = '{"type": "record", "name": "r", "fields": [{"name": "n", "type": ["null", "long"]},' \
           '{"name": "sex", "type": {"type": "enum", "name": "s", "symbols": ["f", "m"]}}]}'
    plan = jobspec.validate(scoring_job(meta={"inputSchema": json_schema, "outputSchema": avro,
                                              "enableInputSchemaChecking": True})).scoring
    assert plan.check_input and not plan.check_output
    assert plan.input_fields == (
        {"name": "age", "type": "number", "nullable": False, "enum": None, "minimum": 0, "maximum": None},
        {"name": "note", "type": "string", "nullable": True, "enum": None, "minimum": None, "maximum": None})
    assert plan.output_fields == (
        {"name": "n", "type": "integer", "nullable": True, "enum": None, "minimum": None, "maximum": None},
        {"name": "sex", "type": "string", "nullable": False, "enum": ["f", "m"], "minimum": None, "maximum": None})


def test_schema_problems_are_named():
    meta = {"inputSchema": {"type": "object", "properties": {"a": {"type": "number", "pattern": "x"},
                                                              "b": {"type": "date"}}},
            "outputSchema": "{not json", "enableOutputSchemaChecking": True}
    messages = problems(scoring_job(meta=meta))
    assert messages == [
        "$.model.storedModel.modelMetaData.inputSchema.properties.a: uses pattern, which sparkrunner's checker "
        "does not know; it knows type, enum, minimum and maximum",
        "$.model.storedModel.modelMetaData.inputSchema.properties.b.type: is 'date': give one of string, number, "
        "integer, boolean, optionally with \"null\"",
        "$.model.storedModel.modelMetaData.outputSchema: is a string but not JSON (Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1))"]
    [message] = problems(scoring_job(meta={"enableInputSchemaChecking": True}))
    assert message.startswith("$.model.storedModel.modelMetaData.enableInputSchemaChecking: is true, but "
                              "$.model.storedModel.modelMetaData.inputSchema is missing")


def test_the_scoring_module_is_laid_out_and_shipped(tmp_path):
    spec = jobspec.validate(scoring_job(
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers.py", "sourceCode": ""}]))
    workdir = render(spec, tmp_path / "wd", "job-1")
    assert (workdir / "sparkrunner_scoring.py").read_text().startswith('"""sparkrunner\'s distributed scoring path')
    assert "scoring_plan = {'form': 'record'" in (workdir / "sparkrunner_job_metadata.py").read_text()
    argv = build_argv(Settings(), admitted(spec.document), workdir, "spark-submit")
    assert argv[argv.index("--py-files") + 1] == f"{workdir}/sparkrunner_scoring.py,{workdir}/helpers.py"
    [message] = problems(make_job(assets=[{"assetType": "FILE", "filename": "sparkrunner_scoring.py", "content": ""}]))
    assert "is reserved for sparkrunner's own files" in message
