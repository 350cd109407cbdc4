"""Credit bureau: inquiries (multi-lending) and the monthly reports before the application.

A report is usable when its ``report_date`` is before the application's local day. Trends
compare the latest usable report with the "3 months earlier" one: the latest report dated in
or before the calendar month three months before the latest report's month (for monthly
reports, exactly the third previous one; when months are missing, the nearest older one).
"""

from __future__ import annotations

import polars as pl

from data.contract import INQUIRY_REASONS, INSTITUTION_TYPES
from features.base import (
    UNBOUNDED,
    Aggregate,
    FeatureDef,
    FeatureSettings,
    count,
    counts_by_value,
    days_between,
    days_since_last,
    events_before_cutoff,
    mean,
    per_application,
    values,
    windowed,
    with_application_key,
)

FAMILY = "bureau"
LATEST = "latest report"
TREND_MONTHS = 3
TREND = f"latest report vs {TREND_MONTHS} months earlier"
WORST_MONTHS = 6
APPLICATION_DAY = "application_day"


def inquiry_aggregates() -> list[Aggregate]:
    non_bank_loan = (pl.col("reason") == "loan_approval") & pl.col("institution_type").is_in(
        ["consumer_finance", "microloan"]
    )
    by_reason = counts_by_value(
        "reason",
        INQUIRY_REASONS,
        lambda reason: f"bureau_inquiries_reason_{reason}",
        lambda reason: f"Bureau inquiries with reason {reason}",
    )
    by_institution = counts_by_value(
        "institution_type",
        INSTITUTION_TYPES,
        lambda kind: f"bureau_inquiries_institution_{kind}",
        lambda kind: f"Bureau inquiries by institutions of type {kind}",
    )
    return [
        Aggregate("bureau_inquiries", "Bureau inquiries of any kind", count),
        *by_reason,
        *by_institution,
        Aggregate(
            "bureau_nonbank_loan_inquiries",
            "Loan-approval inquiries by consumer-finance and micro-loan lenders",
            lambda w: count(w, non_bank_loan),
        ),
    ]


def with_gaps(inquiries: pl.LazyFrame) -> pl.LazyFrame:
    """Each inquiry with the time of the user's inquiry just before it and the gap in days
    (null for the first). The one before is never later, so the cut-off still bounds it."""
    previous_ts = pl.col("ts").shift(1).over("user_id", order_by="ts")
    return inquiries.with_columns(previous_ts=previous_ts).with_columns(
        gap_days=days_between(pl.col("ts"), pl.col("previous_ts"))
    )


def gap_aggregates() -> list[Aggregate]:
    """Windowed on the earlier inquiry of each consecutive pair (the later one is then in the
    window too); null below two inquiries in the window."""
    return [
        Aggregate(
            "bureau_inquiry_gap_mean_days",
            "Mean days between consecutive bureau inquiries (null below two)",
            lambda w: mean(w, "gap_days"),
            fill=None,
        ),
        Aggregate(
            "bureau_inquiry_gap_min_days",
            "Shortest time in days between two consecutive bureau inquiries (null below two)",
            lambda w: values(w, "gap_days").min(),
            fill=None,
        ),
    ]


def days_since_last_inquiry(horizon: int) -> tuple[FeatureDef, pl.Expr]:
    return days_since_last(
        "bureau_days_since_last_inquiry",
        FAMILY,
        horizon,
        "Days from the last bureau inquiry to the application day (null if none in the window)",
    )


def utilisation(balance: str, limit: str) -> pl.Expr:
    return pl.when(pl.col(limit) > 0).then(pl.col(balance) / pl.col(limit))


SNAPSHOT_FEATURES = {
    "bureau_open_accounts": ("Open credit accounts", pl.col("open_accounts").cast(pl.Float64)),
    "bureau_total_limit": ("Total credit limit (CNY)", pl.col("total_limit")),
    "bureau_utilisation": (
        "Total balance over total limit",
        utilisation("total_balance", "total_limit"),
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
        (pl.col(APPLICATION_DAY) - pl.col("report_date")).dt.total_days().cast(pl.Float64),
    ),
}
EARLIER = "earlier_"
TREND_COLUMNS = ("max_dpd_current", "total_balance", "total_limit")
TREND_FEATURES = {
    f"bureau_max_dpd_current_change_{TREND_MONTHS}m": (
        f"Change of the worst current days past due since the report {TREND_MONTHS} months earlier",
        pl.col("max_dpd_current").cast(pl.Float64)
        - pl.col(f"{EARLIER}max_dpd_current").cast(pl.Float64),
    ),
    f"bureau_utilisation_change_{TREND_MONTHS}m": (
        f"Change of the utilisation since the report {TREND_MONTHS} months earlier",
        utilisation("total_balance", "total_limit")
        - utilisation(f"{EARLIER}total_balance", f"{EARLIER}total_limit"),
    ),
    f"bureau_total_limit_change_{TREND_MONTHS}m": (
        f"Change of the total credit limit (CNY) since the report {TREND_MONTHS} months earlier",
        pl.col("total_limit") - pl.col(f"{EARLIER}total_limit"),
    ),
}


def applications_by_day(spine: pl.LazyFrame, timezone: str) -> pl.LazyFrame:
    return spine.select(
        "application_id",
        "user_id",
        pl.col("cutoff").dt.convert_time_zone(timezone).dt.date().alias(APPLICATION_DAY),
    )


def latest_snapshots(applications: pl.LazyFrame, snapshots: pl.LazyFrame) -> pl.LazyFrame:
    """Per application, the last report dated before its local day and the report about
    3 months before that one (columns prefixed EARLIER); null where there is none."""
    latest = applications.sort(APPLICATION_DAY).join_asof(
        snapshots.sort("report_date"),
        left_on=APPLICATION_DAY,
        right_on="report_date",
        by="user_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    lookback = pl.col("report_date").dt.offset_by(f"-{TREND_MONTHS}mo").dt.month_end()
    earlier = snapshots.select(
        "user_id",
        pl.col("report_date", *TREND_COLUMNS).name.prefix(EARLIER),
    ).sort(f"{EARLIER}report_date")
    return (
        latest.with_columns(lookback=lookback)
        .sort("lookback")
        .join_asof(
            earlier,
            left_on="lookback",
            right_on=f"{EARLIER}report_date",
            by="user_id",
            strategy="backward",
            check_sortedness=False,
        )
    )


def worst_recent_dpd(applications: pl.LazyFrame, snapshots: pl.LazyFrame) -> pl.LazyFrame:
    """The worst current days past due over the reports of the last WORST_MONTHS months before
    the application day. Each application is joined to its user's reports of those calendar
    months only, so the cost stays bounded however long the report history is."""
    month = pl.col(APPLICATION_DAY).dt.year() * 12 + pl.col(APPLICATION_DAY).dt.month()
    candidates = applications.with_columns(
        month=pl.int_ranges(month - WORST_MONTHS, month + 1)
    ).explode("month")
    reports = snapshots.select(
        "user_id",
        "report_date",
        "max_dpd_current",
        month=pl.col("report_date").dt.year() * 12 + pl.col("report_date").dt.month(),
    )
    in_range = (pl.col("report_date") < pl.col(APPLICATION_DAY)) & (
        pl.col("report_date") >= pl.col(APPLICATION_DAY).dt.offset_by(f"-{WORST_MONTHS}mo")
    )
    return (
        candidates.join(reports, on=["user_id", "month"], how="inner")
        .filter(in_range)
        .group_by("application_id")
        .agg(
            pl.col("max_dpd_current")
            .max()
            .cast(pl.Float64)
            .alias(f"bureau_worst_dpd_current_{WORST_MONTHS}m")
        )
    )


def snapshot_features(
    spine: pl.LazyFrame, snapshots: pl.LazyFrame, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    applications = applications_by_day(spine, timezone)
    defs = [
        *(
            FeatureDef(name, FAMILY, LATEST, desc, min_value=0.0)
            for name, (desc, _) in SNAPSHOT_FEATURES.items()
        ),
        *(
            FeatureDef(name, FAMILY, TREND, desc, *UNBOUNDED)
            for name, (desc, _) in TREND_FEATURES.items()
        ),
        FeatureDef(
            f"bureau_worst_dpd_current_{WORST_MONTHS}m",
            FAMILY,
            f"last {WORST_MONTHS} months of reports",
            f"Worst current days past due over the reports of the last {WORST_MONTHS} months",
            min_value=0.0,
        ),
    ]
    columns = {**SNAPSHOT_FEATURES, **TREND_FEATURES}
    latest = latest_snapshots(applications, snapshots).select(
        "application_id", *[expr.alias(name) for name, (_, expr) in columns.items()]
    )
    frame = latest.join(worst_recent_dpd(applications, snapshots), on="application_id", how="left")
    return defs, frame


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    spine = with_application_key(spine)
    horizon = max(settings.windows_days)
    defs, exprs, fills = windowed(FAMILY, inquiry_aggregates(), settings.windows_days)
    gap_defs, gap_exprs, _ = windowed(FAMILY, gap_aggregates(), [horizon], "previous_ts")
    recency_def, recency_expr = days_since_last_inquiry(horizon)
    events = with_gaps(
        tables["bureau_inquiries"].select("user_id", "ts", "reason", "institution_type")
    )
    rows = events_before_cutoff(spine, events, horizon)
    inquiries = per_application(spine, rows, [*exprs, *gap_exprs, recency_expr], fills)
    snapshot_defs, snapshot_frame = snapshot_features(spine, tables["bureau_snapshots"], timezone)
    frame = inquiries.join(snapshot_frame, on="application_id", how="left")
    return [*defs, *gap_defs, recency_def, *snapshot_defs], frame
