"""Loading the YAML configuration."""

from pathlib import Path

import pytest

from sparkrunner import config
from sparkrunner.errors import ConfigError


def test_defaults_run_locally_on_loopback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = config.load()
    assert settings.spark.master == "local[*]"
    assert settings.spark.env == {"SPARK_LOCAL_IP": "127.0.0.1"}
    assert settings.service.host == "127.0.0.1"
    assert settings.data_dir == Path("~/.sparkrunner").expanduser()


def test_a_file_sets_nested_values_and_a_relative_data_dir_is_beside_it(tmp_path, monkeypatch):
    path = tmp_path / "conf" / "x.yaml"
    path.parent.mkdir()
    path.write_text("data_dir: data\nspark:\n  master: spark://127.0.0.1:7077\n"
                    "  conf: {spark.authenticate: true, spark.executor.cores: 1}\n"
                    "policy:\n  allow: [spark.driver.extraJavaOptions]\n"
                    "service:\n  max_concurrent_jobs: 3\n")
    monkeypatch.setenv("SPARKRUNNER_CONFIG", str(path))
    settings = config.load()
    assert settings.data_dir == tmp_path / "conf" / "data"
    assert settings.spark.master == "spark://127.0.0.1:7077"
    assert settings.spark.conf == {"spark.authenticate": "true", "spark.executor.cores": "1"}
    assert settings.policy.allow == ("spark.driver.extraJavaOptions",)
    assert settings.service.max_concurrent_jobs == 3


@pytest.mark.parametrize("text,message", [
    ("sprak: {}\n", "unknown key(s) 'sprak'"),
    ("service:\n  port: eighty\n", "service.port: must be a int"),
    ("service:\n  port: true\n", "service.port: must be a int"),
    ("spark:\n  conf: [a]\n", "spark.conf: must be a mapping"),
    ("spark: [\n", "not valid YAML"),
])
def test_a_bad_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.load(path)
