"""LightGBM PD models: matrices from feature frames, early-stopped training, Optuna tuning."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
import polars as pl
from optuna_integration import LightGBMPruningCallback

from models.config import TrainSettings
from models.metrics import auc


@dataclass(frozen=True)
class FeatureSpec:
    """The model's inputs: feature names in order, and the categories of categorical ones."""

    names: tuple[str, ...]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame | pl.LazyFrame, names: Sequence[str]) -> FeatureSpec:
        schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
        categories = {
            name: tuple(schema[name].categories.to_list())  # type: ignore[union-attr]
            for name in names
            if isinstance(schema[name], pl.Enum)
        }
        return cls(names=tuple(names), categories=categories)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, name in enumerate(self.names) if name in self.categories]

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """Float matrix in `names` order; categories become their codes, unknowns NaN."""
        columns = []
        for name in self.names:
            column = pl.col(name)
            if name in self.categories:
                dtype = pl.Enum(self.categories[name])
                column = column.cast(pl.String).cast(dtype, strict=False).to_physical()
            columns.append(column.cast(pl.Float64).alias(name))
        return frame.select(columns).to_numpy().astype(np.float64, copy=False)

    def to_pandas(self, frame: pl.DataFrame) -> pd.DataFrame:
        """The model's pandas input (MLflow pyfunc): feature columns, categories as strings."""
        return frame.select(
            pl.col(name).cast(pl.String) if name in self.categories else pl.col(name)
            for name in self.names
        ).to_pandas()

    def as_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "categories": {k: list(v) for k, v in self.categories.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            names=tuple(data["names"]),
            categories={k: tuple(v) for k, v in data["categories"].items()},
        )


def base_params(settings: TrainSettings) -> dict[str, Any]:
    """Parameters shared by every fit: objective, determinism and threads."""
    return {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        "seed": settings.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": settings.num_threads,
        "bagging_freq": 1,
    }


def default_params(settings: TrainSettings) -> dict[str, Any]:
    return {
        **base_params(settings),
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "feature_fraction": settings.feature_fraction,
        "bagging_fraction": settings.bagging_fraction,
        "lambda_l2": settings.lambda_l2,
    }


@dataclass
class TrainData:
    """Train and validation matrices as LightGBM datasets, built once and reused by trials."""

    spec: FeatureSpec
    train: lgb.Dataset
    valid: lgb.Dataset
    valid_labels: np.ndarray

    @classmethod
    def build(
        cls, spec: FeatureSpec, train: pl.DataFrame, valid: pl.DataFrame, label: str = "label"
    ) -> TrainData:
        common = {
            "feature_name": list(spec.names),
            "categorical_feature": spec.categorical_indices,
            "free_raw_data": False,
            # Tuning changes min_data_in_leaf on a reused Dataset (STACK_NOTES.md).
            "params": {"feature_pre_filter": False, "verbosity": -1},
        }
        train_set = lgb.Dataset(spec.matrix(train), label=train[label].to_numpy(), **common)
        valid_labels = valid[label].to_numpy()
        valid_set = lgb.Dataset(
            spec.matrix(valid), label=valid_labels, reference=train_set, **common
        )
        return cls(spec=spec, train=train_set, valid=valid_set, valid_labels=valid_labels)


def fit(
    data: TrainData,
    params: dict[str, Any],
    settings: TrainSettings,
    callbacks: Sequence[Any] = (),
) -> lgb.Booster:
    """Train with early stopping on the validation split; the booster keeps its best iteration."""
    return lgb.train(
        params,
        data.train,
        num_boost_round=settings.max_rounds,
        valid_sets=[data.valid],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(settings.early_stopping_rounds, verbose=False),
            *callbacks,
        ],
    )


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 127, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 1000, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.1, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 100.0, log=True),
    }


@dataclass
class TuningResult:
    params: dict[str, Any]
    best_valid_auc: float
    trials: int
    study: optuna.Study | None


def tune(data: TrainData, settings: TrainSettings, show_progress: bool = True) -> TuningResult:
    """Seeded TPE over LightGBM parameters, pruning poor trials; validation AUC is the target.

    The study always first tries the configured base parameters, so tuning can only improve on
    them. With ``settings.trials == 0`` the base parameters are returned untouched.
    """
    base = default_params(settings)
    if settings.trials == 0:
        booster = fit(data, base, settings)
        return TuningResult(base, _valid_auc(booster, data), 0, None)

    def objective(trial: optuna.Trial) -> float:
        params = {**base_params(settings), **search_space(trial)}
        pruning = LightGBMPruningCallback(trial, "auc", valid_name="valid")
        booster = fit(data, params, settings, callbacks=[pruning])
        trial.set_user_attr("best_iteration", booster.best_iteration)
        return _valid_auc(booster, data)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=50),
    )
    study.enqueue_trial({k: v for k, v in base.items() if k not in base_params(settings)})
    timeout = settings.timeout_minutes * 60 if settings.timeout_minutes else None
    study.optimize(
        objective, n_trials=settings.trials, timeout=timeout, show_progress_bar=show_progress
    )
    best = {**base_params(settings), **study.best_params}
    return TuningResult(best, float(study.best_value), len(study.trials), study)


def _valid_auc(booster: lgb.Booster, data: TrainData) -> float:
    scores = booster.predict(data.valid.get_data(), num_iteration=booster.best_iteration)
    return auc(data.valid_labels, scores)
