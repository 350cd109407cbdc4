"""Our own history with the applicant: earlier applications, loans and how they were repaid."""

from __future__ import annotations

import polars as pl

from data.asof import local_date
from features.base import SHARE, FeatureDef, FeatureSettings, per_application

FAMILY = "history"
ALL = "all history"


def previous_applications(spine: pl.LazyFrame, applications: pl.LazyFrame) -> pl.LazyFrame:
    earlier = applications.select(
        "user_id", prev_applied_at="applied_at", prev_decision="decision", prev_loan_id="loan_id"
    )
    return (
        spine.select("application_id", "user_id", "cutoff")
        .join(earlier, on="user_id", how="inner")
        .filter(pl.col("prev_applied_at") < pl.col("cutoff"))
    )


def installment_records(
    previous: pl.LazyFrame, repayments: pl.LazyFrame, timezone: str
) -> pl.LazyFrame:
    """Installments of earlier loans already due before the application day, as then known."""
    application_day = local_date("cutoff", timezone)
    # Unpaid (null) reads as "not paid yet", never as unknown: it must count against on-time.
    paid_known = (pl.col("paid_at") < pl.col("cutoff")).fill_null(False)
    settled_on = (
        pl.when(paid_known).then(local_date("paid_at", timezone)).otherwise(application_day)
    )
    return (
        previous.filter(pl.col("prev_loan_id").is_not_null())
        .join(repayments, left_on="prev_loan_id", right_on="loan_id", how="inner")
        .filter(pl.col("due_date") < application_day)
        .with_columns(
            dpd=(settled_on - pl.col("due_date")).dt.total_days().clip(lower_bound=0),
            on_time=paid_known & (local_date("paid_at", timezone) <= pl.col("due_date")),
        )
    )


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    previous = previous_applications(spine, tables["applications"])
    counts = per_application(
        spine,
        previous,
        [
            pl.len().alias("history_prev_applications"),
            (pl.col("prev_decision") == "rejected").sum().alias("history_prev_rejections"),
            pl.col("prev_loan_id").is_not_null().sum().alias("history_prev_loans"),
        ],
        {
            "history_prev_applications": 0.0,
            "history_prev_rejections": 0.0,
            "history_prev_loans": 0.0,
        },
    )
    repaid = per_application(
        spine,
        installment_records(previous, tables["repayments"], timezone),
        [
            pl.col("dpd").max().cast(pl.Float64).alias("history_worst_dpd"),
            pl.col("on_time").mean().alias("history_on_time_share"),
        ],
        {},
    )
    defs = [
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
    ]
    return defs, counts.join(repaid, on="application_id", how="left")
