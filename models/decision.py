"""From probability of default to decision: scorecard points, risk grades, policy, and the
per-grade calibration test a validator asks for.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy.stats import binomtest

from models.config import DecisionSettings

# Keeps the odds finite for a PD of exactly 0 or 1.
PD_CLIP = 1e-6


def score_points(pd: pl.Expr, settings: DecisionSettings) -> pl.Expr:
    """Scorecard points: base_score at base_odds (good:bad), +points_to_double_odds per
    doubling of the odds. Higher is safer."""
    factor = settings.points_to_double_odds / math.log(2)
    offset = settings.base_score - factor * math.log(settings.base_odds)
    p = pd.clip(PD_CLIP, 1 - PD_CLIP)
    return offset + factor * ((1 - p) / p).log()


def grade_table(settings: DecisionSettings) -> pl.DataFrame:
    """The policy table: each grade's PD band, credit limit and price tier."""
    grades = settings.grades
    return pl.DataFrame(
        {
            "grade": [g.name for g in grades],
            "min_pd": [0.0, *(g.max_pd for g in grades[:-1])],
            "max_pd": [g.max_pd for g in grades],
            "credit_limit": [float(g.credit_limit) for g in grades],
            "price_tier": [g.price_tier for g in grades],
        }
    )


def grade(pd: pl.Expr, settings: DecisionSettings) -> pl.Expr:
    """The risk grade of each PD: the first grade whose max_pd it does not exceed."""
    names = [g.name for g in settings.grades]
    expr = pl.lit(names[-1])
    for g in reversed(settings.grades[:-1]):
        expr = pl.when(pd <= g.max_pd).then(pl.lit(g.name)).otherwise(expr)
    return expr.cast(pl.Enum(names))


def decide(pd: np.ndarray, settings: DecisionSettings) -> pl.DataFrame:
    """PD, score, grade, credit limit and price tier of each applicant, in input order."""
    frame = pl.DataFrame({"pd": np.asarray(pd, dtype=np.float64)})
    policy = grade_table(settings).select(
        pl.col("grade").cast(pl.Enum([g.name for g in settings.grades])),
        "credit_limit",
        "price_tier",
    )
    return frame.with_columns(
        score=score_points(pl.col("pd"), settings), grade=grade(pl.col("pd"), settings)
    ).join(policy, on="grade", how="left", maintain_order="left")


def grade_calibration(
    labels: np.ndarray, pd: np.ndarray, settings: DecisionSettings
) -> pl.DataFrame:
    """Per grade: loans, bads, observed bad rate against mean PD, and the two-sided exact
    binomial test of the bads given the mean PD (``calibrated``: p-value >= binomial_alpha).
    Grades without loans are listed with n = 0 and no test."""
    graded = pl.DataFrame({"pd": np.asarray(pd, dtype=np.float64), "label": np.asarray(labels)})
    counts = graded.group_by(grade(pl.col("pd"), settings).alias("grade")).agg(
        n=pl.len(), bads=pl.col("label").sum().cast(pl.Int64), mean_pd=pl.col("pd").mean()
    )
    table = grade_table(settings).select("grade", "min_pd", "max_pd")
    table = table.with_columns(pl.col("grade").cast(counts.schema["grade"]))
    table = table.join(counts, on="grade", how="left", maintain_order="left").with_columns(
        pl.col("n", "bads").fill_null(0)
    )
    p_values = [
        binomtest(int(bads), int(n), float(mean_pd)).pvalue if n else None
        for n, bads, mean_pd in table.select("n", "bads", "mean_pd").iter_rows()
    ]
    return table.with_columns(
        bad_rate=pl.when(pl.col("n") > 0).then(pl.col("bads") / pl.col("n")),
        binomial_p_value=pl.Series(p_values, dtype=pl.Float64),
    ).with_columns(calibrated=pl.col("binomial_p_value") >= settings.binomial_alpha)
