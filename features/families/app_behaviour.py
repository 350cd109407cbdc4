"""App behaviour: logins and sessions, loan shopping, limit checks, abandoned applications,
repayment pages, push messages, night-time use, devices and new devices."""

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
    days_since_last,
    distinct_counts,
    events_before_cutoff,
    in_window,
    latest_per_value,
    local_hour,
    per_application,
    share,
    trend,
    window_label,
    windowed,
    with_application_key,
)

FAMILY = "app_behaviour"


def is_event(name: str) -> pl.Expr:
    return pl.col("event") == name


def events(name: str) -> Callable[[pl.Expr], pl.Expr]:
    """Number of events of this kind in the window."""
    return lambda mask: count(mask, is_event(name))


def aggregates(settings: FeatureSettings, timezone: str) -> list[Aggregate]:
    night = local_hour("ts", timezone) < settings.night_end_hour
    return [
        Aggregate("app_logins", "Number of logins", events("login")),
        Aggregate("app_loan_product_views", "Views of loan products", events("view_loan_product")),
        Aggregate(
            "app_rate_compare_views", "Views of the rate comparison", events("view_rate_compare")
        ),
        Aggregate("app_limit_checks", "Credit-limit checks", events("limit_check")),
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
    ]


def days_since_last_login(horizon: int) -> tuple[FeatureDef, pl.Expr]:
    return days_since_last(
        "app_days_since_last_login",
        FAMILY,
        horizon,
        "Days from the last login to the application day (null if none in the window)",
        where=is_event("login"),
    )


def login_trend(settings: FeatureSettings) -> Derived:
    short, long = settings.trend_days
    return Derived(
        f"app_logins_trend_{short}d_{long}d",
        f"{short}d vs {long}d",
        f"Per-day logins over the last {short} days relative to the last {long} (1 = steady)",
        trend("app_logins", short, long),
    )


def zeros(defs: list[FeatureDef]) -> dict[str, float]:
    return {d.name: 0.0 for d in defs}


def session_features(
    spine: pl.LazyFrame, rows: pl.LazyFrame, windows: list[int]
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """Distinct sessions, and sessions with an application started but not submitted."""
    sessions = latest_per_value(
        rows,
        "session_id",
        {
            "last": pl.col("ts"),
            "last_start": pl.when(is_event("apply_start")).then(pl.col("ts")),
            "last_submit": pl.when(is_event("apply_submit")).then(pl.col("ts")),
        },
    )
    defs, exprs = distinct_counts(FAMILY, "app_sessions", "Distinct app sessions", windows)
    for days in windows:
        started = in_window(days, "last_start").fill_null(False)
        submitted = in_window(days, "last_submit").fill_null(False)
        name = f"app_abandoned_applications_{window_label(days)}"
        defs.append(
            FeatureDef(
                name,
                FAMILY,
                window_label(days),
                "Sessions with an application started but not submitted in the window",
                0.0,
            )
        )
        exprs.append((started & ~submitted).sum().alias(name))
    return defs, per_application(spine, sessions, exprs, zeros(defs))


def device_features(
    spine: pl.LazyFrame, rows: pl.LazyFrame, app_events: pl.LazyFrame, windows: list[int]
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """Distinct devices used in the window, and devices first used (ever) in the window."""
    used_defs, used_exprs = distinct_counts(FAMILY, "app_devices", "Distinct devices used", windows)
    used = per_application(
        spine,
        latest_per_value(rows, "device_id"),
        used_exprs,
        zeros(used_defs),
    )
    first_use = app_events.group_by("user_id", "device_id").agg(first=pl.col("ts").min())
    new_rows = events_before_cutoff(spine, first_use, max(windows), time_column="first")
    new_defs, new_exprs = distinct_counts(
        FAMILY,
        "app_new_devices",
        "Devices used for the first time ever in the window (device changes)",
        windows,
        time_column="first",
    )
    new = per_application(spine, new_rows, new_exprs, zeros(new_defs))
    return used_defs + new_defs, used.join(new, on="application_id", how="left")


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """App behaviour features; reads ``app_events`` over all history (a device's first use)."""
    spine = with_application_key(spine)
    windows = settings.windows_days
    horizon = max(windows)
    defs, exprs, fills = windowed(FAMILY, aggregates(settings, timezone), windows)
    recency_def, recency_expr = days_since_last_login(horizon)
    logins = login_trend(settings)
    defs += [recency_def, logins.definition(FAMILY)]
    exprs.append(recency_expr)
    app_events = tables["app_events"].select("user_id", "ts", "event", "session_id", "device_id")
    rows = events_before_cutoff(spine, app_events, horizon)
    counts = per_application(spine, rows, exprs, fills, [logins])
    session_defs, sessions = session_features(spine, rows, windows)
    device_defs, devices = device_features(spine, rows, app_events, windows)
    frame = counts.join(sessions, on="application_id", how="left").join(
        devices, on="application_id", how="left"
    )
    return defs + session_defs + device_defs, frame
