"""Credit bureau: inquiries (multi-lending) and the latest monthly report before the application."""

from __future__ import annotations

import polars as pl

from features.base import (
    Aggregate,
    FeatureDef,
    FeatureSettings,
    count,
    events_before_cutoff,
    per_application,
    windowed,
)

FAMILY = "bureau"
LATEST = "latest report"


def aggregates() -> list[Aggregate]:
    non_bank_loan = (pl.col("reason") == "loan_approval") & pl.col("institution_type").is_in(
        ["consumer_finance", "microloan"]
    )
    return [
        Aggregate("bureau_inquiries", "Bureau inquiries of any kind", count),
        Aggregate(
            "bureau_nonbank_loan_inquiries",
            "Loan-approval inquiries by consumer-finance and micro-loan lenders",
            lambda w: count(w, non_bank_loan),
        ),
    ]


SNAPSHOT_FEATURES = {
    "bureau_open_accounts": ("Open credit accounts", pl.col("open_accounts").cast(pl.Float64)),
    "bureau_total_limit": ("Total credit limit (CNY)", pl.col("total_limit")),
    "bureau_utilisation": (
        "Total balance over total limit",
        pl.when(pl.col("total_limit") > 0).then(pl.col("total_balance") / pl.col("total_limit")),
    ),
    "bureau_max_dpd_current": (
        "Worst days past due currently reported",
        pl.col("max_dpd_current").cast(pl.Float64),
    ),
    "bureau_max_dpd_24m": (
        "Worst days past due over the last 24 months",
        pl.col("max_dpd_24m").cast(pl.Float64),
    ),
    "bureau_report_age_days": (
        "Days from the latest report to the application day",
        (pl.col("application_day") - pl.col("report_date")).dt.total_days().cast(pl.Float64),
    ),
}


def latest_snapshot(
    spine: pl.LazyFrame, snapshots: pl.LazyFrame, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """The last report dated before the application's local day, per application."""
    left = spine.select(
        "application_id",
        "user_id",
        application_day=pl.col("cutoff").dt.convert_time_zone(timezone).dt.date(),
    ).sort("application_day")
    joined = left.join_asof(
        snapshots.sort("report_date"),
        left_on="application_day",
        right_on="report_date",
        by="user_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    defs = [
        FeatureDef(name, FAMILY, LATEST, desc, min_value=0.0)
        for name, (desc, _) in SNAPSHOT_FEATURES.items()
    ]
    frame = joined.select(
        "application_id", *[expr.alias(name) for name, (_, expr) in SNAPSHOT_FEATURES.items()]
    )
    return defs, frame


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    defs, exprs, fills = windowed(FAMILY, aggregates(), settings.windows_days)
    events = tables["bureau_inquiries"].select("user_id", "ts", "reason", "institution_type")
    rows = events_before_cutoff(spine, events, max(settings.windows_days))
    snapshot_defs, snapshot_frame = latest_snapshot(spine, tables["bureau_snapshots"], timezone)
    frame = per_application(spine, rows, exprs, fills).join(
        snapshot_frame, on="application_id", how="left"
    )
    return defs + snapshot_defs, frame
