"""Pre-selection on the training split: by information value and by stability between months."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from models.config import PreselectSettings
from models.preselect import bins_of, chance_iv, information_value, preselect


def train_split(n: int = 6_000, noise: int = 40, seed: int = 0) -> pl.DataFrame:
    """Few bads, many features: two that carry risk, one whose scale changes half-way through
    the months (risk in both halves), an enumeration, and `noise` pure noise features."""
    rng = np.random.default_rng(seed)
    strong, weak = rng.normal(size=n), rng.normal(size=n)
    later = np.arange(n) >= n // 2
    drifting = rng.normal(size=n) + np.where(later, 3.0, 0.0)
    logit = -3.5 + 1.2 * strong + 0.5 * weak + 0.8 * (drifting - 3.0 * later)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    months = [date(2024, 1 + 6 * i // n, 1) for i in range(n)]
    return pl.DataFrame(
        {
            "month": months,
            "label": label,
            "strong": strong,
            "weak": np.where(rng.random(n) < 0.2, np.nan, weak),
            "drifting": drifting,
            "channel": pl.Series(rng.choice(["app", "web"], n)).cast(pl.Enum(["app", "web"])),
            **{f"noise_{i}": rng.normal(size=n) for i in range(noise)},
        }
    )


NAMES = ["strong", "weak", "drifting", "channel", *(f"noise_{i}" for i in range(40))]


def test_it_runs_only_with_more_features_than_bads_unless_told() -> None:
    frame = train_split()
    bads = int(frame["label"].sum())
    few = preselect(frame, NAMES[:3], PreselectSettings())
    assert not few.ran and few.kept == NAMES[:3] and bads > 3
    assert preselect(frame, NAMES[:3], PreselectSettings(when="always")).ran
    assert not preselect(frame, NAMES, PreselectSettings(when="never")).ran
    many = preselect(frame.head(500), NAMES, PreselectSettings())
    assert many.ran and int(frame.head(500)["label"].sum()) < len(NAMES)


IV = PreselectSettings(method="iv")


def test_it_keeps_the_strong_and_stable_and_says_why_it_dropped_the_rest() -> None:
    frame = train_split()
    result = preselect(frame, NAMES, IV.model_copy(update={"when": "always", "min_features": 1}))
    table = {row["feature"]: row for row in result.table.iter_rows(named=True)}
    assert {"strong", "weak"} <= set(result.kept)
    assert "drifting" not in result.kept and table["drifting"]["reason"].startswith("shifts")
    assert table["drifting"]["psi"] > 0.25 and table["strong"]["psi"] < 0.05
    assert table["strong"]["iv"] > table["weak"]["iv"] > 0.02
    noise_kept = [n for n in result.kept if n.startswith("noise_")]
    # Information value net of what chance gives 10 bins at 382 bads: few noise features pass.
    assert len(noise_kept) <= 4
    assert result.kept == [n for n in NAMES if n in result.kept]  # the model's order
    assert result.table.height == len(NAMES)


def test_it_keeps_at_most_one_feature_per_bads_per_feature_and_at_least_the_minimum() -> None:
    frame = train_split().head(3_000)
    bads = int(frame["label"].sum())
    settings = IV.model_copy(
        update={"when": "always", "min_iv": 0.0, "max_psi": 10.0, "bads_per_feature": 10}
    )
    result = preselect(frame, NAMES, settings)
    above_chance = result.table.filter(pl.col("iv") >= 0).height
    assert 10 < bads // 10 < above_chance < len(NAMES)
    assert len(result.kept) == bads // 10
    floor = IV.model_copy(update={"when": "always", "min_iv": 5.0, "min_features": 3})
    kept = preselect(frame, NAMES, floor).kept
    assert len(kept) == 3 and "strong" in kept  # the strongest, though none reaches min_iv


def test_information_value_matches_its_definition() -> None:
    labels = np.array([1, 1, 0, 0, 0, 0, 1, 0], dtype=np.float64)
    binned = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    bads = np.array([2, 1]) + 0.5
    goods = np.array([1, 4]) + 0.5
    g, b = goods / goods.sum(), bads / bads.sum()
    assert information_value(binned, labels) == pytest.approx(np.sum((g - b) * np.log(g / b)))
    assert chance_iv(binned, labels) == pytest.approx(1 * (1 / 3 + 1 / 5))


def test_chance_iv_is_what_noise_scores_on_average() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(3_000) < 0.05).astype(np.float64)
    scores = [
        information_value(bins_of(pl.Series(rng.normal(size=3_000)), 10), labels)
        for _ in range(200)
    ]
    expected = chance_iv(bins_of(pl.Series(rng.normal(size=3_000)), 10), labels)
    assert np.mean(scores) == pytest.approx(expected, rel=0.15)


def test_missing_values_and_categories_have_their_own_bins() -> None:
    values = pl.Series([1.0, None, 2.0, float("nan"), 3.0, 4.0])
    binned = bins_of(values, bins=2)
    assert binned[1] == binned[3] == binned.max() and len(set(binned[[0, 2, 4, 5]])) == 2
    codes = bins_of(pl.Series(["b", None, "a", "b"]), bins=10)
    assert codes[0] == codes[3] != codes[2] and codes[1] not in (codes[0], codes[2])


def test_null_importance_keeps_what_matters_only_in_interaction() -> None:
    """Two features whose product's sign carries the risk: neither has information value
    alone, both matter to a tree; noise matters to the true model no more than to noise."""
    rng = np.random.default_rng(1)
    n = 6_000
    a, b = rng.normal(size=n), rng.normal(size=n)
    label = (rng.random(n) < np.where(a * b > 0, 0.12, 0.02)).astype(np.int64)
    frame = pl.DataFrame(
        {
            "month": [date(2024, 1 + 6 * i // n, 1) for i in range(n)],
            "label": label,
            "a": a,
            "b": b,
            **{f"noise_{i}": rng.normal(size=n) for i in range(30)},
        }
    )
    names = ["a", "b", *(f"noise_{i}" for i in range(30))]
    settings = PreselectSettings(when="always", min_features=1)
    result = preselect(frame, names, settings)
    table = {row["feature"]: row for row in result.table.iter_rows(named=True)}
    assert {"a", "b"} <= set(result.kept)
    assert table["a"]["iv"] < 0.02 and table["b"]["iv"] < 0.02  # invisible one at a time
    assert len([n for n in result.kept if n.startswith("noise_")]) <= 8
    assert preselect(frame, names, settings).table.equals(result.table)  # seeded
    by_iv = preselect(frame, names, settings.model_copy(update={"method": "iv"}))
    assert not {"a", "b"} <= set(by_iv.kept)
