"""Features are point-in-time exact: nothing recorded on or after an application's day counts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data.asof import (
    build_view,
    day_start_utc,
    default_as_of,
    local_clock,
    local_date,
    local_day_start,
    utc_offset_steps,
    wall_clock,
)
from data.config import LabelSettings
from data.readers import scan_raw
from features.base import FeatureSettings
from features.build import application_spine, build_features

TZ = "Asia/Shanghai"
SETTINGS = FeatureSettings()


def features_as_of(tables: dict[str, pl.LazyFrame], as_of: date) -> pl.DataFrame:
    view = build_view(tables, as_of, TZ)
    spine = application_spine(view["applications"], TZ)
    _, frame = build_features(view.kept, spine, SETTINGS, TZ, LabelSettings())
    return frame.collect().sort("application_id")


@pytest.fixture(scope="module")
def tables(small_raw: Path) -> dict[str, pl.LazyFrame]:
    return {name: frame.collect().lazy() for name, frame in scan_raw(small_raw).items()}


@pytest.fixture(scope="module")
def full(tables: dict[str, pl.LazyFrame]) -> pl.DataFrame:
    return features_as_of(tables, default_as_of(tables, TZ))


def application_days(full: pl.DataFrame, n: int) -> list[date]:
    days = full.select(pl.col("applied_at").dt.convert_time_zone(TZ).dt.date().unique().sort())
    picked = days.to_series().gather_every(max(1, days.height // n)).to_list()
    return picked[1 : n + 1]


def test_features_equal_those_built_on_the_morning_of_the_application(
    tables: dict[str, pl.LazyFrame], full: pl.DataFrame
) -> None:
    for day in application_days(full, 3):
        on_the_day = full.filter(pl.col("applied_at").dt.convert_time_zone(TZ).dt.date() == day)
        morning = features_as_of(tables, day + timedelta(days=1)).join(
            on_the_day.select("application_id"), on="application_id", how="semi"
        )
        assert morning.height == on_the_day.height > 0
        assert_frame_equal(morning, on_the_day)


def extreme_rows_at_cutoff(tables: dict[str, pl.LazyFrame], apps: pl.DataFrame) -> dict:
    """Absurd records for the given applications' users, stamped exactly at their cut-off."""
    cut = apps.select(
        "user_id",
        ts=pl.col("applied_at")
        .dt.convert_time_zone(TZ)
        .dt.truncate("1d")
        .dt.convert_time_zone("UTC"),
    )
    first_peer = tables["users"].select("user_id").first().collect().item()
    extra = {
        "consumption": cut.with_columns(
            order_id=pl.format("x-{}", pl.col("user_id")),
            amount=pl.lit(1e9),
            merchant_category=pl.lit("luxury"),
            city=pl.lit("Nowhere"),
            device_id=pl.lit("new-device"),
            pay_method=pl.lit("credit"),
        ),
        "transactions": cut.with_columns(
            txn_id=pl.format("x-{}", pl.col("user_id")),
            direction=pl.lit("in"),
            txn_type=pl.lit("loan_disbursement"),
            amount=pl.lit(1e9),
            counterparty_id=pl.lit(None, pl.String),
            channel=pl.lit("wallet"),
        ),
        "social": cut.with_columns(peer_id=pl.lit(first_peer), interaction=pl.lit("friend_add")),
        "app_events": cut.with_columns(
            event=pl.lit("limit_check"), session_id=pl.lit("x"), device_id=pl.lit("new-device")
        ),
        "bureau_inquiries": cut.with_columns(
            reason=pl.lit("loan_approval"), institution_type=pl.lit("microloan")
        ),
    }
    changed = {}
    for name, rows in extra.items():
        schema = tables[name].collect_schema()
        changed[name] = pl.concat([tables[name], rows.lazy().select(schema.names()).cast(schema)])
    snapshots = tables["bureau_snapshots"]
    schema = snapshots.collect_schema()
    day = cut.select("user_id", report_date=pl.col("ts").dt.convert_time_zone(TZ).dt.date())
    changed["bureau_snapshots"] = pl.concat(
        [
            snapshots.join(day.lazy(), on=["user_id", "report_date"], how="anti"),
            day.lazy()
            .with_columns(
                open_accounts=pl.lit(99),
                total_limit=pl.lit(1.0),
                total_balance=pl.lit(1e9),
                max_dpd_current=pl.lit(999),
                max_dpd_24m=pl.lit(999),
            )
            .select(schema.names())
            .cast(schema),
        ]
    )
    return {**tables, **changed}


def test_extreme_records_at_the_cutoff_change_nothing(
    tables: dict[str, pl.LazyFrame], full: pl.DataFrame
) -> None:
    # One application per user: a record at A's cut-off is history for the user's later ones.
    apps = (
        full.select("application_id", "user_id", "applied_at")
        .gather_every(7)
        .unique("user_id", keep="first")
    )
    poisoned = extreme_rows_at_cutoff(tables, apps)
    after = features_as_of(poisoned, default_as_of(poisoned, TZ))
    first_peer = tables["users"].select("user_id").first().collect().item()
    checked = apps.filter(pl.col("user_id") != first_peer).select("application_id")
    assert checked.height > 100
    assert_frame_equal(
        after.join(checked, on="application_id", how="semi"),
        full.join(checked, on="application_id", how="semi"),
    )


def test_feature_build_is_deterministic(
    tables: dict[str, pl.LazyFrame], full: pl.DataFrame
) -> None:
    assert_frame_equal(features_as_of(tables, default_as_of(tables, TZ)), full)


def test_every_application_gets_one_row(
    tables: dict[str, pl.LazyFrame], full: pl.DataFrame
) -> None:
    n_apps = tables["applications"].select(pl.len()).collect().item()
    assert full.height == n_apps == full["application_id"].n_unique()
    assert "application_gender" not in full.columns


@pytest.mark.parametrize(
    "timezone", ["America/Santiago", "America/Sao_Paulo", "Asia/Beirut", "Europe/London"]
)
def test_cutoff_is_the_local_day_start_also_where_clocks_change_at_midnight(
    timezone: str,
) -> None:
    # Chile, Brazil (until 2019) and Lebanon move their clocks at midnight: some local days
    # have no 00:00, some have it twice. Every cut-off must be the instant the local day
    # starts, as the as-of view computes it, and none may fail.
    start = datetime(2012, 1, 1, tzinfo=UTC)
    times = [start + timedelta(hours=5 * i) for i in range(20_000)]
    frame = pl.DataFrame({"ts": times}).select(
        cutoff=local_day_start("ts", timezone), day=local_date("ts", timezone)
    )
    expected = [day_start_utc(day, timezone) for day in frame["day"]]
    assert frame["cutoff"].to_list() == expected


def test_a_day_without_midnight_starts_at_the_jump() -> None:
    # 2024-09-08 in Santiago: clocks go from 00:00 (-04) straight to 01:00 (-03).
    jump = datetime(2024, 9, 8, 4, tzinfo=UTC)
    frame = pl.DataFrame({"ts": [jump, jump + timedelta(hours=12)]})
    cutoffs = frame.select(local_day_start("ts", "America/Santiago"))["ts"].to_list()
    assert cutoffs == [jump, jump]


@pytest.mark.parametrize(
    ("timezone", "changes"),
    [
        ("Asia/Shanghai", 12),  # daylight-saving time 1986-1991 only
        ("Europe/Berlin", 92),
        ("Australia/Lord_Howe", 90),  # half-hour daylight-saving shifts
        ("America/Santiago", 113),  # changes at midnight
        ("Africa/Monrovia", 1),  # 1972: -0:44:30 to UTC, a change at 00:44:30 UTC
        ("Pacific/Apia", 23),  # skipped 2011-12-30 altogether
    ],
)
def test_local_clock_over_a_span_is_the_time_zone_lookup(timezone: str, changes: int) -> None:
    # The step-function clock must agree with Polars' own lookup to the microsecond, at random
    # instants and around every change of offset (a microsecond and a second either side).
    start, end = datetime(1965, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    steps = utc_offset_steps(timezone, start, end)
    assert len(steps) == changes + 1
    span_us = int((end - start).total_seconds() * 1e6)
    random_offsets = [(i * 7_919_000_003_911) % span_us for i in range(20_000)]
    instants = [start + timedelta(microseconds=us) for us in random_offsets]
    for at, _ in steps[1:]:
        instants += [at + timedelta(microseconds=us) for us in (-1_000_000, -1, 0, 1, 999_999)]
    instants.append(end)
    frame = pl.DataFrame({"ts": instants}).select(
        fast=local_clock("ts", timezone, (start, end)), exact=wall_clock(pl.col("ts"), timezone)
    )
    assert (frame["fast"] == frame["exact"]).all()
    assert local_clock("ts", timezone).meta.eq(wall_clock(pl.col("ts"), timezone))


def test_local_clock_steps_only_inside_the_span() -> None:
    # Berlin in 2024: summer time from 31 March 01:00 UTC to 27 October 01:00 UTC.
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC)
    steps = utc_offset_steps("Europe/Berlin", start, end)
    assert steps == [
        (start, timedelta(hours=1)),
        (datetime(2024, 3, 31, 1, tzinfo=UTC), timedelta(hours=2)),
        (datetime(2024, 10, 27, 1, tzinfo=UTC), timedelta(hours=1)),
    ]
    summer = utc_offset_steps("Europe/Berlin", datetime(2024, 6, 1, tzinfo=UTC), end)
    assert len(summer) == 2 and summer[0][1] == timedelta(hours=2)
