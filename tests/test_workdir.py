"""Laying out the working directory: contents, atomicity, and names that must not escape."""

import ast
import base64
import os

import pytest

from conftest import admitted, make_job
from sparkrunner.errors import WorkdirError
from sparkrunner.jobspec import validate
from sparkrunner.policy import local_path
from sparkrunner.workdir import render, warm_session, write_file


def literals(path) -> dict:
    """The module-level assignments of a Python file, evaluated as literals."""
    tree = ast.parse(path.read_text())
    return {node.targets[0].id: ast.literal_eval(node.value)
            for node in tree.body if isinstance(node, ast.Assign)}


def full_job():
    return make_job(
        name="titanic-spark.py",
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers.py", "sourceCode": "X = 1\n"},
                {"assetType": "FILE", "filename": "notes.txt", "content": "héllo"},
                {"assetType": "FILE", "filename": "blob.bin", "contentEncoding": "base64",
                 "content": base64.b64encode(b"\x00\xff").decode()},
                {"assetType": "EXTERNAL_FILE", "name": "weights", "fileUrl": "hdfs:///m/w", "assetRole": "MODEL_ATTACHMENT"}],
        inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": "file:///d/in.csv", "fileFormat": "CSV",
                    "flag": True, "nothing": None}],
        outputData=[], createdBy="alice")


def test_the_working_directory_holds_everything_the_driver_needs(tmp_path):
    spec = validate(full_job())
    workdir = render(spec, tmp_path / "run", "job-1")
    assert sorted(os.listdir(workdir)) == sorted([
        "titanic-spark.py", "helpers.py", "notes.txt", "blob.bin", "job.json",
        "sparkrunner_driver.py", "sparkrunner_job_metadata.py"])
    assert (workdir / "titanic-spark.py").read_text() == spec.primary.text
    assert (workdir / "notes.txt").read_text(encoding="utf-8") == "héllo"
    assert (workdir / "blob.bin").read_bytes() == b"\x00\xff"
    assert '"createdBy": "alice"' in (workdir / "job.json").read_text()
    meta = literals(workdir / "sparkrunner_job_metadata.py")
    assert meta["job_id"] == "job-1"
    assert meta["primary_source"] == "titanic-spark.py"
    assert (meta["method_to_be_executed"], meta["init_function"]) == ("score", "begin")
    assert meta["job_input"] == [{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": "file:///d/in.csv",
                                  "fileFormat": "CSV", "flag": True, "nothing": None}]
    assert meta["job_output"] == []
    assert [a["name"] for a in meta["job_model_assets_input"]] == ["weights"]
    # Private to the service user.
    assert (workdir.stat().st_mode & 0o777) == 0o700
    assert {(p.stat().st_mode & 0o777) for p in workdir.iterdir()} == {0o600}


def test_nothing_is_left_behind_when_laying_out_fails(tmp_path, monkeypatch):
    spec = validate(full_job())
    import sparkrunner.workdir as workdir_module

    real = workdir_module.write_file
    def fail_on_blob(directory, name, data):
        if name == "blob.bin":
            raise OSError(28, "No space left on device")
        return real(directory, name, data)
    monkeypatch.setattr(workdir_module, "write_file", fail_on_blob)
    with pytest.raises(WorkdirError, match="No space left on device"):
        render(spec, tmp_path / "run", "job-1")
    assert os.listdir(tmp_path) == []  # neither the directory nor its temporary twin


def test_an_existing_non_empty_directory_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(WorkdirError, match="already exists and is not empty"):
        render(validate(make_job()), tmp_path / "run", "job-1")
    assert os.listdir(tmp_path / "run") == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert render(validate(make_job()), tmp_path / "empty", "job-2").is_dir()


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b", "..", "x\x00"])
def test_write_file_refuses_names_outside_the_directory(tmp_path, name):
    (tmp_path / "d").mkdir()
    with pytest.raises(WorkdirError):
        write_file(tmp_path / "d", name, b"x")
    assert os.listdir(tmp_path) == ["d"] and os.listdir(tmp_path / "d") == []


def test_write_file_never_follows_a_link(tmp_path):
    (tmp_path / "d").mkdir()
    target = tmp_path / "target.txt"
    target.write_text("untouched")
    os.symlink(target, tmp_path / "d" / "notes.txt")
    with pytest.raises((WorkdirError, OSError)):
        write_file(tmp_path / "d", "notes.txt", b"overwritten")
    assert target.read_text() == "untouched"


def test_a_workdir_that_is_itself_a_link_to_a_sibling_cannot_be_escaped(tmp_path):
    (tmp_path / "workdirX").mkdir()
    (tmp_path / "workdir").symlink_to("workdirX")  # the working directory is a link to its sibling
    # Resolved, "../workdirX/f" lands inside the link's own target, so the resolved-parent check
    # lets it through: only the check of the name itself can refuse it.
    assert (tmp_path / "workdir" / "../workdirX/f").resolve().parent == (tmp_path / "workdir").resolve()
    with pytest.raises(WorkdirError, match="may not contain '/'"):
        write_file(tmp_path / "workdir", "../workdirX/f", b"x")
    assert os.listdir(tmp_path / "workdirX") == []
    # What the link leads to is the working directory: a plain name is written there.
    write_file(tmp_path / "workdir", "f", b"x")
    assert os.listdir(tmp_path / "workdirX") == ["f"]


# ----- what a warm run's driver sets up in its Spark Connect session

SCORING_MODEL = "# modelop.score\ndef action(record):\n    yield record\n"


def scoring_job(attachment_urls):
    return make_job(
        SCORING_MODEL,
        assets=[{"assetType": "SOURCE_CODE", "primaryModelSource": False, "name": "helpers.py", "sourceCode": ""},
                {"assetType": "FILE", "filename": "features.json", "content": "[]"},
                *({"assetType": "EXTERNAL_FILE", "name": f"a{i}", "fileUrl": url, "assetRole": "MODEL_ATTACHMENT"}
                  for i, url in enumerate(attachment_urls))],
        inputData=[{"assetType": "EXTERNAL_FILE", "name": "in", "fileUrl": "file:///d/in.csv", "fileFormat": "CSV"}],
        outputData=[{"assetType": "EXTERNAL_FILE", "name": "out", "fileUrl": "file:///d/out", "fileFormat": "CSV"}])


def test_a_warm_session_gets_the_sql_settings_and_what_a_cold_run_ships():
    conf = {"spark.sql.shuffle.partitions": "3", "spark.app.name": "sparkrunner-x",
            "spark.executor.memory": "1g", "spark.sql.ansi.enabled": "false"}
    assert warm_session(validate(full_job()), conf) == {
        "sql_conf": {"spark.sql.ansi.enabled": "false", "spark.sql.shuffle.partitions": "3"},
        # A three-list job's EXTERNAL_FILE attachments are handed over, never shipped, cold or warm.
        "artifacts": [{"path": "helpers.py", "kind": "pyfile"}, {"path": "notes.txt", "kind": "file"},
                      {"path": "blob.bin", "kind": "file"}],
        "cold_only": []}


def test_a_warm_scoring_job_ships_its_module_and_local_attachments_and_says_what_cannot_go():
    spec = validate(scoring_job(["file:///models/my%20model.pkl", "/models/scaler.pkl", "hdfs:///m/w.pkl",
                                 "https://models.example.com/w.pkl"]))
    session = warm_session(spec, {})
    assert session["sql_conf"] == {}
    assert session["artifacts"] == [
        {"path": "sparkrunner_scoring.py", "kind": "pyfile"}, {"path": "helpers.py", "kind": "pyfile"},
        {"path": "features.json", "kind": "file"},
        {"path": "/models/my model.pkl", "kind": "file"}, {"path": "/models/scaler.pkl", "kind": "file"}]
    assert session["cold_only"] == [
        "the model attachment 'hdfs:///m/w.pkl' is not a local file, and a warm run ships only local files "
        "to the Python workers",
        "the model attachment 'https://models.example.com/w.pkl' is not a local file, and a warm run ships "
        "only local files to the Python workers"]


@pytest.mark.parametrize("url,path", [
    ("/d/m.pkl", "/d/m.pkl"), ("m.pkl", "m.pkl"), ("file:///d/a%20b.pkl", "/d/a b.pkl"),
    ("file://localhost/d/m.pkl", "/d/m.pkl"), ("file:/d/m.pkl", "/d/m.pkl"),
    ("file://otherhost/d/m.pkl", None), ("hdfs:///d/m.pkl", None), ("s3a://b/m.pkl", None)])
def test_local_path_of_a_file_url(url, path):
    assert local_path(url) == path


def test_the_metadata_module_always_carries_the_warm_session(tmp_path):
    doc = full_job()
    doc["targetEngine"] = {"sparkConf": {"spark.sql.ansi.enabled": "false", "--executor-memory": "1g"}}
    job = admitted(doc)
    meta = literals(render(job.spec, tmp_path / "run", "job-1", job.settings.conf) / "sparkrunner_job_metadata.py")
    assert meta["warm_session"]["sql_conf"] == {"spark.sql.ansi.enabled": "false"}
    assert meta["warm_session"]["artifacts"][0] == {"path": "helpers.py", "kind": "pyfile"}
    # Laid out without settings (a bare spec), a warm run would set no SQL settings of its own.
    meta = literals(render(job.spec, tmp_path / "bare", "job-2") / "sparkrunner_job_metadata.py")
    assert meta["warm_session"]["sql_conf"] == {}
