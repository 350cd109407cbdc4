"""What the tuned model must beat, on the same time split, and what each feature family adds.

Baselines (out-of-time AUC, each fitted on the training split, early-stopped or selected on
the validation split where it has anything to stop):

- ``lightgbm_default``: LightGBM with its own default parameters on every feature;
- ``woe_scorecard``: the bank's classic, a logistic regression on WOE-binned features, with
  optimal monotonic binning and IV-based selection from ``optbinning``;
- ``bureau_only``: LightGBM (the configured base parameters) on the bureau features alone.

The ablation adds the alternative-data families one at a time to the bureau features, with
the tuned parameters, and reports each step's out-of-time AUC and KS and its lift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from models.config import TrainSettings
from models.metrics import auc, ks
from models.train import FeatureSpec, TrainData, base_params, default_params, fit

BUREAU_FAMILY = "bureau"
# Scorecards bin at most this many candidate features (highest univariate AUC first): binning
# hundreds of columns costs minutes and a scorecard keeps a few dozen anyway.
SCORECARD_CANDIDATES = 60


def _oot_scores(
    parts: Mapping[str, pl.DataFrame],
    names: Sequence[str],
    params: dict[str, Any],
    settings: TrainSettings,
) -> np.ndarray:
    spec = FeatureSpec.from_frame(parts["train"], names)
    booster = fit(TrainData.build(spec, parts["train"], parts["valid"]), params, settings)
    return booster.predict(spec.matrix(parts["oot"]), num_iteration=booster.best_iteration)


def lightgbm_default(
    parts: Mapping[str, pl.DataFrame], names: Sequence[str], settings: TrainSettings
) -> np.ndarray:
    """Out-of-time scores of LightGBM with its default parameters (deterministic, seeded)."""
    return _oot_scores(parts, names, base_params(settings), settings)


def bureau_only(
    parts: Mapping[str, pl.DataFrame], families: Mapping[str, str], settings: TrainSettings
) -> np.ndarray:
    names = [name for name, family in families.items() if family == BUREAU_FAMILY]
    return _oot_scores(parts, names, default_params(settings), settings)


def _numeric(frame: pl.DataFrame, names: Sequence[str]) -> list[str]:
    return [n for n in names if frame.schema[n].is_numeric()]


def _candidates(train: pl.DataFrame, names: Sequence[str], top: int) -> list[str]:
    """The `top` numeric features whose univariate AUC is furthest from 0.5 on train."""
    labels = train["label"].to_numpy()
    strength = {}
    for name in _numeric(train, names):
        values = train[name].cast(pl.Float64).fill_nan(None).to_numpy()
        known = ~np.isnan(values)
        if known.sum() < 100 or np.unique(labels[known]).size < 2:
            continue
        strength[name] = abs(auc(labels[known], values[known]) - 0.5)
    return sorted(strength, key=lambda n: (-strength[n], n))[:top]


def woe_scorecard(parts: Mapping[str, pl.DataFrame], names: Sequence[str], seed: int) -> np.ndarray:
    """Out-of-time scores of a WOE logistic scorecard (optbinning's BinningProcess: optimal
    monotonic bins, missing values in their own bin, features with IV below 0.02 dropped)."""
    from optbinning import BinningProcess  # ~5 s to import: only when a run needs it
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train = parts["train"]
    chosen = _candidates(train, names, SCORECARD_CANDIDATES)
    binning = BinningProcess(
        chosen,
        selection_criteria={"iv": {"min": 0.02}},
        binning_fit_params={c: {"monotonic_trend": "auto_asc_desc"} for c in chosen},
        n_jobs=1,
    )
    model = make_pipeline(binning, LogisticRegression(max_iter=1000, random_state=seed))
    model.fit(train.select(chosen).to_pandas(), train["label"].to_numpy())
    return model.predict_proba(parts["oot"].select(chosen).to_pandas())[:, 1]


def baseline_scores(
    parts: Mapping[str, pl.DataFrame],
    families: Mapping[str, str],
    settings: TrainSettings,
) -> dict[str, np.ndarray]:
    """Every baseline's out-of-time scores, by name."""
    names = list(families)
    return {
        "lightgbm_default": lightgbm_default(parts, names, settings),
        "woe_scorecard": woe_scorecard(parts, names, settings.seed),
        "bureau_only": bureau_only(parts, families, settings),
    }


def ablation(
    parts: Mapping[str, pl.DataFrame],
    families: Mapping[str, str],
    order: Sequence[str],
    params: dict[str, Any],
    settings: TrainSettings,
) -> pl.DataFrame:
    """Out-of-time AUC and KS as families are added in `order` (the first alone), each with
    the tuned `params`; ``auc_lift`` and ``ks_lift`` are over the step before."""
    labels = parts["oot"]["label"].to_numpy()
    rows = []
    included: list[str] = []
    for family in order:
        included.append(family)
        names = [n for n, f in families.items() if f in included]
        if not names:
            continue
        scores = _oot_scores(parts, names, params, settings)
        rows.append(
            {
                "step": " + ".join(included),
                "family_added": family,
                "features": len(names),
                "oot_auc": auc(labels, scores),
                "oot_ks": ks(labels, scores),
            }
        )
    return pl.DataFrame(rows).with_columns(
        auc_lift=pl.col("oot_auc").diff(), ks_lift=pl.col("oot_ks").diff()
    )
