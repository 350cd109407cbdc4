"""Merchant consumption: spend level and volatility, night-time and weekend habits, risky
categories, credit, spread over places and devices, large purchases and spending trends.

A declaration read by the feature engine (``features.engine``): the per-row values, the
states with their combine rules, and the features over them.
"""

from __future__ import annotations

import polars as pl

from data.contract import MERCHANT_CATEGORIES
from features.base import (
    CENTS,
    FIXED_POINT,
    SHARE,
    cents,
    entropy_of_counts,
    fixed_point,
    ratio,
    std_from_sums,
)
from features.engine import (
    CUTOFF_DAY,
    LOCAL,
    Context,
    Count,
    DaySet,
    Distinct,
    EventFamily,
    Exceeding,
    LastN,
    Max,
    MonthlySlope,
    PerWindow,
    Single,
    Source,
    States,
    Sum,
    monthly_slope,
    recency,
    trend,
)

COUNT = (0.0, None)


def category_state(category: str) -> str:
    return f"category_{category}"


def row_values(ctx: Context) -> list[pl.Expr]:
    """Computed once per joined purchase: the amount in millionths and in cents."""
    amount_cents = cents(pl.col("amount"))
    return [
        fixed_point(pl.col("amount")).alias("_micro"),
        amount_cents.alias("_cents"),
        (amount_cents * amount_cents).alias("_cents2"),
    ]


def local_day_offset(ctx: Context) -> pl.Expr:
    """Local calendar days from the purchase's day to the cut-off's."""
    return (pl.col(CUTOFF_DAY) - pl.col(LOCAL).dt.date()).dt.total_days()


STATES = (
    Count("n", since_prev_loan=True),
    Count("amount_n", when=pl.col("amount").is_not_null()),
    Sum("amount_micro", value=pl.col("_micro"), since_prev_loan=True),
    Sum("amount_cents", value=pl.col("_cents")),
    Sum("amount_cents2", value=pl.col("_cents2")),
    Max("amount_max", value=pl.col("amount")),
    Count("night", when=lambda ctx: pl.col(LOCAL).dt.hour() < ctx.settings.night_end_hour),
    Count("weekend", when=pl.col(LOCAL).dt.weekday() >= 6),
    Count("credit", when=pl.col("pay_method") == "credit"),
    *(Count(category_state(c), when=pl.col("merchant_category") == c) for c in MERCHANT_CATEGORIES),
    DaySet("days", offset=local_day_offset),
    Max("last_ts", value=pl.col("ts"), windowed=False),
    MonthlySlope("amount_slope", value=pl.col("_micro")),
    Distinct("city", "city"),
    Distinct("device_id", "device_id"),
    Exceeding(
        "large",
        "amount",
        limit=lambda s: s.ctx.settings.large_multiple * amount_mean(s),
    ),
    LastN("last_n_mean", "amount", n=lambda ctx: ctx.settings.last_n, count="n"),
)


def amount_mean(s: States) -> pl.Expr:
    return ratio(s("amount_micro") / FIXED_POINT, s("amount_n"))


def amount_std(s: States) -> pl.Expr:
    return std_from_sums(s("amount_n"), s("amount_cents"), s("amount_cents2")) / CENTS


def share_of(state: str, stem: str, description: str, longest_only: bool = False) -> PerWindow:
    """Share of the window's purchases counted by `state` (null for an empty window)."""
    return PerWindow(
        stem, description, lambda s: ratio(s(state), s("n")), SHARE, longest_only=longest_only
    )


FEATURES = (
    PerWindow(
        "consumption_count", "Number of purchases", lambda s: s("n"), COUNT, since_prev_loan=True
    ),
    PerWindow(
        "consumption_amount_sum",
        "Total amount spent (CNY)",
        lambda s: s("amount_micro") / FIXED_POINT,
        COUNT,
        since_prev_loan=True,
    ),
    PerWindow("consumption_amount_mean", "Mean purchase amount (CNY)", amount_mean, COUNT),
    PerWindow(
        "consumption_amount_std",
        "Sample standard deviation of purchase amounts (CNY; null below two purchases)",
        amount_std,
        COUNT,
    ),
    PerWindow(
        "consumption_amount_cv",
        "Standard deviation over mean of purchase amounts (null below two purchases)",
        lambda s: ratio(amount_std(s), amount_mean(s)),
        COUNT,
    ),
    PerWindow(
        "consumption_amount_max", "Largest single purchase (CNY)", lambda s: s("amount_max"), COUNT
    ),
    PerWindow(
        "consumption_active_days",
        "Number of distinct local calendar days with a purchase",
        lambda s: s("days"),
        COUNT,
    ),
    share_of(
        "night",
        "consumption_night_share",
        "Share of purchases made 00:00-{night_end_hour:02d}:00 local time",
    ),
    share_of(
        "weekend",
        "consumption_weekend_share",
        "Share of purchases made on a local Saturday or Sunday",
    ),
    share_of(
        category_state("luxury"),
        "consumption_luxury_share",
        "Share of purchases in the luxury category",
    ),
    share_of(
        category_state("gaming"),
        "consumption_gaming_share",
        "Share of purchases in the gaming category",
    ),
    share_of("credit", "consumption_credit_share", "Share of purchases paid on credit"),
    PerWindow(
        "consumption_category_entropy",
        "Shannon entropy (nats) of the merchant-category mix of purchases (0 = one category)",
        lambda s: entropy_of_counts([s(category_state(c)) for c in MERCHANT_CATEGORIES], s("n")),
        COUNT,
    ),
    PerWindow(
        "consumption_distinct_cities",
        "Number of distinct cities purchased in",
        lambda s: s("city"),
        COUNT,
    ),
    PerWindow(
        "consumption_distinct_devices",
        "Number of distinct devices purchased from",
        lambda s: s("device_id"),
        COUNT,
    ),
    PerWindow(
        "consumption_large_count",
        "Number of purchases above {large_multiple:g} times the applicant's mean purchase "
        "amount over the last {horizon} days",
        lambda s: s("large"),
        COUNT,
    ),
    *(
        share_of(
            category_state(category),
            f"consumption_category_share_{category}",
            f"Share of purchases in the {category} merchant category",
            longest_only=True,
        )
        for category in MERCHANT_CATEGORIES
    ),
    recency(
        "consumption_days_since_last",
        "last_ts",
        "Days from the last purchase to the application day (null if none in the window)",
    ),
    Single(
        "consumption_amount_mean_last{last_n}",
        "last {last_n}",
        "Mean amount of the latest {last_n} purchases in the last {horizon} days (CNY)",
        lambda s: s("last_n_mean"),
        COUNT,
    ),
    trend("consumption_count", "purchases"),
    trend("consumption_amount_sum", "amount spent"),
    monthly_slope("consumption_amount", "amount_slope", "the amount spent"),
)

CONSUMPTION = EventFamily(
    "consumption",
    Source(
        "consumption",
        ("user_id", "ts", "amount", "merchant_category", "city", "device_id", "pay_method"),
        local_clock=True,
        cutoff_day=True,
    ),
    STATES,
    FEATURES,
    row_values=row_values,
)
