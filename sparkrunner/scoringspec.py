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
#: ``modelMetaData.type`` of ModelOp's plain (non-Spark) Python models.
PYTHON_MODEL_TYPE = "PYTHON"
#: ``fileFormat`` values the distributed path reads and writes, and what each means.
FILE_FORMATS = {"CSV": "CSV with a header line", "JSON": "JSON lines", "PARQUET": "Parquet"}
#: ``assetRole`` of the output asset that receives rejected records.
REJECTED_ROLE = "REJECTED_RECORDS"
REJECTED_SUFFIX = "_rejected"

META = "$.model.storedModel.modelMetaData"
# Keywords of a JSON Schema that describe but do not constrain, so they are accepted and ignored.
_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "format", "$comment"}
_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean"}
_AVRO_TYPES = {"string": "string", "int": "integer", "long": "integer", "float": "number",
               "double": "number", "boolean": "boolean"}


@dataclass(frozen=True)
class DataAsset:
    """An input or output of the distributed path: where it is and how it is stored."""

    name: str
    url: str
    format: str


@dataclass(frozen=True)
class ScoringPlan:
    """Everything the distributed path needs besides the model's source."""

    form: str  # RECORD or DATAFRAME
    id_field: str | None
    inputs: tuple[DataAsset, ...]
    output: DataAsset
    rejected: DataAsset
    input_fields: tuple[dict, ...] | None  # field rules from inputSchema (see _rule)
    output_fields: tuple[dict, ...] | None
    check_input: bool
    check_output: bool
    attachments: tuple[str, ...]  # fileUrls of the model's EXTERNAL_FILE assets

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
    inputs = [_data_asset(f"$.inputData[{i}]", a, errors) for i, a in _external(doc.get("inputData", []))]
    if not inputs:
        errors.append(FieldError("$.inputData", (
            "holds no EXTERNAL_FILE asset: a one-parameter (record or DataFrame) score function "
            f"needs at least one input file ({_formats()})")))
    output, rejected = _outputs(doc.get("outputData", []), errors)
    id_field = doc.get("idField")
    input_fields = _schema_rules(meta, "inputSchema", errors)
    output_fields = _schema_rules(meta, "outputSchema", errors)
    for flag, fields, schema in (("enableInputSchemaChecking", input_fields, "inputSchema"),
                                 ("enableOutputSchemaChecking", output_fields, "outputSchema")):
        if meta.get(flag) and fields is None and f"{META}.{schema}" not in {e.path for e in errors}:
            errors.append(FieldError(f"{META}.{flag}", f"is true, but {META}.{schema} is missing: "
                                                       "give the schema records are checked against"))
    if len(errors) > count:
        return None
    return ScoringPlan(
        form=form, id_field=id_field, inputs=tuple(inputs), output=output, rejected=rejected,
        input_fields=input_fields, output_fields=output_fields,
        check_input=bool(meta.get("enableInputSchemaChecking")),
        check_output=bool(meta.get("enableOutputSchemaChecking")),
        attachments=tuple(a["fileUrl"] for _, a in _external(doc["model"]["storedModel"]["modelAssets"])),
    )


def _external(assets: list[dict]) -> list[tuple[int, dict]]:
    return [(i, a) for i, a in enumerate(assets) if a.get("assetType") == "EXTERNAL_FILE"]


def _formats() -> str:
    return "fileFormat " + ", ".join(f"{k} ({v})" for k, v in FILE_FORMATS.items())


def _data_asset(path: str, asset: Mapping[str, Any], errors: list[FieldError]) -> DataAsset:
    file_format = str(asset.get("fileFormat", "")).upper()
    if file_format not in FILE_FORMATS:
        shown = repr(asset["fileFormat"]) if "fileFormat" in asset else "missing"
        errors.append(FieldError(f"{path}.fileFormat", (
            f"is {shown}: a one-parameter (record or DataFrame) score function reads and writes "
            f"{_formats()}")))
    return DataAsset(name=str(asset.get("name") or asset["fileUrl"]), url=asset["fileUrl"], format=file_format)


def _outputs(assets: list[dict], errors: list[FieldError]) -> tuple[DataAsset | None, DataAsset | None]:
    """(scores, rejected records): the first output of each kind; rejects default to <scores>_rejected."""
    outputs = _external(assets)
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
    return output, DataAsset(name=output.name + REJECTED_SUFFIX,
                             url=output.url.rstrip("/") + REJECTED_SUFFIX, format=output.format)


def _schema_rules(meta: Mapping[str, Any], key: str, errors: list[FieldError]) -> tuple[dict, ...] | None:
    """Field rules from a JSON Schema or an Avro record schema (a dict, or its JSON text)."""
    if key not in meta or meta[key] in (None, "", {}):
        return None
    path = f"{META}.{key}"
    schema = meta[key]
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            errors.append(FieldError(path, f"is a string but not JSON ({exc})"))
            return None
    if isinstance(schema, dict) and schema.get("type") == "record":
        rules = _avro_rules(schema, path, errors)
    elif isinstance(schema, dict) and schema.get("type", "object") == "object" and "properties" in schema:
        rules = _json_schema_rules(schema, path, errors)
    else:
        errors.append(FieldError(path, (
            "is neither a JSON Schema of an object (with \"properties\") nor an Avro record schema "
            "(\"type\": \"record\" with \"fields\")")))
        return None
    return tuple(rules) if rules is not None else None


def _rule(name: str, type_: str | None, nullable: bool, enum=None, minimum=None, maximum=None) -> dict:
    return {"name": name, "type": type_, "nullable": nullable, "enum": enum,
            "minimum": minimum, "maximum": maximum}


def _json_schema_rules(schema: dict, path: str, errors: list[FieldError]) -> list[dict] | None:
    count = len(errors)
    required = set(schema.get("required", []))
    rules = []
    for name, prop in schema["properties"].items():
        where = f"{path}.properties.{name}"
        if not isinstance(prop, dict):
            errors.append(FieldError(where, "must be an object such as {\"type\": \"number\"}"))
            continue
        unknown = set(prop) - _ANNOTATIONS - {"type", "enum", "minimum", "maximum"}
        if unknown:
            errors.append(FieldError(where, (
                f"uses {', '.join(sorted(unknown))}, which sparkrunner's checker does not know; it "
                "knows type, enum, minimum and maximum")))
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else list(types)
        known = [t for t in types if t != "null"]
        if len(known) > 1 or any(t not in _JSON_TYPES for t in known):
            errors.append(FieldError(f"{where}.type", (
                f"is {prop['type']!r}: give one of {', '.join(_JSON_TYPES)}, optionally with \"null\"")))
            continue
        nullable = "null" in types or name not in required
        rules.append(_rule(name, known[0] if known else None, nullable, prop.get("enum"),
                           prop.get("minimum"), prop.get("maximum")))
    return rules if len(errors) == count else None


def _avro_rules(schema: dict, path: str, errors: list[FieldError]) -> list[dict] | None:
    count = len(errors)
    rules = []
    for i, field in enumerate(schema.get("fields", [])):
        where = f"{path}.fields[{i}]"
        if not isinstance(field, dict) or "name" not in field or "type" not in field:
            errors.append(FieldError(where, "must be an object with \"name\" and \"type\""))
            continue
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        nullable = "null" in types
        known = [t for t in types if t != "null"]
        enum = None
        if len(known) == 1 and isinstance(known[0], dict) and known[0].get("type") == "enum":
            known, enum = ["string"], list(known[0].get("symbols", []))
        elif len(known) == 1 and isinstance(known[0], dict):
            known = [known[0].get("type")]  # a logical type checks as its underlying type
        if len(known) != 1 or known[0] not in (*_AVRO_TYPES, "string"):
            errors.append(FieldError(f"{where}.type", (
                f"is {field['type']!r}: give one of {', '.join(_AVRO_TYPES)} or an enum, optionally "
                "in a union with \"null\"")))
            continue
        rules.append(_rule(field["name"], _AVRO_TYPES.get(known[0], "string"), nullable, enum))
    return rules if len(errors) == count else None
