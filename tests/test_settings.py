"""Settings: defaults < mlflow.yml < environment < flags; paths relative to the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.settings import DEFAULT_CONFIG, load_settings
from models.config import TrainSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "PDFLOW_WORKSPACE", "PDFLOW_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "settings.yml"
    path.parent.mkdir()
    path.write_text(text)
    return path


def test_repository_file_gives_a_local_sqlite_store() -> None:
    settings = load_settings(DEFAULT_CONFIG)
    assert settings.mlflow.tracking_uri.startswith("sqlite:////")
    assert settings.mlflow.tracking_uri.endswith("/.pdflow/mlflow.db")
    assert settings.workspace == DEFAULT_CONFIG.parent / ".pdflow"


def test_file_values_and_relative_paths(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "workspace: ws\nmlflow:\n  tracking_uri: sqlite:///m.db\n  artifact_location: art\n"
        "training:\n  trials: 4\n",
    )
    settings = load_settings(path)
    assert settings.workspace == path.parent / "ws"
    assert settings.mlflow.tracking_uri == f"sqlite:///{path.parent / 'm.db'}"
    assert settings.mlflow.artifact_location == str(path.parent / "art")
    assert settings.training.trials == 4
    assert settings.training.seed == 42  # untouched default


def test_environment_beats_file_and_flags_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "training:\n  trials: 4\n  seed: 1\n")
    monkeypatch.setenv("PDFLOW_TRAINING__TRIALS", "6")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/other.db")
    monkeypatch.setenv("PDFLOW_WORKSPACE", str(tmp_path / "envws"))
    settings = load_settings(path)
    assert settings.training.trials == 6 and settings.training.seed == 1
    assert settings.mlflow.tracking_uri == "sqlite:////tmp/other.db"
    assert settings.workspace == tmp_path / "envws"
    flagged = load_settings(path, training={"trials": 2}, workspace=None)
    assert flagged.training.trials == 2 and flagged.training.seed == 1


def test_unknown_or_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="trails"):
        load_settings(write_config(tmp_path, "training:\n  trails: 3\n"))
    with pytest.raises(ValidationError, match="time zone"):
        load_settings(tmp_path / "conf" / "settings.yml", contract={"timezone": "Mars/Base"})


def test_missing_settings_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "absent.yml")


def test_the_repository_file_keeps_the_code_defaults_of_the_tuning_keys() -> None:
    settings = load_settings(DEFAULT_CONFIG)
    defaults = TrainSettings()
    assert settings.training.tuning == defaults.tuning
    assert settings.training.scorecard == defaults.scorecard
    assert settings.training.blend_weights == defaults.blend_weights
    assert (settings.features.bureau_trend_months, settings.features.bureau_worst_months) == (3, 6)


def test_tuning_and_bureau_keys_come_from_the_file_the_environment_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(
        tmp_path,
        "features:\n  bureau_trend_months: 2\n"
        "training:\n  tuning:\n    learning_rate: [0.02, 0.1]\n  scorecard:\n    features: 30\n",
    )
    monkeypatch.setenv("PDFLOW_TRAINING__TUNING__PRUNER_WARMUP_STEPS", "10")
    monkeypatch.setenv("PDFLOW_FEATURES__BUREAU_WORST_MONTHS", "12")
    settings = load_settings(path, training={"blend_weights": 11})
    assert settings.features.bureau_trend_months == 2
    assert settings.features.bureau_worst_months == 12
    assert settings.training.tuning.learning_rate == (0.02, 0.1)
    assert settings.training.tuning.pruner_warmup_steps == 10
    assert settings.training.tuning.max_leaves == 255  # untouched default
    assert settings.training.scorecard.features == 30
    assert settings.training.blend_weights == 11
    with pytest.raises(ValidationError, match="bureau_trend_months"):
        load_settings(path, features={"bureau_trend_months": 0})
    with pytest.raises(ValidationError, match="learning_rate"):
        load_settings(path, training={"tuning": {"learning_rate": [0.1, 0.01]}})
