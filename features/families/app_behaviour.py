"""App behaviour: logins, loan shopping, limit checks, night-time use and device changes."""

from __future__ import annotations

import polars as pl

from features.base import (
    SHARE,
    Aggregate,
    FeatureDef,
    FeatureSettings,
    count,
    events_before_cutoff,
    local_hour,
    per_application,
    share,
    windowed,
)

FAMILY = "app_behaviour"


def aggregates(settings: FeatureSettings, timezone: str) -> list[Aggregate]:
    event = pl.col("event")
    night = local_hour("ts", timezone) < settings.night_end_hour
    return [
        Aggregate("app_logins", "Number of logins", lambda w: count(w, event == "login")),
        Aggregate(
            "app_loan_shopping",
            "Views of loan products and rate comparisons",
            lambda w: count(w, event.is_in(["view_loan_product", "view_rate_compare"])),
        ),
        Aggregate(
            "app_limit_checks", "Credit-limit checks", lambda w: count(w, event == "limit_check")
        ),
        Aggregate(
            "app_night_share",
            f"Share of app events 00:00-{settings.night_end_hour:02d}:00 local time",
            lambda w: share(w, night),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate(
            "app_devices",
            "Distinct devices used",
            lambda w: pl.col("device_id").filter(w).n_unique(),
        ),
    ]


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    defs, exprs, fills = windowed(FAMILY, aggregates(settings, timezone), settings.windows_days)
    events = tables["app_events"].select("user_id", "ts", "event", "device_id")
    rows = events_before_cutoff(spine, events, max(settings.windows_days))
    return defs, per_application(spine, rows, exprs, fills)
