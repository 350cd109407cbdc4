"""The monitor: frozen bins, stability indices against them, performance on matured loans, and
the verdict's thresholds."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from models.config import DecisionSettings, MonitorSettings
from models.drift import build_reference, frozen_bins, stability, stability_index
from models.metrics import psi
from models.monitor import Performance, performance, verdict

RNG = np.random.default_rng(7)


def test_frozen_bins_keep_missing_values_in_a_bin_of_their_own() -> None:
    values = pl.Series([float(i) for i in range(100)] + [None] * 25)
    binned = frozen_bins(values, bins=4)
    assert binned.edges == pytest.approx([24.75, 49.5, 74.25])
    assert binned.shares == pytest.approx([0.2, 0.2, 0.2, 0.2, 0.2])
    # More missing values, same present ones: only the missing bin moves.
    more_missing = pl.Series([float(i) for i in range(100)] + [None] * 100)
    assert stability_index(binned, more_missing) > 0.1
    assert stability_index(binned, values) == 0.0


def test_the_stability_index_on_frozen_edges_is_the_psi_of_the_same_samples() -> None:
    expected, actual = RNG.normal(0, 1, 5000), RNG.normal(0.3, 1, 3000)
    binned = frozen_bins(pl.Series(expected), bins=10)
    assert stability_index(binned, pl.Series(actual)) == pytest.approx(psi(expected, actual, 10))


def reference_and_recent(shift: float) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame, np.ndarray]:
    before = pl.DataFrame({"steady": RNG.normal(0, 1, 4000), "moving": RNG.normal(0, 1, 4000)})
    after = pl.DataFrame({"steady": RNG.normal(0, 1, 2000), "moving": RNG.normal(shift, 1, 2000)})
    return before, RNG.beta(2, 30, 4000), after, RNG.beta(2, 30, 2000)


def test_stability_lists_the_pd_first_then_the_features_that_moved_most() -> None:
    before, pd_before, after, pd_after = reference_and_recent(shift=1.0)
    reference = build_reference(before, pd_before, ("steady", "moving"), date(2025, 6, 1), 0.7, 10)
    table = stability(reference, after, pd_after)
    assert table["column"].to_list() == ["pd", "moving", "steady"]
    indices = dict(table.select("column", "index").iter_rows())
    assert indices["pd"] < 0.05 and indices["steady"] < 0.05 and indices["moving"] > 0.25


def judged(auc: float | None, failing: bool = False) -> Performance:
    grades = pl.DataFrame({"calibrated": [True, not failing]})
    return Performance(1000, 50, auc, 0.3 if auc else None, grades if auc else None)


def table(score_psi: float, csi: float = 0.0) -> pl.DataFrame:
    return pl.DataFrame(
        {"kind": ["score", "feature"], "column": ["pd", "f1"], "index": [score_psi, csi]}
    )


@pytest.mark.parametrize(
    ("stability_table", "perf", "expected", "words"),
    [
        (table(0.02), judged(0.75), "ok", []),
        (table(0.12), judged(0.75), "warn", ["PSI of the PD 0.120 >= 0.1"]),
        (table(0.30), judged(0.75), "retrain", ["PSI of the PD 0.300 >= 0.25"]),
        (table(0.02, csi=0.4), judged(0.75), "warn", ["1 feature(s) with CSI >= 0.25: f1 0.400"]),
        (table(0.02), judged(0.71), "warn", ["AUC 0.7100 on 1,000 matured loans, 0.0400 below"]),
        (table(0.02), judged(0.68), "retrain", ["AUC 0.6800 on 1,000 matured loans, 0.0700"]),
        (table(0.02), judged(0.75, failing=True), "warn", ["1 grade(s) fail the binomial"]),
        (table(0.02), judged(None), "ok", []),
    ],
    ids=["ok", "psi-warn", "psi-retrain", "csi", "auc-warn", "auc-retrain", "calibration", "few"],
)
def test_the_verdict_follows_the_thresholds(
    stability_table: pl.DataFrame, perf: Performance, expected: str, words: list[str]
) -> None:
    said, reasons = verdict(stability_table, perf, 0.75, MonitorSettings())
    assert said == expected
    assert len(reasons) == len(words)
    for reason, start in zip(reasons, words, strict=True):
        assert reason.startswith(start), reason


def test_performance_is_not_judged_on_too_few_loans_or_one_outcome() -> None:
    decision = DecisionSettings()
    labels = (RNG.random(500) < 0.1).astype(int)
    pd = np.clip(0.05 + 0.1 * labels + RNG.normal(0, 0.02, 500), 0.001, 0.999)
    judged_perf = performance(labels, pd, decision, min_loans=200)
    assert judged_perf.auc is not None and judged_perf.auc > 0.9
    assert judged_perf.grades is not None and judged_perf.loans == 500
    assert performance(labels[:100], pd[:100], decision, min_loans=200).auc is None
    assert performance(np.zeros(500), pd, decision, min_loans=200).auc is None


def test_without_recent_applications_the_monitor_warns_instead_of_comparing() -> None:
    before, pd_before, after, _ = reference_and_recent(shift=0.0)
    reference = build_reference(before, pd_before, ("steady", "moving"), date(2025, 6, 1), 0.7, 10)
    table = stability(reference, after.clear(), np.empty(0))
    assert table["index"].null_count() == 3
    said, reasons = verdict(table, judged(None), 0.7, MonitorSettings())
    assert said == "warn" and reasons == [
        "no applications in the recent days to compare with the reference"
    ]


def test_a_categorical_feature_is_binned_by_category() -> None:
    channel = pl.Enum(["organic", "push_message", "referral"])
    before = pl.Series(["organic"] * 60 + ["push_message"] * 30 + [None] * 10, dtype=channel)
    binned = frozen_bins(before, bins=10)
    assert binned.categories == ["organic", "push_message"]
    assert binned.shares == pytest.approx([0.6, 0.3, 0.0, 0.1])  # the third: unseen ones
    assert stability_index(binned, before) == 0.0
    campaign = pl.Series(["organic"] * 40 + ["referral"] * 50 + [None] * 10, dtype=channel)
    assert stability_index(binned, campaign) > 1.0
