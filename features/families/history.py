"""Our own history with the applicant: earlier applications, loans and how they were repaid.

Not a windowed view of events (its records are our own applications and installments, read
over all history): a query of its own, declared as a ``QueryFamily``.
"""

from __future__ import annotations

import polars as pl

from data.asof import local_date
from features.base import (
    SHARE,
    SPINE_KEYS,
    Aggregate,
    FeatureDef,
    count,
    days_between,
    fill_for,
    per_application,
    windowed,
    with_application_key,
)
from features.engine import Context, QueryFamily

FAMILY = "history"
ALL = "all history"
PREVIOUS_LOAN = "previous loan"
IS_LOAN = pl.col("prev_loan_id").is_not_null()


def previous_applications(spine: pl.LazyFrame, applications: pl.LazyFrame) -> pl.LazyFrame:
    earlier = applications.select(
        "user_id",
        prev_applied_at="applied_at",
        prev_decision="decision",
        prev_loan_id="loan_id",
        prev_amount="amount_requested",
    )
    return (
        spine.select(SPINE_KEYS)
        .join(earlier, on="user_id", how="inner")
        .filter(pl.col("prev_applied_at") < pl.col("cutoff"))
    )


def installment_records(
    previous: pl.LazyFrame, repayments: pl.LazyFrame, timezone: str
) -> pl.LazyFrame:
    """Installments of earlier loans already due before the application day, as then known:
    days past due, paid by the due date, and still open (not paid before the cut-off)."""
    application_day = local_date("cutoff", timezone)
    # Unpaid (null) reads as "not paid yet", never as unknown: it must count against on-time.
    paid_known = (pl.col("paid_at") < pl.col("cutoff")).fill_null(False)
    settled_on = (
        pl.when(paid_known).then(local_date("paid_at", timezone)).otherwise(application_day)
    )
    return (
        previous.filter(IS_LOAN)
        .join(repayments, left_on="prev_loan_id", right_on="loan_id", how="inner")
        .filter(pl.col("due_date") < application_day)
        .with_columns(
            dpd=(settled_on - pl.col("due_date")).dt.total_days().clip(lower_bound=0),
            on_time=paid_known & (local_date("paid_at", timezone) <= pl.col("due_date")),
            still_open=~paid_known,
        )
    )


def loans_in_window() -> Aggregate:
    return Aggregate(
        "history_prev_loans",
        "Earlier loans with us disbursed in the window",
        lambda w: count(w, IS_LOAN),
    )


def previous_loan() -> list[pl.Expr]:
    """The applicant's latest earlier loan (the spine's prev_loan_at): its age and amount."""
    is_previous_loan = (pl.col("prev_decision") == "approved") & (
        pl.col("prev_applied_at") == pl.col("prev_loan_at")
    )
    return [
        days_between(pl.col("cutoff").first(), pl.col("prev_loan_at").first()).alias(
            "history_days_since_prev_loan"
        ),
        pl.col("prev_amount").filter(is_previous_loan).max().alias("history_prev_loan_amount"),
    ]


def definitions(window_defs: list[FeatureDef]) -> list[FeatureDef]:
    """In the order of the frame's columns: counts, previous loan, windows, then repayment."""
    return [
        FeatureDef(
            "history_prev_applications", FAMILY, ALL, "Earlier applications with us", min_value=0.0
        ),
        FeatureDef(
            "history_prev_rejections",
            FAMILY,
            ALL,
            "Earlier applications we rejected",
            min_value=0.0,
        ),
        FeatureDef("history_prev_loans", FAMILY, ALL, "Earlier loans with us", min_value=0.0),
        FeatureDef(
            "history_days_since_prev_loan",
            FAMILY,
            PREVIOUS_LOAN,
            "Days from the previous loan's disbursal to the application day (null if none)",
            min_value=0.0,
        ),
        FeatureDef(
            "history_prev_loan_amount",
            FAMILY,
            PREVIOUS_LOAN,
            "Amount requested on the previous loan with us (CNY; null if none)",
            min_value=0.0,
        ),
        *window_defs,
        FeatureDef(
            "history_worst_dpd",
            FAMILY,
            ALL,
            "Worst days past due on earlier loans' installments due before the application",
            min_value=0.0,
        ),
        FeatureDef(
            "history_on_time_share",
            FAMILY,
            ALL,
            "Share of earlier loans' due installments paid by their due date",
            *SHARE,
        ),
        FeatureDef(
            "history_open_installments",
            FAMILY,
            ALL,
            "Earlier loans' installments due before the application day and still unpaid",
            min_value=0.0,
        ),
    ]


def history_features(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, ctx: Context
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """Earlier applications and loans with us before the cut-off, and how they were repaid."""
    settings, timezone = ctx.settings, ctx.timezone
    spine = with_application_key(spine)
    previous = previous_applications(spine, tables["applications"])
    window_defs, window_exprs, window_fills = windowed(
        FAMILY, [loans_in_window()], settings.windows_days, "prev_applied_at"
    )
    counts = per_application(
        spine,
        previous,
        [
            pl.len().alias("history_prev_applications"),
            (pl.col("prev_decision") == "rejected").sum().alias("history_prev_rejections"),
            IS_LOAN.sum().alias("history_prev_loans"),
            *previous_loan(),
            *window_exprs,
        ],
        [
            *(
                fill_for(name, 0.0)
                for name in (
                    "history_prev_applications",
                    "history_prev_rejections",
                    "history_prev_loans",
                )
            ),
            *window_fills,
        ],
    )
    repaid = per_application(
        spine,
        installment_records(previous, tables["repayments"], timezone),
        [
            pl.col("dpd").max().cast(pl.Float64).alias("history_worst_dpd"),
            pl.col("on_time").mean().alias("history_on_time_share"),
            pl.col("still_open").sum().alias("history_open_installments"),
        ],
        {"history_open_installments": 0.0},
    )
    return definitions(window_defs), counts.join(repaid, on="application_id", how="left")


HISTORY = QueryFamily(FAMILY, history_features)
