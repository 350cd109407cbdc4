"""Statistical expectations: recent days compared with history, on small aggregate frames.

The validated tables (already cut at the as-of date) are aggregated in Polars into frames of
tens of rows; GX then checks those frames against suites built here, because their bounds
depend on history and the settings (they are not committed files). Three checks per event
table, each a ``SuiteResult`` that carries its action ("warn" or "stop") from the settings:

- ``stats.volume.<table>``: rows on each of the last ``recent_days`` local days divided by the
  median daily rows over the ``history_days`` before them (days with data), within
  ``volume_ratio``;
- ``stats.amount.<table>``: median amount over the recent window divided by the historical
  median, within ``amount_median_ratio`` (catches amounts sent in cents, x100);
- ``stats.enum.<table>``: for every enumerated column, the share of each value in the recent
  window minus its historical share, in absolute value at most ``enum_share_max_shift``.

With fewer than ``MIN_HISTORY_DAYS`` days with data in the history window a check is skipped:
it succeeds, with ``skipped=True`` and a note.

Given the rows each table kept, one more check, ``stats.freshness``, fails (``freshness_action``)
when none of these tables has a row in the whole ``history_days + recent_days`` before the as-of
date although some hold older rows: the data stopped arriving, or the as-of date is wrong (by
default it is the day after the latest record of any table, so one record dated decades ahead
moves it there). Without it every check above would be skipped and the gate would pass.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import polars as pl
import polars.selectors as cs

from data.asof import local_date
from data.config import StatsSettings
from data.contract import EVENT_TABLES, TABLES
from data.rules import time_column
from expectations.runner import Action, ExpectationOutcome, SuiteResult, validate

VOLUME_TABLES: tuple[str, ...] = (*EVENT_TABLES, "applications")
AMOUNT_COLUMNS: dict[str, tuple[str, ...]] = {
    "transactions": ("amount",),
    "consumption": ("amount",),
    "applications": ("amount_requested",),
}
MIN_HISTORY_DAYS = 7
FRESHNESS = "stats.freshness"
DAY = "_day"
RECENT = "_recent"


def enum_columns(table: str) -> list[str]:
    """The table's columns with a contract value set."""
    return [c.name for c in TABLES[table].columns if c.values is not None]


def history_start(as_of: date, settings: StatsSettings) -> date:
    """First local day the checks read: older rows need not be scanned at all."""
    return _Windows(as_of, settings).history_start


def statistical_checks(
    tables: dict[str, pl.LazyFrame],
    as_of: date,
    timezone: str,
    settings: StatsSettings,
    kept_rows: dict[str, int] | None = None,
) -> list[SuiteResult]:
    """Volume, amount and enumeration checks of every event table present in `tables`, and
    with `kept_rows` (rows each table kept, in all its history) the freshness check."""
    windows = _Windows(as_of, settings)
    results: list[SuiteResult] = []
    window_rows: dict[str, int] = {}
    for table in VOLUME_TABLES:
        if table not in tables:
            continue
        aggregates = _aggregate(tables[table], table, windows, timezone)
        window_rows[table] = int(aggregates.daily.get_column("rows").sum())
        results.append(_volume_check(table, aggregates, windows, settings))
        if table in AMOUNT_COLUMNS:
            results.append(_amount_check(table, aggregates, windows, settings))
        if enum_columns(table):
            results.append(_enum_check(table, aggregates, windows, settings))
    if kept_rows is not None and window_rows:
        results.append(_freshness_check(window_rows, kept_rows, windows, settings))
    return results


def _freshness_check(
    window_rows: dict[str, int],
    kept_rows: dict[str, int],
    windows: _Windows,
    settings: StatsSettings,
) -> SuiteResult:
    """At least one of the tables has a row in the checks' whole window, if any has rows."""
    name = FRESHNESS
    action = settings.freshness_action
    frame = pl.DataFrame(
        {
            "table": list(window_rows),
            "window_rows": list(window_rows.values()),
            "kept_rows": [kept_rows.get(table, 0) for table in window_rows],
        }
    )
    span = f"{windows.history_start}..{windows.as_of - timedelta(days=1)}"
    days = (windows.as_of - windows.history_start).days
    if frame["kept_rows"].sum() == 0:
        return _skip(name, frame, action, "skipped: none of the tables holds any row")
    description = (
        f"some row of {', '.join(window_rows)} in the {days} days before the as-of date "
        f"{windows.as_of} ({span})"
    )
    expectation = gxe.ExpectColumnMaxToBeBetween(
        column="window_rows",
        min_value=1,
        severity=_severity(action),
        meta={"check": "freshness", "description": description, "action": action},
    )
    result = validate(_suite(name, [expectation], [description]), frame, action=action)
    message = (
        f"no row of {', '.join(window_rows)} in {span}, the {days} days before the as-of "
        f"date {windows.as_of}, though they hold {frame['kept_rows'].sum():,} older rows: the data "
        "stopped arriving, or the as-of date is wrong (by default the day after the latest "
        "record of any table: look for a record dated far ahead)"
        if frame["window_rows"].sum() == 0
        else f"rows in {span}: " + ", ".join(f"{t} {n:,}" for t, n in window_rows.items())
    )
    return _with_messages(result, {"freshness": message})


class _Windows:
    """Recent window [as_of - recent_days, as_of) and history before it, in local days."""

    def __init__(self, as_of: date, settings: StatsSettings) -> None:
        self.as_of = as_of
        self.recent_start = as_of - timedelta(days=settings.recent_days)
        self.history_start = self.recent_start - timedelta(days=settings.history_days)
        self.recent_days = settings.recent_days
        self.history_days = settings.history_days

    @property
    def recent_label(self) -> str:
        last = self.as_of - timedelta(days=1)
        return f"{self.recent_start}..{last}"

    @property
    def history_label(self) -> str:
        last = self.recent_start - timedelta(days=1)
        return f"{self.history_start}..{last}"


class _Aggregates:
    def __init__(self, daily: pl.DataFrame, amounts: pl.DataFrame, enums: dict[str, pl.DataFrame]):
        self.daily = daily
        self.amounts = amounts
        self.enums = enums

    def history_days_with_data(self, windows: _Windows) -> int:
        history = self.daily.filter(pl.col(DAY) < windows.recent_start, pl.col("rows") > 0)
        return history.height


def _aggregate(frame: pl.LazyFrame, table: str, windows: _Windows, timezone: str) -> _Aggregates:
    """Daily counts, window medians of amounts and window value counts, in one collect."""
    when = time_column(TABLES[table])
    if when is None:
        raise ValueError(f"table {table!r} has no time column")
    base = (
        frame.with_columns(local_date(when, timezone).alias(DAY))
        .filter(pl.col(DAY) >= windows.history_start, pl.col(DAY) < windows.as_of)
        .with_columns((pl.col(DAY) >= windows.recent_start).alias(RECENT))
    )
    amount_columns = AMOUNT_COLUMNS.get(table, ())
    columns = enum_columns(table)
    # One scan counts rows per day and value combination; the day and value counts are sums
    # of it (a query per enumerated column scanned the window again for each).
    counts = base.group_by(DAY, RECENT, *(pl.col(c).cast(pl.String) for c in columns)).agg(
        rows=pl.len()
    )
    medians = base.group_by(RECENT).agg(
        pl.len().alias("rows"), *(pl.col(c).median().alias(c) for c in amount_columns)
    )
    counts, amounts = pl.collect_all([counts, medians], engine="streaming")
    daily = counts.group_by(DAY).agg(pl.col("rows").sum())
    enums = {
        c: counts.group_by(RECENT, pl.col(c).alias("value")).agg(n=pl.col("rows").sum())
        for c in columns
    }
    return _Aggregates(daily, amounts, enums)


def _severity(action: Action) -> str:
    return "critical" if action == "stop" else "warning"


def _bounded(
    frame_column: str,
    low: float,
    high: float,
    action: Action,
    check: str,
    table: str,
    description: str,
    **meta: str,
) -> gxe.Expectation:
    """A statistical check: `frame_column` of the aggregate frame stays within [low, high]."""
    return gxe.ExpectColumnValuesToBeBetween(
        column=frame_column,
        min_value=low,
        max_value=high,
        severity=_severity(action),
        meta={
            "check": check,
            "table": table,
            **meta,
            "description": description,
            "notes": description,
            "action": action,
        },
    )


def _suite(name: str, expectations: list[gxe.Expectation], notes: list[str]) -> gx.ExpectationSuite:
    meta: dict[str, Any] = {"generated_by": "expectations.stats"}
    if notes:
        meta["notes"] = {"format": "markdown", "content": notes}
    return gx.ExpectationSuite(name=name, expectations=expectations, meta=meta)


def _skip(name: str, frame: pl.DataFrame, action: Action, note: str) -> SuiteResult:
    result = validate(_suite(name, [], [note]), frame, action=action, notes=[note])
    return replace(result, skipped=True, success=True)


def _history_too_short(table: str, agg: _Aggregates, windows: _Windows) -> str | None:
    days = agg.history_days_with_data(windows)
    if days >= MIN_HISTORY_DAYS:
        return None
    return (
        f"skipped: {table} has {days} days with data in the history window "
        f"{windows.history_label} (needs {MIN_HISTORY_DAYS})"
    )


def _with_messages(result: SuiteResult, messages: dict[str, str]) -> SuiteResult:
    """Replace the runner's generic messages with the check's own, keyed by check name."""
    outcomes: list[ExpectationOutcome] = [
        replace(o, message=messages[o.check]) if o.check in messages else o for o in result.results
    ]
    return replace(result, results=outcomes)


def _volume_check(
    table: str, agg: _Aggregates, windows: _Windows, settings: StatsSettings
) -> SuiteResult:
    name = f"stats.volume.{table}"
    action = settings.volume_action
    low, high = settings.volume_ratio
    days = pl.date_range(
        windows.recent_start, windows.as_of - timedelta(days=1), interval="1d", eager=True
    )
    history = agg.daily.filter(pl.col(DAY) < windows.recent_start, pl.col("rows") > 0)
    median = history.get_column("rows").median() if history.height else None
    frame = (
        pl.DataFrame({"day": days})
        .join(agg.daily.rename({DAY: "day"}), on="day", how="left")
        .with_columns(pl.col("rows").fill_null(0).cast(pl.Int64))
        .with_columns(
            history_median=pl.lit(median, dtype=pl.Float64),
            ratio=pl.col("rows") / pl.lit(median, dtype=pl.Float64),
        )
        .sort("day")
    )
    skip = _history_too_short(table, agg, windows)
    if skip:
        return _skip(name, frame, action, skip)
    check = f"volume.{table}"
    description = (
        f"{table}: rows per local day in {windows.recent_label} / median rows per day with data "
        f"in {windows.history_label} ({median:,.1f}) within [{low}, {high}]"
    )
    expectation = _bounded("ratio", low, high, action, check, table, description)
    result = validate(_suite(name, [expectation], [description]), frame, action=action)
    bad = frame.filter(~pl.col("ratio").is_between(low, high))
    if bad.height:
        examples = ", ".join(
            f"{row['day']}: {row['rows']:,} rows (x{row['ratio']:.2f})"
            for row in bad.head(3).iter_rows(named=True)
        )
        message = (
            f"{table} daily volume: {bad.height} of {frame.height} recent days outside "
            f"[{low}, {high}] x the history median of {median:,.1f} rows/day ({examples})"
        )
    else:
        message = f"{table} daily volume within [{low}, {high}] x {median:,.1f} rows/day"
    return _with_messages(result, {check: message})


def _amount_check(
    table: str, agg: _Aggregates, windows: _Windows, settings: StatsSettings
) -> SuiteResult:
    name = f"stats.amount.{table}"
    action = settings.amount_action
    low, high = settings.amount_median_ratio
    columns = AMOUNT_COLUMNS[table]
    by_window = {bool(row[RECENT]): row for row in agg.amounts.iter_rows(named=True)}
    recent, history = by_window.get(True, {}), by_window.get(False, {})
    frame = pl.DataFrame(
        {
            "column": list(columns),
            "recent_median": [recent.get(c) for c in columns],
            "history_median": [history.get(c) for c in columns],
        },
        schema={"column": pl.String, "recent_median": pl.Float64, "history_median": pl.Float64},
    ).with_columns(ratio=pl.col("recent_median") / pl.col("history_median"))
    skip = _history_too_short(table, agg, windows)
    if skip is None and not recent.get("rows"):
        skip = f"skipped: {table} has no rows in the recent window {windows.recent_label}"
    if skip:
        return _skip(name, frame, action, skip)
    check = f"amount.{table}"
    description = (
        f"{table}: median of {'/'.join(columns)} in {windows.recent_label} / its median in "
        f"{windows.history_label} within [{low}, {high}]"
    )
    expectation = _bounded("ratio", low, high, action, check, table, description)
    result = validate(_suite(name, [expectation], [description]), frame, action=action)
    parts = [
        f"{table}.{row['column']} recent median {row['recent_median']:,.2f} vs history "
        f"{row['history_median']:,.2f} (x{row['ratio']:.2f}, bound [{low}, {high}])"
        for row in frame.iter_rows(named=True)
        if row["ratio"] is not None
    ]
    return _with_messages(result, {check: "; ".join(parts)})


def _enum_check(
    table: str, agg: _Aggregates, windows: _Windows, settings: StatsSettings
) -> SuiteResult:
    name = f"stats.enum.{table}"
    action = settings.enum_action
    bound = settings.enum_share_max_shift
    frames = []
    for column, counts in agg.enums.items():
        contract_values = [str(v) for v in TABLES[table].column(column).values or ()]
        shares = counts.with_columns(share=pl.col("n") / pl.col("n").sum().over(RECENT))
        values = pl.DataFrame({"value": contract_values}, schema={"value": pl.String})
        observed = counts.select("value").unique().drop_nulls()
        values = pl.concat([values, observed.join(values, on="value", how="anti")])
        recent = shares.filter(pl.col(RECENT)).select("value", recent_share="share")
        history = shares.filter(~pl.col(RECENT)).select("value", history_share="share")
        frames.append(
            values.join(recent, on="value", how="left")
            .join(history, on="value", how="left")
            .with_columns(pl.col("recent_share", "history_share").fill_null(0.0))
            .with_columns(
                column=pl.lit(column),
                shift=(pl.col("recent_share") - pl.col("history_share")).abs(),
            )
            .with_columns(
                # One column per enumerated column (null elsewhere: GX ignores nulls), so each
                # gets its own expectation.
                *(
                    pl.when(pl.lit(column == other)).then(pl.col("shift")).alias(f"shift_{other}")
                    for other in agg.enums
                )
            )
        )
    frame = pl.concat(frames).select(
        "column", "value", "recent_share", "history_share", "shift", cs.starts_with("shift_")
    )
    skip = _history_too_short(table, agg, windows)
    recent_rows = agg.daily.filter(pl.col(DAY) >= windows.recent_start).get_column("rows").sum()
    if skip is None and not recent_rows:
        skip = f"skipped: {table} has no rows in the recent window {windows.recent_label}"
    if skip:
        return _skip(name, frame, action, skip)
    expectations = []
    messages = {}
    for column in agg.enums:
        check = f"enum.{table}.{column}"
        description = (
            f"{table}.{column}: share of each value in {windows.recent_label} differs from its "
            f"share in {windows.history_label} by at most {bound}"
        )
        expectations.append(
            _bounded(f"shift_{column}", 0, bound, action, check, table, description, column=column)
        )
        rows = frame.filter(pl.col("column") == column).sort("shift", descending=True)
        shifted = rows.filter(pl.col("shift") > bound).height
        worst = "no values"
        if rows.height:
            top = rows.row(0, named=True)
            worst = (
                f"{top['value']!r} {top['history_share']:.1%} -> {top['recent_share']:.1%}, "
                f"shift {top['shift']:.1%}"
            )
        messages[check] = (
            f"{table}.{column}: {shifted} value(s) with share shifted by more than {bound:.1%} "
            f"(largest: {worst})"
        )
    suite = _suite(name, expectations, [f"share shift bound {bound} per value"])
    result = validate(suite, frame, action=action)
    return _with_messages(result, messages)
