"""DeLong's paired, one-sided test of two AUCs on the same loans (models.metrics.paired_delong)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.metrics import auc_standard_error, paired_delong


def _column(values: str, dtype: type) -> np.ndarray:
    return np.array(values.split(), dtype=dtype)


# pROC's aSAH data set (Turck et al. 2010, Intensive Care Medicine 36(1):107-115; shipped with
# the R package pROC as data/aSAH.rda): 113 patients after aneurysmal subarachnoid haemorrhage,
# in the data set's row order. outcome 1 = Poor (41 patients), 0 = Good (72); wfns is the
# WFNS grade 1-5 (an ordinal score, so heavily tied); s100b is the S100-beta level in ug/L.
# Transcribed from the public copy in github.com/erenozen/opendose,
# engine/tests/test_methodcomp_extras.py (commit f73f9f00c2b654aa3cd3f3c3310f6caa69040382),
# and checked value for value against a second, independent public transcription.
_ASAH_OUTCOME = _column(
    """
    0 0 0 0 1 1 0 1 0 0 1 0 1 1 0 0 1 0 1 1 1 0 1 0 0 0 0 0 0 0 0 0 1 0 0 1 1 0
    1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 1 0 0 0 1 0 1 0 0 1 1 1 0 1 1 0 1 1 1 1 0 0
    0 1 1 0 1 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 1 1 1 1 1 1 0 0 0 1 0 0 0
    """,
    np.int64,
)
_ASAH_WFNS = _column(
    """
    1 1 1 1 3 2 5 4 1 2 5 2 5 5 1 2 5 2 2 5 2 1 1 1 1 2 1 2 1 1 3 4 2 1 4 5 4 1
    4 2 5 5 1 1 2 4 1 1 2 5 5 2 1 2 5 1 2 2 2 1 5 1 1 2 5 2 1 4 5 2 4 4 1 4 1 2
    1 4 2 1 2 3 2 4 2 1 4 5 1 1 5 4 2 2 1 1 1 3 1 2 5 2 2 5 5 5 2 4 4 5 1 1 1
    """,
    np.float64,
)
_ASAH_S100B = _column(
    """
    0.13 0.14 0.10 0.04 0.13 0.10 0.47 0.16 0.18 0.10 0.12 0.10 0.44 0.71 0.04 0.08
    0.49 0.04 0.07 0.33 0.09 0.09 0.07 0.11 0.07 0.17 0.07 0.11 0.13 0.19 0.05 0.16
    0.41 0.14 0.34 0.35 0.48 0.09 0.96 0.25 0.50 0.46 0.16 0.07 0.43 0.45 0.11 0.08
    0.09 0.86 0.52 0.08 0.06 0.13 2.07 0.10 0.14 0.15 0.07 0.06 0.77 0.05 0.09 0.30
    0.03 0.09 0.04 0.23 0.70 0.09 0.27 0.71 0.08 0.26 0.08 0.16 0.09 0.13 0.10 0.08
    0.11 0.33 0.11 0.28 0.07 0.10 0.32 0.22 0.07 0.05 0.24 0.38 0.10 0.15 0.08 0.14
    0.10 0.07 0.04 0.19 0.56 0.14 0.58 0.32 0.82 0.74 0.15 0.47 0.17 0.44 0.15 0.50
    0.48
    """,
    np.float64,
)


def test_the_asah_columns_have_the_published_shape() -> None:
    assert len(_ASAH_OUTCOME) == len(_ASAH_WFNS) == len(_ASAH_S100B) == 113
    assert int(_ASAH_OUTCOME.sum()) == 41


def test_reproduces_procs_published_delong_test_of_s100b_against_wfns() -> None:
    # pROC's roc.test help page (Robin et al. 2011, BMC Bioinformatics 12:77):
    # roc.test(roc(aSAH$outcome, aSAH$s100b), roc(aSAH$outcome, aSAH$wfns)) prints
    # "DeLong's test for two correlated ROC curves: Z = -2.209, p-value = 0.02718",
    # AUCs 0.7314 and 0.8237. Z is AUC(s100b) - AUC(wfns) over its standard error, as here;
    # its two-sided p is twice the one-sided p of the better direction.
    result = paired_delong(_ASAH_OUTCOME, _ASAH_S100B, _ASAH_WFNS)
    assert (result.bads, result.goods) == (41, 72)
    assert result.auc_a == pytest.approx(0.7314, abs=5e-5)
    assert result.auc_b == pytest.approx(0.8237, abs=5e-5)
    assert result.z == pytest.approx(-2.209, abs=5e-4)
    assert 2 * min(result.p_value, 1 - result.p_value) == pytest.approx(0.02718, abs=5e-6)
    assert result.p_value > 0.5  # s100b is the worse marker: H0 auc_a <= auc_b stands


def test_agrees_with_proc_to_full_precision_on_asah() -> None:
    # pROC's own test suite (tests/testthat) on aSAH, as quoted in the opendose test file cited
    # above: DeLong variances var(roc) of s100b and wfns, and roc.test(wfns, s100b) with
    # Z = 2.20898359144091, its 95% interval and the alternative="greater" p-value.
    s100b_vs_wfns = paired_delong(_ASAH_OUTCOME, _ASAH_S100B, _ASAH_WFNS)
    wfns_vs_s100b = paired_delong(_ASAH_OUTCOME, _ASAH_WFNS, _ASAH_S100B)

    assert wfns_vs_s100b.auc_a == pytest.approx(0.823678861788618, rel=1e-12)
    assert auc_standard_error(_ASAH_OUTCOME, _ASAH_S100B) ** 2 == pytest.approx(
        0.00266868245717244, rel=1e-9
    )
    assert auc_standard_error(_ASAH_OUTCOME, _ASAH_WFNS) ** 2 == pytest.approx(
        0.00146991470882363, rel=1e-9
    )
    assert wfns_vs_s100b.z == pytest.approx(2.20898359144091, rel=1e-9)
    assert s100b_vs_wfns.z == pytest.approx(-2.20898359144091, rel=1e-9)
    assert wfns_vs_s100b.p_value == pytest.approx(0.0135878911145941, rel=1e-9)
    assert wfns_vs_s100b.interval() == pytest.approx(
        (0.0104061769564846, 0.174214419249478), rel=1e-9
    )


def _correlated_scores(seed: int, loans: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (about 14% bads) driven by a latent risk, and two scores sharing that signal
    with noise of different sizes."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=loans)
    labels = (rng.random(loans) < 1 / (1 + np.exp(2.5 - 1.5 * risk))).astype(np.int64)
    return labels, risk + rng.normal(0, 0.6, loans), risk + rng.normal(0, 1.0, loans)


def _stratified_paired_bootstrap(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int, seed: int
) -> np.ndarray:
    """auc_a - auc_b over resamples that draw bads from bads and goods from goods with
    replacement, the same draw for both scores.

    A resample is held as how many times it draws each loan; its AUC is the exact AUC of the
    resampled loans, sum(count_bad * count_good * win) / (bads * goods), where win is 1, 1/2
    or 0 as the bad scores above, level with or below the good."""
    rng = np.random.default_rng(seed)
    bads, goods = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    bad_counts = rng.multinomial(len(bads), np.full(len(bads), 1 / len(bads)), size=resamples)
    good_counts = rng.multinomial(len(goods), np.full(len(goods), 1 / len(goods)), size=resamples)

    first_draw = np.zeros(len(labels))
    first_draw[bads], first_draw[goods] = bad_counts[0], good_counts[0]
    assert _resampled_auc(a, bads, goods, bad_counts[:1], good_counts[:1])[0] == pytest.approx(
        roc_auc_score(labels, a, sample_weight=first_draw), abs=1e-12
    )
    return _resampled_auc(a, bads, goods, bad_counts, good_counts) - _resampled_auc(
        b, bads, goods, bad_counts, good_counts
    )


def _resampled_auc(
    scores: np.ndarray,
    bads: np.ndarray,
    goods: np.ndarray,
    bad_counts: np.ndarray,
    good_counts: np.ndarray,
) -> np.ndarray:
    bad_scores, good_scores = scores[bads, None], scores[None, goods]
    wins = (bad_scores > good_scores) + 0.5 * (bad_scores == good_scores)
    return ((bad_counts @ wins) * good_counts).sum(axis=1) / (len(bads) * len(goods))


@pytest.mark.parametrize("decimals", [None, 0], ids=["continuous", "rounded-heavy-ties"])
def test_the_standard_error_matches_a_paired_stratified_bootstrap(decimals: int | None) -> None:
    labels, a, b = _correlated_scores(seed=7)
    if decimals is not None:  # about ten distinct values per score
        a, b = np.round(a, decimals), np.round(b, decimals)
    result = paired_delong(labels, a, b)

    assert result.auc_a == pytest.approx(roc_auc_score(labels, a), abs=1e-12)
    assert result.auc_b == pytest.approx(roc_auc_score(labels, b), abs=1e-12)
    assert result.difference == pytest.approx(result.auc_a - result.auc_b, abs=1e-15)
    differences = _stratified_paired_bootstrap(labels, a, b, resamples=1500, seed=11)
    # The standard deviation of 1500 resamples has a relative Monte-Carlo error of about
    # 1 / sqrt(2 * 1500) = 1.8%, and with ~400 bads DeLong's and the bootstrap's variance
    # estimators differ by well under 1%: 10% is more than five Monte-Carlo errors away, yet
    # dropping the covariance of the two AUCs (which overstates this SE by ~35%) fails.
    assert result.standard_error == pytest.approx(np.std(differences, ddof=1), rel=0.10)


def test_swapping_the_scores_mirrors_the_test() -> None:
    labels, a, b = _correlated_scores(seed=3, loans=1500)
    forward, backward = paired_delong(labels, a, b), paired_delong(labels, b, a)

    assert backward.difference == pytest.approx(-forward.difference, abs=1e-15)
    assert backward.z == pytest.approx(-forward.z, rel=1e-12)
    assert backward.standard_error == pytest.approx(forward.standard_error, rel=1e-12)
    assert forward.standard_error > 0
    assert forward.p_value + backward.p_value == pytest.approx(1.0, abs=1e-12)
    low, high = forward.interval()
    assert backward.interval() == pytest.approx((-high, -low), abs=1e-15)


def test_the_interval_and_lower_bound_are_normal_bounds_of_the_difference() -> None:
    result = paired_delong(_ASAH_OUTCOME, _ASAH_WFNS, _ASAH_S100B)  # one-sided p ~ 0.0136

    low, high = result.interval(0.95)
    assert (result.difference - low, high - result.difference) == pytest.approx(
        (1.959964 * result.standard_error,) * 2, rel=1e-6
    )
    assert result.lower_bound(0.95) == pytest.approx(
        result.difference - 1.644854 * result.standard_error, rel=1e-6
    )
    # The one-sided bound clears zero at level 1 - alpha exactly when p < alpha.
    alpha = result.p_value
    assert result.lower_bound(1 - alpha * 1.01) > 0 > result.lower_bound(1 - alpha * 0.99)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        result.interval(1.0)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        result.lower_bound(0.0)


def test_against_a_constant_score_the_standard_error_is_the_single_auc_one() -> None:
    # A constant score has V10 = V01 = 1/2 for every loan: zero variance and zero covariance.
    labels, a, _ = _correlated_scores(seed=2, loans=1000)
    result = paired_delong(labels, a, np.zeros(len(a)))
    assert result.auc_b == 0.5
    assert result.standard_error == pytest.approx(auc_standard_error(labels, a), rel=1e-12)


def test_the_same_ranking_cannot_be_rejected() -> None:
    labels, a, _ = _correlated_scores(seed=4, loans=800)
    for same_ranking in (a.copy(), np.exp(a)):
        result = paired_delong(labels, a, same_ranking)
        assert (result.difference, result.standard_error) == (0.0, 0.0)
        assert (result.z, result.p_value) == (0.0, 1.0)
        assert result.interval() == (0.0, 0.0)


def test_zero_variance_with_a_difference_rejects_by_its_sign() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    separating = labels + 0.1 * np.arange(7)
    constant = np.ones(7)

    better = paired_delong(labels, separating, constant)
    assert (better.auc_a, better.auc_b, better.standard_error) == (1.0, 0.5, 0.0)
    assert (better.z, better.p_value) == (math.inf, 0.0)
    worse = paired_delong(labels, constant, separating)
    assert (worse.z, worse.p_value) == (-math.inf, 1.0)


@pytest.mark.parametrize(
    ("labels", "message"),
    [([1, 0, 0, 0, 0], "got 1 and 4"), ([1, 1, 1, 1, 0], "got 4 and 1"), ([0] * 5, "got 0")],
)
def test_needs_two_bads_and_two_goods(labels: list[int], message: str) -> None:
    scores = np.arange(5.0)
    with pytest.raises(ValueError, match=message):
        paired_delong(np.array(labels), scores, scores[::-1])


def test_refuses_malformed_input() -> None:
    labels = np.array([1, 1, 0, 0, 0])
    scores = np.arange(5.0)
    with pytest.raises(ValueError, match="differ in length: 5, 5 and 4"):
        paired_delong(labels, scores, scores[:4])
    with pytest.raises(ValueError, match="differ in length"):
        paired_delong(labels[:4], scores, scores)
    with pytest.raises(ValueError, match="scores_b holds 1 NaN"):
        paired_delong(labels, scores, np.array([0.1, np.nan, 0.2, 0.3, 0.4]))
    with pytest.raises(ValueError, match="scores_a holds 2 NaN"):
        paired_delong(labels, np.array([np.nan, np.nan, 0.2, 0.3, 0.4]), scores)
    with pytest.raises(ValueError, match="0 \\(good\\) or 1 \\(bad\\)"):
        paired_delong(np.array([2, 1, 0, 0, 0]), scores, scores)
    with pytest.raises(ValueError, match="one-dimensional"):
        paired_delong(labels, scores.reshape(5, 1), scores)


def _rejections(rng: np.random.Generator, noise_a: float, noise_b: float, data_sets: int) -> int:
    rejected = 0
    for _ in range(data_sets):
        risk = rng.normal(size=400)
        labels = (rng.random(400) < 1 / (1 + np.exp(1.0 - 1.5 * risk))).astype(np.int64)
        a, b = risk + rng.normal(0, noise_a, 400), risk + rng.normal(0, noise_b, 400)
        rejected += paired_delong(labels, a, b).p_value < 0.05
    return rejected


def test_the_test_is_calibrated_under_the_null_and_rejects_a_better_model() -> None:
    rng = np.random.default_rng(2024)
    # Exchangeable scores (same signal, same noise): equal AUCs, so a 5% test rejects about
    # 10 of 200 data sets (binomial sd ~3); 2 to 20 is a loose band around that.
    assert 2 <= _rejections(rng, noise_a=1.0, noise_b=1.0, data_sets=200) <= 20
    # Much less noise in a: a clearly better ranking is rejected (almost) every time.
    assert _rejections(rng, noise_a=0.3, noise_b=1.5, data_sets=20) >= 19
