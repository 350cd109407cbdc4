"""Credit bureau: inquiries (multi-lending) and the monthly reports before the application.

A report is usable when its ``report_date`` is before the application's local day. Trends
compare the latest usable report with the "N months earlier" one (N is
``features.bureau_trend_months``, 3 by default): the latest report dated in or before the
calendar month N months before the latest report's month (for monthly reports, exactly the
Nth previous one; when months are missing, the nearest older one).
"""

from __future__ import annotations

import polars as pl

from data.contract import INQUIRY_REASONS, INSTITUTION_TYPES
from features.base import (
    FIXED_POINT,
    UNBOUNDED,
    FeatureDef,
    days_between,
    fixed_point,
    in_window,
    ratio,
)
from features.engine import (
    Context,
    Count,
    EventFamily,
    Max,
    Min,
    PerWindow,
    Single,
    Source,
    Sum,
    recency,
)

FAMILY = "bureau"
COUNT = (0.0, None)
LATEST = "latest report"
APPLICATION_DAY = "application_day"
USER = "_user"  # an applicant's integer key: the reports' as-of joins match on it


NON_BANK_LOAN = (pl.col("reason") == "loan_approval") & pl.col("institution_type").is_in(
    ["consumer_finance", "microloan"]
)
COUNTED = {  # feature stem: (state, rows counted, description)
    "bureau_inquiries": ("n", None, "Bureau inquiries of any kind"),
    **{
        f"bureau_inquiries_reason_{reason}": (
            f"reason_{reason}",
            pl.col("reason") == reason,
            f"Bureau inquiries with reason {reason}",
        )
        for reason in INQUIRY_REASONS
    },
    **{
        f"bureau_inquiries_institution_{kind}": (
            f"institution_{kind}",
            pl.col("institution_type") == kind,
            f"Bureau inquiries by institutions of type {kind}",
        )
        for kind in INSTITUTION_TYPES
    },
    "bureau_nonbank_loan_inquiries": (
        "nonbank_loan",
        NON_BANK_LOAN,
        "Loan-approval inquiries by consumer-finance and micro-loan lenders",
    ),
}


def with_gaps(inquiries: pl.LazyFrame) -> pl.LazyFrame:
    """Each inquiry with the time of the user's inquiry just before it among those read and
    the gap in days (null for the first). The one before is never later, so the cut-off still
    bounds it; the engine reads from the earliest window's start, and a gap whose earlier
    inquiry is older is in no window (:func:`gap`)."""
    previous_ts = pl.col("ts").shift(1).over("user_id", order_by="ts")
    return inquiries.with_columns(previous_ts=previous_ts).with_columns(
        gap_days=days_between(pl.col("ts"), pl.col("previous_ts"))
    )


def gap(ctx: Context) -> pl.Expr:
    """A gap counts when the earlier inquiry of its pair is in the longest window (the later
    one then is too)."""
    return pl.when(in_window(ctx.horizon, "previous_ts")).then(pl.col("gap_days"))


STATES = (
    *(Count(state, when=when) for state, when, _ in COUNTED.values()),
    Count("gap_n", when=lambda ctx: gap(ctx).is_not_null(), windowed=False),
    Sum("gap_micro", value=lambda ctx: fixed_point(gap(ctx)), windowed=False),
    Min("gap_min", value=gap, windowed=False),
    Max("last_ts", value=pl.col("ts"), windowed=False),
)

INQUIRY_FEATURES = (
    # Floats, as feature stores written before these counts moved to bucket states hold them.
    *(
        PerWindow(stem, description, lambda s, state=state: s(state).cast(pl.Float64), COUNT)
        for stem, (state, _, description) in COUNTED.items()
    ),
    Single(
        "bureau_inquiry_gap_mean_days_{horizon}d",
        "{horizon}d",
        "Mean days between consecutive bureau inquiries (null below two)",
        lambda s: ratio(s("gap_micro").cast(pl.Float64) / FIXED_POINT, s("gap_n")),
        COUNT,
    ),
    Single(
        "bureau_inquiry_gap_min_days_{horizon}d",
        "{horizon}d",
        "Shortest time in days between two consecutive bureau inquiries (null below two)",
        lambda s: s("gap_min"),
        COUNT,
    ),
    recency(
        "bureau_days_since_last_inquiry",
        "last_ts",
        "Days from the last bureau inquiry to the application day (null if none in the window)",
    ),
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


def trend_window(months: int) -> str:
    return f"latest report vs {months} months earlier"


def trend_features(months: int) -> dict[str, tuple[str, pl.Expr]]:
    """The trend features against the report `months` earlier: name -> (description, value)."""
    since = f"since the report {months} months earlier"
    return {
        f"bureau_max_dpd_current_change_{months}m": (
            f"Change of the worst current days past due {since}",
            pl.col("max_dpd_current").cast(pl.Float64)
            - pl.col(f"{EARLIER}max_dpd_current").cast(pl.Float64),
        ),
        f"bureau_utilisation_change_{months}m": (
            f"Change of the utilisation {since}",
            utilisation("total_balance", "total_limit")
            - utilisation(f"{EARLIER}total_balance", f"{EARLIER}total_limit"),
        ),
        f"bureau_total_limit_change_{months}m": (
            f"Change of the total credit limit (CNY) {since}",
            pl.col("total_limit") - pl.col(f"{EARLIER}total_limit"),
        ),
    }


def worst_dpd_feature(months: int) -> FeatureDef:
    return FeatureDef(
        f"bureau_worst_dpd_current_{months}m",
        FAMILY,
        f"last {months} months of reports",
        f"Worst current days past due over the reports of the last {months} months",
        min_value=0.0,
    )


def applications_by_day(spine: pl.LazyFrame, timezone: str) -> pl.LazyFrame:
    return spine.select(
        "application_id",
        "user_id",
        pl.col("cutoff").dt.convert_time_zone(timezone).dt.date().alias(APPLICATION_DAY),
    )


def applicant_keys(applications: pl.LazyFrame) -> pl.LazyFrame:
    """Each applicant once, with an integer key (``USER``) numbered in ``user_id`` order."""
    return applications.select("user_id").unique().sort("user_id").with_row_index(USER)


def applicants_reports(
    applications: pl.LazyFrame, snapshots: pl.LazyFrame
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The applications and their applicants' reports, both keyed by ``USER``: the as-of
    joins then match integers, not strings, and read only the applicants' reports."""
    users = applicant_keys(applications).collect().lazy()
    keyed = applications.join(users, on="user_id").drop("user_id")
    reports = snapshots.join(users, on="user_id").drop("user_id")
    return keyed, reports


def latest_snapshots(
    applications: pl.LazyFrame, snapshots: pl.LazyFrame, trend_months: int
) -> pl.LazyFrame:
    """Per application, the last report dated before its local day and the report about
    `trend_months` months before that one (columns prefixed EARLIER); null where there is
    none."""
    latest = applications.sort(APPLICATION_DAY).join_asof(
        snapshots.sort("report_date"),
        left_on=APPLICATION_DAY,
        right_on="report_date",
        by=USER,
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    lookback = pl.col("report_date").dt.offset_by(f"-{trend_months}mo").dt.month_end()
    earlier = snapshots.select(
        USER,
        pl.col("report_date", *TREND_COLUMNS).name.prefix(EARLIER),
    ).sort(f"{EARLIER}report_date")
    return (
        latest.with_columns(lookback=lookback)
        .sort("lookback")
        .join_asof(
            earlier,
            left_on="lookback",
            right_on=f"{EARLIER}report_date",
            by=USER,
            strategy="backward",
            check_sortedness=False,
        )
    )


def worst_recent_dpd(
    applications: pl.LazyFrame, snapshots: pl.LazyFrame, months: int
) -> pl.LazyFrame:
    """The worst current days past due over the reports of the last `months` months before
    the application day. Each application is joined to its user's reports of those calendar
    months only, so the cost stays bounded however long the report history is."""
    month = pl.col(APPLICATION_DAY).dt.year() * 12 + pl.col(APPLICATION_DAY).dt.month()
    report_months = pl.int_ranges(month - months, month + 1)
    candidates = applications.with_columns(month=report_months).explode("month")
    reports = snapshots.select(
        USER,
        "report_date",
        "max_dpd_current",
        month=pl.col("report_date").dt.year() * 12 + pl.col("report_date").dt.month(),
    )
    in_range = (pl.col("report_date") < pl.col(APPLICATION_DAY)) & (
        pl.col("report_date") >= pl.col(APPLICATION_DAY).dt.offset_by(f"-{months}mo")
    )
    return (
        candidates.join(reports, on=[USER, "month"], how="inner")
        .filter(in_range)
        .group_by("application_id")
        .agg(pl.col("max_dpd_current").max().cast(pl.Float64).alias(worst_dpd_feature(months).name))
    )


def snapshot_features(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, ctx: Context
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """The latest report's values, its trends against the report ``bureau_trend_months``
    earlier and the worst current days past due over ``bureau_worst_months`` months (an as-of
    view over all reports, not windowed events)."""
    settings = ctx.settings
    applications, snapshots = applicants_reports(
        applications_by_day(spine, ctx.timezone), tables["bureau_snapshots"]
    )
    trends = trend_features(settings.bureau_trend_months)
    trend = trend_window(settings.bureau_trend_months)
    defs = [
        *(
            FeatureDef(name, FAMILY, LATEST, desc, min_value=0.0)
            for name, (desc, _) in SNAPSHOT_FEATURES.items()
        ),
        *(FeatureDef(name, FAMILY, trend, desc, *UNBOUNDED) for name, (desc, _) in trends.items()),
        worst_dpd_feature(settings.bureau_worst_months),
    ]
    columns = {**SNAPSHOT_FEATURES, **trends}
    latest = latest_snapshots(applications, snapshots, settings.bureau_trend_months).select(
        "application_id", *[expr.alias(name) for name, (_, expr) in columns.items()]
    )
    worst = worst_recent_dpd(applications, snapshots, settings.bureau_worst_months)
    frame = latest.join(worst, on="application_id", how="left")
    return defs, frame


BUREAU = EventFamily(
    FAMILY,
    Source("bureau_inquiries", ("user_id", "ts", "reason", "institution_type"), prepare=with_gaps),
    STATES,
    INQUIRY_FEATURES,
    views=(snapshot_features,),
)
