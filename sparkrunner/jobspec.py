"""Validates a modelBatchJob document into a frozen :class:`JobSpec`.

Everything here is pure: no file is written, no user code is imported or run. Functions are
found by parsing the model source with :mod:`ast`, so a job naming a missing function is refused
before any JVM starts.
"""

from __future__ import annotations

import ast
import base64
import binascii
import copy
import json
import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping

from .config import LimitSettings
from .errors import FieldError, JobInvalid
from .workdir import filename_problem
from .scoringspec import (MLFLOW, MLFLOW_MODEL_TYPE, PYTHON_MODEL_TYPE, ScoringPlan, declared_form, in_workdir,
                          plan_scoring, takes_one_record_or_frame)

class JobRole(str, Enum):
    """What the job asks the model to do; picked by ``jobType``."""

    SCORE = "score"
    METRICS = "metrics"
    TRAIN = "train"

    @property
    def function_field(self) -> str:
        return {"score": "scoreFunction", "metrics": "metricsFunction", "train": "trainingFunction"}[
            self.value
        ]


JOB_TYPES = {
    "MODEL_BATCH_JOB": JobRole.SCORE,
    "MODEL_BATCH_TEST_JOB": JobRole.METRICS,
    "MODEL_BATCH_TRAINING_JOB": JobRole.TRAIN,
}
DEFAULT_JOB_TYPE = "MODEL_BATCH_JOB"


@dataclass(frozen=True)
class SourceFile:
    filename: str
    text: str


@dataclass(frozen=True)
class InlineFile:
    filename: str
    data: bytes


@dataclass(frozen=True)
class JobSpec:
    """A validated job: everything the later stages need, and the document as received."""

    document: Mapping[str, Any]
    job_type: str
    role: JobRole
    name: str
    #: The model's primary source; None for an MLflow model (``modelMetaData.type`` MLFLOW).
    primary: SourceFile | None
    function: str
    init_function: str | None
    modules: tuple[SourceFile, ...]
    files: tuple[InlineFile, ...]
    inputs: tuple[Mapping[str, Any], ...]
    outputs: tuple[Mapping[str, Any], ...]
    attachments: tuple[Mapping[str, Any], ...]
    job_parameters: Mapping[str, str]
    spark_conf: Mapping[str, str]
    #: ``targetEngine.executorMemory``, as ModelOp's engine record carries it ("512MB").
    executor_memory: str | None
    timeout_seconds: int | None
    #: The plan of sparkrunner's distributed path (one-parameter score functions), else None.
    scoring: ScoringPlan | None = None

    @property
    def shipped_files(self) -> tuple[InlineFile, ...]:
        """The FILE assets the Python workers get (``--files``, or session artifacts when warm):
        all but the inputs the scoring path's driver reads itself."""
        read_by_driver = {a.url for a in self.scoring.inputs if a.in_workdir} if self.scoring else set()
        return tuple(f for f in self.files if f.filename not in read_by_driver)

    def asset_lists(self) -> tuple[list[dict], list[dict], list[dict]]:
        """Fresh, plain copies of the three lists the model function receives."""
        return tuple([copy.deepcopy(dict(a)) for a in assets]  # type: ignore[return-value]
                     for assets in (self.inputs, self.outputs, self.attachments))


@lru_cache(maxsize=1)
def schema() -> dict:
    """The JSON Schema of a modelBatchJob, as shipped inside the package."""
    text = resources.files("sparkrunner").joinpath("schemas/modelbatchjob.schema.json").read_text()
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator():
    """The compiled validator. The schema's own validity is a test's business, not every
    start's (tests/test_jobspec.py checks it against its metaschema); the schema holds no
    "format", so no format checker is built either."""
    import jsonschema  # imported here: it is the slowest import on the command line's path

    return jsonschema.validators.validator_for(schema())(schema())


def parse_document(text: str | bytes) -> dict:
    """The JSON object in ``text``, or :class:`JobInvalid` saying why it is not one."""
    def refuse_constant(name: str):
        raise ValueError(f"{name} is not a JSON value")

    try:
        document = json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise JobInvalid([FieldError("$", f"is not valid JSON: {exc}")]) from exc
    if not isinstance(document, dict):
        raise JobInvalid([FieldError("$", f"must be a JSON object, not {type(document).__name__}")])
    return document


def validate(document: Mapping[str, Any], limits: LimitSettings = LimitSettings()) -> JobSpec:
    """The job spec for ``document``, or :class:`JobInvalid` listing every problem at once."""
    return build(check_shape(document, limits))


def check_shape(document: Mapping[str, Any], limits: LimitSettings = LimitSettings()) -> dict:
    """A private copy of ``document`` once it is within the limits and has the schema's shape,
    or :class:`JobInvalid` listing what is wrong with it."""
    # Bounds first: the schema walk and everything after it assume a document of sane size.
    depth = _depth(document, limits.max_json_depth)
    if depth > limits.max_json_depth:
        raise JobInvalid([FieldError("$", f"is nested more than {limits.max_json_depth} levels deep "
                                          f"(limits.max_json_depth)")])
    errors = [
        FieldError(_json_path(err.absolute_path), _schema_message(err))
        for err in sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if errors:
        # The checks below assume the document has the schema's shape.
        raise JobInvalid(errors)
    size_errors = _size_problems(document, limits)
    if size_errors:
        raise JobInvalid(size_errors)
    document = copy.deepcopy(dict(document))
    try:
        json.dumps(document, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError) as exc:
        raise JobInvalid([FieldError("$", f"holds a value that cannot be stored as UTF-8 JSON: {exc}")]) from exc
    return document


def settings_of(doc: Mapping[str, Any]) -> tuple[Mapping[str, str], Mapping[str, str], str | None]:
    """(jobParameters, targetEngine.sparkConf, targetEngine.executorMemory) of a document of
    the schema's shape, values as strings."""
    engine = doc.get("targetEngine") or {}
    memory = engine.get("executorMemory")
    return (MappingProxyType({k: _setting_str(v) for k, v in (doc.get("jobParameters") or {}).items()}),
            MappingProxyType({k: _setting_str(v) for k, v in (engine.get("sparkConf") or {}).items()}),
            None if memory is None else _setting_str(memory))


def _depth(value: Any, stop_after: int) -> int:
    """How deeply ``value`` nests objects and arrays (a scalar is 0), counted iteratively and
    only up to one past ``stop_after``."""
    deepest, level = 0, [(value, 0)]
    while level:
        item, depth = level.pop()
        if isinstance(item, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            if depth <= stop_after:
                level.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _size_problems(document: Mapping[str, Any], limits: LimitSettings) -> list[FieldError]:
    """Too many assets, or an asset whose source or content is too large (schema-valid input)."""
    assets = [(path, items) for path, items in _asset_lists(document)]
    count = sum(len(items) for _, items in assets)
    if count > limits.max_assets:
        return [FieldError("$", f"holds {count} assets in modelAssets, inputData and outputData; "
                                f"at most {limits.max_assets} are accepted (limits.max_assets)")]
    errors = []
    for path, items in assets:
        for i, asset in enumerate(items):
            for field in ("sourceCode", *CONTENT_FIELDS):
                text = asset.get(field)
                if text is None or isinstance(text, (bool, int, float)):
                    continue
                if not isinstance(text, str):
                    text = json.dumps(text)  # fileContentString may hold parsed JSON
                if len(text) <= limits.max_asset_bytes // 4:
                    continue  # at most 4 bytes a character: small enough without encoding it
                size = len(text.encode("utf-8", "surrogatepass"))
                if size > limits.max_asset_bytes:
                    errors.append(FieldError(f"{path}[{i}].{field}", f"holds {size} bytes; at most "
                                             f"{limits.max_asset_bytes} are accepted (limits.max_asset_bytes)"))
    return errors


def _asset_lists(document: Mapping[str, Any]) -> list[tuple[str, list]]:
    """(JSON path, assets) of the three asset lists of a schema-valid document."""
    return [("$.model.storedModel.modelAssets", document["model"]["storedModel"]["modelAssets"]),
            ("$.inputData", document.get("inputData") or []),
            ("$.outputData", document.get("outputData") or [])]


def build(doc: dict) -> JobSpec:
    """The job spec of a document :func:`check_shape` passed, or :class:`JobInvalid`."""
    errors: list[FieldError] = []
    job_type = doc.get("jobType", DEFAULT_JOB_TYPE)
    role = JOB_TYPES[job_type]
    stored = doc["model"]["storedModel"]
    assets_path = "$.model.storedModel.modelAssets"
    assets = stored["modelAssets"]

    meta = stored.get("modelMetaData") or {}
    is_mlflow = meta.get("type") == MLFLOW_MODEL_TYPE
    primaries = [i for i, a in enumerate(assets)
                 if a["assetType"] == "SOURCE_CODE" and a.get("primaryModelSource") is True]
    if is_mlflow:
        errors += _mlflow_model_problems(role, primaries, assets_path)
    elif len(primaries) != 1:
        found = ", ".join(f"{assets_path}[{i}]" for i in primaries) or "none"
        errors.append(FieldError(
            assets_path,
            "must hold exactly one SOURCE_CODE asset with primaryModelSource: true "
            f"(found {len(primaries)}: {found})"))

    taken: dict[str, str] = {}  # file name -> the path of the asset that claimed it

    def claim(path: str, name: str) -> str | None:
        problem = filename_problem(name)
        if problem:
            errors.append(FieldError(path, f"{name!r} {problem}"))
            return None
        if name in taken:
            errors.append(FieldError(path, f"{name!r} is already used by {taken[name]}"))
            return None
        taken[name] = path
        return name

    primary = None
    function = init_function = form = None
    if is_mlflow and role is JobRole.SCORE:
        function, form = "predict", MLFLOW  # mlflow.pyfunc's PyFuncModel.predict, on each batch
    modules: list[SourceFile] = []
    files: list[InlineFile] = []
    for i, asset in enumerate(assets):
        if asset["assetType"] != "SOURCE_CODE":
            continue
        path = f"{assets_path}[{i}]"
        field, name = _source_filename(asset)
        is_primary = i in primaries[:1] and not is_mlflow
        if not name.endswith(".py"):
            name += ".py"  # source is imported as a module, which needs the suffix
        if claim(f"{path}.{field}", name) is None:
            continue
        source = SourceFile(name, asset["sourceCode"])
        if is_primary:
            primary = source
            function, init_function, form = _resolve_functions(
                source, asset, role, meta.get("type"), path, errors)
        else:
            modules.append(source)
    # FILE assets travel inside the job, wherever they stand: all are written beside the driver.
    for list_path, items in _asset_lists(doc):
        for i, asset in enumerate(items):
            if asset.get("assetType") != "FILE":
                continue
            path = f"{list_path}[{i}]"
            field = "filename" if asset.get("filename") else "name"
            name = claim(f"{path}.{field}", asset.get(field) or "")
            if list_path == "$.outputData" and in_workdir(asset) and not any(
                    asset.get(f) is not None for f in CONTENT_FIELDS):
                continue  # no content: a file the job writes in its working directory
            data = file_content(asset, path, errors)
            if name is not None and data is not None:
                files.append(InlineFile(name, data))

    scoring = plan_scoring(doc, form, errors) if form else None
    if "idField" in doc and not form:
        errors.append(FieldError("$.idField", (
            "is used only by a one-parameter (record or DataFrame) score function, which carries it "
            "from each input record to its outputs; this job's function takes three lists")))
    if _CONTROL.search(str(meta.get("name", ""))):
        errors.append(FieldError("$.model.storedModel.modelMetaData.name",
                                 "may not contain newlines or other control characters"))
    if errors:
        raise JobInvalid(errors)
    assert function is not None and (primary is not None or scoring is not None and scoring.mlflow is not None)
    default_name = primary.filename.removesuffix(".py") if primary else scoring.mlflow.dirname
    return JobSpec(
        document=doc,
        job_type=job_type,
        role=role,
        name=str(meta.get("name") or default_name),
        primary=primary,
        function=function,
        init_function=init_function,
        modules=tuple(modules),
        files=tuple(files),
        inputs=_external_files(doc.get("inputData") or []),
        outputs=_external_files(doc.get("outputData") or []),
        attachments=_external_files(assets),
        **dict(zip(("job_parameters", "spark_conf", "executor_memory"), settings_of(doc))),
        timeout_seconds=doc.get("timeoutSeconds"),
        scoring=scoring,
    )


def _mlflow_model_problems(role: JobRole, primaries: list[int], assets_path: str) -> list[FieldError]:
    """What a model of type MLFLOW may not have: it is scored by its MLflow model, with no source."""
    problems = []
    if role is not JobRole.SCORE:
        problems.append(FieldError("$.jobType", (
            f"is a {role.value} job, and a model of type {MLFLOW_MODEL_TYPE!r} is only scored "
            "(MODEL_BATCH_JOB): its MLflow model has a predict function and nothing else")))
    for i in primaries:
        problems.append(FieldError(f"{assets_path}[{i}].primaryModelSource", (
            f"is true, and a model of type {MLFLOW_MODEL_TYPE!r} runs no source code of its own: its "
            "MLflow model directory is scored with mlflow.pyfunc; drop the primary source, or give "
            "the model another type")))
    return problems


def _external_files(assets: list[dict]) -> tuple[Mapping[str, Any], ...]:
    return tuple(MappingProxyType(a) for a in assets if a.get("assetType") == "EXTERNAL_FILE")


def _setting_str(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _source_filename(asset: dict) -> tuple[str, str]:
    """(field, file name) for a SOURCE_CODE asset: ``filename``, ``name``, or the last part of
    ``sourceCodeFilePath`` (a path in the model's repository, such as ``src/model.py``)."""
    for field in ("filename", "name"):
        if field in asset:
            return field, asset[field]
    repo_path = asset["sourceCodeFilePath"]
    parts = repo_path.replace("\\", "/").split("/")
    if repo_path.startswith(("/", "\\")) or ".." in parts:
        return "sourceCodeFilePath", repo_path  # refused by filename_problem, with this value
    return "sourceCodeFilePath", parts[-1]


#: Where a FILE asset's bytes may come from, in order of preference.
CONTENT_FIELDS = ("fileContent", "fileContentString", "content")


def file_content(asset: dict, path: str, errors: list[FieldError]) -> bytes | None:
    """A FILE asset's bytes: ``fileContent`` (base64, as ModelOp sends it), else
    ``fileContentString`` (a string as text, another JSON value as JSON), else ``content``
    (text, or base64 with ``contentEncoding: base64``). ``localFile``, a path on ModelOp's
    server, is never read."""
    if asset.get("fileContent") is not None:
        return _base64(asset["fileContent"], f"{path}.fileContent", errors)
    if asset.get("fileContentString") is not None:
        value = asset["fileContentString"]
        return (value if isinstance(value, str) else json.dumps(value, indent=2)).encode("utf-8")
    if asset.get("content") is not None:
        if asset.get("contentEncoding") == "base64":
            return _base64(asset["content"], f"{path}.content", errors)
        return asset["content"].encode("utf-8")
    errors.append(FieldError(path, "is a FILE asset with no content: it needs fileContent (base64), "
                                   "fileContentString or content (localFile, a path on ModelOp's "
                                   "server, is never read)"))
    return None


def _base64(text: str, path: str, errors: list[FieldError]) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        errors.append(FieldError(path, f"is not valid base64 ({exc})"))
        return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


_SMART_TAG = re.compile(r"^\s*#\s*modelop\.(init|score|metrics|train)\b")


def find_functions(source: str) -> tuple[dict[str, ast.FunctionDef], dict[str, list[str]]]:
    """Top-level functions of ``source`` by name, and the functions under each smart tag.

    A smart tag is a ``# modelop.<role>`` comment in the block of comment lines directly above a
    ``def`` (or above its decorators). Raises :class:`SyntaxError` for source that does not parse.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    functions: dict[str, ast.FunctionDef] = {}
    tagged: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        functions[node.name] = node
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        line = first - 2  # index of the line above, counting from 0
        while line >= 0 and lines[line].lstrip().startswith("#"):
            match = _SMART_TAG.match(lines[line])
            if match:
                tagged.setdefault(match.group(1), []).append(node.name)
            line -= 1
    return functions, tagged


def _resolve_functions(source: SourceFile, asset: dict, role: JobRole, model_type: str | None,
                       path: str, errors: list[FieldError]) -> tuple[str | None, str | None, str | None]:
    """(function, init function, form) named by the asset's fields or found by smart tags.

    The form is None for the three-list (Spark-native) path, else what a one-parameter score
    function receives (see :mod:`sparkrunner.scoringspec`).
    """
    try:
        functions, tagged = find_functions(source.text)
    except SyntaxError as exc:
        errors.append(FieldError(f"{path}.sourceCode",
                                 f"is not valid Python: {exc.msg} (line {exc.lineno})"))
        return None, None, None
    defined = ", ".join(sorted(functions)) or "none"

    def pick(field: str, tag: str) -> tuple[str | None, str]:
        """The function's name and where it came from, or (None, what was looked for)."""
        if field in asset:
            name = asset[field]
            if name not in functions:
                errors.append(FieldError(
                    f"{path}.{field}",
                    f"names {name!r}, which {source.filename} does not define at top level "
                    f"(functions defined: {defined})"))
            return name, field
        names = tagged.get(tag, [])
        if len(names) > 1:
            errors.append(FieldError(
                f"{path}.sourceCode",
                f"has several functions tagged '# modelop.{tag}' ({', '.join(names)}); "
                f"tag one, or name it with {field}"))
        return (names[0] if names else None), f"'# modelop.{tag}'"

    function, origin = pick(role.function_field, role.value)
    form = None
    if function is None:
        errors.append(FieldError(
            path,
            f"names no {role.value} function: looked for {role.function_field} and for a "
            f"'# modelop.{role.value}' comment directly above a def in {source.filename} "
            f"(functions defined: {defined})"))
    elif function in functions:
        form = _function_form(functions[function], source, role, model_type, origin, path, errors)
    init, origin = pick("initFunction", "init")
    if init in functions and not _accepts(functions[init], 0):
        errors.append(FieldError(
            f"{path}.sourceCode",
            f"init function {init!r} (from {origin}) must be callable with no arguments"))
    return function, init, form


def _function_form(fn: ast.FunctionDef, source: SourceFile, role: JobRole, model_type: str | None,
                   origin: str, path: str, errors: list[FieldError]) -> str | None:
    """None for the three-list path, or the form a one-parameter score function declares."""
    where = f"{path}.sourceCode"
    label = f"{role.value} function {fn.name!r} (from {origin})"
    if role is JobRole.SCORE and (model_type == PYTHON_MODEL_TYPE
                                  or takes_one_record_or_frame(fn, _accepts)):
        if _accepts(fn, 1):
            return declared_form(fn, ast.parse(source.text), where, errors)
        errors.append(FieldError(where, (
            f"{label} must accept one argument, a record (a dict) or a pandas DataFrame, because "
            f"$.model.storedModel.modelMetaData.type is {PYTHON_MODEL_TYPE!r}")))
    elif not _accepts(fn, 3):
        one = " (or, for a score function, one: a record or a pandas DataFrame)" if role is JobRole.SCORE else ""
        errors.append(FieldError(where, (
            f"{label} must accept three arguments: the lists of input, output and model "
            f"attachment assets{one}")))
    return None


def _accepts(fn: ast.FunctionDef, count: int) -> bool:
    """True when ``fn`` can be called with ``count`` positional arguments."""
    args = fn.args
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    required_kwonly = sum(1 for d in args.kw_defaults if d is None)
    if required_kwonly:
        return False
    return required <= count and (count <= positional or args.vararg is not None)


def _json_path(parts) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _schema_message(err) -> str:
    """jsonschema's message, made to say what would be accepted where it does not already."""
    if err.validator == "required":
        return err.message
    if err.validator == "anyOf" and err.validator_value and all(
            set(option) == {"required"} for option in err.validator_value):
        names = " or ".join(repr(o["required"][0]) for o in err.validator_value)
        return f"needs one of {names}"
    if err.validator == "pattern":
        return f"{err.instance!r} does not match {err.validator_value!r}"
    if err.validator == "propertyNames":
        return f"{err.instance!r}: keys must be spark-submit flags such as '--executor-memory'"
    return err.message
