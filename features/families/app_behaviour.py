"""App behaviour: logins and sessions, loan shopping, limit checks, abandoned applications,
repayment pages, push messages, night-time use and device changes."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from features.base import (
    SHARE,
    Aggregate,
    Derived,
    FeatureDef,
    FeatureSettings,
    count,
    days_between,
    distinct,
    events_before_cutoff,
    local_hour,
    per_application,
    share,
    trend,
    window_label,
    windowed,
)

FAMILY = "app_behaviour"
EVENT_ORDER = ("ts", "device_id")


def is_event(name: str) -> pl.Expr:
    return pl.col("event") == name


def abandoned_applications(mask: pl.Expr) -> pl.Expr:
    """Sessions in the window with an apply_start but no apply_submit.

    Sessions with a start and no submit are those with a start or a submit less those with a
    submit: two distinct counts in the one group, no per-session aggregation needed.
    """
    started = is_event("apply_start")
    submitted = is_event("apply_submit")
    return distinct(mask, "session_id", started | submitted) - distinct(
        mask, "session_id", submitted
    )


def with_previous_event(events: pl.LazyFrame) -> pl.LazyFrame:
    """Each event with the time and device of the user's event just before it (ordered by time,
    then device). The one before is never later, so the cut-off still bounds what is seen."""

    def previous(column: str) -> pl.Expr:
        return pl.col(column).shift(1).over("user_id", order_by=EVENT_ORDER)

    return events.with_columns(previous_ts=previous("ts"), previous_device_id=previous("device_id"))


def device_changes() -> Aggregate:
    """Pairs of consecutive events on different devices, windowed on the earlier event's time
    (the later one is then in the window too)."""
    changed = pl.col("device_id") != pl.col("previous_device_id")
    return Aggregate(
        "app_device_changes",
        "Pairs of consecutive app events (by time, then device) on different devices",
        lambda w: count(w, changed),
    )


def events(name: str) -> Callable[[pl.Expr], pl.Expr]:
    """Number of events of this kind in the window."""
    return lambda mask: count(mask, is_event(name))


def aggregates(settings: FeatureSettings, timezone: str) -> list[Aggregate]:
    night = local_hour("ts", timezone) < settings.night_end_hour
    return [
        Aggregate("app_logins", "Number of logins", events("login")),
        Aggregate("app_sessions", "Distinct app sessions", lambda w: distinct(w, "session_id")),
        Aggregate("app_loan_product_views", "Views of loan products", events("view_loan_product")),
        Aggregate(
            "app_rate_compare_views", "Views of the rate comparison", events("view_rate_compare")
        ),
        Aggregate("app_limit_checks", "Credit-limit checks", events("limit_check")),
        Aggregate(
            "app_abandoned_applications",
            "Sessions with an application started but not submitted",
            abandoned_applications,
        ),
        Aggregate(
            "app_repayment_page_views", "Views of the repayment page", events("repayment_page")
        ),
        Aggregate("app_push_opens", "Push messages opened", events("push_open")),
        Aggregate(
            "app_night_share",
            f"Share of app events 00:00-{settings.night_end_hour:02d}:00 local time",
            lambda w: share(w, night),
            fill=None,
            bounds=SHARE,
        ),
        Aggregate("app_devices", "Distinct devices used", lambda w: distinct(w, "device_id")),
    ]


def days_since_last_login(horizon: int) -> tuple[FeatureDef, pl.Expr]:
    definition = FeatureDef(
        "app_days_since_last_login",
        FAMILY,
        window_label(horizon),
        "Days from the last login to the application day (null if none in the window)",
        0.0,
        float(horizon),
    )
    last_login = pl.when(is_event("login")).then(pl.col("ts")).max()
    return definition, days_between(pl.col("cutoff").first(), last_login).alias(definition.name)


def login_trend(settings: FeatureSettings) -> Derived:
    short, long = settings.trend_days
    return Derived(
        f"app_logins_trend_{short}d_{long}d",
        f"{short}d vs {long}d",
        f"Per-day logins over the last {short} days relative to the last {long} (1 = steady)",
        trend("app_logins", short, long),
    )


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    horizon = max(settings.windows_days)
    defs, exprs, fills = windowed(FAMILY, aggregates(settings, timezone), settings.windows_days)
    changes = windowed(FAMILY, [device_changes()], settings.windows_days, "previous_ts")
    recency_def, recency_expr = days_since_last_login(horizon)
    logins = login_trend(settings)
    defs += [*changes[0], recency_def, logins.definition(FAMILY)]
    exprs += [*changes[1], recency_expr]
    fills += changes[2]
    events = with_previous_event(
        tables["app_events"].select("user_id", "ts", "event", "session_id", "device_id")
    )
    rows = events_before_cutoff(spine, events, horizon)
    return defs, per_application(spine, rows, exprs, fills, [logins])
