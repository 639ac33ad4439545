"""Validation of job documents and function resolution (pure: no JVM, no user code run)."""

import base64
import json

import pytest

from conftest import make_job
from sparkrunner.errors import JobInvalid
from sparkrunner.jobspec import JobRole, find_functions, parse_document, validate
from sparkrunner.workdir import filename_problem


def errors_of(doc) -> dict[str, str]:
    with pytest.raises(JobInvalid) as info:
        validate(doc)
    return {e.path: e.message for e in info.value.errors}


def test_minimal_job_defaults_to_score_and_finds_smart_tags():
    spec = validate(make_job())
    assert spec.job_type == "MODEL_BATCH_JOB"
    assert spec.role is JobRole.SCORE
    assert (spec.function, spec.init_function) == ("score", "begin")
    assert spec.primary.filename == "model.py"


def test_unknown_modelop_fields_are_kept_with_the_job():
    doc = make_job(id="5f1e", createdBy="alice", _links={"self": {"href": "/x"}},
                   group="ds", repositoryInfo={"repositoryRemote": "git@x"})
    doc["model"]["storedModel"]["modelAssets"][0]["id"] = "asset-1"
    spec = validate(doc)
    assert spec.document["createdBy"] == "alice"
    assert spec.document["_links"] == {"self": {"href": "/x"}}
    assert spec.document["model"]["storedModel"]["modelAssets"][0]["id"] == "asset-1"


def test_every_schema_error_is_reported_at_once_with_its_path():
    doc = make_job(jobType="SCORE", inputData=[{"assetType": "EXTERNAL_FILE"}],
                   jobParameters={"--executor-memory": ["1g"]}, timeoutSeconds=0)
    errors = errors_of(doc)
    assert "MODEL_BATCH_JOB" in errors["$.jobType"]  # says what would be accepted
    assert "'fileUrl' is a required property" in errors["$.inputData[0]"]
    assert "$.jobParameters.--executor-memory" in errors
    assert "minimum" in errors["$.timeoutSeconds"] or "1" in errors["$.timeoutSeconds"]
    assert len(errors) == 4


def test_a_document_that_is_not_json_or_not_an_object_is_refused():
    with pytest.raises(JobInvalid, match="not valid JSON"):
        parse_document(b"{nope")
    with pytest.raises(JobInvalid, match="must be a JSON object"):
        parse_document(b"[1, 2]")


@pytest.mark.parametrize("primaries", [0, 2])
def test_exactly_one_primary_source_is_required(primaries):
    doc = make_job()
    assets = doc["model"]["storedModel"]["modelAssets"]
    assets[0]["primaryModelSource"] = primaries > 0
    if primaries == 2:
        assets.append(dict(assets[0], name="other.py"))
    errors = errors_of(doc)
    assert f"exactly one SOURCE_CODE asset with primaryModelSource: true (found {primaries}" in \
        errors["$.model.storedModel.modelAssets"]


@pytest.mark.parametrize("job_type,role,function", [
    ("MODEL_BATCH_JOB", JobRole.SCORE, "s"),
    ("MODEL_BATCH_TEST_JOB", JobRole.METRICS, "m"),
    ("MODEL_BATCH_TRAINING_JOB", JobRole.TRAIN, "t"),
])
def test_job_type_picks_the_role_and_its_smart_tag(job_type, role, function):
    source = ("#modelop.score\ndef s(a, b, c): pass\n\n"
              "# modelop.metrics\n# computes metrics\ndef m(a, b, c): pass\n\n"
              "# modelop.train\n@staticmethod\ndef t(*lists): pass\n")
    spec = validate(make_job(source, job_type=job_type))
    assert (spec.role, spec.function, spec.init_function) == (role, function, None)


def test_function_named_by_the_asset_wins_over_the_smart_tag():
    source = "# modelop.score\ndef tagged(a, b, c): pass\n\ndef named(a, b, c): pass\n"
    doc = make_job(source)
    doc["model"]["storedModel"]["modelAssets"][0].update(scoreFunction="named", initFunction="named0")
    errors = errors_of(doc)
    assert errors == {"$.model.storedModel.modelAssets[0].initFunction":
                      "names 'named0', which model.py does not define at top level "
                      "(functions defined: named, tagged)"}
    del doc["model"]["storedModel"]["modelAssets"][0]["initFunction"]
    assert validate(doc).function == "named"


def test_a_missing_function_names_what_was_looked_for():
    errors = errors_of(make_job("def helper(): pass\n", job_type="MODEL_BATCH_TEST_JOB"))
    message = errors["$.model.storedModel.modelAssets[0]"]
    assert "metricsFunction" in message and "'# modelop.metrics'" in message
    assert "functions defined: helper" in message


def test_a_tag_separated_by_a_blank_line_or_in_a_string_does_not_count():
    source = ('# modelop.score\n\ndef a(x, y, z): pass\n'
              'TEXT = """\n# modelop.score\n"""\ndef b(x, y, z): pass\n')
    functions, tagged = find_functions(source)
    assert set(functions) == {"a", "b"}
    assert tagged == {}


def test_ambiguous_tags_and_wrong_arity_are_refused():
    source = ("# modelop.score\ndef a(x, y, z): pass\n# modelop.score\ndef b(x, y, z): pass\n")
    assert "several functions tagged '# modelop.score' (a, b)" in \
        errors_of(make_job(source))["$.model.storedModel.modelAssets[0].sourceCode"]
    source = "# modelop.init\ndef i(x): pass\n# modelop.score\ndef s(x, y): pass\n"
    with pytest.raises(JobInvalid) as info:
        validate(make_job(source))
    message = str(info.value)
    assert "score function 's' (from '# modelop.score') must accept three arguments" in message
    assert "init function 'i' (from '# modelop.init') must be callable with no arguments" in message


def test_source_that_does_not_parse_is_refused_with_its_line():
    errors = errors_of(make_job("# modelop.score\ndef s(a, b, c)\n    pass\n"))
    assert "is not valid Python" in errors["$.model.storedModel.modelAssets[0].sourceCode"]
    assert "line 2" in errors["$.model.storedModel.modelAssets[0].sourceCode"]


def test_assets_are_sorted_into_the_three_lists_and_files():
    ext = lambda name: {"assetType": "EXTERNAL_FILE", "name": name, "fileUrl": f"/data/{name}",  # noqa: E731
                        "fileFormat": "CSV"}
    doc = make_job(
        name="titanic-spark.py",
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers.py",
                 "sourceCode": "X = 1\n"},
                {"assetType": "FILE", "filename": "schema.avsc", "content": "{}"},
                {"assetType": "FILE", "name": "blob.bin", "contentEncoding": "base64",
                 "content": base64.b64encode(b"\x00\x01").decode()},
                ext("model-weights")],
        inputData=[ext("in"), {"assetType": "SQL_ASSET", "query": "select 1"}],
        outputData=[ext("out")])
    spec = validate(doc)
    assert [a["name"] for a in spec.inputs] == ["in"]
    assert [a["name"] for a in spec.outputs] == ["out"]
    assert [a["name"] for a in spec.attachments] == ["model-weights"]
    assert [(m.filename, m.text) for m in spec.modules] == [("helpers.py", "X = 1\n")]
    assert [(f.filename, f.data) for f in spec.files] == [("schema.avsc", b"{}"), ("blob.bin", b"\x00\x01")]
    inputs, _, _ = spec.asset_lists()
    inputs[0]["name"] = "changed"  # the function gets copies
    assert spec.inputs[0]["name"] == "in"


def test_bad_base64_is_refused():
    doc = make_job(assets=[{"assetType": "FILE", "filename": "x", "contentEncoding": "base64",
                            "content": "not base64!"}])
    assert "not valid base64" in errors_of(doc)["$.model.storedModel.modelAssets[1].content"]


def test_primary_name_comes_from_the_repository_path_and_gets_py():
    doc = make_job()
    asset = doc["model"]["storedModel"]["modelAssets"][0]
    del asset["name"]
    asset["sourceCodeFilePath"] = "src/models/churn"
    assert validate(doc).primary.filename == "churn.py"


@pytest.mark.parametrize("name", [
    "../evil.py", "/etc/passwd", "a/b.py", "a\\b.py", "..", ".", "nul\x00.py", "%2e%2e",
    "..%2fx", "x" * 256, "job.json", "driver.log", "result.json", "sparkrunner_driver.py",
])
def test_file_names_that_could_land_outside_or_clash_are_refused(name):
    assert filename_problem(name) is not None
    doc = make_job(assets=[{"assetType": "FILE", "filename": name, "content": "x"}])
    errors = errors_of(doc)
    assert list(errors) == ["$.model.storedModel.modelAssets[1].filename"]
    assert repr(name) in errors["$.model.storedModel.modelAssets[1].filename"]


def test_a_repository_path_climbing_out_is_refused():
    doc = make_job()
    asset = doc["model"]["storedModel"]["modelAssets"][0]
    del asset["name"]
    asset["sourceCodeFilePath"] = "../../etc/cron.d/x.py"
    assert "sourceCodeFilePath" in next(iter(errors_of(doc)))


def test_two_assets_with_one_file_name_are_refused():
    doc = make_job(assets=[{"assetType": "FILE", "filename": "model.py", "content": "x"}])
    assert "already used by $.model.storedModel.modelAssets[0].name" in \
        errors_of(doc)["$.model.storedModel.modelAssets[1].filename"]


@pytest.mark.parametrize("name", ["titanic-spark.py", "notes.txt", ".hidden", "a b.csv", "..x"])
def test_ordinary_file_names_are_accepted(name):
    assert filename_problem(name) is None


def test_a_property_name_smuggling_a_value_is_refused():
    doc = make_job(targetEngine={"sparkConf": {"spark.driver.extraJavaOptions=-javaagent:/tmp/x.jar ": ""}})
    errors = errors_of(doc)
    assert list(errors) == ["$.targetEngine.sparkConf"]
    assert "spark.driver.extraJavaOptions=-javaagent" in errors["$.targetEngine.sparkConf"]


@pytest.mark.parametrize("text", [b'{"model": NaN}', b'{"x": Infinity}'])
def test_nan_and_infinity_are_not_json(text):
    with pytest.raises(JobInvalid, match="not valid JSON"):
        parse_document(text)


def test_text_that_cannot_be_utf8_is_refused_not_a_crash():
    doc = make_job(assets=[{"assetType": "FILE", "filename": "x.txt", "content": "\ud800"}])
    assert "cannot be stored as UTF-8 JSON" in errors_of(doc)["$"]


def test_a_model_name_with_a_newline_is_refused():
    doc = make_job()
    doc["model"]["storedModel"]["modelMetaData"]["name"] = "m\nsparkrunner: error: forged"
    assert "control characters" in errors_of(doc)["$.model.storedModel.modelMetaData.name"]


@pytest.mark.parametrize("name", ["a,b.txt", "lookup.csv#renamed"])
def test_names_that_spark_submit_would_split_are_refused(name):
    assert "',' or '#'" in filename_problem(name)


def test_secondary_sources_get_the_py_suffix():
    doc = make_job(assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers",
                            "sourceCode": "X = 1\n"}])
    assert [m.filename for m in validate(doc).modules] == ["helpers.py"]


def test_the_shipped_schema_is_a_valid_json_schema_with_nothing_it_would_not_check():
    import jsonschema

    from sparkrunner.jobspec import schema

    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())  # the validator itself skips this at run time
    # No "format" anywhere: it would be ignored, since no format checker is built.
    assert '"format"' not in json.dumps(schema())
