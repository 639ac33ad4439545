"""sparkrunner for Apache Airflow: a hook, a deferrable operator and its trigger.

Airflow finds this provider through the ``apache_airflow_provider`` entry point, which names
:func:`get_provider_info`. This module imports nothing from Airflow, so that Airflow can read the
provider's description cheaply; the classes load on first use::

    from sparkrunner.airflow import SparkRunnerJobOperator
"""

from __future__ import annotations

import importlib
from typing import Any

from .. import __version__

# Where each public class lives; loaded lazily by __getattr__ below.
_CLASSES = {
    "SparkRunnerHook": "sparkrunner.airflow.hooks",
    "SparkRunnerJobOperator": "sparkrunner.airflow.operators",
    "SparkRunnerJobTrigger": "sparkrunner.airflow.triggers",
    "JobFailed": "sparkrunner.airflow.operators",
    "JobRefused": "sparkrunner.airflow.operators",
}

__all__ = ["get_provider_info", *_CLASSES]

#: Modules that come with Apache Airflow (the sparkrunner[airflow] extra), which the classes need.
AIRFLOW_MODULES = frozenset({"airflow", "httpx"})


def get_provider_info() -> dict[str, Any]:
    """The provider description Airflow's ProvidersManager reads (provider_info.schema.json)."""
    integration = "sparkrunner"
    return {
        "package-name": "sparkrunner",
        "name": "sparkrunner",
        "description": "Run ModelOp-style modelBatchJob documents on Apache Spark through a "
                       "sparkrunner service: submit, wait (deferrable) and cancel.",
        "versions": [__version__],
        "integrations": [{"integration-name": integration, "tags": ["software"]}],
        "hooks": [{"integration-name": integration, "python-modules": ["sparkrunner.airflow.hooks"]}],
        "operators": [{"integration-name": integration,
                       "python-modules": ["sparkrunner.airflow.operators"]}],
        "triggers": [{"integration-name": integration,
                      "python-modules": ["sparkrunner.airflow.triggers"]}],
        "connection-types": [{"connection-type": "sparkrunner",
                              "hook-class-name": "sparkrunner.airflow.hooks.SparkRunnerHook"}],
    }


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        try:
            module = importlib.import_module(_CLASSES[name])
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in AIRFLOW_MODULES:
                raise
            raise ModuleNotFoundError(f"sparkrunner.airflow.{name} needs Apache Airflow 3 (the module "
                                      f"{exc.name!r} is missing): pip install 'sparkrunner[airflow]'",
                                      name=exc.name) from exc
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
