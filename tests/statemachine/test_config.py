"""PipelineConfig.load: defaults < TOML file < STEPML_* environment < overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from statemachine.config import PipelineConfig


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No STEPML_* variables and no stepml.toml from the developer's shell or checkout."""
    for name in list(os.environ):
        if name.startswith("STEPML_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def toml(clean: Path) -> Path:
    path = clean / "pipeline.toml"
    path.write_text('[stepml]\nendpoint_name = "from-file"\nautoscaling_max = 3\n'
                    'reserved_concurrency = 50\nprovisioned_concurrency = 10\n'
                    '[stepml.hyperparameters]\nepochs = 7\n')
    return path


def test_defaults(clean: Path) -> None:
    config = PipelineConfig.load()
    assert config == PipelineConfig()
    assert (config.autoscaling_min, config.autoscaling_max, config.autoscaling_target) == (1, 2, 50.0)
    assert (config.reserved_concurrency, config.provisioned_concurrency) == (100, 80)
    assert config.training_backend == "sagemaker"
    assert config.ec2_instance_type.startswith("c")  # compute-optimised


def test_file_over_defaults(toml: Path) -> None:
    config = PipelineConfig.load(toml)
    assert config.endpoint_name == "from-file"
    assert config.autoscaling_max == 3
    assert config.hyperparameters == {"epochs": 7}
    assert config.autoscaling_min == 1


def test_file_found_through_env_and_in_the_working_directory(toml: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_CONFIG", str(toml))
    assert PipelineConfig.load().endpoint_name == "from-file"
    monkeypatch.delenv("STEPML_CONFIG")
    (toml.parent / "stepml.toml").write_text('[stepml]\nendpoint_name = "cwd-file"\n')
    assert PipelineConfig.load().endpoint_name == "cwd-file"


def test_env_over_file(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_AUTOSCALING_MAX", "4")
    monkeypatch.setenv("STEPML_AUTOSCALING_TARGET", "75.5")
    monkeypatch.setenv("STEPML_HYPERPARAMETERS", '{"epochs": 9, "lr": 0.01}')
    monkeypatch.setenv("STEPML_NOT_A_SETTING", "ignored")
    config = PipelineConfig.load(toml)
    assert config.autoscaling_max == 4
    assert config.autoscaling_target == 75.5
    assert config.hyperparameters == {"epochs": 9, "lr": 0.01}
    assert config.endpoint_name == "from-file"


def test_overrides_over_env(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_AUTOSCALING_MAX", "4")
    monkeypatch.setenv("STEPML_TRAINING_BACKEND", "sagemaker")
    config = PipelineConfig.load(toml, autoscaling_max=6, training_backend="ec2", endpoint_name=None)
    assert config.autoscaling_max == 6
    assert config.training_backend == "ec2"
    assert config.endpoint_name == "from-file"  # None means "not given"


def test_unknown_keys_rejected(clean: Path) -> None:
    bad = clean / "bad.toml"
    bad.write_text('[stepml]\nendpoint_nmae = "typo"\n')
    with pytest.raises(ValueError, match="unknown config keys: endpoint_nmae"):
        PipelineConfig.load(bad)
    with pytest.raises(ValueError, match="unknown config keys: bogus"):
        PipelineConfig.load(bogus=1)


def test_unreadable_env_value_names_the_key(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_AUTOSCALING_MAX", "lots")
    with pytest.raises(ValueError, match="autoscaling_max"):
        PipelineConfig.load()


def test_execution_defaults_follow_the_config(clean: Path) -> None:
    config = PipelineConfig.load(autoscaling_max=5, reserved_concurrency=20, provisioned_concurrency=5)
    defaults = config.execution_defaults()
    assert defaults["autoscaling"]["max"] == 5
    assert defaults["predict"] == {"reserved_concurrency": 20, "provisioned_concurrency": 5}
    assert defaults["training"]["hyperparameters"] == config.hyperparameters
