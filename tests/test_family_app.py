"""App behaviour family on a hand-made event log: exact values, nothing at or after the cut-off."""

from __future__ import annotations

import polars as pl
import pytest
from family_frames import applications, build_family, row, utc

from features.families import app_behaviour

APPLICATIONS = [
    ("a1", "u1", "2024-07-01 10:00"),
    ("a2", "u2", "2024-07-01 10:00"),
    ("a3", "u1", "2024-12-01 10:00"),  # later: a1's window and its cut-off are in a3's
]
EVENTS = [
    # ts (local), event, session_id, device_id
    ("2023-01-01 12:00", "push_open", "s9", "A"),  # older than every window: A is not new
    ("2024-02-15 12:00", "login", "s0", "C"),
    ("2024-05-15 12:00", "repayment_page", "s5", "C"),
    # Started in s3, submitted in s4: s3 is an abandoned session, s4 is not.
    ("2024-06-20 10:00", "apply_start", "s3", "A"),
    ("2024-06-20 10:05", "view_loan_product", "s3", "A"),
    ("2024-06-21 12:00", "apply_submit", "s4", "B"),
    ("2024-06-21 12:01", "view_rate_compare", "s4", "B"),
    ("2024-06-29 22:00", "login", "s1", "A"),
    ("2024-06-29 22:01", "apply_start", "s1", "A"),
    ("2024-06-29 22:05", "apply_submit", "s1", "A"),
    # Same instant on two devices: ordered by device, A before B.
    ("2024-06-30 01:00", "login", "s2", "B"),
    ("2024-06-30 01:00", "push_open", "s2", "A"),
    ("2024-06-30 01:02", "apply_start", "s2", "B"),
    # At and after the cut-off: never counted.
    ("2024-07-01 00:00", "login", "sx", "Z"),
    ("2024-07-01 00:00", "apply_start", "sx", "Z"),
    ("2024-07-01 08:00", "push_open", "sy", "Y"),
]


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    apps = applications(APPLICATIONS, ["application_id", "user_id", "applied_at"])
    events = pl.LazyFrame(
        EVENTS, schema=["ts", "event", "session_id", "device_id"], orient="row"
    ).with_columns(ts=utc("ts"), user_id=pl.lit("u1"))
    return build_family(app_behaviour.APP_BEHAVIOUR, {"applications": apps, "app_events": events})


def test_sessions_and_abandoned_applications(features: pl.DataFrame) -> None:
    a1 = row(features, "a1")
    assert [a1[f"app_sessions_{n}d"] for n in (7, 30, 90, 180)] == [2, 4, 5, 6]
    assert a1["app_abandoned_applications_7d"] == 1
    assert a1["app_abandoned_applications_30d"] == 2
    assert a1["app_abandoned_applications_180d"] == 2


def test_new_devices_count_first_use_over_all_history(features: pl.DataFrame) -> None:
    a1 = row(features, "a1")
    # First uses: A in 2023 (before every window), C on 15 Feb, B on 21 Jun; Z and Y only at
    # or after the cut-off.
    assert [a1[f"app_new_devices_{n}d"] for n in (7, 30, 90, 180)] == [0, 1, 1, 2]
    assert a1["app_devices_7d"] == 2
    assert a1["app_devices_90d"] == 3


def test_new_devices_of_a_later_application(features: pl.DataFrame) -> None:
    # a3's longest window starts on 4 Jun: A was first used in 2023 and C has no row in it;
    # B (21 Jun), Z and Y (1 Jul) were first used in it, none in its last 90 days.
    a3 = row(features, "a3")
    assert [a3[f"app_new_devices_{n}d"] for n in (7, 30, 90, 180)] == [0, 0, 0, 3]
    assert a3["app_devices_180d"] == 4


def test_counts_shares_recency_and_trend(features: pl.DataFrame) -> None:
    a1 = row(features, "a1")
    assert [a1[f"app_logins_{n}d"] for n in (7, 30, 90, 180)] == [2, 2, 2, 3]
    assert a1["app_loan_product_views_30d"] == 1
    assert a1["app_rate_compare_views_30d"] == 1
    assert a1["app_limit_checks_180d"] == 0
    assert a1["app_repayment_page_views_30d"] == 0
    assert a1["app_repayment_page_views_90d"] == 1
    assert a1["app_push_opens_7d"] == 1
    assert a1["app_night_share_7d"] == 0.5
    assert a1["app_days_since_last_login"] == pytest.approx(23 / 24)
    assert a1["app_logins_trend_30d_180d"] == pytest.approx((2 / 30) / (3 / 180))


def test_applicant_without_events(features: pl.DataFrame) -> None:
    a2 = row(features, "a2")
    assert a2["app_sessions_180d"] == 0
    assert a2["app_new_devices_180d"] == 0
    assert a2["app_abandoned_applications_30d"] == 0
    for name in ("app_night_share_7d", "app_days_since_last_login", "app_logins_trend_30d_180d"):
        assert a2[name] is None, name
