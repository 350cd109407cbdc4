"""Merchant consumption: spend level, night-time and weekend habits, risky categories, credit."""

from __future__ import annotations

import polars as pl

from features.base import (
    SHARE,
    Aggregate,
    FeatureDef,
    FeatureSettings,
    count,
    days_between,
    events_before_cutoff,
    local_hour,
    per_application,
    share,
    total,
    windowed,
)

FAMILY = "consumption"


def aggregates(settings: FeatureSettings, timezone: str) -> list[Aggregate]:
    night = local_hour("ts", timezone) < settings.night_end_hour
    risky = pl.col("merchant_category").is_in(["luxury", "gaming"])
    on_credit = pl.col("pay_method") == "credit"
    return [
        Aggregate("consumption_count", "Number of purchases", count),
        Aggregate(
            "consumption_amount_sum", "Total amount spent (CNY)", lambda w: total(w, "amount")
        ),
        Aggregate(
            "consumption_amount_mean",
            "Mean purchase amount (CNY)",
            lambda w: pl.col("amount").filter(w).mean(),
            fill=None,
        ),
        Aggregate(
            "consumption_amount_max",
            "Largest single purchase (CNY)",
            lambda w: pl.col("amount").filter(w).max(),
            fill=None,
        ),
        Aggregate(
            "consumption_night_share",
            f"Share of purchases made 00:00-{settings.night_end_hour:02d}:00 local time",
            lambda w: share(w, night),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate(
            "consumption_luxury_gaming_share",
            "Share of purchases in luxury or gaming categories",
            lambda w: share(w, risky),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate(
            "consumption_credit_share",
            "Share of purchases paid on credit",
            lambda w: share(w, on_credit),
            fill=None,
            bounds=SHARE,
        ),
    ]


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    horizon = max(settings.windows_days)
    defs, exprs, fills = windowed(FAMILY, aggregates(settings, timezone), settings.windows_days)
    recency = f"{horizon}d"
    defs.append(
        FeatureDef(
            "consumption_days_since_last",
            FAMILY,
            recency,
            "Days from the last purchase to the application day (null if none in the window)",
            min_value=0.0,
        )
    )
    exprs.append(days_between(pl.col("cutoff").first(), pl.col("ts").max()).alias(defs[-1].name))
    events = tables["consumption"].select(
        "user_id", "ts", "amount", "merchant_category", "pay_method"
    )
    rows = events_before_cutoff(spine, events, horizon)
    return defs, per_application(spine, rows, exprs, fills)
