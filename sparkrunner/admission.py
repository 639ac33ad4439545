"""The one entrance for a job: a document in, a fully resolved job out, or every problem at once.

Every route calls :func:`admit` once: the service (``POST /jobs``, ModelOp's and Livy's paths),
``sparkrunner validate``, ``render`` and ``run``. What comes out is frozen and resolved: the
validated job, the Spark properties spark-submit gets, the warnings the job carries. The later
stages (working directory, command line, launch) only carry it out and cannot refuse it.

``jobType`` decides which validator builds the spec: a modelBatchJob (:mod:`sparkrunner.jobspec`)
or a script job, ``SPARK_SCRIPT_JOB`` (:mod:`sparkrunner.script`, what Livy's batches become).
Both go through the same settings policy and location rules.

Pure: no file is written, nothing is opened over the network (a script job's local file is only
looked for: it must exist). Two exceptions read: a model's local ``requirements.txt``
attachment, and an MLflow model's directory, once its location is accepted, for its small text
files (``MLmodel``, ``requirements.txt``): the signature and the pip requirements, which are
checked against what is installed here. Whether a model's packages can be resolved is asked of
the indexes later, by the service at submit time (:meth:`sparkrunner.service.JobService.submit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from .config import Settings
from .execution import Execution, Mode, decide
from .errors import FieldError, JobInvalid
from .hdfs import unchecked_reason
from .jobspec import JobSpec, build, check_shape, settings_of
from .policy import (ATTACHMENT_READ_SCHEMES, READ_SCHEMES, Location, ResolvedSettings,
                     location_problems, resolve_settings)
from . import script
from .requirements import Requirements, requirements_of, with_lines
from .script import ScriptSpec


class Origin(str, Enum):
    """Who runs the job, which decides whose files it may name."""

    #: The service runs it as the service's user for a client: local paths only under
    #: ``policy.local_roots``, never inside the data directory.
    SERVICE = "service"
    #: ``sparkrunner run`` (and validate, render) runs it as the user at the keyboard.
    LOCAL = "local"


@dataclass(frozen=True)
class AdmittedJob:
    """A job that will run as it stands: the validated document and everything resolved."""

    #: A model job's spec, or a script job's.
    spec: JobSpec | ScriptSpec
    #: Spark properties for spark-submit (the operator's and the job's) and --verbose.
    settings: ResolvedSettings
    #: What the configuration overrode or could not check, one sentence each, with its JSON path.
    warnings: tuple[str, ...]
    #: Warm or cold, and why (:mod:`sparkrunner.execution`).
    execution: Execution = Execution(Mode.COLD, "warm jobs are not available here")
    #: The model's own packages (:mod:`sparkrunner.requirements`); None: the base's only.
    requirements: Requirements | None = None

    @property
    def document(self) -> Mapping[str, Any]:
        return self.spec.document


#: Why a job runs cold where nobody said warm jobs can run.
WARM_UNAVAILABLE = "warm jobs are not available here"


def admit(document: Mapping[str, Any], settings: Settings, origin: Origin = Origin.SERVICE,
          data_dir: Path | None = None, warm_unavailable: str | None = WARM_UNAVAILABLE) -> AdmittedJob:
    """The admitted job for ``document``, or :class:`JobInvalid` listing every problem.

    ``data_dir`` is the service's data directory (with ``Origin.SERVICE``): no location may lie
    inside it. ``warm_unavailable`` is None where warm jobs can run, else why they cannot.
    """
    if script.is_script_job(document):
        return _admit_script(document, settings, origin, data_dir)
    doc = check_shape(document, settings.limits)  # the shape first: the rest relies on it
    try:
        spec, errors = build(doc), []
    except JobInvalid as exc:  # settings and locations are still checked: every problem at once
        spec, errors = None, exc.errors
    resolved, setting_errors = resolve_settings(*settings_of(doc), settings,
                                                app_name=spec.name if spec else "")
    locations = job_locations(doc, scored=spec is not None and spec.scoring is not None)
    location_errors = location_problems(locations, settings.policy, data_dir, local=origin is Origin.SERVICE)
    errors += setting_errors + location_errors
    requirements, requirement_errors = requirements_of(doc, settings.limits.max_asset_bytes,
                                                       refused=frozenset(e.path for e in location_errors))
    errors += requirement_errors
    mlflow_warnings: list[str] = []
    if spec is not None and spec.scoring is not None and spec.scoring.mlflow is not None:
        spec, mlflow_errors, mlflow_warnings, unmet = _with_mlflow_model(spec, errors)
        requirements, unmet_errors = with_lines(requirements, unmet, _mlflow_model_path(spec))
        errors += mlflow_errors + unmet_errors
    execution = None
    if spec is not None and resolved is not None:
        execution, mode_errors = decide(spec, resolved, doc, warm_unavailable=warm_unavailable,
                                        master=settings.spark.master, requirements=requirements)
        errors += mode_errors
    if errors or spec is None or resolved is None or execution is None:
        raise JobInvalid(errors)
    return AdmittedJob(spec=spec, settings=resolved,
                       warnings=_with_unchecked([*resolved.warnings, *mlflow_warnings], locations, settings),
                       execution=execution, requirements=requirements)


def _with_mlflow_model(spec: JobSpec, errors: list[FieldError]):
    """An MLflow model's job completed from its model directory (:func:`mlflow_model.resolve`),
    which is read only once its location is accepted: a refused path is never opened."""
    from . import mlflow_model  # its YAML and packaging imports only for MLflow jobs

    if any(e.path == _mlflow_model_path(spec) for e in errors):
        return mlflow_model.Resolved(spec, [], [])
    return mlflow_model.resolve(spec)


def _mlflow_model_path(spec: JobSpec) -> str:
    """The JSON path of an MLflow model job's model directory."""
    from . import mlflow_model

    return mlflow_model.asset_path(spec.document, spec.scoring.mlflow.url)


def _with_unchecked(warnings: list[str], locations: list[Location], settings: Settings) -> tuple[str, ...]:
    """``warnings`` and one for each HDFS location that cannot be checked before the run."""
    warnings = list(warnings)
    for where in locations:
        reason = unchecked_reason(where.url, settings.hdfs)
        if reason:
            warnings.append(f"{where.path}: {where.url!r} is not checked before the run ({reason}); "
                            "Spark reads it with the cluster's own Hadoop configuration")
    return tuple(warnings)


def _admit_script(document: Mapping[str, Any], settings: Settings, origin: Origin,
                  data_dir: Path | None) -> AdmittedJob:
    """A script job admitted: its fields checked, its options and ``conf`` through the policy,
    its locations through the location rules; or every problem at once."""
    doc = script.check_shape(document, settings.limits)
    try:
        spec, errors = script.build(doc), []
    except JobInvalid as exc:
        spec, errors = None, exc.errors
    options, paths, conf = script.options_of(doc)
    resolved, setting_errors = resolve_settings(options, conf, None, settings,
                                                app_name=spec.name if spec else "",
                                                flag_paths=paths, conf_path="$.conf")
    locations = script.locations_of(doc)
    errors += setting_errors + location_problems(locations, settings.policy, data_dir,
                                                 local=origin is Origin.SERVICE)
    if spec is not None and spec.local_path is not None and not any(e.path == "$.file" for e in errors):
        if not Path(spec.local_path).is_file():
            errors.append(FieldError("$.file", f"{spec.file!r} is not a file on this machine"))
    if errors or spec is None or resolved is None:
        raise JobInvalid(errors)
    # Spark fetches a script job's files itself (a missing one ends the job with Spark's error),
    # as Livy leaves it to Spark: nothing is checked before the run, so nothing is said about it.
    execution, _ = decide(spec, resolved, doc, warm_unavailable=None)  # always cold: says why
    return AdmittedJob(spec=spec, settings=resolved, warnings=resolved.warnings, execution=execution)


def job_locations(doc: Mapping[str, Any], scored: bool) -> list[Location]:
    """Every EXTERNAL_FILE asset's fileUrl, with the schemes sparkrunner must be able to read
    where it reads the data itself (``scored``: the distributed scoring path)."""
    lists = [("$.inputData", doc.get("inputData") or [], READ_SCHEMES),
             ("$.outputData", doc.get("outputData") or [], READ_SCHEMES),
             ("$.model.storedModel.modelAssets", doc["model"]["storedModel"]["modelAssets"],
              ATTACHMENT_READ_SCHEMES)]
    return [Location(f"{path}[{i}].fileUrl", asset["fileUrl"], schemes if scored else None)
            for path, assets, schemes in lists
            for i, asset in enumerate(assets) if asset.get("assetType") == "EXTERNAL_FILE"]
