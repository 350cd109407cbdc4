"""Pre-selection: fewer, stronger, stabler features when the training split has few bads.

With more features than bads, tuning spends its trials on noise, and a scorecard or a tree
finds chance patterns. Before tuning, on the training split only, each feature's strength
is measured by ``method``:

- ``null_importance`` (the default): its LightGBM gain importance against the importances it
  gets from models fitted to shuffled labels (:func:`null_importance`); features no more
  important than to a model of noise are dropped. It sees what a feature adds in
  interactions, which a one-feature measure cannot;
- ``iv``: its information value, below.

Every feature is also cut into equal-count bins (missing values, and each category, in
their own bin) and measured twice:

- information value (IV) against the label: sum over bins of (goods% - bads%) x ln(goods% /
  bads%), half a loan added to every cell so empty cells stay finite, less what a feature
  with no signal scores on average, (bins - 1) x (1 / bads + 1 / goods): with few bads that
  bias alone passes the usual 0.02 threshold;
- stability: the PSI of its bins between the earlier and the later half of the training
  months.

Features too weak by the method or above ``max_psi`` are dropped, and the strongest of the rest
kept, at most one per ``bads_per_feature`` bads and at least ``min_features``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl

from models.config import PreselectSettings, TrainSettings
from models.metrics import PSI_FLOOR
from models.train import FeatureSpec, SearchBounds, default_params

SMOOTHING = 0.5


@dataclass
class Preselection:
    kept: list[str]
    table: pl.DataFrame  # feature, iv, psi, kept, reason
    ran: bool


def bins_of(values: pl.Series, bins: int) -> np.ndarray:
    """Bin number of each value: equal-count bins of a numeric feature, one per category of
    a categorical one; missing values get the last number."""
    if values.dtype.is_numeric():
        numbers = values.cast(pl.Float64).fill_nan(None).to_numpy()
        known = ~np.isnan(numbers)
        if not known.any():
            return np.zeros(len(numbers), dtype=np.int64)
        edges = np.unique(np.quantile(numbers[known], np.linspace(0, 1, bins + 1))[1:-1])
        binned = np.searchsorted(edges, numbers, side="right")
        return np.where(known, binned, len(edges) + 1)
    codes = values.cast(pl.String).rank("dense").fill_null(0).to_numpy()
    return codes.astype(np.int64)


def information_value(binned: np.ndarray, labels: np.ndarray) -> float:
    bads = np.bincount(binned, weights=labels) + SMOOTHING
    goods = np.bincount(binned, weights=1 - labels) + SMOOTHING
    bad_share, good_share = bads / bads.sum(), goods / goods.sum()
    return float(np.sum((good_share - bad_share) * np.log(good_share / bad_share)))


def chance_iv(binned: np.ndarray, labels: np.ndarray) -> float:
    """The information value a feature with these bins scores on average with no signal
    (the divergence's expectation under no difference between bads and goods)."""
    bins = np.unique(binned).size
    bads = labels.sum()
    return float((bins - 1) * (1 / max(bads, 1) + 1 / max(len(labels) - bads, 1)))


def shift(binned: np.ndarray, later: np.ndarray) -> float:
    """PSI of the bins' shares from the earlier rows to the later ones."""
    size = int(binned.max()) + 1

    def shares(rows: np.ndarray) -> np.ndarray:
        counts = np.bincount(binned[rows], minlength=size)
        return np.clip(counts / max(rows.sum(), 1), PSI_FLOOR, None)

    early, late = shares(~later), shares(later)
    return float(np.sum((late - early) * np.log(late / early)))


def null_importance(
    train: pl.DataFrame, names: Sequence[str], settings: PreselectSettings, model: TrainSettings
) -> np.ndarray:
    """Per feature, log(gain importance with the true labels / (1 + the `null_quantile` of
    its gain importances over `null_runs` fits on shuffled labels)): above 0, the feature
    matters more than it does to a model of noise. The fits are LightGBM's configured base
    parameters, the leaves bounded for the data, `null_rounds` rounds each."""
    spec = FeatureSpec.from_frame(train, names)
    labels = train["label"].to_numpy()
    params = SearchBounds.for_labels(labels, model.tuning).clip(default_params(model))
    dataset = spec.dataset(train)

    def gains(shuffled: np.ndarray) -> np.ndarray:
        dataset.set_label(shuffled)
        booster = lgb.train(params, dataset, num_boost_round=settings.null_rounds)
        return booster.feature_importance(importance_type="gain")

    rng = np.random.default_rng(model.seed)
    null = np.array([gains(rng.permutation(labels)) for _ in range(settings.null_runs)])
    actual = gains(labels)
    return np.log((1e-10 + actual) / (1 + np.quantile(null, settings.null_quantile, axis=0)))


def preselect(
    train: pl.DataFrame,
    names: Sequence[str],
    settings: PreselectSettings,
    model: TrainSettings | None = None,
    month: str = "month",
) -> Preselection:
    """The features to tune on, and why each was kept or dropped (on `train` alone)."""
    labels = train["label"].to_numpy().astype(np.float64)
    bads = int(labels.sum())
    run = settings.when == "always" or (settings.when == "auto" and len(names) > bads)
    if not run:
        table = pl.DataFrame({"feature": list(names)}).with_columns(
            iv=None, psi=None, strength=None, kept=True, reason=pl.lit("pre-selection did not run")
        )
        return Preselection(list(names), table, ran=False)
    months = train[month].unique().sort()
    later = (train[month] >= months[len(months) // 2]).to_numpy() if len(months) > 1 else None
    rows = []
    for name in names:
        binned = bins_of(train[name], settings.bins)
        psi = shift(binned, later) if later is not None else 0.0
        iv = information_value(binned, labels) - chance_iv(binned, labels)
        rows.append({"feature": name, "iv": iv, "psi": psi})
    table = pl.DataFrame(rows)
    if settings.method == "null_importance":
        scores = null_importance(train, names, settings, model or TrainSettings())
        table = table.with_columns(strength=pl.Series(scores))
        weak = pl.col("strength") <= 0
        why = "no more important than to a model of shuffled labels"
    else:
        table = table.with_columns(strength=pl.col("iv"))
        weak = pl.col("iv") < settings.min_iv
        why = f"information value below {settings.min_iv}"
    table = table.sort(["strength", "feature"], descending=[True, False])
    limit = max(settings.min_features, int(bads / settings.bads_per_feature))
    reason = (
        pl.when(weak)
        .then(pl.lit(why))
        .when(pl.col("psi") > settings.max_psi)
        .then(pl.lit(f"shifts within train: PSI above {settings.max_psi}"))
    )
    table = table.with_columns(reason=reason)
    eligible = table.filter(pl.col("reason").is_null())["feature"].to_list()[:limit]
    if len(eligible) < settings.min_features:
        rest = [f for f in table["feature"].to_list() if f not in eligible]
        eligible += rest[: settings.min_features - len(eligible)]
    chosen = set(eligible)
    table = table.with_columns(kept=pl.col("feature").is_in(chosen)).with_columns(
        reason=pl.when(pl.col("kept"))
        .then(pl.lit("kept"))
        .otherwise(pl.col("reason").fill_null(pl.lit(f"beyond the {limit} strongest")))
    )
    kept = [name for name in names if name in chosen]
    return Preselection(kept, table, ran=True)
