"""An MLflow model directory, read without MLflow: its flavor, its signature, its pip requirements.

A model whose ``modelMetaData.type`` is ``MLFLOW`` is scored with no source code of its own: its
attachment is a directory that ``mlflow.pyfunc.save_model`` (or a flavor's ``save_model``) wrote,
holding an ``MLmodel`` file (YAML) with a ``python_function`` flavor. What sparkrunner acts on is
read here, from that directory's small text files, when the job is admitted:

- the signature's input columns, as field rules (:func:`sparkrunner.scoringspec.field_rule`), so
  records that do not conform are rejected before the model sees them;
- the signature's outputs, as field rules, so the output schema needs no scored sample;
- the pip requirements (``requirements.txt``, else ``python_env.yaml``'s dependencies), checked
  against what is installed (:func:`check_requirements`). Per-model environments reuse
  :func:`pip_requirements`.

Only files inside the directory are opened (``MLmodel``, ``requirements.txt``,
``python_env.yaml``), never followed out of it, and nothing is imported: MLflow itself is needed
only where the model is scored.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple

import yaml
from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import FieldError, MlflowModelError
from .policy import local_path
from .scoringspec import META, MLFLOW_MODEL_TYPE, field_rule  # noqa: F401 (the type is named here too)

if TYPE_CHECKING:
    from .jobspec import JobSpec

MLMODEL_FILENAME = "MLmodel"
PYFUNC_FLAVOR = "python_function"
REQUIREMENTS_FILENAME = "requirements.txt"
PYTHON_ENV_FILENAME = "python_env.yaml"
#: The column a single unnamed output (a 1-D array, a Series) is written to; a 2-D output's
#: columns are ``prediction_0``, ``prediction_1``, …
PREDICTION = "prediction"
#: MLflow's column types -> the field rule types of :mod:`sparkrunner.scoringspec`. Types not
#: here (binary, datetime, arrays, objects) are carried to the model unchecked.
_COLUMN_TYPES = {"boolean": "boolean", "integer": "integer", "long": "integer", "float": "number",
                 "double": "number", "string": "string"}
#: numpy dtypes of tensor specs -> field rule types.
_TENSOR_TYPES = {"float64": "number", "float32": "number", "float16": "number", "int64": "integer",
                 "int32": "integer", "int16": "integer", "int8": "integer", "uint8": "integer",
                 "bool": "boolean", "str": "string", "object": "string"}
#: The package that provides each requirement's name, where another one does too: MLflow's
#: models pin ``mlflow``, and ``mlflow-skinny`` (sparkrunner[mlflow]) provides the same modules.
_PROVIDED_BY = {"mlflow": ("mlflow", "mlflow-skinny")}
#: The most read of each of the directory's text files, when the job is admitted: they are
#: small (MLflow writes a few kilobytes), and a larger one is not read into the service's memory.
MAX_TEXT_BYTES = 1024 * 1024
#: Installs sparkrunner's MLflow support.
INSTALL_HINT = "pip install 'sparkrunner[mlflow]'"


@dataclass(frozen=True)
class MlflowModel:
    """What sparkrunner reads from an MLflow model directory."""

    path: Path
    #: The ``python_function`` flavor's settings (``loader_module``, ``python_version``, …).
    pyfunc: Mapping[str, Any]
    #: The signature's input columns as field rules, or None (no signature, or a tensor input).
    input_fields: tuple[dict, ...] | None
    #: MLflow's type of each input column, by name: the scorer hands the model these dtypes.
    input_types: Mapping[str, str]
    #: The signature's outputs as field rules, or None (no signature outputs, or an unknown shape).
    output_fields: tuple[dict, ...] | None
    #: pip requirement lines, as saved with the model.
    requirements: tuple[str, ...]


def read_model(directory: str | os.PathLike) -> MlflowModel:
    """The MLflow model saved in ``directory``, or :class:`MlflowModelError` saying what is wrong."""
    path = Path(directory)
    if not path.is_dir():
        raise MlflowModelError(f"{str(path)!r} is not a directory: an MLflow model is the directory "
                               f"mlflow saved, holding an {MLMODEL_FILENAME} file")
    text = _read_inside(path, MLMODEL_FILENAME)
    if text is None:
        raise MlflowModelError(f"{str(path)!r} holds no {MLMODEL_FILENAME} file: it is not an MLflow model directory")
    try:
        mlmodel = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MlflowModelError(f"{str(path / MLMODEL_FILENAME)!r} is not valid YAML: {exc}") from exc
    flavors = (mlmodel or {}).get("flavors") if isinstance(mlmodel, dict) else None
    if not isinstance(flavors, dict) or not isinstance(flavors.get(PYFUNC_FLAVOR), dict):
        found = ", ".join(flavors) if isinstance(flavors, dict) and flavors else "none"
        raise MlflowModelError(f"{str(path / MLMODEL_FILENAME)!r} has no {PYFUNC_FLAVOR} flavor (flavors: "
                               f"{found}): sparkrunner scores MLflow models through mlflow.pyfunc")
    signature = mlmodel.get("signature") or {}
    inputs = _spec_list(signature.get("inputs"), "inputs", path)
    outputs = _spec_list(signature.get("outputs"), "outputs", path)
    input_fields, input_types = _input_rules(inputs)
    return MlflowModel(path=path, pyfunc=flavors[PYFUNC_FLAVOR], input_fields=input_fields,
                       input_types=input_types, output_fields=_output_rules(outputs),
                       requirements=tuple(pip_requirements(path)))


def pip_requirements(directory: str | os.PathLike) -> list[str]:
    """The pip requirement lines an MLflow model was saved with: ``requirements.txt``, else the
    ``dependencies`` of ``python_env.yaml`` (``-r requirements.txt`` lines followed), without
    comments and blank lines. Options such as ``-c`` or ``--index-url`` are kept as lines."""
    path = Path(directory)
    text = _read_inside(path, REQUIREMENTS_FILENAME)
    if text is not None:
        return _requirement_lines(text)
    env_text = _read_inside(path, PYTHON_ENV_FILENAME)
    if env_text is None:
        return []
    try:
        env = yaml.safe_load(env_text) or {}
    except yaml.YAMLError as exc:
        raise MlflowModelError(f"{str(path / PYTHON_ENV_FILENAME)!r} is not valid YAML: {exc}") from exc
    lines = []
    for dependency in env.get("dependencies") or [] if isinstance(env, dict) else []:
        dependency = str(dependency).strip()
        if dependency.startswith("-r "):
            lines += _requirement_lines(_read_inside(path, dependency[3:].strip()) or "")
        elif dependency:
            lines.append(dependency)
    return lines


def _requirement_lines(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _read_inside(directory: Path, name: str) -> str | None:
    """The text of ``directory/name``, a plain file inside the directory (not through a link that
    leads out of it); None when there is none."""
    path = directory / name
    try:
        real, root = path.resolve(), directory.resolve()
    except OSError:
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    try:
        with open(real, "rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
        if len(data) > MAX_TEXT_BYTES:
            raise MlflowModelError(f"{str(path)!r} is larger than {MAX_TEXT_BYTES} bytes: "
                                   f"not the small text file MLflow saves")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MlflowModelError(f"cannot read {str(path)!r}: {exc}") from exc


def _spec_list(value: Any, what: str, path: Path) -> list[dict] | None:
    """A signature's ``inputs`` or ``outputs``: MLflow stores them as JSON text inside the YAML."""
    if value in (None, "", "null"):
        return None
    try:
        specs = json.loads(value) if isinstance(value, str) else value
    except ValueError as exc:
        raise MlflowModelError(f"the signature {what} in {str(path / MLMODEL_FILENAME)!r} are not JSON: {exc}") from exc
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise MlflowModelError(f"the signature {what} in {str(path / MLMODEL_FILENAME)!r} are not a list of "
                               "column or tensor specs")
    return specs


def _input_rules(specs: list[dict] | None) -> tuple[tuple[dict, ...] | None, dict[str, str]]:
    """Field rules of named input columns; a tensor input (or unnamed columns) gives none."""
    if not specs or any(s.get("type") == "tensor" or not s.get("name") for s in specs):
        return None, {}
    rules, types = [], {}
    for spec in specs:
        required = spec.get("required", True) is not False
        rules.append(field_rule(str(spec["name"]), _COLUMN_TYPES.get(spec.get("type")), nullable=not required,
                                optional=not required))
        types[str(spec["name"])] = str(spec.get("type"))
    return tuple(rules), types


def _output_rules(specs: list[dict] | None) -> tuple[dict, ...] | None:
    """Field rules of the outputs: named columns; one unnamed column or a 1-D tensor is
    ``prediction``; a 2-D tensor of known width k is ``prediction_0`` … ``prediction_{k-1}``.
    None when the outputs' columns cannot be told (then a scored sample tells them)."""
    if not specs:
        return None
    if all(s.get("type") != "tensor" for s in specs):
        if len(specs) == 1 and not specs[0].get("name"):
            return (field_rule(PREDICTION, _COLUMN_TYPES.get(specs[0].get("type")), nullable=True),)
        if any(not s.get("name") for s in specs):
            return None
        return tuple(field_rule(str(s["name"]), _COLUMN_TYPES.get(s.get("type")), nullable=True) for s in specs)
    if len(specs) != 1:
        return None
    tensor = specs[0].get("tensor-spec") or {}
    shape, kind = tensor.get("shape") or [], _TENSOR_TYPES.get(str(tensor.get("dtype")))
    if len(shape) == 1:
        return (field_rule(PREDICTION, kind, nullable=True),)
    if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
        return tuple(field_rule(f"{PREDICTION}_{i}", kind, nullable=True) for i in range(shape[1]))
    return None


# --- requirements against what is installed ----------------------------------------------------


@dataclass(frozen=True)
class RequirementCheck:
    """What :func:`check_requirements` found: the requirement lines this installation does not
    meet (the job's own environment gets them, :mod:`sparkrunner.environments`), why for each,
    and warnings, one sentence each."""

    unmet: tuple[str, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]


def mlflow_installed(version_of: Callable[[str], str | None] | None = None) -> bool:
    """Whether MLflow's pyfunc can be loaded here (``mlflow`` or ``mlflow-skinny`` installed)."""
    version_of = version_of or installed_version
    return any(version_of(name) for name in _PROVIDED_BY["mlflow"])


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_requirements(requirements: list[str] | tuple[str, ...],
                       version_of: Callable[[str], str | None] | None = None) -> RequirementCheck:
    """Each requirement against what is installed, by this rule:

    - a package that is not installed is unmet;
    - an installed version outside the requirement's specifier is unmet, except where the
      specifier is an exact pin (``==``, as MLflow writes the saving environment's versions)
      and the installed version has the same major version: that is a warning (the model was
      saved with another release of the same major version);
    - ``mlflow`` is met by ``mlflow`` or ``mlflow-skinny``, and a pin of it is only a warning:
      MLflow loads models saved by other releases;
    - a requirement whose environment marker does not apply here is skipped; a line that is not
      a plain requirement (``-c``, ``--index-url``, a URL, a path) is not checked, with a warning.
    """

    version_of = version_of or installed_version
    unmet, reasons, warnings = [], [], []
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            warnings.append(f"the requirement line {line!r} is not a plain package requirement; not checked")
            continue
        try:
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
        except UndefinedEnvironmentName:
            pass
        if requirement.url:
            warnings.append(f"{line!r} names a URL; only that {requirement.name} is installed is checked")
        name = canonicalize_name(requirement.name)
        installed = next(((provider, v) for provider in _PROVIDED_BY.get(name, (name,))
                          if (v := version_of(provider))), None)
        if installed is None:
            hint = f" ({INSTALL_HINT})" if name == "mlflow" else ""
            unmet.append(line)
            reasons.append(f"needs {line!r}, and {requirement.name} is not installed{hint}")
            continue
        problem = _version_problem(requirement, line, *installed)
        if problem is None:
            continue
        refused, text = problem
        if refused:
            unmet.append(line)
        (reasons if refused else warnings).append(text)
    return RequirementCheck(tuple(unmet), tuple(reasons), tuple(warnings))


def _version_problem(requirement, line: str, provider: str, version: str) -> tuple[bool, str] | None:
    """(refused, sentence) when ``version`` does not meet ``requirement``; None when it does."""

    if not requirement.specifier or requirement.specifier.contains(version, prereleases=True):
        return None
    text = f"needs {line!r}, and {provider} {version} is installed"
    pins = [s.version.removesuffix(".*") for s in requirement.specifier if s.operator == "=="]
    if len(pins) != len(requirement.specifier) or len(pins) != 1:
        return True, text
    if canonicalize_name(requirement.name) == "mlflow":
        return False, text + " (MLflow loads models saved by other releases)"
    try:
        same_major = Version(pins[0]).major == Version(version).major
    except InvalidVersion:
        return True, text
    if same_major:
        return False, text + " (the same major version: the model was saved with another release)"
    return True, text + " (another major version)"


# --- admission: the job's plan completed from the model directory ------------------------------


class Resolved(NamedTuple):
    """An MLflow model's job completed from its model directory (:func:`resolve`)."""

    spec: "JobSpec"
    errors: list[FieldError]
    warnings: list[str]
    #: The model's requirement lines this installation does not meet: the job gets an
    #: environment of its own with them.
    unmet: tuple[str, ...] = ()


def resolve(spec: "JobSpec") -> Resolved:
    """``spec`` with its MLflow model's signature in its scoring plan, the problems, warnings
    and the requirements this installation does not meet.

    Called by admission, once the model directory's location is accepted: reads the directory
    (small files only), checks its requirements against what is installed, and fills what the
    job's ``modelMetaData`` does not give itself: the input schema (checked unless
    ``enableInputSchemaChecking`` is false) and the output schema.
    """
    plan = spec.scoring
    assert plan is not None and plan.mlflow is not None
    where = asset_path(spec.document, plan.mlflow.url)
    if not mlflow_installed():
        return Resolved(spec, [FieldError(where, f"is an MLflow model, and MLflow is not installed here: {INSTALL_HINT}")], [])
    path = local_path(plan.mlflow.url)
    if path is None:
        return Resolved(spec, [FieldError(where, (
            f"{plan.mlflow.url!r} is not a local directory: an MLflow model's directory is read when "
            "the job is admitted (its signature and requirements), so it must be a local path or file: URL"))], [])
    try:
        model = read_model(path)
    except MlflowModelError as exc:
        return Resolved(spec, [FieldError(where, str(exc))], [])
    check = check_requirements(model.requirements)
    errors: list[FieldError] = []
    warnings = [f"{where}: the MLflow model {text}" for text in check.warnings]
    warnings += [f"{where}: the MLflow model {text}: it runs in an environment of its own that has it"
                 for text in check.reasons]
    meta = spec.document["model"]["storedModel"].get("modelMetaData") or {}
    input_fields = plan.input_fields if plan.input_fields is not None else model.input_fields
    output_fields = plan.output_fields if plan.output_fields is not None else model.output_fields
    for flag, fields, schema, side in (("enableInputSchemaChecking", input_fields, "inputSchema", "inputs"),
                                       ("enableOutputSchemaChecking", output_fields, "outputSchema", "outputs")):
        if meta.get(flag) is True and fields is None:
            errors.append(FieldError(f"{META}.{flag}", (
                f"is true, but neither {META}.{schema} nor the MLflow model's signature names the "
                f"{side}' columns: give {schema}, the schema records are checked against")))
    resolved = replace(plan, input_fields=input_fields, output_fields=output_fields,
                       check_input=plan.check_input and input_fields is not None,
                       mlflow=replace(plan.mlflow, input_types=tuple(model.input_types.items())))
    return Resolved(replace(spec, scoring=resolved), errors, warnings, check.unmet)


def asset_path(document: Mapping[str, Any], url: str) -> str:
    """The JSON path of the fileUrl of the model asset whose fileUrl is ``url``."""
    for i, asset in enumerate(document["model"]["storedModel"]["modelAssets"]):
        if asset.get("assetType") == "EXTERNAL_FILE" and asset.get("fileUrl") == url:
            return f"$.model.storedModel.modelAssets[{i}].fileUrl"
    return "$.model.storedModel.modelAssets"
