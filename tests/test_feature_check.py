"""The nightly feature check: each stored row passes the feature suite once, and a night checks
the rows it added and a window of recent applications, not the whole history."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from expectations.feature_check import check_new_features
from expectations.gate import DataGateStop
from features.base import FeatureDef
from features.store import (
    MONTH,
    append_feature_store,
    manifest,
    scan_feature_store,
    unchecked_files,
    write_feature_store,
)
from flows.settings import load_settings

TZ = "Asia/Shanghai"
DEFS = [FeatureDef("share_late", "repayments", "90d", "share of late instalments", 0.0, 1.0)]
META = manifest(["application_id", "user_id", "applied_at", "share_late"], {"test": 1})


def rows(first: int, days: list[date], share: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "application_id": [f"A{first + i:05d}" for i in range(len(days))],
            "user_id": [f"U{i:05d}" for i in range(len(days))],
            "applied_at": [datetime(d.year, d.month, d.day, 6, tzinfo=UTC) for d in days],
            "share_late": [share] * len(days),
        }
    )


def table(store: Path, before: date) -> pl.DataFrame:
    start = datetime(before.year, before.month, before.day, tzinfo=UTC) - timedelta(hours=8)
    return scan_feature_store(store).filter(pl.col("applied_at") < start).drop(MONTH).collect()


def test_each_row_is_checked_once_and_a_night_checks_its_rows_and_a_recent_window(
    tmp_path: Path,
) -> None:
    settings = load_settings(workspace=tmp_path / "ws", validation={"stats": {"history_days": 7}})
    store = settings.feature_store
    old = [date(2025, 1, 1) + timedelta(days=i) for i in range(60)]
    history = rows(0, old, 0.2)
    write_feature_store(history, store, TZ, META)

    first = check(store, date(2025, 3, 2), settings)
    assert first.success and first.rows == 60 and unchecked_files(store, first_key(store)) == []

    night = [date(2025, 3, 2)] * 3
    append_feature_store(rows(100, night, 0.3), store, TZ, META, tag="2025-03-03")
    second = check(store, date(2025, 3, 3), settings)
    # the 3 new rows and the 7 days before 2025-03-03 (2025-02-24 .. 03-01: 6 stored days)
    assert second.success and second.rows == 3 + 6
    assert "3 stored rows not checked before" in second.notes[0]

    bad = rows(200, [date(2025, 3, 3)], 7.0)
    append_feature_store(bad, store, TZ, META, tag="2025-03-04")
    with pytest.raises(DataGateStop, match="share_late"):
        check(store, date(2025, 3, 4), settings)
    assert len(unchecked_files(store, first_key(store))) == 1  # still unchecked: not passed


def check(store: Path, as_of: date, settings):
    """The check of a night as of `as_of`, as the training flow runs it."""
    stats = settings.validation.stats
    return check_new_features(DEFS, table(store, as_of), as_of, store, stats, TZ)


def first_key(store: Path) -> str:
    return json.loads((store / "_checked.json").read_text())["check"]
