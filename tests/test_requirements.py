"""A model's own packages as admission sees them: found among its assets, read, normalized,
refused with the line that is wrong; a job bringing packages runs cold and says why."""

from __future__ import annotations

import base64

import pytest

from conftest import admitted, make_job
from sparkrunner.admission import Origin, admit
from sparkrunner.config import Settings
from sparkrunner.errors import JobInvalid
from sparkrunner.requirements import Requirements, parse

ASSET = "$.model.storedModel.modelAssets[1]"


def requirements_file(text: str, **fields) -> dict:
    """A FILE asset named requirements.txt, as ModelOp sends it (fileContent in base64)."""
    return {"assetType": "FILE", "filename": "requirements.txt",
            "fileContent": base64.b64encode(text.encode()).decode(), **fields}


def test_lines_are_normalized_sorted_and_deduplicated():
    text = ("# the model's packages\n"
            "Inflection == 0.5.1   # pinned\n"
            "\n"
            "PyJokes>=0.5,<0.9\n"
            "requests[SOCKS, security] ; python_version >= '3.8'\n"
            "inflection==0.5.1\n"
            "pyjokes<0.9,\\\n"
            "  >=0.5\n")
    lines, errors = parse(text, "$.x")
    assert errors == []
    assert lines == ("inflection==0.5.1", "pyjokes<0.9,>=0.5",
                     'requests[security,socks] ; python_version >= "3.8"')


@pytest.mark.parametrize("line, message", [
    ("-r other.txt", "is an installer option"),
    ("--index-url http://example.invalid/simple", "is an installer option"),
    ("-e .", "is an installer option"),
    ("inflection @ https://example.invalid/inflection-0.5.1-py3-none-any.whl", "names a direct URL"),
    ("inflection===", "is not a requirement"),
    ("not a package name!", "is not a requirement"),
])
def test_a_line_that_is_not_a_plain_requirement_is_refused_naming_it(line, message):
    lines, errors = parse(f"inflection==0.5.1\n{line}\n", "$.asset")
    assert [e.path for e in errors] == ["$.asset line 2"]
    assert message in errors[0].message and repr(line) in errors[0].message


def test_a_requirements_file_asset_gives_the_job_its_packages():
    job = admitted(make_job(assets=[requirements_file("inflection==0.5.1\n")]))
    assert job.requirements == Requirements(ASSET, ("inflection==0.5.1",))
    assert job.execution.mode.value == "cold"


def test_a_job_without_one_has_none_and_an_empty_file_names_none():
    assert admitted(make_job()).requirements is None
    assert admitted(make_job(assets=[requirements_file("# nothing yet\n")])).requirements is None


def test_a_local_attachment_named_requirements_txt_is_read(tmp_path):
    (tmp_path / "requirements.txt").write_text("pyjokes==0.8.3\n")
    attachment = {"assetType": "EXTERNAL_FILE", "name": "deps", "filename": "requirements.txt",
                  "fileUrl": f"file://{tmp_path / 'requirements.txt'}"}
    job = admitted(make_job(assets=[attachment]))
    assert job.requirements == Requirements(ASSET, ("pyjokes==0.8.3",))


def test_an_attachment_the_service_may_not_read_is_never_read(tmp_path):
    secret = tmp_path / "requirements.txt"
    secret.write_text("the-secret-content is here\n")
    attachment = {"assetType": "EXTERNAL_FILE", "filename": "requirements.txt", "fileUrl": str(secret)}
    with pytest.raises(JobInvalid) as caught:
        admit(make_job(assets=[attachment]), Settings(), Origin.SERVICE, tmp_path / "data")
    text = str(caught.value)
    assert f"{ASSET}.fileUrl" in text and "local_roots" in text
    assert "the-secret-content" not in text  # the location is refused; the file is not read


def test_a_bad_line_refuses_the_job_with_its_asset_and_line():
    with pytest.raises(JobInvalid) as caught:
        admitted(make_job(assets=[requirements_file("inflection==0.5.1\ninflection>=>1\n")]))
    [error] = caught.value.errors
    assert error.path == f"{ASSET} line 2" and "'inflection>=>1' is not a requirement" in error.message


def test_naming_packages_twice_is_refused():
    with pytest.raises(JobInvalid, match="names its packages twice"):
        admitted(make_job(assets=[requirements_file("a\n"),
                                  requirements_file("b\n", filename="requirements.txt", name="x")]))


def test_a_warm_eligible_job_with_packages_runs_cold_and_says_why():
    doc = make_job(assets=[requirements_file("inflection==0.5.1\n")])
    job = admit(doc, Settings(), Origin.LOCAL, warm_unavailable=None)
    assert job.execution.mode.value == "cold"
    assert "brings its own packages" in job.execution.reason and ASSET in job.execution.reason
    assert admit(make_job(), Settings(), Origin.LOCAL, warm_unavailable=None).execution.warm
    with pytest.raises(JobInvalid, match="brings its own packages"):
        admit({**doc, "executionMode": "warm"}, Settings(), Origin.LOCAL, warm_unavailable=None)
