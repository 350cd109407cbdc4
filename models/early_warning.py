"""Post-loan early warning: the loans on book whose risk has moved since disbursal, found
before their first missed instalment.

Each loan on book at day D is scored twice by the same model: on its own application's
point-in-time features (its PD at disbursal) and on the features as of D (its PD today). A
loan goes on the list when today's grade is at least ``grades_worse`` grades below the grade
at disbursal, or today's PD is at least ``pd_factor`` times the PD at disbursal
(:class:`models.config.EarlyWarningSettings`). Its reasons are the features whose
contribution to the log-odds of default rose most between the two scorings, in words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import polars as pl

from data.asof import day_start_utc
from data.labels import installment_status
from models.config import DecisionSettings, EarlyWarningSettings
from models.decision import grade
from models.explain import reason_codes
from models.pd_model import PDModel


def next_instalments(repayments: pl.LazyFrame, day: date, timezone: str) -> pl.LazyFrame:
    """Per loan: ``next_due`` (the due date of its earliest instalment not paid before the
    start of `day`) and ``days_to_next_instalment`` (negative: that many days past due)."""
    cutoff = day_start_utc(day, timezone)
    unpaid = pl.col("paid_at").is_null() | (pl.col("paid_at") >= cutoff)
    return (
        repayments.filter(unpaid)
        .group_by("loan_id")
        .agg(next_due=pl.col("due_date").min())
        .with_columns(
            days_to_next_instalment=(pl.col("next_due") - pl.lit(day))
            .dt.total_days()
            .cast(pl.Int32)
        )
    )


def grade_rank(pd: pl.Expr, settings: DecisionSettings) -> pl.Expr:
    """The position of a PD's grade in the policy table (0 = best)."""
    return grade(pd, settings).to_physical().cast(pl.Int16)


def moved_reasons(
    model: PDModel, today: pl.DataFrame, at_disbursal: pl.DataFrame, top: int
) -> pl.DataFrame:
    """Per row (today's and at-disbursal features of the same loans, in the same order): the
    `top` features whose contribution to the log-odds of default rose most since disbursal,
    as ``change_codes`` and ``change_reasons`` (in words)."""
    rise = model.contributions(today) - model.contributions(at_disbursal)
    ranked = reason_codes(np.asarray(rise), model.spec.names, model.words, top)
    return ranked.rename({"reason_codes": "change_codes", "reasons": "change_reasons"})


def by_grade(settings: EarlyWarningSettings) -> pl.Expr:
    return pl.col("grade_steps") >= settings.grades_worse


def by_pd(settings: EarlyWarningSettings) -> pl.Expr:
    return pl.col("pd_ratio") >= settings.pd_factor


def on_the_list(settings: EarlyWarningSettings) -> pl.Expr:
    """Whether a loan goes on the list, over ``grade_steps`` and ``pd_ratio``."""
    return by_grade(settings) | by_pd(settings)


def trigger(settings: EarlyWarningSettings) -> pl.Expr:
    """Why a listed loan is on the list, in words."""
    worse = pl.format(
        "grade {} at disbursal, {} today", pl.col("grade_at_disbursal"), pl.col("grade")
    )
    risen = pl.format("PD {}x its PD at disbursal", pl.col("pd_ratio").round(1))
    both = pl.concat_str([worse, risen], separator="; ")
    graded, priced = by_grade(settings), by_pd(settings)
    return pl.when(graded & priced).then(both).when(graded).then(worse).otherwise(risen)


def with_movement(
    rescored: pl.DataFrame,
    pd_at_disbursal: np.ndarray,
    decision: DecisionSettings,
    settings: EarlyWarningSettings,
) -> pl.DataFrame:
    """`rescored` (loans on book with today's decision: ``pd``, ``grade``, ...) with their PD
    and grade at disbursal, the grades moved (``grade_steps``, positive = worse), the PD ratio,
    and whether they go on the list (``early_warning``)."""
    frame = rescored.with_columns(pd_at_disbursal=pl.Series(pd_at_disbursal, dtype=pl.Float64))
    return frame.with_columns(
        grade_at_disbursal=grade(pl.col("pd_at_disbursal"), decision),
        grade_steps=grade_rank(pl.col("pd"), decision)
        - grade_rank(pl.col("pd_at_disbursal"), decision),
        # a PD of zero at disbursal (a floor of zero) has no ratio: its grade move still counts
        pd_ratio=pl.when(pl.col("pd_at_disbursal") > 0).then(
            pl.col("pd") / pl.col("pd_at_disbursal")
        ),
    ).with_columns(early_warning=on_the_list(settings))


def first_missed(repayments: pl.LazyFrame, as_of: date, timezone: str) -> pl.LazyFrame:
    """Per loan that missed one: ``first_missed`` (the due date of its first instalment paid
    after its due date, or still unpaid after it at `as_of`)."""
    late = installment_status(repayments, as_of, timezone, threshold_days=1).filter(
        pl.col("dpd") > 0
    )
    return late.group_by("loan_id").agg(first_missed=pl.col("due_date").min())


@dataclass(frozen=True)
class WarningBacktest:
    """How early and how well the list warned, on matured loans, against random lists.

    A warning is in time when it is issued on a day before the loan's first missed instalment
    (on its due date at the latest: the day's list comes out in the morning). Only loans on
    book on a day, matured by the end, and not yet past due on that day are eligible that day.
    ``caught``: the share of eventual defaults warned in time; ``precision``: the share of
    loans warned in time that defaulted; ``random_*``: the same for lists of as many loans
    drawn at random from the eligible ones (mean of ``draws`` seeded draws)."""

    days: int
    loans: int
    defaults: int
    warned: int
    caught: float | None
    precision: float | None
    random_caught: float | None
    random_precision: float | None
    draws: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def eligible(daily: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """The rows of `daily` (``day``, ``loan_id``, ``early_warning``) of matured loans that were
    not yet past due on their day, with ``label``. `outcomes`: per loan, ``label`` (null:
    immature) and ``first_missed`` (null: never missed)."""
    in_time = pl.col("first_missed").is_null() | (pl.col("day") <= pl.col("first_missed"))
    return (
        daily.join(outcomes, on="loan_id", how="inner")
        .filter(pl.col("label").is_not_null() & in_time)
        .select("day", "loan_id", "early_warning", "label")
    )


def shares(rows: pl.DataFrame, warned: pl.Expr) -> tuple[int, float | None, float | None]:
    """Loans warned (by `warned` on some eligible day), share of defaults caught, precision."""
    per_loan = rows.group_by("loan_id").agg(warned=warned.any(), label=pl.col("label").first())
    defaults = per_loan.filter(pl.col("label") == 1)
    flagged = per_loan.filter("warned")
    caught = defaults["warned"].mean() if defaults.height else None
    precision = flagged["label"].cast(pl.Float64).mean() if flagged.height else None
    return flagged.height, caught, precision  # type: ignore[return-value]


def warning_backtest(
    daily: pl.DataFrame, outcomes: pl.DataFrame, draws: int = 20, seed: int = 0
) -> WarningBacktest:
    """The backtest of the list issued on several days (`daily`: one row per loan on book per
    day with ``early_warning``), on the loans' `outcomes` (see :func:`eligible`)."""
    rows = eligible(daily, outcomes)
    per_loan = rows.group_by("loan_id").agg(pl.col("label").first()).sort("loan_id")
    warned, caught, precision = shares(rows, pl.col("early_warning"))
    rng = np.random.default_rng(seed)
    drawn = [random_list(per_loan, warned, rng) for _ in range(draws)]
    return WarningBacktest(
        days=rows["day"].n_unique(),
        loans=per_loan.height,
        defaults=int((per_loan["label"] == 1).sum()),
        warned=warned,
        caught=caught,
        precision=precision,
        random_caught=mean_of([c for c, _ in drawn]),
        random_precision=mean_of([p for _, p in drawn]),
        draws=draws,
    )


def random_list(
    per_loan: pl.DataFrame, size: int, rng: np.random.Generator
) -> tuple[float | None, float | None]:
    """A list of `size` loans drawn at random from the eligible ones (each listed on a day it
    was eligible, so in time): the share of defaults it holds, and its share of defaults."""
    labels = per_loan["label"].to_numpy()
    chosen = labels[rng.choice(len(labels), size=min(size, len(labels)), replace=False)]
    defaults = int((labels == 1).sum())
    caught = float((chosen == 1).sum() / defaults) if defaults else None
    return caught, float((chosen == 1).mean()) if chosen.size else None


def mean_of(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
