"""App behaviour: logins and sessions, loan shopping, limit checks, abandoned applications,
repayment pages, push messages, night-time use, devices and new devices.

A declaration read by the feature engine (``features.engine``). A device is new in a window
when it was used there for the first time ever: the engine reads the events before the
longest window for that (``FirstSeen``), so this family reads ``app_events`` over all history.
"""

from __future__ import annotations

import polars as pl

from features.base import SHARE, ratio
from features.engine import (
    LOCAL,
    Count,
    Distinct,
    EventFamily,
    FirstSeen,
    Max,
    PerWindow,
    Source,
    recency,
    trend,
)

COUNT = (0.0, None)
COUNTED = {  # feature stem: (event, description)
    "app_logins": ("login", "Number of logins"),
    "app_loan_product_views": ("view_loan_product", "Views of loan products"),
    "app_rate_compare_views": ("view_rate_compare", "Views of the rate comparison"),
    "app_limit_checks": ("limit_check", "Credit-limit checks"),
    "app_repayment_page_views": ("repayment_page", "Views of the repayment page"),
    "app_push_opens": ("push_open", "Push messages opened"),
}


def is_event(name: str) -> pl.Expr:
    return pl.col("event") == name


def count_state(event: str) -> str:
    return f"n_{event}"


STATES = (
    Count("n"),
    Count("night", when=lambda ctx: pl.col(LOCAL).dt.hour() < ctx.settings.night_end_hour),
    *(Count(count_state(event), when=is_event(event)) for event, _ in COUNTED.values()),
    Max("last_login_ts", value=pl.when(is_event("login")).then(pl.col("ts")), windowed=False),
    Distinct("sessions", "session_id"),
    Distinct(
        "abandoned",
        "session_id",
        all_of=(is_event("apply_start"),),
        none_of=(is_event("apply_submit"),),
    ),
    Distinct("devices", "device_id"),
    FirstSeen("new_devices", "device_id"),
)

FEATURES = (
    *(
        PerWindow(stem, description, lambda s, e=event: s(count_state(e)), COUNT)
        for stem, (event, description) in COUNTED.items()
    ),
    PerWindow(
        "app_night_share",
        "Share of app events 00:00-{night_end_hour:02d}:00 local time",
        lambda s: ratio(s("night"), s("n")),
        SHARE,
    ),
    recency(
        "app_days_since_last_login",
        "last_login_ts",
        "Days from the last login to the application day (null if none in the window)",
    ),
    trend("app_logins", "logins"),
    PerWindow("app_sessions", "Distinct app sessions", lambda s: s("sessions"), COUNT),
    PerWindow(
        "app_abandoned_applications",
        "Sessions with an application started but not submitted in the window",
        lambda s: s("abandoned"),
        COUNT,
    ),
    PerWindow("app_devices", "Distinct devices used", lambda s: s("devices"), COUNT),
    PerWindow(
        "app_new_devices",
        "Devices used for the first time ever in the window (device changes)",
        lambda s: s("new_devices").cast(pl.Float64),
        COUNT,
    ),
)

APP_BEHAVIOUR = EventFamily(
    "app_behaviour",
    Source("app_events", ("user_id", "ts", "event", "session_id", "device_id"), local_clock=True),
    STATES,
    FEATURES,
)
