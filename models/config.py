"""Typed settings of the modelling stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SplitSettings(BaseModel):
    """Time-ordered split of mature loans by application month (the last months are out of time)."""

    model_config = ConfigDict(extra="forbid")

    oot_months: int = Field(2, ge=1, description="Most recent mature months held out of time")
    valid_months: int = Field(2, ge=1, description="Months before those, for early stopping")
    min_train_months: int = Field(3, ge=1)


class TrainSettings(BaseModel):
    """LightGBM and tuning settings. Fixed threads and seeds make runs repeatable."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    num_threads: int = Field(2, ge=1)
    trials: int = Field(10, ge=0, description="Optuna trials; 0 trains the base parameters only")
    timeout_minutes: float | None = Field(None, gt=0, description="Tuning budget in minutes")
    max_rounds: int = Field(2000, ge=10)
    early_stopping_rounds: int = Field(100, ge=5)
    learning_rate: float = Field(0.03, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(100, ge=1)
    feature_fraction: float = Field(0.7, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)


class EvaluationSettings(BaseModel):
    """Calibration and the out-of-time evaluation every run reports."""

    model_config = ConfigDict(extra="forbid")

    calibration: Literal["auto", "isotonic", "platt"] = Field(
        "auto", description="auto: the method with the lower out-of-fold validation Brier score"
    )
    calibration_folds: int = Field(5, ge=2, description="Contiguous folds of the validation split")
    bins: int = Field(10, ge=2, description="Equal-count bins of PD: deciles, ECE, PSI")
