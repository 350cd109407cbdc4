"""Evaluation measures and calibration, each against an independent computation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.special import expit, logit
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss, roc_auc_score

from models.calibration import Calibrator, choose_calibrator
from models.metrics import (
    decile_table,
    equal_count_bins,
    expected_calibration_error,
    gini_by_month,
    ks,
    psi,
    summary,
)


def bernoulli(p: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(len(p)) < p).astype(np.float64)


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from known probabilities of default: the true PD is calibrated."""
    pd = expit(np.random.default_rng(0).normal(-2.5, 1.0, 20_000))
    return bernoulli(pd, 1), pd


def test_ks_is_the_largest_gap_between_bads_and_goods(scored) -> None:
    labels, pd = scored
    expected = ks_2samp(pd[labels == 1], pd[labels == 0]).statistic
    assert ks(labels, pd) == pytest.approx(expected, abs=1e-9)


def test_summary_agrees_with_scikit_learn(scored) -> None:
    labels, pd = scored
    s = summary(labels, pd)
    assert s["auc"] == pytest.approx(roc_auc_score(labels, pd))
    assert s["gini"] == pytest.approx(2 * s["auc"] - 1)
    assert s["brier"] == pytest.approx(np.mean((pd - labels) ** 2))
    assert s["n"] == len(labels) and s["bad_rate"] == pytest.approx(labels.mean())


def test_calibration_error_is_small_for_true_pd_and_large_when_doubled(scored) -> None:
    labels, pd = scored
    assert expected_calibration_error(labels, pd) < 0.01
    doubled = np.clip(2 * pd, 0, 1)
    assert expected_calibration_error(labels, doubled) > 0.5 * pd.mean()


def test_psi_is_zero_for_the_same_scores_and_grows_with_a_shift() -> None:
    base = np.random.default_rng(2).normal(0, 1, 50_000)
    other = np.random.default_rng(3).normal(0, 1, 50_000)
    assert psi(base, base) == pytest.approx(0.0, abs=1e-12)
    assert psi(base, other) < 0.01
    small, large = psi(base, other + 0.2), psi(base, other + 1.0)
    assert 0.01 < small < large and large > 0.25


def test_equal_count_bins_hold_equal_counts_even_with_ties() -> None:
    scores = np.repeat([0.1, 0.2], 500)  # two values only
    bins = equal_count_bins(scores, 10)
    assert np.bincount(bins).tolist() == [100] * 10


def test_decile_table_orders_risk_and_accounts_for_every_loan(scored) -> None:
    labels, pd = scored
    table = decile_table(labels, pd)
    assert table["decile"].to_list() == list(range(1, 11))
    assert table["n"].sum() == len(labels) and table["bads"].sum() == labels.sum()
    assert table["mean_pd"].is_sorted(descending=True)
    assert table["cumulative_capture"][-1] == pytest.approx(1.0)
    assert (table["lift"] * table["n"]).sum() / len(labels) == pytest.approx(1.0)
    assert table["bad_rate"][0] > 3 * table["bad_rate"][-1]


def test_gini_by_month_is_null_for_a_month_with_one_class() -> None:
    frame = pl.DataFrame({"month": ["a"] * 4 + ["b"] * 3, "label": [0, 1, 0, 1, 0, 0, 0]})
    pd = np.array([0.1, 0.9, 0.2, 0.3, 0.5, 0.4, 0.1])
    table = gini_by_month(frame, pd)
    assert table["month"].to_list() == ["a", "b"]
    assert table["gini"][0] == pytest.approx(2 * roc_auc_score([0, 1, 0, 1], pd[:4]) - 1)
    assert table["gini"][1] is None and table["n"].to_list() == [4, 3]


def distorted(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A score that ranks like the true PD but is too extreme: sigmoid(2 logit(pd))."""
    pd = expit(np.random.default_rng(seed).normal(-2.0, 0.8, 20_000))
    return expit(2 * logit(pd)), bernoulli(pd, seed + 100), pd


def test_calibration_turns_a_distorted_score_into_a_probability() -> None:
    score, labels, _ = distorted(4)
    choice = choose_calibrator(score, labels)
    fresh_score, fresh_labels, _ = distorted(5)  # judged on rows it was not fitted on
    calibrated = choice.calibrator.transform(fresh_score)
    assert brier_score_loss(fresh_labels, calibrated) < brier_score_loss(fresh_labels, fresh_score)
    assert expected_calibration_error(fresh_labels, calibrated) < 0.01
    assert expected_calibration_error(fresh_labels, fresh_score) > 0.03
    assert choice.calibrator.method == min(choice.brier, key=choice.brier.get)


def test_platt_recovers_a_log_odds_distortion() -> None:
    score, labels, pd = distorted(6)
    platt = Calibrator.fit("platt", score, labels)
    assert np.abs(platt.transform(score) - pd).max() < 0.02


def test_a_forced_method_is_the_one_fitted() -> None:
    score, labels, _ = distorted(7)
    choice = choose_calibrator(score, labels, methods=("isotonic",))
    assert choice.calibrator.method == "isotonic" and set(choice.brier) == {"isotonic"}
    again = choose_calibrator(score, labels, methods=("isotonic",))
    assert np.array_equal(choice.calibrator.transform(score), again.calibrator.transform(score))


def test_no_pd_is_below_the_floor_or_above_one_minus_it() -> None:
    """Isotonic regression gives the lowest scores a PD of exactly 0 without a floor."""
    score, labels, _ = distorted(8)
    bare = choose_calibrator(score, labels, methods=("isotonic",)).calibrator.transform(score)
    assert bare.min() == 0.0
    for method in ("isotonic", "platt"):
        floored = choose_calibrator(score, labels, methods=(method,), floor=0.01).calibrator
        pd = floored.transform(np.concatenate([score, [0.0, 1.0]]))
        assert pd.min() >= 0.01 and pd.max() <= 0.99, method


def test_calibration_never_reverses_the_ranking() -> None:
    """Scores that fall as risk rises (a near-constant model's noise, out of fold) are not
    turned upside down: Platt's slope is held at zero, isotonic is non-decreasing."""
    score, labels, _ = distorted(8)
    reversed_score = 1 - score
    platt = Calibrator.fit("platt", reversed_score, labels)
    flat = platt.transform(reversed_score)
    assert np.allclose(flat, labels.mean())
    isotonic = Calibrator.fit("isotonic", reversed_score, labels)
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(isotonic.transform(grid)) >= 0)
    assert np.all(np.diff(Calibrator.fit("platt", score, labels).transform(grid)) > 0)
