"""Shared helpers: job documents built the way ModelOp clients send them."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPARKRUNNER = str(Path(sys.executable).with_name("sparkrunner"))

SCORE_SOURCE = '''\
# modelop.init
def begin():
    pass

# modelop.score
def score(inputs, outputs, attachments):
    return {"inputs": len(inputs)}
'''


def make_job(source: str = SCORE_SOURCE, *, name: str = "model.py", job_type: str | None = None,
             assets: list | None = None, **fields) -> dict:
    """A modelBatchJob with ``source`` as its primary SOURCE_CODE asset, plus ``fields``."""
    primary = {"assetType": "SOURCE_CODE", "primaryModelSource": True, "name": name,
               "sourceCode": source}
    doc = {"model": {"storedModel": {"modelAssets": [primary, *(assets or [])],
                                     "modelMetaData": {"name": "test-model", "type": "PYSPARK"}}}}
    if job_type:
        doc["jobType"] = job_type
    doc.update(copy.deepcopy(fields))
    return doc


def write_job(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def job_file(tmp_path):
    """Writes a job document to a file in the test's directory and returns its path."""
    def write(doc: dict, name: str = "job.json") -> Path:
        return write_job(tmp_path / name, doc)
    return write


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch):
    # A developer's SPARKRUNNER_CONFIG must not change what the tests run.
    monkeypatch.delenv("SPARKRUNNER_CONFIG", raising=False)


def admitted(doc: dict, settings=None):
    """``doc`` admitted as ``sparkrunner run`` admits it (or JobInvalid)."""
    from sparkrunner.admission import Origin, admit
    from sparkrunner.config import Settings

    return admit(doc, settings or Settings(), Origin.LOCAL)
