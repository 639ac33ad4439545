"""A model's own Python packages: found among its assets and read into a requirement set.

A model names its packages with a ``requirements.txt`` among its assets:

- a FILE asset in ``model.storedModel.modelAssets`` whose file name is ``requirements.txt``
  (its content travels in the job), or
- an EXTERNAL_FILE attachment there whose ``filename`` (or the last part of ``fileUrl``) is
  ``requirements.txt`` and whose ``fileUrl`` is a local file (read when the job is admitted);
- and, for an MLflow model, the requirements MLflow saved with it that this installation does
  not meet (:func:`sparkrunner.mlflow_model.check_requirements`; admission adds them with
  :func:`with_lines`).

Only requirement lines are accepted (``name[extras] specifiers ; markers``, as in PEP 508):
comments and blank lines are skipped; options (``-r``, ``-e``, ``--index-url``, ...) and direct
URLs are refused, because the packages come from the indexes the operator configured, never
from a place a job names. The set is normalized (names canonical, sorted, duplicates dropped),
so two jobs naming the same packages share one environment (:mod:`sparkrunner.environments`).

Pure, but for reading a local attachment: nothing is written, nothing is fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import FieldError
from .policy import local_path

REQUIREMENTS_FILENAME = "requirements.txt"
ASSETS_PATH = "$.model.storedModel.modelAssets"


@dataclass(frozen=True)
class Requirements:
    """A model's requirement set, normalized and sorted, and where it came from."""

    #: The JSON path of the asset that named them (for messages and the job's log).
    source: str
    #: One normalized requirement per line, sorted: ``inflection==0.5.1``.
    lines: tuple[str, ...]

    def names(self) -> frozenset[str]:
        """The canonical names of the packages asked for."""
        return frozenset(canonicalize_name(Requirement(line).name) for line in self.lines)

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


def parse(text: str, path: str) -> tuple[tuple[str, ...], list[FieldError]]:
    """The normalized requirement lines of a requirements file's ``text``, and one problem for
    each line that is not a plain requirement (``path`` names the asset)."""
    lines: set[str] = set()
    errors: list[FieldError] = []
    for number, line in _logical_lines(text):
        where = f"{path} line {number}"
        if line.startswith("-"):
            errors.append(FieldError(where, f"{line!r} is an installer option; only requirement "
                                            "lines are accepted (such as 'inflection==0.5.1'): "
                                            "packages come from the indexes the operator configured"))
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            errors.append(FieldError(where, f"{line!r} is not a requirement ({exc}); write "
                                            "'name', 'name==1.2' or 'name>=1,<2'"))
            continue
        if req.url:
            errors.append(FieldError(where, f"{line!r} names a direct URL; name the package and "
                                            "its version instead (packages come from the "
                                            "indexes the operator configured)"))
            continue
        lines.add(normalized(req))
    return tuple(sorted(lines)), errors


def normalized(req: Requirement) -> str:
    """``req`` written one way: canonical name, sorted extras, sorted specifiers, marker."""
    extras = f"[{','.join(sorted(canonicalize_name(e) for e in req.extras))}]" if req.extras else ""
    specifier = ",".join(sorted(str(s) for s in req.specifier))
    marker = f" ; {req.marker}" if req.marker else ""
    return f"{canonicalize_name(req.name)}{extras}{specifier}{marker}"


_COMMENT = re.compile(r"(^|\s+)#.*$")


def _logical_lines(text: str):
    """(line number, content) of each non-empty line, comments removed and lines ending in a
    backslash joined, as pip reads a requirements file."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            yield start, line
    if pending.strip():
        yield start, pending.strip()


def requirements_of(doc: Mapping[str, Any], max_bytes: int,
                    refused: frozenset[str] = frozenset()) -> tuple[Requirements | None, list[FieldError]]:
    """The model's requirement set (None when it names none), and the problems with it.

    ``refused`` holds the JSON paths of locations the job may not name (their problem is
    reported already): such an attachment is never read.
    """
    found = [*_asset_requirements(doc, max_bytes, refused)]
    errors = [error for _, _, error in found if error is not None]
    named = [(path, text) for path, text, error in found if error is None]
    if len(found) > 1:
        paths = " and ".join(path for path, _, _ in found)
        return None, [FieldError(ASSETS_PATH, f"names its packages twice ({paths}); keep one "
                                              f"{REQUIREMENTS_FILENAME}")]
    if errors or not named:
        return None, errors
    path, text = named[0]
    lines, errors = parse(text, path)
    if errors:
        return None, errors
    return (Requirements(path, lines) if lines else None), []


def _asset_requirements(doc: Mapping[str, Any], max_bytes: int, refused: frozenset[str]):
    """(path, text, problem) of each ``requirements.txt`` among the model's assets."""
    from .jobspec import file_content  # the same decoding as the FILE assets written out

    for i, asset in enumerate(doc["model"]["storedModel"]["modelAssets"]):
        path = f"{ASSETS_PATH}[{i}]"
        kind = asset.get("assetType")
        if kind == "FILE" and (asset.get("filename") or asset.get("name")) == REQUIREMENTS_FILENAME:
            problems: list[FieldError] = []
            data = file_content(asset, path, problems)
            if data is None:
                continue  # the FILE asset's own check reports it
            yield path, *_decoded(data, path)
        elif kind == "EXTERNAL_FILE" and _external_name(asset) == REQUIREMENTS_FILENAME:
            if f"{path}.fileUrl" in refused:
                continue
            yield path, *_read_attachment(asset, path, max_bytes)


def _external_name(asset: Mapping[str, Any]) -> str:
    name = asset.get("filename") or str(asset.get("fileUrl") or "")
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def _read_attachment(asset: Mapping[str, Any], path: str, max_bytes: int) -> tuple[str, FieldError | None]:
    url = str(asset.get("fileUrl") or "")
    local = local_path(url)
    if local is None:
        return "", FieldError(f"{path}.fileUrl", f"{url!r}: a {REQUIREMENTS_FILENAME} attachment must "
                                                 "be a local file (or send it as a FILE asset)")
    try:
        with open(local, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        return "", FieldError(f"{path}.fileUrl", f"{url!r} cannot be read: {exc.strerror}")
    if len(data) > max_bytes:
        return "", FieldError(f"{path}.fileUrl", f"{url!r} is larger than {max_bytes} bytes")
    return _decoded(data, path)


def _decoded(data: bytes, path: str) -> tuple[str, FieldError | None]:
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return "", FieldError(path, f"{REQUIREMENTS_FILENAME} is not UTF-8 text")


def with_lines(requirements: Requirements | None, lines: tuple[str, ...],
               source: str) -> tuple[Requirements | None, list[FieldError]]:
    """``requirements`` with ``lines`` added (an MLflow model's unmet requirements, named by
    ``source``, the model directory's JSON path); unchanged when there are none."""
    if not lines:
        return requirements, []
    merged, errors = parse("\n".join([*(requirements.lines if requirements else ()), *lines]), source)
    if errors:
        return requirements, errors
    return Requirements(requirements.source if requirements else source, merged), []
