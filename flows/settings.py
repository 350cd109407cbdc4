"""The one source of settings: defaults, then `mlflow.yml`, then environment, then flags.

Each stage defines the typed section it needs (``data.config``, ``features.base``,
``models.config``); this module only composes them. Precedence, lowest first:

1. the defaults in the section models;
2. ``mlflow.yml`` at the repository root (or the file named by ``PDFLOW_CONFIG``);
3. environment variables ``PDFLOW_<SECTION>__<KEY>`` (e.g. ``PDFLOW_TRAINING__TRIALS=5``),
   ``PDFLOW_WORKSPACE``, and MLflow's own ``MLFLOW_TRACKING_URI``;
4. command-line flags, passed to :func:`load_settings` as overrides.

Relative paths in the file are relative to the file's folder, so a run behaves the same from
any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from data.config import ContractSettings, LabelSettings, ValidationSettings
from data.generator.config import GeneratorConfig, with_scenario
from features.base import FeatureSettings
from models.config import (
    DecisionSettings,
    EarlyWarningSettings,
    EvaluationSettings,
    MonitorSettings,
    PromotionSettings,
    SplitSettings,
    TrainSettings,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "mlflow.yml"


class MlflowSettings(BaseModel):
    """Where runs and models are recorded."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = "sqlite:///.pdflow/mlflow.db"
    artifact_location: str = ".pdflow/mlartifacts"
    experiment_name: str = "pdflow-pd"
    monitor_experiment_name: str = "pdflow-pd-monitor"
    registered_model_name: str = "pdflow-pd"


class ScheduleSettings(BaseModel):
    """When the deployments run: cron expressions in the contract's time zone."""

    model_config = ConfigDict(extra="forbid")

    retrain: str = Field("0 2 * * *", description="nightly-retrain")
    score: str = Field("0 6 * * *", description="daily-score")
    monitor: str = Field("0 7 * * *", description="daily-monitor")


class RetrySettings(BaseModel):
    """Retries of the flows' reading and writing tasks on transient errors (``flows.retries``)."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=0, description="Tries after the first, at most")
    delays_seconds: tuple[float, ...] = Field(
        (5.0, 30.0, 120.0), description="Waits before each retry (the last one repeats)"
    )


class Settings(BaseSettings):
    """All of pdflow's settings."""

    model_config = SettingsConfigDict(
        env_prefix="PDFLOW_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    workspace: Path = Field(Path(".pdflow"), description="Everything a run writes goes here")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    training: TrainSettings = Field(default_factory=TrainSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    early_warning: EarlyWarningSettings = Field(default_factory=EarlyWarningSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)

    @field_validator("generator", mode="before")
    @classmethod
    def _apply_scenario(cls, value: Any) -> Any:
        """``generator.scenario`` names a preset world; every key set in the file, the
        environment or a flag overrides the preset's value (``with_scenario``)."""
        return with_scenario(value) if isinstance(value, dict) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TrackingUriFromEnv(settings_cls),
            YamlConfigSettingsSource(settings_cls),
        )

    @property
    def raw_dir(self) -> Path:
        return self.workspace / "raw"

    @property
    def feature_store(self) -> Path:
        """The nightly flow's incremental feature store (rows are appended, never changed)."""
        return self.workspace / "feature_store"

    @property
    def scores_dir(self) -> Path:
        """The daily scores, one partition ``dt=<day>`` per day scored."""
        return self.workspace / "scores"

    @property
    def prefect_home(self) -> Path:
        return self.workspace / "prefect"

    def run_dir(self, name: str) -> Path:
        return self.workspace / "runs" / name


class TrackingUriFromEnv(PydanticBaseSettingsSource):
    """MLflow's standard ``MLFLOW_TRACKING_URI`` overrides the file, as MLflow users expect."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        return {"mlflow": {"tracking_uri": uri}} if uri else {}


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    """Make relative paths (workspace, SQLite file, artifact folder) relative to `base`."""
    workspace = (
        settings.workspace if settings.workspace.is_absolute() else base / settings.workspace
    )
    mlflow = settings.mlflow.model_copy()
    prefix = "sqlite:///"
    if mlflow.tracking_uri.startswith(prefix) and not mlflow.tracking_uri.startswith(prefix + "/"):
        mlflow.tracking_uri = prefix + str(base / mlflow.tracking_uri[len(prefix) :])
    if "://" not in mlflow.artifact_location and not Path(mlflow.artifact_location).is_absolute():
        mlflow.artifact_location = str(base / mlflow.artifact_location)
    return settings.model_copy(update={"workspace": workspace.resolve(), "mlflow": mlflow})


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, the YAML file, the environment and flag `overrides`.

    `overrides` are nested values (``training={"trials": 5}``); None values are ignored, so
    unset command-line flags fall through to the lower layers.
    """
    path = Path(config or os.environ.get("PDFLOW_CONFIG") or DEFAULT_CONFIG).resolve()
    if config is not None and not path.is_file():
        raise FileNotFoundError(f"settings file {path} does not exist")
    file_bound = type(
        "Settings", (Settings,), {"model_config": {**Settings.model_config, "yaml_file": path}}
    )
    settings = file_bound(**_drop_none(overrides))
    return _resolve_paths(Settings.model_validate(settings.model_dump()), path.parent)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            cleaned[key] = value
    return cleaned


def as_settings(settings: Settings | dict[str, Any] | None) -> Settings:
    """A flow's settings as it is given them: the object (the CLI), its JSON form (a
    deployment's parameters), or none (defaults, ``mlflow.yml`` and the environment)."""
    if isinstance(settings, Settings):
        return settings
    if settings is None:
        return load_settings()
    return Settings.model_validate(settings)
