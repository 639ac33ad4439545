"""A plain install serves: the service's packages are dependencies, not an extra, and a package
that is missing all the same is named with how to install it, never shown as a traceback."""

from __future__ import annotations

import re
import sys
import tomllib

import pytest

from conftest import REPO
from sparkrunner import cli
from sparkrunner.cli.exits import EXIT_INVALID
from sparkrunner.cli.main import missing_package


def test_the_service_packages_are_dependencies_and_the_old_extra_still_installs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower() for requirement in project["dependencies"]}
    assert {"fastapi", "uvicorn", "prometheus-client", "jinja2", "rich"} <= names
    assert project["optional-dependencies"]["service"] == []  # `pip install 'sparkrunner[service]'` works


def test_a_missing_package_is_named_with_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    assert cli.main(["serve"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert err.startswith("error: the Python package 'uvicorn' is not installed: pip install uvicorn")
    assert "Traceback" not in err


def test_the_name_to_install_is_the_packages_not_the_modules():
    assert missing_package("yaml.constructor") == "pyyaml"
    assert missing_package("fastapi.routing") == "fastapi"


def test_the_airflow_classes_without_airflow_name_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "airflow" or m.startswith("sparkrunner.airflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "airflow", None)
    with pytest.raises(ModuleNotFoundError, match=r"needs Apache Airflow 3 .*pip install 'sparkrunner\[airflow\]'"):
        from sparkrunner.airflow import SparkRunnerJobOperator  # noqa: F401
    from sparkrunner.airflow import get_provider_info  # the provider's description needs no Airflow

    assert get_provider_info()["package-name"] == "sparkrunner"


def test_the_dashboards_templates_are_package_data():
    """`pip install` ships what the dashboard renders: every template matches package-data."""
    from fnmatch import fnmatch

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sparkrunner"]
    templates = [p.relative_to(REPO / "sparkrunner").as_posix() for p in (REPO / "sparkrunner" / "ui" / "templates").iterdir()]
    assert templates and all(any(fnmatch(t, pattern) for pattern in patterns) for t in templates)
    assert missing_package("prometheus_client.parser") == "prometheus-client"
