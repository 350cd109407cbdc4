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
    distinct,
    entropy,
    events_before_cutoff,
    exact_mean,
    last_n,
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
            "consumption_active_days",
            "Number of distinct local calendar days with a purchase",
            lambda w: distinct(w, LOCAL_DAY),
        ),
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
        Aggregate(
            "consumption_distinct_cities",
            "Number of distinct cities purchased in",
            lambda w: distinct(w, "city"),
        ),
        Aggregate(
            "consumption_distinct_devices",
            "Number of distinct devices purchased from",
            lambda w: distinct(w, "device_id"),
        ),
    ]


def large_purchases(settings: FeatureSettings, horizon: int) -> Aggregate:
    """Purchases well above the user's usual amount; the rows span the longest window, so
    the group's mean is the mean over that window."""
    large = pl.col("amount") > settings.large_multiple * exact_mean(pl.col("amount"))
    return Aggregate(
        "consumption_large_count",
        f"Number of purchases above {settings.large_multiple:g} times the applicant's mean "
        f"purchase amount over the last {horizon} days",
        lambda w: count(w, large),
    )


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
    latest_defs, latest_exprs = recency_and_last_n(settings, horizon)
    derived = trends(settings)
    defs += [*share_defs, *latest_defs, *(d.definition(FAMILY) for d in derived)]
    events = tables["consumption"].select(EVENT_COLUMNS)
    rows = with_local_time(events_before_cutoff(spine, events, horizon), settings, timezone)
    frame = per_application(
        spine, rows, [*exprs, *share_exprs, *latest_exprs], fills, derived=derived
    )
    return defs, frame
