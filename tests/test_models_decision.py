"""Scorecard points, risk grades, the policy table and the per-grade calibration test."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from scipy.special import expit
from scipy.stats import binomtest

from models.config import DecisionSettings, Grade
from models.decision import decide, grade_calibration

SETTINGS = DecisionSettings()


def test_points_follow_base_score_at_base_odds_and_points_to_double_odds() -> None:
    base_pd = 1 / (1 + SETTINGS.base_odds)  # good:bad odds of 50:1
    doubled_pd = 1 / (1 + 2 * SETTINGS.base_odds)
    halved_pd = 1 / (1 + SETTINGS.base_odds / 2)
    scores = decide(np.array([base_pd, doubled_pd, halved_pd]), SETTINGS)["score"].to_list()
    assert scores == pytest.approx([600.0, 620.0, 580.0])


def test_grades_are_bands_with_inclusive_upper_bounds_and_carry_the_policy() -> None:
    pd = np.array([0.0, 0.01, 0.010001, 0.2, 0.5, 1.0])
    decided = decide(pd, SETTINGS)
    assert decided["grade"].cast(pl.String).to_list() == ["A", "A", "B", "F", "G", "G"]
    assert decided["pd"].to_list() == pd.tolist()  # input order kept
    assert decided["credit_limit"].to_list() == [50_000, 50_000, 30_000, 2_000, 0, 0]
    assert decided["price_tier"][-1] == "decline"
    assert decided["score"].is_sorted(descending=True)


def test_bands_must_increase_and_end_at_one() -> None:
    grades = [g.model_dump() for g in SETTINGS.grades]
    with pytest.raises(ValidationError, match="strictly increasing"):
        DecisionSettings(grades=[grades[1], grades[0], grades[-1]])
    with pytest.raises(ValidationError, match=r"last one 1\.0"):
        DecisionSettings(grades=grades[:-1])
    assert DecisionSettings(grades=[Grade(name="all", max_pd=1.0, credit_limit=1, price_tier="x")])


def test_the_binomial_test_passes_true_pds_and_fails_halved_ones() -> None:
    rng = np.random.default_rng(0)
    pd = expit(rng.normal(-3.0, 1.0, 40_000))
    labels = (rng.random(len(pd)) < pd).astype(np.int64)
    table = grade_calibration(labels, pd, SETTINGS)
    assert table["grade"].cast(pl.String).to_list() == [g.name for g in SETTINGS.grades]
    assert table["n"].sum() == len(pd) and table["bads"].sum() == labels.sum()
    tested = table.filter(pl.col("n") > 0)
    assert tested["calibrated"].sum() >= tested.height - 1  # at alpha 0.05, one miss may occur
    row = tested.row(0, named=True)
    mask = decide(pd, SETTINGS)["grade"].cast(pl.String) == row["grade"]
    expected = binomtest(int(labels[mask.to_numpy()].sum()), int(mask.sum()), row["mean_pd"])
    assert row["binomial_p_value"] == pytest.approx(expected.pvalue)

    halved = grade_calibration(labels, pd / 2, SETTINGS).filter(pl.col("n") > 1000)
    assert not halved["calibrated"].any()


def test_grades_without_loans_are_listed_untested() -> None:
    table = grade_calibration(np.array([0, 1]), np.array([0.005, 0.006]), SETTINGS)
    assert table["n"].to_list() == [2, 0, 0, 0, 0, 0, 0]
    assert table["binomial_p_value"].null_count() == 6
