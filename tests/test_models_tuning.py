"""Tuning: search space, warm start, monotone constraints and DART."""

from __future__ import annotations

import numpy as np
import optuna
import polars as pl
import pytest
from pydantic import ValidationError

from models.config import TrainSettings, TuningSettings
from models.train import (
    FeatureSpec,
    SearchBounds,
    TrainData,
    default_params,
    fit,
    search_space,
    tune,
)

SETTINGS = TrainSettings(max_rounds=100, early_stopping_rounds=10, min_data_in_leaf=20)


@pytest.fixture(scope="module")
def data() -> TrainData:
    rng = np.random.default_rng(0)
    n = 4_000
    frame = pl.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n)})
    logit = -2 + frame["x"].to_numpy() + 0.5 * np.sin(3 * frame["z"].to_numpy())
    frame = frame.with_columns(label=pl.Series((rng.random(n) < 1 / (1 + np.exp(-logit))) * 1))
    spec = FeatureSpec.from_frame(frame, ["x", "z"])
    return TrainData.build(spec, frame.head(3_000), frame.tail(1_000))


LARGE = SearchBounds.for_data(loans=1_000_000, bads=40_000)


def test_the_search_space_reaches_what_won_credit_competitions() -> None:
    trial = optuna.create_study().ask()
    search_space(trial, SETTINGS, LARGE)
    d = trial.distributions
    assert d["learning_rate"].low == 0.01
    assert d["feature_fraction"].low <= 0.05 and d["min_data_in_leaf"].high >= 5000
    assert d["num_leaves"].high == 255 and d["lambda_l2"].high >= 1000
    assert "drop_rate" not in d
    dart = optuna.create_study().ask()
    search_space(dart, SETTINGS.model_copy(update={"boosting": "dart"}), LARGE)
    assert {"drop_rate", "skip_drop"} <= set(dart.distributions)


def test_the_bounds_shrink_with_the_loans_and_bads() -> None:
    small = SearchBounds.for_data(loans=5_000, bads=250)
    assert small.num_leaves == (4, 25)  # a leaf per ten bads at most
    assert small.min_data_in_leaf == (40, 500)  # two bads on average .. a tenth of the loans
    tiny = SearchBounds.for_data(loans=300, bads=12)
    assert tiny.num_leaves == (4, 4) and tiny.min_data_in_leaf == (15, 30)
    assert tiny.clip({"num_leaves": 31, "min_data_in_leaf": 10, "lambda_l2": 5}) == {
        "num_leaves": 4,
        "min_data_in_leaf": 15,
        "lambda_l2": 5,
    }


NARROW = TuningSettings(
    learning_rate=(0.02, 0.1),
    feature_fraction=(0.3, 0.9),
    bagging_fraction=(0.6, 0.9),
    lambda_l2=(0.1, 10.0),
    lambda_l1=(0.01, 1.0),
    min_gain_to_split=(0.0, 0.5),
    drop_rate=(0.05, 0.2),
    skip_drop=(0.4, 0.6),
    max_leaves=63,
    min_leaf=50,
    max_min_leaf=1000,
)


def test_the_search_space_and_its_caps_are_settings() -> None:
    settings = SETTINGS.model_copy(update={"tuning": NARROW, "boosting": "dart"})
    bounds = SearchBounds.for_data(loans=1_000_000, bads=40_000, tuning=NARROW)
    assert bounds.num_leaves == (4, 63) and bounds.min_data_in_leaf == (50, 1000)
    assert SearchBounds.for_data(loans=300, bads=12, tuning=NARROW).min_data_in_leaf == (50, 50)
    trial = optuna.create_study().ask()
    search_space(trial, settings, bounds)
    ranges = {name: (d.low, d.high) for name, d in trial.distributions.items()}
    caps = {"max_leaves", "min_leaf", "max_min_leaf", "pruner_startup_trials"}
    configured = set(TuningSettings.model_fields) - caps - {"pruner_warmup_steps"}
    assert set(ranges) - {"num_leaves", "min_data_in_leaf"} == configured
    for name in configured:
        assert ranges[name] == getattr(NARROW, name)
    assert default_params(settings)["lambda_l1"] == 0.01  # the base takes the lowest L1


def test_the_tuning_settings_reach_the_optuna_study(data) -> None:
    tuning = NARROW.model_copy(update={"pruner_startup_trials": 7, "pruner_warmup_steps": 20})
    result = tune(data, SETTINGS.model_copy(update={"trials": 3, "tuning": tuning}), False)
    assert result.study is not None
    pruner = result.study.pruner
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (7, 20)
    assert result.bounds == SearchBounds.for_labels(data.train.get_label(), tuning)
    assert result.bounds != SearchBounds.for_labels(data.train.get_label())
    for trial in result.study.trials[1:]:  # the first is the base parameters, enqueued
        assert trial.distributions["learning_rate"].low == 0.02
        assert 0.02 <= trial.params["learning_rate"] <= 0.1
        assert trial.params["min_data_in_leaf"] >= 50


@pytest.mark.parametrize(
    "nonsense",
    [
        {"learning_rate": (0.2, 0.01)},  # high below low
        {"feature_fraction": (0.0, 1.0)},  # a share of nothing
        {"bagging_fraction": (0.5, 1.5)},  # more than all rows
        {"lambda_l1": (0.0, 1.0)},  # log scale needs a positive low end
        {"max_leaves": 1},
        {"min_leaf": 2000},  # above a quarter of max_min_leaf
        {"pruner_startup_trials": -1},
    ],
)
def test_nonsense_tuning_settings_are_refused(nonsense: dict) -> None:
    with pytest.raises(ValidationError):
        TrainSettings(tuning=nonsense)


def test_tuning_searches_within_the_bounds_of_its_training_split(data) -> None:
    result = tune(data, SETTINGS.model_copy(update={"trials": 4}), False)
    bounds = SearchBounds.for_labels(data.train.get_label())
    assert result.bounds == bounds
    for trial in result.study.trials:
        assert bounds.num_leaves[0] <= trial.params["num_leaves"] <= bounds.num_leaves[1]
        low, high = bounds.min_data_in_leaf
        assert low <= trial.params["min_data_in_leaf"] <= high


def test_tuning_tries_the_base_then_the_champion_parameters(data) -> None:
    champion = {
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 40,
        "feature_fraction": 0.5,
        "bagging_fraction": 0.9,
        "lambda_l2": 3.0,
        "lambda_l1": 0.01,
        "min_gain_to_split": 0.1,
        "objective": "binary",
    }
    result = tune(data, SETTINGS.model_copy(update={"trials": 3}), False, warm_start=champion)
    assert result.study is not None and result.trials == 3
    assert result.study.trials[0].params["learning_rate"] == SETTINGS.learning_rate
    assert result.study.trials[1].params == {k: v for k, v in champion.items() if k != "objective"}


def test_monotone_constraints_hold_and_unknown_features_are_refused(data) -> None:
    settings = SETTINGS.model_copy(update={"monotone": {"z": 1}})
    booster = fit(data, {"objective": "binary", "verbosity": -1, "seed": 1}, settings)
    grid = np.column_stack([np.zeros(200), np.linspace(-3, 3, 200)])
    assert np.all(np.diff(booster.predict(grid)) >= -1e-12)  # PD never falls as z rises
    free = fit(data, {"objective": "binary", "verbosity": -1, "seed": 1}, SETTINGS)
    assert np.any(np.diff(free.predict(grid)) < 0)  # without it, sin(3z) makes it fall
    with pytest.raises(ValueError, match="lacks"):
        fit(data, {"objective": "binary"}, SETTINGS.model_copy(update={"monotone": {"w": 1}}))


def test_dart_trains_its_fixed_number_of_rounds(data) -> None:
    settings = SETTINGS.model_copy(update={"boosting": "dart", "dart_rounds": 30})
    params = {"objective": "binary", "verbosity": -1, "seed": 1, "boosting": "dart"}
    assert fit(data, params, settings).current_iteration() == 30
