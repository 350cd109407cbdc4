"""App behaviour: logins and sessions, loan shopping, limit checks, abandoned applications,
repayment pages, push messages, night-time use, devices and new devices.

Computed in two passes over the app events joined to the applications (as the consumption
family is), so that the streaming group-by only ever reduces:

1. *partial states* per (application, window bucket) (:func:`features.base.by_bucket`):
   event counts, night-time events and the latest login; per (application, device): its
   newest and oldest bucket; per (application, session): the lowest bucket of any event, of
   an application started and of one submitted; per (applicant, device): its first use among
   the events older than every application's longest window;
2. the buckets are added up into every window, devices and sessions are counted by their
   lowest buckets; a device is new in a window when its oldest bucket is in it and it was not
   used before the longest window.
"""

from __future__ import annotations

import polars as pl

from data.asof import local_clock
from features.base import (
    APPLICATION,
    BUCKET,
    SHARE,
    FeatureDef,
    FeatureSettings,
    PerWindow,
    bucket_totals,
    by_bucket,
    days_between,
    event_span,
    events_before_cutoff,
    expand,
    newest_in_windows,
    ratio,
    recency,
    trend,
    window_bucket,
    window_label,
    with_application_key,
    with_states,
)

FAMILY = "app_behaviour"
COUNTED = {  # feature stem: (event, description)
    "app_logins": ("login", "Number of logins"),
    "app_loan_product_views": ("view_loan_product", "Views of loan products"),
    "app_rate_compare_views": ("view_rate_compare", "Views of the rate comparison"),
    "app_limit_checks": ("limit_check", "Credit-limit checks"),
    "app_repayment_page_views": ("repayment_page", "Views of the repayment page"),
    "app_push_opens": ("push_open", "Push messages opened"),
}
LAST_LOGIN = "last_login_ts"


def is_event(name: str) -> pl.Expr:
    return pl.col("event") == name


def count_state(event: str) -> str:
    return f"n_{event}"


def partial_states(settings: FeatureSettings, local: pl.Expr) -> list[pl.Expr]:
    """Reducible aggregates of one (application, bucket) group (`local`: the rows' local
    wall-clock time)."""
    return [
        pl.len().alias("n"),
        (local.dt.hour() < settings.night_end_hour).sum().alias("night"),
        *(is_event(event).sum().alias(count_state(event)) for event, _ in COUNTED.values()),
        pl.when(is_event("login")).then(pl.col("ts")).max().alias(LAST_LOGIN),
    ]


SUMMED = ("n", "night", *(count_state(event) for event, _ in COUNTED.values()))


def combined_states(windows: list[int]) -> list[pl.Expr]:
    """Per application: the bucket states added up per window, and the latest login."""
    return [*bucket_totals(SUMMED, windows), pl.col(LAST_LOGIN).max()]


def device_buckets(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Per (application, device): the newest and the oldest bucket it was used in."""
    return rows.group_by(APPLICATION, "device_id").agg(
        pl.col(BUCKET).min().alias("newest"), pl.col(BUCKET).max().alias("oldest")
    )


def device_counts(devices: pl.LazyFrame, windows: list[int]) -> pl.LazyFrame:
    """``devices@<window>``: distinct devices used in each window."""
    newest = pl.when(pl.col("device_id").is_not_null()).then(pl.col("newest"))
    return devices.group_by(APPLICATION).agg(newest_in_windows(newest, "devices", windows))


def session_counts(rows: pl.LazyFrame, windows: list[int]) -> pl.LazyFrame:
    """``sessions@<window>`` and ``abandoned@<window>``: distinct sessions with an event in the
    window, and of them those with an application started but none submitted in it."""
    lowest = (
        rows.filter(pl.col("session_id").is_not_null())
        .group_by(APPLICATION, "session_id")
        .agg(
            pl.col(BUCKET).min().alias("any"),
            pl.when(is_event("apply_start")).then(pl.col(BUCKET)).min().alias("start"),
            pl.when(is_event("apply_submit")).then(pl.col(BUCKET)).min().alias("submit"),
        )
    )
    abandoned = [
        ((pl.col("start") <= i).fill_null(False) & ~(pl.col("submit") <= i).fill_null(False))
        .sum()
        .alias(f"abandoned@{window_label(days)}")
        for i, days in enumerate(windows)
    ]
    return lowest.group_by(APPLICATION).agg(
        *newest_in_windows(pl.col("any"), "sessions", windows), *abandoned
    )


def count_features() -> list[PerWindow]:
    return [
        PerWindow(stem, description, lambda s, e=event: s(count_state(e)))
        for stem, (event, description) in COUNTED.items()
    ]


def night_share(settings: FeatureSettings) -> PerWindow:
    return PerWindow(
        "app_night_share",
        f"Share of app events 00:00-{settings.night_end_hour:02d}:00 local time",
        lambda s: ratio(s("night"), s("n")),
        bounds=SHARE,
    )


def state(name: str) -> PerWindow:
    """A feature that is one windowed state as it is (descriptions: :data:`DESCRIBED`)."""
    stem, description = DESCRIBED[name]
    return PerWindow(stem, description, lambda s: s(name))


DESCRIBED = {
    "sessions": ("app_sessions", "Distinct app sessions"),
    "abandoned": (
        "app_abandoned_applications",
        "Sessions with an application started but not submitted in the window",
    ),
    "devices": ("app_devices", "Distinct devices used"),
}


def days_since_last_login(horizon: int) -> tuple[FeatureDef, pl.Expr]:
    definition = recency(
        "app_days_since_last_login",
        FAMILY,
        horizon,
        "Days from the last login to the application day (null if none in the window)",
    )
    return definition, days_between(pl.col("cutoff"), pl.col(LAST_LOGIN)).alias(definition.name)


def login_trend(settings: FeatureSettings) -> tuple[FeatureDef, pl.Expr]:
    short, long = settings.trend_days
    definition = FeatureDef(
        f"app_logins_trend_{short}d_{long}d",
        FAMILY,
        f"{short}d vs {long}d",
        f"Per-day logins over the last {short} days relative to the last {long} (1 = steady)",
        0.0,
    )
    return definition, trend("app_logins", short, long).alias(definition.name)


def earlier_first_use(spine: pl.LazyFrame, app_events: pl.LazyFrame, horizon: int) -> pl.LazyFrame:
    """Per (applicant, device): its first use among the events older than every application's
    longest window. Only whether a device was used before an application's window matters
    here (the windows' own rows say the rest), so newer events and other users are skipped."""
    applicants = spine.select(pl.col("user_id").unique()).collect().to_series()
    before = spine.select(pl.col("cutoff").max() - pl.duration(days=horizon)).collect().item()
    older = pl.lit(False) if before is None else pl.col("ts") < before  # None: no applications
    return (
        app_events.filter(older, pl.col("user_id").is_in(applicants.implode()))
        .group_by("user_id", "device_id")
        .agg(earlier_first_use=pl.col("ts").min())
    )


def new_devices(
    spine: pl.LazyFrame, devices: pl.LazyFrame, earlier: pl.LazyFrame, windows: list[int]
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """Devices first used (ever, before the cut-off) in the window: device changes.

    A device of the longest window's rows (`devices`, from :func:`device_buckets`) was first
    used in a window when its oldest bucket is in it and it was not used before the longest
    window (`earlier`, from :func:`earlier_first_use`)."""
    used_before = pl.col("earlier_first_use") < pl.col("cutoff") - pl.duration(days=windows[-1])
    devices = (
        devices.join(spine.select(APPLICATION, "user_id", "cutoff"), on=APPLICATION)
        .join(earlier, on=["user_id", "device_id"], how="left", nulls_equal=True)
        .filter(~used_before.fill_null(False))
    )
    defs = [
        FeatureDef(
            f"app_new_devices_{window_label(days)}",
            FAMILY,
            window_label(days),
            "Devices used for the first time ever in the window (device changes)",
            0.0,
        )
        for days in windows
    ]
    counts = devices.group_by(APPLICATION).agg(
        (pl.col("oldest") <= i).sum().cast(pl.Float64).alias(d.name) for i, d in enumerate(defs)
    )
    frame = (
        spine.select(APPLICATION, "application_id")
        .join(counts, on=APPLICATION, how="left")
        .select("application_id", pl.col(d.name for d in defs).fill_null(0.0))
    )
    return defs, frame


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """App behaviour features; reads ``app_events`` over all history (a device's first use)."""
    windows = sorted(settings.windows_days)
    horizon = windows[-1]
    keyed = with_application_key(spine)
    app_events = tables["app_events"].select("user_id", "ts", "event", "session_id", "device_id")
    rows = events_before_cutoff(keyed, app_events, horizon).with_columns(
        window_bucket(windows).alias(BUCKET)
    )
    local = local_clock("ts", timezone, event_span(keyed, horizon))
    partial = by_bucket(rows, windows, partial_states(settings, local))
    earlier = earlier_first_use(keyed, app_events, horizon)
    partial, devices, sessions, earlier = pl.collect_all(
        [partial, device_buckets(rows), session_counts(rows, windows), earlier],
        engine="streaming",
    )
    new_defs, new = new_devices(keyed, devices.lazy(), earlier.lazy(), windows)
    combined = partial.lazy().group_by(APPLICATION).agg(combined_states(windows))
    states = combined.join(device_counts(devices.lazy(), windows), on=APPLICATION, how="left")
    states = states.join(sessions.lazy(), on=APPLICATION, how="left")

    defs, exprs = expand(FAMILY, [*count_features(), night_share(settings)], windows)
    recency_def, recency_expr = days_since_last_login(horizon)
    trend_def, trend_expr = login_trend(settings)
    more_defs, more_exprs = expand(FAMILY, [state(s) for s in DESCRIBED], windows)
    defs += [recency_def, trend_def, *more_defs, *new_defs]

    frame = (
        with_states(keyed, states, keep_null=[LAST_LOGIN])
        .with_columns(*exprs, recency_expr, *more_exprs)
        .with_columns(trend_expr)
        .select("application_id", *(d.name for d in defs[: -len(new_defs)]))
        .join(new, on="application_id", how="left")
    )
    return defs, frame
