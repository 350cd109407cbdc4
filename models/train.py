"""LightGBM PD models: matrices from feature frames, early-stopped training, Optuna tuning."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
import polars as pl
from optuna_integration import LightGBMPruningCallback

from models.config import TrainSettings, TuningSettings
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

    def dataset(
        self, frame: pl.DataFrame, label: str = "label", reference: lgb.Dataset | None = None
    ) -> lgb.Dataset:
        """`frame` as a LightGBM dataset, raw data kept: parameters such as min_data_in_leaf
        may change between fits on it (STACK_NOTES.md)."""
        return lgb.Dataset(
            self.matrix(frame),
            label=frame[label].to_numpy(),
            reference=reference,
            feature_name=list(self.names),
            categorical_feature=self.categorical_indices,
            free_raw_data=False,
            params={"feature_pre_filter": False, "verbosity": -1},
        )

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
    """Parameters shared by every fit: objective, determinism, threads and boosting type."""
    return {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        "seed": settings.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": settings.num_threads,
        "bagging_freq": 1,
        "boosting": settings.boosting,
    }


def monotone_params(spec: FeatureSpec, settings: TrainSettings) -> dict[str, Any]:
    """LightGBM's monotone constraints for the features policy fixes (none: no constraint).

    Raises ValueError naming a configured feature the model does not have."""
    if not settings.monotone:
        return {}
    unknown = sorted(set(settings.monotone) - set(spec.names))
    if unknown:
        raise ValueError(f"training.monotone names features the model lacks: {unknown}")
    return {
        "monotone_constraints": [settings.monotone.get(name, 0) for name in spec.names],
        "monotone_constraints_method": "advanced",
    }


def default_params(settings: TrainSettings) -> dict[str, Any]:
    """The configured base parameters: one value for every parameter the search tunes (the
    first trial of every study), LightGBM's own defaults where there is no setting."""
    params = {
        **base_params(settings),
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "feature_fraction": settings.feature_fraction,
        "bagging_fraction": settings.bagging_fraction,
        "lambda_l2": settings.lambda_l2,
        "lambda_l1": settings.tuning.lambda_l1[0],  # the search's lower bound: no L1 to speak of
        "min_gain_to_split": 0.0,
    }
    if settings.boosting == "dart":
        params |= {"drop_rate": 0.1, "skip_drop": 0.5}
    return params


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
        train_set = spec.dataset(train, label)
        valid_set = spec.dataset(valid, label, reference=train_set)
        valid_labels = valid[label].to_numpy()
        return cls(spec=spec, train=train_set, valid=valid_set, valid_labels=valid_labels)


def fit(
    data: TrainData,
    params: dict[str, Any],
    settings: TrainSettings,
    callbacks: Sequence[Any] = (),
) -> lgb.Booster:
    """Train with early stopping on the validation split; the booster keeps its best iteration.

    DART cannot stop early (dropped trees change earlier iterations): it trains
    ``dart_rounds`` rounds and keeps them all."""
    params = {**params, **monotone_params(data.spec, settings)}
    if params.get("boosting") == "dart":
        rounds, stopping = settings.dart_rounds, []
    else:
        rounds = settings.max_rounds
        stopping = [lgb.early_stopping(settings.early_stopping_rounds, verbose=False)]
    return lgb.train(
        params,
        data.train,
        num_boost_round=rounds,
        valid_sets=[data.valid],
        valid_names=["valid"],
        callbacks=[*stopping, *callbacks],
    )


@dataclass(frozen=True)
class SearchBounds:
    """Ranges of the parameters whose sensible values depend on how much the data holds.

    A leaf needs a few bads to estimate a rate, so the smallest leaf holds about two bads on
    average (from ``min_leaf``, at most a twentieth of the loans) and the largest minimum is a
    tenth of the loans (at most ``max_min_leaf``); the trees have at most a leaf per ten bads
    (4 to ``max_leaves``). The caps are ``training.tuning`` settings (None: their defaults,
    5, 5,000 and 255). On a million loans these are LightGBM's usual wide ranges; on a few
    thousand they keep the search away from trees that can only memorise."""

    num_leaves: tuple[int, int]
    min_data_in_leaf: tuple[int, int]

    @classmethod
    def for_data(cls, loans: int, bads: int, tuning: TuningSettings | None = None) -> SearchBounds:
        caps = tuning or TuningSettings()
        bads = max(bads, 1)
        leaves_high = int(np.clip(bads // 10, 4, caps.max_leaves))
        leaf_low = int(np.clip(2 * loans // bads, caps.min_leaf, caps.max_min_leaf // 4))
        leaf_low = min(leaf_low, max(caps.min_leaf, loans // 20))
        leaf_high = int(np.clip(loans // 10, leaf_low, caps.max_min_leaf))
        return cls(
            num_leaves=(min(4, leaves_high), leaves_high), min_data_in_leaf=(leaf_low, leaf_high)
        )

    @classmethod
    def for_labels(cls, labels: np.ndarray, tuning: TuningSettings | None = None) -> SearchBounds:
        return cls.for_data(len(labels), int(np.sum(labels)), tuning)

    def clip(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with the bounded parameters moved inside the bounds."""
        return params | {
            "num_leaves": int(np.clip(params["num_leaves"], *self.num_leaves)),
            "min_data_in_leaf": int(np.clip(params["min_data_in_leaf"], *self.min_data_in_leaf)),
        }


def fit_rounds(
    spec: FeatureSpec,
    frame: pl.DataFrame,
    params: dict[str, Any],
    settings: TrainSettings,
    rounds: int,
    label: str = "label",
) -> lgb.Booster:
    """Train exactly `rounds` rounds on every row of `frame` (a refit: nothing held out to
    stop on)."""
    dataset = spec.dataset(frame, label)
    params = {**params, **monotone_params(spec, settings)}
    return lgb.train(params, dataset, num_boost_round=max(rounds, 1))


def search_space(
    trial: optuna.Trial, settings: TrainSettings, bounds: SearchBounds
) -> dict[str, Any]:
    """The ranges of ``settings.tuning``, by default wide enough for what won public credit
    competitions: small feature fractions, large leaves' minimum sizes, strong L2, learning
    rates down to 0.01; leaves and their sizes within `bounds`."""
    ranges = settings.tuning
    space = {
        "learning_rate": trial.suggest_float("learning_rate", *ranges.learning_rate, log=True),
        "num_leaves": trial.suggest_int("num_leaves", *bounds.num_leaves, log=True),
        "min_data_in_leaf": trial.suggest_int(
            "min_data_in_leaf", *bounds.min_data_in_leaf, log=True
        ),
        "feature_fraction": trial.suggest_float(
            "feature_fraction", *ranges.feature_fraction, log=True
        ),
        "bagging_fraction": trial.suggest_float("bagging_fraction", *ranges.bagging_fraction),
        "lambda_l2": trial.suggest_float("lambda_l2", *ranges.lambda_l2, log=True),
        "lambda_l1": trial.suggest_float("lambda_l1", *ranges.lambda_l1, log=True),
        "min_gain_to_split": trial.suggest_float("min_gain_to_split", *ranges.min_gain_to_split),
    }
    if settings.boosting == "dart":
        space["drop_rate"] = trial.suggest_float("drop_rate", *ranges.drop_rate)
        space["skip_drop"] = trial.suggest_float("skip_drop", *ranges.skip_drop)
    return space


@dataclass
class TuningResult:
    params: dict[str, Any]
    best_valid_auc: float
    trials: int
    study: optuna.Study | None
    best_iteration: int = 0
    bounds: SearchBounds | None = None


def tune(
    data: TrainData,
    settings: TrainSettings,
    show_progress: bool = True,
    warm_start: dict[str, Any] | None = None,
) -> TuningResult:
    """Seeded multivariate TPE over LightGBM parameters, pruning poor trials through
    LightGBM's evaluation callback; validation AUC is the target.

    The search space and the median pruner are ``settings.tuning``'s; the leaves' bounds scale
    with the training split's loans and bads (:class:`SearchBounds`).
    The study first tries the configured base parameters (moved inside the bounds) and then
    `warm_start` (the champion's parameters, if given), so tuning can only improve on them.
    With ``settings.trials == 0`` the base parameters are trained alone.
    """
    bounds = SearchBounds.for_labels(data.train.get_label(), settings.tuning)
    base = bounds.clip(default_params(settings))
    if settings.trials == 0:
        booster = fit(data, base, settings)
        auc_ = _valid_auc(booster, data)
        return TuningResult(base, auc_, 0, None, booster.best_iteration, bounds)

    def objective(trial: optuna.Trial) -> float:
        params = {**base_params(settings), **search_space(trial, settings, bounds)}
        pruning = LightGBMPruningCallback(trial, "auc", valid_name="valid")
        booster = fit(data, params, settings, callbacks=[pruning])
        trial.set_user_attr("best_iteration", booster.best_iteration)
        return _valid_auc(booster, data)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=settings.seed, multivariate=True)
    study = optuna.create_study(
        direction="maximize", sampler=sampler, pruner=median_pruner(settings.tuning)
    )
    study.enqueue_trial({k: v for k, v in base.items() if k not in base_params(settings)})
    if warm_start:
        tuned = set(base) - set(base_params(settings))
        study.enqueue_trial(
            bounds.clip(_leaves(base) | {k: v for k, v in warm_start.items() if k in tuned}),
            skip_if_exists=True,
        )
    timeout = settings.timeout_minutes * 60 if settings.timeout_minutes else None
    study.optimize(
        objective, n_trials=settings.trials, timeout=timeout, show_progress_bar=show_progress
    )
    best = {**base_params(settings), **study.best_params}
    iteration = int(study.best_trial.user_attrs["best_iteration"])
    return TuningResult(best, float(study.best_value), len(study.trials), study, iteration, bounds)


def median_pruner(tuning: TuningSettings) -> optuna.pruners.MedianPruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=tuning.pruner_startup_trials, n_warmup_steps=tuning.pruner_warmup_steps
    )


def _leaves(params: dict[str, Any]) -> dict[str, Any]:
    """The bounded parameters of `params` (a warm start lacking them takes the base's)."""
    return {k: params[k] for k in ("num_leaves", "min_data_in_leaf")}


def _valid_auc(booster: lgb.Booster, data: TrainData) -> float:
    scores = booster.predict(data.valid.get_data(), num_iteration=booster.best_iteration)
    return auc(data.valid_labels, scores)
