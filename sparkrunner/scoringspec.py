"""The plan for sparkrunner's own distributed scoring path, checked when the job is validated.

A score job runs there when its ``modelMetaData.type`` is ``PYTHON`` or its score function takes
one parameter. The parameter's annotation says what it receives: ``pandas.DataFrame`` (or
``pd.DataFrame`` after ``import pandas as pd``, or ``DataFrame`` from ``from pandas import
DataFrame``) means one Arrow batch as a pandas DataFrame; anything else, or no annotation, means
one record, a dict, as ModelOp's record models expect.

Pure, like :mod:`sparkrunner.jobspec`: the model source is parsed, never imported. The plan
becomes a plain dict of literals in the job metadata module, read by ``sparkrunner_scoring.py``
on the Spark driver and the Python workers.
"""

from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .errors import FieldError

RECORD = "record"
DATAFRAME = "dataframe"
#: The form of an MLflow model: no source; ``mlflow.pyfunc`` scores each Arrow batch.
MLFLOW = "mlflow"
#: ``modelMetaData.type`` of ModelOp's plain (non-Spark) Python models.
PYTHON_MODEL_TYPE = "PYTHON"
#: ``modelMetaData.type`` of a model scored by its MLflow model directory, with no source code
#: (see :mod:`sparkrunner.mlflow_model`).
MLFLOW_MODEL_TYPE = "MLFLOW"
#: ``fileFormat`` values the distributed path reads and writes, and what each means.
FILE_FORMATS = {"CSV": "CSV with a header line", "JSON": "JSON lines", "PARQUET": "Parquet"}
#: ``assetRole`` of the output asset that receives rejected records.
REJECTED_ROLE = "REJECTED_RECORDS"
REJECTED_SUFFIX = "_rejected"

META = "$.model.storedModel.modelMetaData"
# Keywords of a JSON Schema that describe but do not constrain, so they are accepted and ignored.
_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "format", "$comment"}
_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean"}
_AVRO_TYPES = {"int": "integer", "long": "integer", "float": "number", "double": "number",
               "string": "string", "boolean": "boolean"}


@dataclass(frozen=True)
class DataAsset:
    """An input or output of the distributed path: where it is and how it is stored."""

    name: str
    url: str
    format: str
    #: A FILE asset: a file in the job's working directory (the url is its name), read or
    #: written by the driver itself, not by Spark (bulk scoring's request and answer).
    in_workdir: bool = False


@dataclass(frozen=True)
class MlflowPlan:
    """Where an MLflow model (``modelMetaData.type`` MLFLOW) is, and what its signature says the
    model takes (filled in at admission, from the directory: :mod:`sparkrunner.mlflow_model`)."""

    url: str  # the model directory's fileUrl
    dirname: str  # the last part of url: the workers find the directory under this name
    #: MLflow's type of each input column the signature names, in its order; the workers hand
    #: the model these columns, in these dtypes. Empty: every input column, as read.
    input_types: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ScoringPlan:
    """Everything the distributed path needs besides the model's source."""

    form: str  # RECORD or DATAFRAME
    id_field: str | None
    inputs: tuple[DataAsset, ...]
    output: DataAsset
    rejected: DataAsset
    input_fields: tuple[dict, ...] | None  # field rules from inputSchema (see field_rule)
    output_fields: tuple[dict, ...] | None
    check_input: bool
    check_output: bool
    attachments: tuple[str, ...]  # fileUrls of the model's EXTERNAL_FILE assets
    mlflow: MlflowPlan | None = None  # the MLFLOW form's model

    def as_metadata(self) -> dict:
        """The plan as plain lists and dicts, fit for a Python literal."""
        plain = asdict(self)
        return json.loads(json.dumps(plain))  # tuples become lists


def takes_one_record_or_frame(fn: ast.FunctionDef, accepts) -> bool:
    """True when ``fn`` has the distributed path's signature: one parameter, not three."""
    return accepts(fn, 1) and not accepts(fn, 3)


def declared_form(fn: ast.FunctionDef, tree: ast.Module, where: str,
                  errors: list[FieldError]) -> str:
    """RECORD or DATAFRAME, from the annotation of ``fn``'s one parameter."""
    params = [*fn.args.posonlyargs, *fn.args.args] or ([fn.args.vararg] if fn.args.vararg else [])
    annotation = params[0].annotation if params else None
    if annotation is None:
        return RECORD
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        written = annotation.value  # a string annotation: "pd.DataFrame"
    else:
        written = ast.unparse(annotation)
    resolved = _resolve_import(written, _import_aliases(tree))
    if not resolved.endswith("DataFrame"):
        return RECORD
    if resolved in ("DataFrame", "pandas.DataFrame", "pandas.core.frame.DataFrame"):
        return DATAFRAME
    errors.append(FieldError(where, (
        f"score function {fn.name!r} annotates its parameter as {written!r} ({resolved}): a "
        "one-parameter score function receives a pandas.DataFrame (annotate it pandas.DataFrame, "
        "pd.DataFrame or DataFrame from pandas) or one record (a dict: any other annotation, or none)")))
    return RECORD


def _import_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted name, from the module's top-level imports (``pd`` is pandas unless bound)."""
    aliases: dict[str, str] = {"pd": "pandas"}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _resolve_import(written: str, aliases: Mapping[str, str]) -> str:
    head, dot, rest = written.partition(".")
    return aliases.get(head, head) + dot + rest


def plan_scoring(doc: Mapping[str, Any], form: str, errors: list[FieldError]) -> ScoringPlan | None:
    """The distributed path's plan for ``doc``, or None after adding every problem to ``errors``."""
    meta = doc["model"]["storedModel"].get("modelMetaData") or {}
    count = len(errors)
    inputs = [_data_asset(f"$.inputData[{i}]", a, errors) for i, a in _data_files(doc.get("inputData", []))]
    if not inputs:
        errors.append(FieldError("$.inputData", (
            "holds no EXTERNAL_FILE asset: a one-parameter (record or DataFrame) score function "
            f"needs at least one input file ({_formats()})")))
    output, rejected = _outputs(doc.get("outputData", []), errors)
    id_field = doc.get("idField")
    mlflow = _mlflow_plan(doc["model"]["storedModel"]["modelAssets"], errors) if form == MLFLOW else None
    # An MLflow model's signature is its input schema, checked unless the job turns checking off:
    # mlflow.pyfunc refuses a whole batch for one record that does not conform.
    check_input = bool(meta.get("enableInputSchemaChecking", form == MLFLOW))
    check_output = bool(meta.get("enableOutputSchemaChecking"))
    # Strict only where the path acts: the input schema is needed when input checking is on
    # (otherwise one it cannot read is ignored, and CSV types are inferred); the output schema's
    # types make the output columns whenever it is given.
    input_fields = _schema_rules(meta, "inputSchema", errors, needed=check_input, checked=check_input)
    output_fields = _schema_rules(meta, "outputSchema", errors, needed=True, checked=check_output)
    for flag, fields, schema in (("enableInputSchemaChecking", input_fields, "inputSchema"),
                                 ("enableOutputSchemaChecking", output_fields, "outputSchema")):
        path = f"{META}.{schema}"
        if form == MLFLOW:
            continue  # the model's signature may give it, which admission reads
        if meta.get(flag) and fields is None and not any(e.path.startswith(path) for e in errors):
            errors.append(FieldError(f"{META}.{flag}", f"is true, but {path} is missing or empty: "
                                                       "give the schema records are checked against"))
    if len(errors) > count:
        return None
    return ScoringPlan(
        form=form, id_field=id_field, inputs=tuple(inputs), output=output, rejected=rejected,
        input_fields=input_fields, output_fields=output_fields,
        check_input=check_input, check_output=check_output,
        attachments=tuple(a["fileUrl"] for _, a in _external(doc["model"]["storedModel"]["modelAssets"])),
        mlflow=mlflow,
    )


#: ``assetRole`` that marks which model attachment is the MLflow model, where there are several.
MLFLOW_MODEL_ROLE = "MLFLOW_MODEL"


def _mlflow_plan(assets: list[dict], errors: list[FieldError]) -> MlflowPlan | None:
    """The MLflow model's attachment: the EXTERNAL_FILE model asset whose assetRole is
    MLFLOW_MODEL, else the first EXTERNAL_FILE model asset."""
    attachments = _external(assets)
    marked = [a for _, a in attachments if a.get("assetRole") == MLFLOW_MODEL_ROLE]
    chosen = (marked or [a for _, a in attachments] or [None])[0]
    if chosen is None:
        errors.append(FieldError("$.model.storedModel.modelAssets", (
            f"holds no EXTERNAL_FILE asset: a model of type {MLFLOW_MODEL_TYPE!r} is scored by its "
            "MLflow model, an EXTERNAL_FILE asset whose fileUrl is the directory mlflow saved "
            f"(with an MLmodel file; mark it with assetRole {MLFLOW_MODEL_ROLE} among several)")))
        return None
    url = chosen["fileUrl"]
    return MlflowPlan(url=url, dirname=url.rstrip("/").rsplit("/", 1)[-1])


def _external(assets: list[dict]) -> list[tuple[int, dict]]:
    return [(i, a) for i, a in enumerate(assets) if a.get("assetType") == "EXTERNAL_FILE"]


#: Marks a FILE asset as data of the distributed path in the job's working directory (sparkrunner's own).
IN_WORKDIR = "inWorkdir"


def in_workdir(asset: Mapping[str, Any]) -> bool:
    """True for a FILE asset that is data in the job's working directory (bulk scoring's request
    and answer): read or written by the driver, as JSON lines."""
    return asset.get("assetType") == "FILE" and asset.get(IN_WORKDIR) is True


def _data_files(assets: list[dict]) -> list[tuple[int, dict]]:
    """The data the distributed path reads or writes: EXTERNAL_FILE assets, and FILE assets
    marked ``inWorkdir``."""
    return [(i, a) for i, a in enumerate(assets or []) if a.get("assetType") == "EXTERNAL_FILE" or in_workdir(a)]


def _formats() -> str:
    return "fileFormat " + ", ".join(f"{k} ({v})" for k, v in FILE_FORMATS.items())


def _data_asset(path: str, asset: Mapping[str, Any], errors: list[FieldError]) -> DataAsset:
    file_format = str(asset.get("fileFormat", "")).upper()
    if file_format not in FILE_FORMATS:
        shown = repr(asset["fileFormat"]) if "fileFormat" in asset else "missing"
        errors.append(FieldError(f"{path}.fileFormat", (
            f"is {shown}: a one-parameter (record or DataFrame) score function reads and writes "
            f"{_formats()}")))
    if in_workdir(asset):
        if file_format != "JSON":
            errors.append(FieldError(f"{path}.fileFormat", (
                f"is {asset.get('fileFormat')!r}: a FILE asset is read or written in the job's working "
                "directory by the driver, as JSON lines only (fileFormat JSON)")))
        filename = str(asset.get("filename") or asset.get("name") or "")
        return DataAsset(name=filename, url=filename, format=file_format, in_workdir=True)
    return DataAsset(name=str(asset.get("name") or asset["fileUrl"]), url=asset["fileUrl"], format=file_format)


def _outputs(assets: list[dict], errors: list[FieldError]) -> tuple[DataAsset | None, DataAsset | None]:
    """(scores, rejected records): the first output of each kind; rejects default to <scores>_rejected."""
    outputs = _data_files(assets)
    scored = [(i, a) for i, a in outputs if a.get("assetRole") != REJECTED_ROLE]
    rejected = [(i, a) for i, a in outputs if a.get("assetRole") == REJECTED_ROLE]
    if not scored:
        errors.append(FieldError("$.outputData", (
            "holds no EXTERNAL_FILE asset for the scores: a one-parameter (record or DataFrame) "
            f"score function writes its outputs to the first output asset whose assetRole is not "
            f"{REJECTED_ROLE} ({_formats()})")))
        return None, None
    for i, _ in scored[1:]:
        errors.append(FieldError(f"$.outputData[{i}]", (
            "is a second output for scores: a one-parameter score function writes one; mark an "
            f"output for rejected records with assetRole {REJECTED_ROLE}")))
    output = _data_asset(f"$.outputData[{scored[0][0]}]", scored[0][1], errors)
    if rejected:
        return output, _data_asset(f"$.outputData[{rejected[0][0]}]", rejected[0][1], errors)
    return output, DataAsset(name=output.name + REJECTED_SUFFIX, url=output.url.rstrip("/") + REJECTED_SUFFIX,
                             format=output.format, in_workdir=output.in_workdir)


def _schema_rules(meta: Mapping[str, Any], key: str, errors: list[FieldError], *, needed: bool,
                  checked: bool) -> tuple[dict, ...] | None:
    """Field rules from ``modelMetaData[key]``, or None when it gives no schema.

    ``key`` holds ModelOp's array of schema objects (the first entry's ``schemaDefinition`` is
    used), or one schema; a schema is an Avro record, a JSON Schema of an object, ModelOp's
    extended-schema field list, or the JSON text of any of these. A problem goes to ``errors``
    only when the schema is ``needed``; otherwise the schema is ignored. A JSON Schema keyword
    the checker does not know is a problem only when the schema is ``checked``.
    """
    problems: list[FieldError] = []
    rules = _read_schema(meta.get(key), f"{META}.{key}", problems, checked, definition=False)
    if problems:
        if needed:
            errors.extend(problems)
        return None
    return tuple(rules) if rules is not None else None


def _is_empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, (list, dict)) and not value)


def _read_schema(schema: Any, path: str, problems: list[FieldError], checked: bool,
                 definition: bool) -> list[dict] | None:
    """Field rules from one of the forms :func:`_schema_rules` reads, or None for no schema.

    ``definition``: ``schema`` is a ``schemaDefinition``, where a list is the extended schema's
    field list (elsewhere a list is ModelOp's array of schema objects).
    """
    if isinstance(schema, str) and not _is_empty(schema):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            problems.append(FieldError(path, f"is a string but not JSON ({exc})"))
            return None
    if _is_empty(schema):
        return None
    if isinstance(schema, list) and not definition:
        # ModelOp's array of {schemaId, name, schemaDefinition}. ModelOp's own monitors expect
        # one entry; with several, the first is the model's schema, whatever the names say.
        entry = schema[0]
        if not isinstance(entry, dict) or "schemaDefinition" not in entry:
            problems.append(FieldError(f"{path}[0]", (
                "must be a schema object such as {\"schemaId\": …, \"name\": …, \"schemaDefinition\": …}")))
            return None
        return _read_schema(entry["schemaDefinition"], f"{path}[0].schemaDefinition", problems, checked,
                            definition=True)
    if isinstance(schema, dict) and "schemaDefinition" in schema and not definition:
        return _read_schema(schema["schemaDefinition"], f"{path}.schemaDefinition", problems, checked,
                            definition=True)  # one of ModelOp's schema objects, not in its array
    if isinstance(schema, list):
        return _field_rules(schema, lambda i: f"{path}[{i}]", problems)
    if isinstance(schema, dict) and schema.get("type") == "record" and isinstance(schema.get("fields"), list):
        return _field_rules(schema["fields"], lambda i: f"{path}.fields[{i}]", problems)
    if isinstance(schema, dict) and schema.get("type", "object") == "object" and isinstance(
            schema.get("properties"), dict):
        return _json_schema_rules(schema, path, problems, checked)
    problems.append(FieldError(path, (
        "is neither an Avro record schema (\"type\": \"record\" with \"fields\"), ModelOp's "
        "extended schema (a list of fields) nor a JSON Schema of an object (with \"properties\")"
        + ("" if definition else ", nor ModelOp's array of schema objects"))))
    return None


def field_rule(name: str, type_: str | None, nullable: bool, enum=None, minimum=None, maximum=None,
               optional: bool = False) -> dict:
    """One field's rule; ``optional``: the field may be absent from the input altogether."""
    return {"name": name, "type": type_, "nullable": nullable, "enum": enum,
            "minimum": minimum, "maximum": maximum, "optional": optional}


def _json_schema_rules(schema: dict, path: str, problems: list[FieldError], checked: bool) -> list[dict]:
    required = set(schema.get("required", []))
    rules = []
    for name, prop in schema["properties"].items():
        where = f"{path}.properties.{name}"
        if not isinstance(prop, dict):
            problems.append(FieldError(where, "must be an object such as {\"type\": \"number\"}"))
            continue
        unknown = set(prop) - _ANNOTATIONS - {"type", "enum", "minimum", "maximum"}
        if unknown and checked:
            problems.append(FieldError(where, (
                f"uses {', '.join(sorted(unknown))}, which sparkrunner's checker does not know; it "
                "knows type, enum, minimum and maximum")))
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else list(types)
        known = [t for t in types if t != "null"]
        if len(known) > 1 or any(t not in _JSON_TYPES for t in known):
            problems.append(FieldError(f"{where}.type", (
                f"is {prop['type']!r}: give one of {', '.join(_JSON_TYPES)}, optionally with \"null\"")))
            continue
        nullable = "null" in types or name not in required
        rules.append(field_rule(name, known[0] if known else None, nullable, prop.get("enum"),
                           prop.get("minimum"), prop.get("maximum")))
    return rules


def _field_rules(fields: list, where, problems: list[FieldError]) -> list[dict]:
    """Rules from Avro record fields or ModelOp's extended-schema fields (Avro fields plus keys
    such as ``role`` and ``dataClass``, which are ignored). ``scoringOptional: true`` (label and
    score fields) means the field need not be present: not required, and nullable."""
    rules = []
    for i, field in enumerate(fields):
        if not isinstance(field, dict) or not isinstance(field.get("name"), str) or "type" not in field:
            problems.append(FieldError(where(i), "must be an object with \"name\" and \"type\""))
            continue
        kind = _avro_kind(field["type"])
        if kind is None:
            problems.append(FieldError(f"{where(i)}.type", (
                f"{_shown(field['type'])} is not a type sparkrunner can check; accepted: "
                f"{', '.join(_AVRO_TYPES)} (or an Avro enum), alone or in a union with \"null\"")))
            continue
        type_, nullable, enum = kind
        optional = field.get("scoringOptional") is True
        rules.append(field_rule(field["name"], type_, nullable or optional, enum, optional=optional))
    return rules


def _avro_kind(avro: Any) -> tuple[str, bool, list | None] | None:
    """(rule type, nullable, enum symbols) of an Avro type, or None when the checker cannot check it."""
    types = avro if isinstance(avro, list) else [avro]
    nullable = "null" in types
    known = [t for t in types if t != "null"]
    if len(known) != 1:
        return None
    kind = known[0]
    if isinstance(kind, dict):
        if kind.get("type") == "enum" and isinstance(kind.get("symbols"), list):
            return "string", nullable, list(kind["symbols"])
        kind = kind.get("type")  # {"type": "int", "logicalType": "date"} checks as its base type
    if not isinstance(kind, str) or kind not in _AVRO_TYPES:
        return None
    return _AVRO_TYPES[kind], nullable, None


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
