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


def rule(name: str, type_: str, nullable: bool = False, enum=None, minimum=None, maximum=None,
         optional: bool = False) -> dict:
    return {"name": name, "type": type_, "nullable": nullable, "enum": enum, "minimum": minimum,
            "maximum": maximum, "optional": optional}


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
    assert plan.input_fields == (rule("age", "number", minimum=0), rule("note", "string", nullable=True))
    assert plan.output_fields == (rule("n", "integer", nullable=True), rule("sex", "string", enum=["f", "m"]))


def test_schema_problems_are_named():
    meta = {"inputSchema": {"type": "object", "properties": {"a": {"type": "number", "pattern": "x"},
                                                              "b": {"type": "date"}}},
            "outputSchema": "{not json", "enableInputSchemaChecking": True}
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
                              "$.model.storedModel.modelMetaData.inputSchema is missing or empty")


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


# ----- ModelOp's schema arrays: carried by every job, read by the scoring path only

META_PATH = "$.model.storedModel.modelMetaData"


def extended_field(name: str, type_, role: str = "predictor", optional: bool = False, **extra) -> dict:
    """A field of ModelOp's extended schema, with the keys ModelOp writes."""
    return {"name": name, "type": type_, "dataClass": "numerical" if type_ in ("int", "float", "double") else
            "categorical", "role": role, "protectedClass": False, "driftCandidate": role == "predictor",
            "specialValues": [], "scoringOptional": optional, **extra}


EXTENDED = [extended_field("id", "int", role="non-predictor"),
            extended_field("age_years", "int", protectedClass=True),
            extended_field("income", "double", specialValues=[{"values": [-1], "purpose": "missing"}]),
            extended_field("rate", "float"),
            extended_field("region", "string", isAmountField=False),  # keys ModelOp adds over time
            extended_field("smoker", "boolean"),
            extended_field("defaulted", "int", role="label", optional=True),
            extended_field("probability", "double", role="score", optional=True)]
EXTENDED_RULES = (rule("id", "integer"), rule("age_years", "integer"), rule("income", "number"),
                  rule("rate", "number"), rule("region", "string"), rule("smoker", "boolean"),
                  rule("defaulted", "integer", nullable=True, optional=True),
                  rule("probability", "number", nullable=True, optional=True))
AVRO = {"type": "record", "name": "output", "namespace": "com.modelop", "fields": [
    {"name": "id", "type": "int"},
    {"name": "probability", "type": ["null", "double"], "default": None},
    {"name": "scored_on", "type": {"type": "int", "logicalType": "date"}},
    {"name": "band", "type": {"type": "enum", "name": "bands", "symbols": ["low", "high"]}},
    {"name": "defaulted", "type": "int", "role": "label", "scoringOptional": True}]}
AVRO_RULES = (rule("id", "integer"), rule("probability", "number", nullable=True), rule("scored_on", "integer"),
              rule("band", "string", enum=["low", "high"]),
              rule("defaulted", "integer", nullable=True, optional=True))


def schema_array(*definitions, kind: str = "input") -> list[dict]:
    """ModelOp's inputSchema/outputSchema: a list of schema objects."""
    return [{"schemaId": f"5f1c7a2e-0d4b-4e7a-9c1e-00000000000{i}", "name": f"df_sample_scored_{kind}_schema.avsc",
             "schemaDefinition": definition} for i, definition in enumerate(definitions)]


ODD_EXTENDED = [extended_field("amount", "decimal", precision=12), extended_field("tags", {"type": "array", "items": "string"}),
                {"name": "raw", "type": "bytes", "someFutureKey": {"x": 1}}, "not even a field"]
ODD_AVRO = {"type": "record", "name": "odd", "fields": [
    {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "address", "type": {"type": "record", "name": "address", "fields": [{"name": "city", "type": "string"}]}},
    {"name": "either", "type": ["int", "string"]}]}


@pytest.mark.parametrize("input_schema,output_schema", [
    ([], []),
    (schema_array(ODD_EXTENDED), schema_array(ODD_AVRO, kind="output")),
    (schema_array(EXTENDED, ODD_AVRO, "{not json"), "[{\"schemaDefinition\": 42}]"),
    (schema_array(None), {"type": "record", "fields": "?"}),
], ids=["empty", "odd", "several", "junk"])
def test_a_spark_native_job_carries_any_real_schema_without_reading_it(input_schema, output_schema):
    doc = make_job()  # three lists: the Spark-native path never acts on the schemas
    doc["model"]["storedModel"]["modelMetaData"].update({
        "type": "PYSPARK", "inputSchema": input_schema, "outputSchema": output_schema,
        "enableInputSchemaChecking": True, "enableOutputSchemaChecking": True,
        "custom": {}, "tags": ["credit"], "description": "", "classicModel": False, "attachments": [],
        "repositoryInfo": {"repositoryType": "GIT_REPO", "repositoryUrl": "", "branch": "master"}})
    spec = jobspec.validate(doc)
    assert spec.scoring is None
    assert spec.document["model"]["storedModel"]["modelMetaData"]["inputSchema"] == input_schema


def test_an_empty_schema_array_is_no_schema():
    plan = jobspec.validate(scoring_job(meta={"type": "PYTHON", "inputSchema": [], "outputSchema": []})).scoring
    assert plan.input_fields is None and plan.output_fields is None  # CSV types and output columns inferred
    plan = jobspec.validate(scoring_job(meta={"inputSchema": schema_array(None), "outputSchema": schema_array("")}))
    assert plan.scoring.input_fields is None and plan.scoring.output_fields is None
    [message] = problems(scoring_job(meta={"inputSchema": [], "enableInputSchemaChecking": True}))
    assert message == (f"{META_PATH}.enableInputSchemaChecking: is true, but {META_PATH}.inputSchema is missing "
                       "or empty: give the schema records are checked against")


def test_an_extended_schema_becomes_rules_and_its_scoring_optional_fields_may_be_absent():
    meta = {"type": "PYTHON", "inputSchema": schema_array(EXTENDED), "enableInputSchemaChecking": True,
            "outputSchema": schema_array(AVRO, kind="output")}
    plan = jobspec.validate(scoring_job(meta=meta)).scoring
    assert plan.input_fields == EXTENDED_RULES  # role, dataClass, specialValues, … ignored
    assert plan.output_fields == AVRO_RULES  # unions with null, logical types as their base type, enums
    assert plan.as_metadata()["input_fields"][-1] == dict(EXTENDED_RULES[-1])


def test_schema_definitions_and_whole_arrays_may_be_json_text():
    import json

    for input_schema in ([{"schemaId": "a", "name": "in.avsc", "schemaDefinition": json.dumps(EXTENDED)}],
                         json.dumps(schema_array(EXTENDED)),
                         {"schemaId": "a", "name": "in.avsc", "schemaDefinition": EXTENDED}):  # one, unwrapped
        plan = jobspec.validate(scoring_job(meta={"inputSchema": input_schema, "enableInputSchemaChecking": True}))
        assert plan.scoring.input_fields == EXTENDED_RULES
    plan = jobspec.validate(scoring_job(meta={"outputSchema": schema_array(json.dumps(AVRO))}))
    assert plan.scoring.output_fields == AVRO_RULES


def test_of_several_schemas_the_first_is_used():
    meta = {"inputSchema": schema_array(EXTENDED, ODD_AVRO), "enableInputSchemaChecking": True,
            "outputSchema": schema_array(AVRO, EXTENDED, kind="output")}
    plan = jobspec.validate(scoring_job(meta=meta)).scoring
    assert (plan.input_fields, plan.output_fields) == (EXTENDED_RULES, AVRO_RULES)


def test_schema_problems_name_the_path_and_value_when_the_scoring_path_acts_on_the_schema():
    meta = {"inputSchema": schema_array(EXTENDED[:3] + ODD_EXTENDED), "enableInputSchemaChecking": True,
            "outputSchema": schema_array(ODD_AVRO, kind="output")}  # its types make the output columns
    accepted = "accepted: int, long, float, double, string, boolean (or an Avro enum), alone or in a union with \"null\""
    assert problems(scoring_job(meta=meta)) == [
        f"{META_PATH}.inputSchema[0].schemaDefinition[3].type: 'decimal' is not a type sparkrunner can check; {accepted}",
        f"{META_PATH}.inputSchema[0].schemaDefinition[4].type: {{'type': 'array', 'items': 'string'}} is not a type "
        f"sparkrunner can check; {accepted}",
        f"{META_PATH}.inputSchema[0].schemaDefinition[5].type: 'bytes' is not a type sparkrunner can check; {accepted}",
        f"{META_PATH}.inputSchema[0].schemaDefinition[6]: must be an object with \"name\" and \"type\"",
        f"{META_PATH}.outputSchema[0].schemaDefinition.fields[1].type: {{'type': 'bytes', 'logicalType': 'decimal', "
        f"'precision': 9, 'scale': 2}} is not a type sparkrunner can check; {accepted}",
        f"{META_PATH}.outputSchema[0].schemaDefinition.fields[2].type: {{'type': 'record', 'name': 'address', "
        f"'fields': [{{'name': 'city', 'type': 'stri… is not a type sparkrunner can check; {accepted}",  # shortened
        f"{META_PATH}.outputSchema[0].schemaDefinition.fields[3].type: ['int', 'string'] is not a type sparkrunner "
        f"can check; {accepted}"]
    assert problems(scoring_job(meta={"outputSchema": [{"name": "x.avsc"}]})) == [
        f"{META_PATH}.outputSchema[0]: must be a schema object such as {{\"schemaId\": …, \"name\": …, "
        "\"schemaDefinition\": …}"]
    assert problems(scoring_job(meta={"outputSchema": schema_array({"type": "enum", "symbols": ["a"]})})) == [
        f"{META_PATH}.outputSchema[0].schemaDefinition: is neither an Avro record schema (\"type\": \"record\" with "
        "\"fields\"), ModelOp's extended schema (a list of fields) nor a JSON Schema of an object (with "
        "\"properties\")"]


def test_a_schema_the_scoring_path_does_not_act_on_is_ignored():
    # Without input checking an input schema only types CSV columns: one it cannot read is dropped.
    meta = {"inputSchema": schema_array(ODD_EXTENDED), "outputSchema": schema_array(AVRO, kind="output")}
    plan = jobspec.validate(scoring_job(meta=meta)).scoring
    assert plan.input_fields is None and plan.output_fields == AVRO_RULES
    # Keywords that only constrain values matter only when the schema is checked; types always.
    json_schema = {"type": "object", "properties": {"p": {"type": "number", "exclusiveMaximum": 1}}}
    plan = jobspec.validate(scoring_job(meta={"outputSchema": schema_array(json_schema)})).scoring
    assert plan.output_fields == (rule("p", "number", nullable=True),)
    [message] = problems(scoring_job(meta={"outputSchema": schema_array(json_schema), "enableOutputSchemaChecking": True}))
    assert message.startswith(f"{META_PATH}.outputSchema[0].schemaDefinition.properties.p: uses exclusiveMaximum")
