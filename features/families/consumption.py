"""Merchant consumption: spend level and volatility, night-time and weekend habits, risky
categories, credit, spread over places and devices, large purchases and spending trends."""

from __future__ import annotations

import polars as pl

from data.asof import local_date
from data.contract import MERCHANT_CATEGORIES
from features.base import (
    SHARE,
    Aggregate,
    Derived,
    FeatureDef,
    FeatureSettings,
    coefficient_of_variation,
    count,
    days_between,
    distinct_counts,
    entropy,
    events_before_cutoff,
    exact_mean,
    last_n,
    latest_per_value,
    mean,
    per_application,
    share,
    spread,
    total,
    trend,
    values,
    window_label,
    windowed,
)

FAMILY = "consumption"
EVENT_COLUMNS = ("user_id", "ts", "amount", "merchant_category", "city", "device_id", "pay_method")
LOCAL_DAY, NIGHT, WEEKEND = "local_day", "is_night", "is_weekend"


def with_local_time(rows: pl.LazyFrame, settings: FeatureSettings, timezone: str) -> pl.LazyFrame:
    """The rows with their local calendar day and night-time and weekend flags (one conversion)."""
    local = pl.col("ts").dt.convert_time_zone(timezone)
    return rows.with_columns(
        local_date("ts", timezone).alias(LOCAL_DAY),
        (local.dt.hour() < settings.night_end_hour).alias(NIGHT),
        (local.dt.weekday() >= 6).alias(WEEKEND),
    )


def in_category(category: str) -> pl.Expr:
    return pl.col("merchant_category") == category


def level_aggregates() -> list[Aggregate]:
    """How much is spent, and how evenly."""
    return [
        Aggregate("consumption_count", "Number of purchases", count, since_prev_loan=True),
        Aggregate(
            "consumption_amount_sum",
            "Total amount spent (CNY)",
            lambda w: total(w, "amount"),
            since_prev_loan=True,
        ),
        Aggregate(
            "consumption_amount_mean",
            "Mean purchase amount (CNY)",
            lambda w: mean(w, "amount"),
            fill=None,
        ),
        Aggregate(
            "consumption_amount_std",
            "Sample standard deviation of purchase amounts (CNY; null below two purchases)",
            lambda w: spread(w, "amount"),
            fill=None,
        ),
        Aggregate(
            "consumption_amount_cv",
            "Standard deviation over mean of purchase amounts (null below two purchases)",
            lambda w: coefficient_of_variation(w, "amount"),
            fill=None,
        ),
        Aggregate(
            "consumption_amount_max",
            "Largest single purchase (CNY)",
            lambda w: values(w, "amount").max(),
            fill=None,
        ),
    ]


def habit_aggregates(settings: FeatureSettings) -> list[Aggregate]:
    """When, where, on what and how purchases are made."""
    return [
        Aggregate(
            "consumption_night_share",
            f"Share of purchases made 00:00-{settings.night_end_hour:02d}:00 local time",
            lambda w: share(w, pl.col(NIGHT)),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate(
            "consumption_weekend_share",
            "Share of purchases made on a local Saturday or Sunday",
            lambda w: share(w, pl.col(WEEKEND)),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate(
            "consumption_luxury_share",
            "Share of purchases in the luxury category",
            lambda w: share(w, in_category("luxury")),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate(
            "consumption_gaming_share",
            "Share of purchases in the gaming category",
            lambda w: share(w, in_category("gaming")),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate(
            "consumption_credit_share",
            "Share of purchases paid on credit",
            lambda w: share(w, pl.col("pay_method") == "credit"),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate(
            "consumption_category_entropy",
            "Shannon entropy (nats) of the merchant-category mix of purchases (0 = one category)",
            lambda w: entropy(w, "merchant_category", MERCHANT_CATEGORIES),
            fill=None,
        ),
    ]


USUAL = "usual_amount"


def large_purchases(settings: FeatureSettings, horizon: int) -> Aggregate:
    """Purchases well above the user's usual amount: the mean over the longest window, which
    the spine carries (``with_usual_amount``) so that the comparison is row by row."""
    large = pl.col("amount") > settings.large_multiple * pl.col(USUAL)
    return Aggregate(
        "consumption_large_count",
        f"Number of purchases above {settings.large_multiple:g} times the applicant's mean "
        f"purchase amount over the last {horizon} days",
        lambda w: count(w, large),
    )


def with_usual_amount(spine: pl.LazyFrame, events: pl.LazyFrame, horizon: int) -> pl.LazyFrame:
    """The spine with each application's mean purchase over the longest window.

    A separate, reducible pass: comparing each row with its own group's mean inside the wide
    group-by made the streaming engine hold every row (4x slower on generated data)."""
    usual = (
        events_before_cutoff(spine, events, horizon)
        .group_by("application_id")
        .agg(exact_mean(pl.col("amount")).alias(USUAL))
    )
    return spine.join(usual, on="application_id", how="left")


DISTINCT = (
    (
        "consumption_active_days",
        LOCAL_DAY,
        "Number of distinct local calendar days with a purchase",
    ),
    ("consumption_distinct_cities", "city", "Number of distinct cities purchased in"),
    ("consumption_distinct_devices", "device_id", "Number of distinct devices purchased from"),
)


def distinct_features(
    spine: pl.LazyFrame, rows: pl.LazyFrame, windows: list[int]
) -> tuple[list[FeatureDef], list[pl.LazyFrame]]:
    """Distinct days, cities and devices per window, each from its own narrow query (latest
    time per value), so that the wide group-by stays reducible."""
    defs: list[FeatureDef] = []
    frames: list[pl.LazyFrame] = []
    for stem, column, description in DISTINCT:
        counts_defs, exprs = distinct_counts(FAMILY, stem, description, windows)
        zeros = {d.name: 0.0 for d in counts_defs}
        frames.append(per_application(spine, latest_per_value(rows, column), exprs, zeros))
        defs += counts_defs
    return defs, frames


def category_shares() -> list[Aggregate]:
    return [
        Aggregate(
            f"consumption_category_share_{category}",
            f"Share of purchases in the {category} merchant category",
            lambda w, category=category: share(w, in_category(category)),
            fill=None,
            bounds=SHARE,
        )
        for category in MERCHANT_CATEGORIES
    ]


def recency_and_last_n(
    settings: FeatureSettings, horizon: int
) -> tuple[list[FeatureDef], list[pl.Expr]]:
    """Days since the last purchase and the mean amount of the latest purchases (the rows span
    the longest window)."""
    recency = FeatureDef(
        "consumption_days_since_last",
        FAMILY,
        window_label(horizon),
        "Days from the last purchase to the application day (null if none in the window)",
        min_value=0.0,
    )
    n = settings.last_n
    latest = FeatureDef(
        f"consumption_amount_mean_last{n}",
        FAMILY,
        f"last {n}",
        f"Mean amount of the latest {n} purchases in the last {horizon} days (CNY)",
        min_value=0.0,
    )
    exprs = [
        days_between(pl.col("cutoff").first(), pl.col("ts").max()).alias(recency.name),
        last_n("amount", n).mean().alias(latest.name),
    ]
    return [recency, latest], exprs


def last_n_frame(
    spine: pl.LazyFrame, rows: pl.LazyFrame, settings: FeatureSettings, horizon: int
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """Recency and the last-N mean in a narrow query of their own: sorting each application's
    purchases is not reducible, and inside the wide group-by it made the engine hold every row."""
    defs, exprs = recency_and_last_n(settings, horizon)
    narrow = rows.select("application_id", "cutoff", "ts", "amount")
    return defs, per_application(spine, narrow, exprs, {})


def trends(settings: FeatureSettings) -> list[Derived]:
    short, long = settings.trend_days
    label = f"{window_label(short)}/{window_label(long)}"
    measures = (("consumption_count", "purchases"), ("consumption_amount_sum", "amount spent"))
    return [
        Derived(
            f"{stem}_trend_{short}d_{long}d",
            label,
            f"Daily {what} over the last {short} days relative to the last {long} days "
            f"(1 = steady; null without purchases in the last {long} days)",
            trend(stem, short, long),
        )
        for stem, what in measures
    ]


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    horizon = max(settings.windows_days)
    specs = [*level_aggregates(), *habit_aggregates(settings), large_purchases(settings, horizon)]
    defs, exprs, fills = windowed(FAMILY, specs, settings.windows_days)
    share_defs, share_exprs, _ = windowed(FAMILY, category_shares(), [horizon])
    derived = trends(settings)
    events = tables["consumption"].select(EVENT_COLUMNS)
    spine = with_usual_amount(spine, events, horizon)
    rows = events_before_cutoff(spine, events, horizon, carry=[USUAL])
    rows = with_local_time(rows, settings, timezone)
    frame = per_application(spine, rows, [*exprs, *share_exprs], fills, derived=derived)
    latest_defs, latest = last_n_frame(spine, rows, settings, horizon)
    distinct_defs, distinct_frames = distinct_features(spine, rows, settings.windows_days)
    for other in (latest, *distinct_frames):
        frame = frame.join(other, on="application_id", how="left")
    defs += [*share_defs, *(d.definition(FAMILY) for d in derived), *latest_defs, *distinct_defs]
    return defs, frame
