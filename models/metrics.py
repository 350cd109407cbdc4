"""How good a PD score is: discrimination, calibration and stability (no model code here).

Scalars come from scikit-learn (AUC, PR-AUC, Brier score, log loss, ROC for KS); what no
well-kept library provides as a function (PSI, the expected calibration error over
equal-count bins, the decile table, DeLong's standard error and paired test of AUCs) is
written out here on top of NumPy, SciPy and Polars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import norm, rankdata
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


def _placements(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of the AUC of `scores` (Sun and Xu's midrank form).

    `labels` is boolean (True = bad). Returns (V10, V01): for each bad, the share of goods it
    outscores; for each good, the share of bads that outscore it; ties count one half. Both
    average to the AUC."""
    bads, goods = scores[labels], scores[~labels]
    m, n = len(bads), len(goods)
    ranks = rankdata(np.concatenate([bads, goods]))
    bad_placements = (ranks[:m] - rankdata(bads)) / n
    good_placements = 1 - (ranks[m:] - rankdata(goods)) / m
    return bad_placements, good_placements


def auc_standard_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """DeLong's standard error of the AUC of `scores` (its structural components from
    midranks, as Sun and Xu compute them); NaN with fewer than 2 bads or 2 goods."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    m = int(labels.sum())
    n = len(labels) - m
    if m < 2 or n < 2:
        return float("nan")
    bad_placements, good_placements = _placements(labels, scores)
    variance = np.var(bad_placements, ddof=1) / m + np.var(good_placements, ddof=1) / n
    return float(np.sqrt(variance))


@dataclass(frozen=True)
class PairedAUCTest:
    """DeLong's test of two correlated AUCs (the same loans scored by two models).

    One-sided: H0 auc_a <= auc_b against H1 auc_a > auc_b, so a small `p_value` says model a
    ranks better. The two-sided p-value of "the AUCs differ" is 2 * min(p_value, 1 - p_value).
    """

    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    standard_error: float  # of the difference, from the 2x2 DeLong covariance
    z: float
    p_value: float  # one-sided: H0 auc_a <= auc_b, H1 auc_a > auc_b
    bads: int
    goods: int

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided normal confidence interval of auc_a - auc_b."""
        half_width = float(norm.ppf((1 + _checked(level)) / 2)) * self.standard_error
        return self.difference - half_width, self.difference + half_width

    def lower_bound(self, level: float = 0.95) -> float:
        """One-sided lower confidence bound of auc_a - auc_b: above zero at `level` exactly
        when the test rejects at 1 - `level`."""
        return self.difference - float(norm.ppf(_checked(level))) * self.standard_error


def _checked(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")
    return level


def paired_delong(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> PairedAUCTest:
    """DeLong's paired test that `scores_a` ranks bads (label 1) above goods better than
    `scores_b` does, on the same loans.

    Sun and Xu's fast algorithm: midrank structural components V10 (per bad) and V01 (per
    good) for each score, the covariance S = S10 / bads + S01 / goods, and
    var(auc_a - auc_b) = S[0, 0] + S[1, 1] - 2 S[0, 1], computed as the variance of the
    components' differences (the same quantity, exactly zero when both scores rank the loans
    alike); z = difference / standard error and p = norm.sf(z).

    With zero variance the normal test degenerates: a zero difference (identical rankings)
    gives z 0 and p 1.0, since nothing can be rejected; a nonzero one (e.g. a perfectly
    separating score against a constant one) gives z +-inf and p 0.0 or 1.0 by its sign.

    Raises ValueError for label and score vectors of different lengths, labels other than
    0/1, NaN scores, or fewer than 2 bads or 2 goods.
    """
    labels, a, b = _paired_inputs(labels, scores_a, scores_b)
    m = int(labels.sum())
    n = len(labels) - m
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least 2 bads and 2 goods, got {m} and {n}")
    bads_a, goods_a = _placements(labels, a)
    bads_b, goods_b = _placements(labels, b)
    auc_a, auc_b = float(bads_a.mean()), float(bads_b.mean())
    difference = auc_a - auc_b
    variance = np.var(bads_a - bads_b, ddof=1) / m + np.var(goods_a - goods_b, ddof=1) / n
    standard_error = float(np.sqrt(variance))
    z, p_value = _one_sided_z_test(difference, standard_error)
    return PairedAUCTest(auc_a, auc_b, difference, standard_error, z, p_value, m, n)


def _paired_inputs(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw_labels = np.asarray(labels)
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if not raw_labels.ndim == a.ndim == b.ndim == 1:
        raise ValueError("labels and both score vectors must be one-dimensional")
    if not len(raw_labels) == len(a) == len(b):
        raise ValueError(
            f"labels and scores differ in length: {len(raw_labels)}, {len(a)} and {len(b)}"
        )
    if not np.isin(raw_labels, [0, 1]).all():
        raise ValueError("labels must be 0 (good) or 1 (bad)")
    for name, scores in (("scores_a", a), ("scores_b", b)):
        if np.isnan(scores).any():
            raise ValueError(f"{name} holds {int(np.isnan(scores).sum())} NaN score(s)")
    return raw_labels.astype(bool), a, b


def _one_sided_z_test(difference: float, standard_error: float) -> tuple[float, float]:
    """z and the upper-tail p-value; the zero-variance cases as paired_delong documents."""
    if standard_error > 0:
        z = difference / standard_error
        return z, float(norm.sf(z))
    if difference == 0:
        return 0.0, 1.0
    return math.copysign(math.inf, difference), 0.0 if difference > 0 else 1.0


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
    return psi_of_shares(e / e.sum(), a / a.sum())


def psi_of_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI of two distributions over the same bins: sum of (a - e) * ln(a / e) over the bins'
    shares, floored so an empty bin stays finite."""
    e_share = np.clip(expected, PSI_FLOOR, None)
    a_share = np.clip(actual, PSI_FLOOR, None)
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
