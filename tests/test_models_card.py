"""The model card: segment metrics (fairlearn), their largest gaps, the Markdown card, its HTML
page, and the check of model inputs against protected attributes. Small frames built here."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date

import numpy as np
import polars as pl
import pytest
from fairlearn.metrics import MetricFrame
from sklearn.metrics import roc_auc_score

from models.card import (
    SEGMENTS,
    CardInputs,
    card_html,
    largest_gaps,
    model_card,
    protected_inputs,
    segment_metrics,
)
from models.config import DecisionSettings
from models.decision import grade_calibration

DECISION = DecisionSettings()  # grades A..F approve, G (PD above 20%) declines
MIN_BADS = 2


def loans() -> tuple[pl.DataFrame, np.ndarray]:
    """Twelve loans: women ranked perfectly, men half right, gender U one class (no AUC).

    PDs above 0.20 are declined by the default policy table."""
    frame = pl.DataFrame(
        {
            "label": [1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
            "fairness_gender": ["F"] * 5 + ["M"] * 5 + ["U"] * 2,
            "fairness_age_years": [19.0, 30, 30, 40, 50, 60, 24, 25, None, 55, 18, 70],
            "application_city_tier": [1.0, 1, 1, 2, 2, 2, 3, 3, 3, 3, None, 5],
            "application_occupation": ["gig"] * 6 + ["salaried"] * 6,
            "application_channel": ["organic"] * 12,
        }
    ).with_columns(
        pl.col("fairness_gender").cast(pl.Enum(["F", "M", "U"])),
        pl.col("application_occupation").cast(pl.Enum(["gig", "salaried"])),
    )
    pd = np.array([0.30, 0.25, 0.05, 0.03, 0.01, 0.10, 0.19, 0.15, 0.04, 0.50, 0.01, 0.01])
    return frame, pd


def row(table: pl.DataFrame, segment: str, group: str) -> dict[str, object]:
    return table.filter((pl.col("segment") == segment) & (pl.col("group") == group)).row(
        0, named=True
    )


def test_segment_metrics_by_gender_match_a_hand_count() -> None:
    frame, pd = loans()
    table = segment_metrics(frame, pd, DECISION, min_bads=MIN_BADS)
    women, men, unknown = (row(table, "gender", g) for g in ("F", "M", "U"))
    assert (women["count"], women["bads"], women["bad_rate"]) == (5, 2, pytest.approx(0.4))
    assert (men["count"], men["bads"], men["bad_rate"]) == (5, 2, pytest.approx(0.4))
    assert (unknown["count"], unknown["bads"]) == (2, 0)
    # Declined: PD 0.30 and 0.25 among the women, 0.50 among the men.
    assert women["approval_rate"] == pytest.approx(3 / 5)
    assert men["approval_rate"] == pytest.approx(4 / 5)
    assert unknown["approval_rate"] == pytest.approx(1.0)
    assert women["mean_pd"] == pytest.approx(np.mean(pd[:5]))
    assert women["mean_pd_minus_bad_rate"] == pytest.approx(np.mean(pd[:5]) - 0.4)
    assert women["auc"] == pytest.approx(roc_auc_score(frame["label"][:5], pd[:5]))
    assert men["auc"] == pytest.approx(roc_auc_score(frame["label"][5:10], pd[5:10]))
    assert women["auc"] == pytest.approx(1.0) and men["auc"] == pytest.approx(0.5)
    assert unknown["auc"] is None  # one class: no AUC, and no error from fairlearn


def test_segment_groups_are_derived_as_documented() -> None:
    frame, pd = loans()
    table = segment_metrics(frame, pd, DECISION, min_bads=MIN_BADS)
    assert table["segment"].unique(maintain_order=True).to_list() == list(SEGMENTS)
    groups = table.filter(pl.col("segment") == "age band").select("group", "count")
    assert dict(groups.iter_rows()) == {
        "18-24": 3,  # 19, 24 and 18
        "25-34": 3,
        "35-44": 1,
        "45-54": 1,
        "55+": 3,
        "unknown": 1,
    }
    tiers = table.filter(pl.col("segment") == "city tier")["group"].to_list()
    assert tiers == ["1", "2", "3", "5", "unknown"]


def test_auc_needs_min_bads_in_the_group() -> None:
    frame, pd = loans()
    table = segment_metrics(frame, pd, DECISION, min_bads=3)
    assert row(table, "gender", "F")["auc"] is None  # two bads only
    gig = row(table, "occupation", "gig")  # three bads, three goods
    assert gig["bads"] == 3
    assert gig["auc"] == pytest.approx(roc_auc_score(frame["label"][:6], pd[:6]))


def test_segments_whose_columns_are_missing_are_left_out() -> None:
    frame, pd = loans()
    table = segment_metrics(frame.drop("fairness_age_years"), pd, DECISION, min_bads=MIN_BADS)
    assert "age band" not in table["segment"].to_list()
    with pytest.raises(ValueError, match="row order"):
        segment_metrics(frame, pd[:-1], DECISION)


def test_largest_gaps_match_fairlearn_difference() -> None:
    frame, pd = loans()
    table = segment_metrics(frame, pd, DECISION, min_bads=MIN_BADS)
    gaps = largest_gaps(table)
    gender = {r["metric"]: r for r in gaps.filter(pl.col("segment") == "gender").to_dicts()}
    assert gender["auc"]["highest_group"] == "F" and gender["auc"]["lowest_group"] == "M"
    assert gender["auc"]["gap"] == pytest.approx(0.5)  # U has no AUC: skipped, not zero
    assert gender["approval_rate"]["highest_group"] == "U"
    assert gender["approval_rate"]["lowest_group"] == "F"
    assert gender["approval_rate"]["gap"] == pytest.approx(1 - 3 / 5)

    def auc_or_nan(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        both = 0 < np.sum(y_true) < len(y_true)
        return float(roc_auc_score(y_true, y_pred)) if both else math.nan

    fairlearn = MetricFrame(
        metrics={"auc": auc_or_nan},
        y_true=frame["label"].to_numpy(),
        y_pred=pd,
        sensitive_features=frame["fairness_gender"].cast(pl.String).to_numpy(),
    )
    assert gender["auc"]["gap"] == pytest.approx(fairlearn.difference()["auc"])
    # A channel with one group has nothing to compare.
    assert "channel" not in gaps["segment"].to_list()


def test_protected_inputs() -> None:
    names = [
        "application_age_years",
        "app_usage_days",
        "message_count_30d",
        "fairness_age_years",
        "user_gender_code",
        "bureau_inquiries_90d",
    ]
    assert protected_inputs(names, ["gender"]) == ["fairness_age_years", "user_gender_code"]
    assert protected_inputs(names, ["gender", "age"]) == [
        "application_age_years",
        "fairness_age_years",
        "user_gender_code",
    ]
    assert protected_inputs(["bureau_inquiries_90d"], ["gender", "age"]) == []


def card_inputs(**changes: object) -> CardInputs:
    frame, pd = loans()
    labels = frame["label"].to_numpy()
    inputs = CardInputs(
        model_name="pd_micro",
        version="7",
        as_of=date(2025, 3, 1),
        chosen="lightgbm",
        choice="simplest within one standard error",
        fitted_on={
            "evaluated": "train + valid (2024-01..2024-10, 900 loans)",
            "registered": "train + valid + oot (2024-01..2024-12, 1100 loans)",
        },
        split_months={
            "train": "2024-01..2024-08",
            "valid": "2024-09..2024-10",
            "oot": "2024-11..2024-12",
        },
        split_rows={"train": 700, "valid": 200, "oot": 200},
        label_window_months=6,
        label_threshold_days=90,
        families={
            "bureau_inquiries_90d": "bureau",
            "bureau_open_loans": "bureau",
            "txn_salary_amount_180d": "transactions",
        },
        catalogue_link="feature_catalogue.md",
        metrics={
            "oot_auc": 0.71234,
            "oot_ks": 0.33331,
            "oot_brier": 0.04567,
            "oot_ece": 0.0123,
            "oot_bad_rate": 0.05,
            "oot_mean_pd": 0.0512,
            "oot_auc_lightgbm_default": 0.70111,
            "oot_auc_woe_scorecard": 0.72222,
            "oot_auc_uncalibrated": 0.71234,
            "oot_auc_margin_over_lightgbm_default": 0.01123,
            "oot_auc_margin_over_woe_scorecard": -0.00988,
            "candidate_scorecard_oot_auc": 0.69876,
            "oot_oracle_auc": 0.80001,
        },
        champion={
            "version": "6",
            "champion_auc": 0.70555,
            "challenger_auc": 0.71234,
            "difference": 0.00679,
            "p_value": 0.2345,
            "decision": "keep champion",
            "reason": "difference not significant at p < 0.05",
        },
        ablation=pl.DataFrame(
            {
                "step": ["bureau", "bureau + transactions"],
                "family_added": ["bureau", "transactions"],
                "features": [2, 3],
                "oot_auc": [0.65432, 0.71234],
                "oot_ks": [0.25, 0.33],
                "auc_lift": [None, 0.05802],
                "ks_lift": [None, 0.08],
            }
        ),
        grades=grade_calibration(labels, np.array([0.015] * 12), DECISION),
        segments=segment_metrics(frame, pd, DECISION, min_bads=MIN_BADS),
        protected=["gender"],
        drift_warnings=["applications: volume ratio 2.5 outside [0.5, 2.0]"],
        limitations=["Only two out-of-time months."],
    )
    return replace(inputs, **changes)  # type: ignore[arg-type]


SECTIONS = [
    "## Intended use",
    "## Out of scope",
    "## Data",
    "## Label definition",
    "## Features by family",
    "## Performance out of time",
    "## Family ablation",
    "## Calibration by grade",
    "## Metrics by segment",
    "## Protected attributes",
    "## Known limitations",
    "## Drift warnings",
]


def test_card_has_every_section_in_order() -> None:
    card = model_card(card_inputs())
    positions = [card.index(heading) for heading in SECTIONS]
    assert positions == sorted(positions)
    assert card.startswith("# Model card: pd\\_micro (version 7)")
    assert "As of 2025-03-01" in card


def test_card_states_the_numbers_given() -> None:
    card = model_card(card_inputs())
    assert "| AUC | 0.7123 |" in card
    assert "| Expected calibration error | 1.23% |" in card
    assert "| Bad rate | 5.00% |" in card
    assert "| Out of time | 2024-11 to 2024-12 | 200 |" in card
    # Baselines in metrics, with this model's margin; the margin/uncalibrated keys are not.
    assert "LightGBM with default parameters, every feature | 0.7011 | +0.0112 |" in card
    assert "WOE logistic scorecard, untuned | 0.7222 | -0.0099 |" in card
    assert "bureau features only" not in card
    assert "uncalibrated" not in card
    assert "| Champion (version 6) | 0.7056 | +0.0068 |" in card
    assert "p-value 0.2345" in card and "**keep champion**" in card
    assert "first 6 months on book reaches 90 days past due" in card
    assert "| bureau | 2 |" in card and "`txn_salary_amount_180d`" in card
    assert "[the feature catalogue](feature_catalogue.md)" in card
    assert "| bureau + transactions | 3 | 0.7123 | +0.0580 |" in card
    assert "| F | 5 | 2 | 40.00% | 1.0000 |" in card
    assert "| U | 2 | 0 | 0.00% | n/a |" in card
    assert "**gender**, AUC: 1.0000 (gender F) against 0.5000 (gender M), a gap of 0.5000" in card
    assert "volume ratio 2.5 outside \\[0.5, 2.0\\]" in card


def test_card_computes_limitations() -> None:
    card = model_card(card_inputs())
    limitations = card[card.index("## Known limitations") : card.index("## Drift warnings")]
    assert "10 bads among 200 loans" in limitations
    assert "does not beat the baseline (WOE logistic scorecard, untuned)" in limitations
    assert "LightGBM with default" not in limitations  # beaten
    assert "synthetic data" in limitations
    assert "registered version was refitted" in limitations
    # All twelve loans at PD 1.5% hold 4 bads: grade B fails the binomial test.
    assert "Grade B fails the binomial calibration test" in limitations
    assert "gender U (0 bads in 2 loans)" in limitations
    assert "Only two out-of-time months." in limitations
    assert "Protected attributes reach the model" not in limitations


def test_card_without_champion_ablation_or_warnings() -> None:
    card = model_card(card_inputs(champion=None, ablation=None, drift_warnings=[]))
    assert "no champion to compare with" in card
    assert "## Family ablation\n\nNot run for this model." in card
    assert card.endswith("## Drift warnings\n\nNone.\n")


def test_card_without_segments_says_so() -> None:
    frame = pl.DataFrame({"label": [0, 1]})
    segments = segment_metrics(frame, np.array([0.1, 0.2]), DECISION)
    assert segments.is_empty()
    card = model_card(card_inputs(segments=segments))
    assert "No segment could be derived from the training set." in card
    assert "Segments reported: none." in card
    assert "columns absent from the training set): city tier, occupation" in card


def test_card_reports_protected_inputs() -> None:
    clean = model_card(card_inputs())
    assert "no model input is, or directly encodes, a protected attribute" in clean
    leaky = card_inputs(
        families={"application_age_years": "application", "bureau_open_loans": "bureau"},
        protected=["gender", "age"],
    )
    card = model_card(leaky)
    assert "**Check failed**" in card and "Protected attributes reach the model" in card
    assert "Protected attributes (age, gender) appear only as segments" in card


def test_card_is_deterministic() -> None:
    assert model_card(card_inputs()) == model_card(card_inputs())


def test_card_html_is_a_page_with_tables_and_escaped_text() -> None:
    inputs = card_inputs(drift_warnings=["<script>alert(1)</script> & R&D"])
    page = card_html(model_card(inputs), title="pd_micro v7 <card>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>pd_micro v7 &lt;card&gt;</title>" in page
    assert page.count("<table>") >= 8
    assert "<th>Mean PD − bad rate</th>" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; R&amp;D" in page
    assert "p &lt; 0.05" in page
    assert "<code>txn_salary_amount_180d</code>" in page
    assert '<a href="feature_catalogue.md">' in page
    assert "pd_micro (version 7)</h1>" in page  # escaped underscore shown as written
