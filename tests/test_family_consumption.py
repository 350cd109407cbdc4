"""Consumption features on tiny hand-made frames: exact values per kind of feature."""

from __future__ import annotations

import math
import statistics
from datetime import datetime

import polars as pl
import pytest
from family_frames import TZ, build_family

from data.contract import MAX_AMOUNT, MERCHANT_CATEGORIES
from features.base import FeatureSettings
from features.families import consumption

SETTINGS = FeatureSettings(last_n=2)


def utc(column: str) -> pl.Expr:
    """A naive local (Shanghai) datetime column as a UTC instant."""
    return pl.col(column).dt.replace_time_zone(TZ).dt.convert_time_zone("UTC")


def applications() -> pl.LazyFrame:
    """u1 borrows on 2024-03-10 and applies again on Saturday 2024-06-15; u2 never bought."""
    return pl.LazyFrame(
        {
            "application_id": ["a1", "a2", "b1"],
            "user_id": ["u1", "u1", "u2"],
            "applied_at": [
                datetime(2024, 3, 10, 10),
                datetime(2024, 6, 15, 9),
                datetime(2024, 6, 15, 9),
            ],
            "amount_requested": [1000.0, 2000.0, 500.0],
            "term_months": [5, 10, 5],
            "channel": ["organic", "referral", "organic"],
            "decision": ["approved", "rejected", "approved"],
        }
    ).with_columns(applied_at=utc("applied_at"))


PURCHASES = (
    # local time, amount, category, pay method, city, device
    (datetime(2024, 6, 13, 23, 50), 100.0, "groceries", "balance", "Shanghai", "d1"),
    (datetime(2024, 6, 14, 0, 10), 200.0, "groceries", "credit", "Shanghai", "d1"),
    (datetime(2024, 6, 8, 1, 0), 3000.0, "luxury", "credit", "Beijing", "d2"),  # Sat, night
    (datetime(2024, 5, 1, 12, 0), 10.0, "gaming", "bank_card", "Beijing", None),
    (datetime(2024, 3, 1, 12, 0), 10.0, "dining", "balance", None, "d1"),  # before the loan
)
AT_OR_AFTER_CUTOFF = (
    (datetime(2024, 6, 15, 0, 0), 1e6, "travel", "credit", "Nowhere", "x"),
    (datetime(2024, 6, 15, 8, 0), 1e6, "travel", "credit", "Nowhere", "x"),
)


def purchases(rows: tuple[tuple, ...]) -> pl.LazyFrame:
    columns = ["ts", "amount", "merchant_category", "pay_method", "city", "device_id"]
    frame = pl.LazyFrame(rows, schema=columns, orient="row")
    return frame.with_columns(
        user_id=pl.lit("u1"), order_id=pl.int_range(pl.len()).cast(pl.String), ts=utc("ts")
    )


def features(rows: tuple[tuple, ...]) -> dict[str, dict]:
    tables = {"applications": applications(), "consumption": purchases(rows)}
    table = build_family(consumption.CONSUMPTION, tables, SETTINGS)
    return {row["application_id"]: row for row in table.iter_rows(named=True)}


@pytest.fixture(scope="module")
def by_app() -> dict[str, dict]:
    return features(PURCHASES + AT_OR_AFTER_CUTOFF)


def test_counts_sums_and_spread(by_app: dict[str, dict]) -> None:
    a2 = by_app["a2"]
    assert [a2[f"consumption_count_{d}d"] for d in (7, 30, 90, 180)] == [3, 3, 4, 5]
    assert a2["consumption_amount_sum_180d"] == 3320.0
    assert a2["consumption_amount_max_7d"] == 3000.0
    week = [100.0, 200.0, 3000.0]
    assert a2["consumption_amount_mean_7d"] == pytest.approx(1100.0)
    assert a2["consumption_amount_std_7d"] == pytest.approx(statistics.stdev(week))
    assert a2["consumption_amount_cv_7d"] == pytest.approx(statistics.stdev(week) / 1100.0)
    assert a2["consumption_amount_std_180d"] == pytest.approx(statistics.stdev([*week, 10.0, 10.0]))
    a1 = by_app["a1"]  # one purchase: a mean but no spread
    assert a1["consumption_amount_mean_30d"] == 10.0
    assert a1["consumption_amount_std_30d"] is None
    assert a1["consumption_amount_cv_30d"] is None


def test_no_purchases_fill_counts_and_leave_the_rest_null(by_app: dict[str, dict]) -> None:
    b1 = by_app["b1"]
    assert b1["consumption_count_180d"] == 0
    assert b1["consumption_amount_sum_7d"] == 0
    assert b1["consumption_active_days_30d"] == 0
    assert b1["consumption_distinct_cities_180d"] == 0
    assert b1["consumption_large_count_180d"] == 0
    for name in (
        "consumption_amount_mean_7d",
        "consumption_night_share_180d",
        "consumption_category_entropy_180d",
        "consumption_category_share_groceries_180d",
        "consumption_amount_mean_last2",
        "consumption_days_since_last",
        "consumption_count_trend_30d_180d",
    ):
        assert b1[name] is None, name


def test_local_calendar_habits(by_app: dict[str, dict]) -> None:
    a2 = by_app["a2"]
    # 23:50 and 00:10 local are one UTC day but two local days.
    assert a2["consumption_active_days_7d"] == 3
    assert a2["consumption_night_share_7d"] == pytest.approx(2 / 3)
    # Saturday 01:00 in Shanghai is Friday in UTC.
    assert a2["consumption_weekend_share_7d"] == pytest.approx(1 / 3)
    assert a2["consumption_credit_share_7d"] == pytest.approx(2 / 3)
    assert a2["consumption_luxury_share_7d"] == pytest.approx(1 / 3)
    assert a2["consumption_gaming_share_90d"] == pytest.approx(1 / 4)
    assert a2["consumption_distinct_cities_180d"] == 2
    assert a2["consumption_distinct_devices_180d"] == 2
    assert a2["consumption_days_since_last"] == pytest.approx(23 / 24 + 50 / 1440)


def test_category_mix(by_app: dict[str, dict]) -> None:
    a2 = by_app["a2"]
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert a2["consumption_category_entropy_7d"] == pytest.approx(expected)
    assert by_app["a1"]["consumption_category_entropy_30d"] == 0.0
    shares = {c: a2[f"consumption_category_share_{c}_180d"] for c in MERCHANT_CATEGORIES}
    assert shares["groceries"] == pytest.approx(0.4)
    assert shares["luxury"] == shares["gaming"] == shares["dining"] == pytest.approx(0.2)
    assert shares["travel"] == 0.0
    assert sum(shares.values()) == pytest.approx(1.0)


def test_large_purchases_compare_with_the_longest_window_mean(by_app: dict[str, dict]) -> None:
    # 180-day mean 664: 3000 is large, though not against the 7-day mean of 1100.
    a2 = by_app["a2"]
    assert a2["consumption_large_count_7d"] == 1
    assert a2["consumption_large_count_180d"] == 1
    assert by_app["a1"]["consumption_large_count_180d"] == 0


def test_last_n_since_previous_loan_and_trends(by_app: dict[str, dict]) -> None:
    a2 = by_app["a2"]
    assert a2["consumption_amount_mean_last2"] == pytest.approx(150.0)
    assert a2["consumption_count_since_prev_loan"] == 4
    assert a2["consumption_amount_sum_since_prev_loan"] == 3310.0
    assert by_app["a1"]["consumption_count_since_prev_loan"] is None  # no earlier loan
    assert by_app["b1"]["consumption_amount_sum_since_prev_loan"] is None
    assert a2["consumption_count_trend_30d_180d"] == pytest.approx((3 / 30) / (5 / 180))
    assert a2["consumption_amount_sum_trend_30d_180d"] == pytest.approx((3300 / 30) / (3320 / 180))
    assert by_app["a1"]["consumption_count_trend_30d_180d"] == pytest.approx(6.0)


def test_purchases_at_or_after_the_cutoff_are_ignored(by_app: dict[str, dict]) -> None:
    assert features(PURCHASES) == by_app


def test_spread_of_huge_amounts_is_not_wrapped_around() -> None:
    # Sums of squares of such amounts in cents pass 2^127: the spread must come from the
    # floating-point form, not from a 128-bit integer that wrapped around.
    huge = (
        (datetime(2024, 6, 13, 12, 0), 1e15, "travel", "credit", "Shanghai", "d1"),
        (datetime(2024, 6, 12, 12, 0), 3e15, "travel", "credit", "Shanghai", "d1"),
        (datetime(2024, 6, 11, 12, 0), 2e15, "travel", "credit", "Shanghai", "d1"),
    )
    a2 = features(huge)["a2"]
    assert a2["consumption_amount_std_7d"] == pytest.approx(1e15, rel=1e-9)
    assert a2["consumption_amount_mean_7d"] == pytest.approx(2e15)
    assert a2["consumption_amount_cv_7d"] == pytest.approx(0.5, rel=1e-9)


def test_many_purchases_at_the_gates_amount_bound_sum_exactly() -> None:
    # The gate sets aside amounts above MAX_AMOUNT; at it, the 128-bit sums of millionths and
    # of squared hundredths must still hold a heavy week (here 1,000 purchases) exactly.
    week = tuple(
        (datetime(2024, 6, 13, 12, 0), MAX_AMOUNT, "travel", "credit", "Shanghai", "d1")
        for _ in range(1_000)
    )
    a2 = features(week)["a2"]
    assert a2["consumption_amount_sum_7d"] == 1_000 * MAX_AMOUNT
    assert a2["consumption_amount_mean_7d"] == MAX_AMOUNT
    assert a2["consumption_amount_std_7d"] == 0.0
