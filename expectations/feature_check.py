"""The nightly check of the feature table: the feature suite on the feature store's rows it has
not passed yet and on a recent window, so a night checks what it added, not the whole history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from data.asof import day_start_utc
from data.config import StatsSettings
from expectations.gate import DataGateStop
from expectations.runner import SuiteResult, validate
from expectations.suites import ID_COLUMN, features_suite, suite_json
from features.base import FeatureDef
from features.store import mark_checked, unchecked_files


def check_new_features(
    defs: Sequence[FeatureDef],
    features: pl.DataFrame,
    as_of: date,
    store: Path,
    stats: StatsSettings,
    timezone: str,
) -> SuiteResult:
    """The feature suite on the rows of `store` it has not passed yet (all of them after a
    rebuild or a change of the suite) and on the applications of the last
    ``stats.history_days`` days of `features` (so that a share of nulls is judged on enough
    rows, and judged on what arrives now). A stored row never changes: a night checks what it
    added and a window of bounded length, not the whole history. Stops with
    :class:`DataGateStop` when the suite fails and its action is ``stop``."""
    # Built from this run's settings: the committed file holds the default windows and bounds.
    suite = features_suite(list(defs), stats)
    key = hashlib.sha256(suite_json(suite).encode()).hexdigest()
    files = unchecked_files(store, key)
    since = day_start_utc(as_of - timedelta(days=stats.history_days), timezone)
    recent = features.filter(pl.col("applied_at") >= since)
    unchecked = pl.read_parquet(files, hive_partitioning=False) if files else recent.head(0)
    rows = pl.concat([recent, unchecked.join(recent, on=ID_COLUMN, how="anti")], how="diagonal")
    note = (
        f"{unchecked.height:,} stored rows not checked before and the {stats.history_days} "
        f"days before {as_of}: {rows.height:,} of {features.height:,} rows"
    )
    check = validate(suite, rows, action=stats.feature_action, notes=[note])
    if not check.success and check.action == "stop":
        raise DataGateStop(check.messages())
    if check.success:
        mark_checked(store, key, files)
    return check
