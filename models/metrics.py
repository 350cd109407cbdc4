"""How good a PD score is: discrimination, calibration and stability (no model code here).

Scalars come from scikit-learn (AUC, PR-AUC, Brier score, log loss, ROC for KS); what no
well-kept library provides as a function (PSI, the expected calibration error over
equal-count bins, the decile table) is written out here on top of NumPy and Polars.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
    roc_curve,
)

# Clips an empty bin's share in PSI: ln(0) would make any unseen bin infinite.
PSI_FLOOR = 1e-6


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def auc_standard_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """DeLong's standard error of the AUC of `scores` (its structural components from
    midranks, as Sun and Xu compute them)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    bads, goods = scores[labels], scores[~labels]
    m, n = len(bads), len(goods)
    if m < 2 or n < 2:
        return float("nan")
    ranks = rankdata(np.concatenate([bads, goods]))
    bad_placements = (ranks[:m] - rankdata(bads)) / n
    good_placements = 1 - (ranks[m:] - rankdata(goods)) / m
    variance = np.var(bad_placements, ddof=1) / m + np.var(good_placements, ddof=1) / n
    return float(np.sqrt(variance))


def ks(labels: np.ndarray, scores: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the bads' and goods' score CDFs."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.max(tpr - fpr))


def equal_count_bins(scores: np.ndarray, bins: int) -> np.ndarray:
    """Bin number 0..bins-1 of each score, by rank: the bins hold equal counts (ties split
    by position, so the result depends only on the scores and their order)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(len(scores))
    return (ranks * bins // max(len(scores), 1)).astype(np.int64)


def expected_calibration_error(labels: np.ndarray, pd: np.ndarray, bins: int = 10) -> float:
    """Mean |observed bad rate - mean PD| over equal-count PD bins, weighted by bin size."""
    groups = equal_count_bins(pd, bins)
    n = np.bincount(groups, minlength=bins)
    observed = np.bincount(groups, weights=labels, minlength=bins)
    predicted = np.bincount(groups, weights=pd, minlength=bins)
    filled = n > 0
    gaps = np.abs(observed[filled] - predicted[filled])
    return float(gaps.sum() / n.sum())


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `actual` scores against `expected` ones.

    Bins are the deciles of `expected`; PSI = sum((a - e) * ln(a / e)) over the bins' shares.
    Below 0.1 is usually read as stable, above 0.25 as a shifted population.
    """
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1))[1:-1])
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    e_share = np.clip(e / e.sum(), PSI_FLOOR, None)
    a_share = np.clip(a / a.sum(), PSI_FLOOR, None)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def summary(labels: np.ndarray, pd: np.ndarray) -> dict[str, float]:
    """Every scalar measure of one labelled set scored with probabilities of default."""
    labels = np.asarray(labels, dtype=np.float64)
    pd = np.asarray(pd, dtype=np.float64)
    area = auc(labels, pd)
    return {
        "auc": area,
        "gini": 2 * area - 1,
        "ks": ks(labels, pd),
        "brier": float(brier_score_loss(labels, pd)),
        "log_loss": float(log_loss(labels, np.clip(pd, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "pr_auc": float(average_precision_score(labels, pd)),
        "ece": expected_calibration_error(labels, pd),
        "bad_rate": float(labels.mean()),
        "mean_pd": float(pd.mean()),
        "n": float(len(labels)),
    }


def gini_by_month(frame: pl.DataFrame, pd: np.ndarray, month: str = "month") -> pl.DataFrame:
    """Gini, bad rate and mean PD per application month: is the ranking stable over time?

    Months with a single class have no Gini (null)."""
    scored = frame.select(month, "label").with_columns(pd=pl.Series(pd))
    rows = []
    for (value,), part in scored.group_by(month, maintain_order=True):
        labels = part["label"].to_numpy()
        both = 0 < labels.sum() < len(labels)
        rows.append(
            {
                month: value,
                "n": part.height,
                "bad_rate": float(labels.mean()),
                "mean_pd": float(part["pd"].mean()),  # type: ignore[arg-type]
                "gini": 2 * auc(labels, part["pd"].to_numpy()) - 1 if both else None,
            }
        )
    return pl.DataFrame(rows).sort(month)


def decile_table(labels: np.ndarray, pd: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Deciles of PD, riskiest first: count, bads, bad rate, mean PD, lift over the overall bad
    rate, and the cumulative share of all bads captured down to that decile."""
    decile = bins - equal_count_bins(np.asarray(pd), bins)  # 1 = highest PD
    frame = pl.DataFrame({"decile": decile, "label": np.asarray(labels), "pd": np.asarray(pd)})
    overall = frame["label"].mean()
    return (
        frame.group_by("decile")
        .agg(
            n=pl.len(),
            bads=pl.col("label").sum(),
            min_pd=pl.col("pd").min(),
            max_pd=pl.col("pd").max(),
            mean_pd=pl.col("pd").mean(),
        )
        .sort("decile")
        .with_columns(bad_rate=pl.col("bads") / pl.col("n"))
        .with_columns(
            lift=pl.col("bad_rate") / overall,
            cumulative_capture=pl.col("bads").cum_sum() / pl.col("bads").sum(),
        )
    )
