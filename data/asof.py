"""Point-in-time views of raw data: what a nightly run on the morning of local day D could see.

The contract's as-of semantics: a record is visible at D when it was recorded strictly before
the start of local day D. Later event rows are set aside (reason ``after_as_of``) and counted,
so that rows read = rows kept + rows set aside; a repayment paid on or after D is kept but reads
as unpaid; a loan applied on or after D is unknown, and so is its repayment schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from data.contract import TABLES, within_record_range
from data.readers import ContractError
from data.rules import time_column

AFTER_AS_OF = "after_as_of"
UNKNOWN_LOAN = "loan_unknown_at_as_of"


def day_start_utc(day: date, timezone: str) -> datetime:
    """The instant local day `day` begins, as an aware UTC datetime."""
    local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
    return local.astimezone(ZoneInfo("UTC"))


def local_date(column: str | pl.Expr, timezone: str) -> pl.Expr:
    """Local calendar date of a UTC timestamp column."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.convert_time_zone(timezone).dt.date()


def wall_clock(instants: pl.Expr, timezone: str) -> pl.Expr:
    """Naive local wall-clock time of UTC timestamps (one time-zone lookup per row)."""
    return instants.dt.convert_time_zone(timezone).dt.replace_time_zone(None)


# A time zone's offset changes at most once in any hour: over every zone of the tz database
# (as Python's zoneinfo read it here) the closest two changes of one zone are four days apart.
STEP_PROBE = timedelta(hours=1)


def utc_offset_steps(
    timezone: str, start: datetime, end: datetime
) -> list[tuple[datetime, timedelta]]:
    """The zone's offset from UTC over the instants [start, end] as a step function: (instant
    it takes effect, offset) pairs, the first at `start`, each later one exact to the second.

    Read from Polars' own time-zone database, so :func:`local_clock` agrees with
    :func:`wall_clock` to the microsecond. Probed every hour, then second by second within
    an hour whose offset changed.
    """

    def probe(first: datetime, last: datetime, every: timedelta) -> pl.DataFrame:
        instants = pl.datetime_range(first, last, every, time_unit="us", eager=True)
        utc = instants.dt.convert_time_zone("UTC")
        return pl.DataFrame({"at": utc}).with_columns(
            offset=wall_clock(pl.col("at"), timezone) - pl.col("at").dt.replace_time_zone(None)
        )

    def changes(probed: pl.DataFrame) -> pl.DataFrame:
        return probed.filter(pl.col("offset") != pl.col("offset").shift())

    hours = probe(start, end + STEP_PROBE, STEP_PROBE)
    steps = [(start, hours["offset"][0])]
    for hour in changes(hours)["at"]:
        at, offset = changes(probe(hour - STEP_PROBE, hour, timedelta(seconds=1))).row(0)
        if start < at <= end:
            steps.append((at, offset))
    return steps


def local_clock(
    column: str, timezone: str, span: tuple[datetime, datetime] | None = None
) -> pl.Expr:
    """Naive local wall-clock time of a UTC timestamp column, as :func:`wall_clock` gives it.

    With a `span` (first and last instant, aware), the column's values must lie in it: the
    offset is then a step function of the instant (:func:`utc_offset_steps`; one step, or a
    few for daylight-saving changes): plain arithmetic per row, several times cheaper than a
    time-zone lookup per row. Without one, every row is looked up.
    """
    instants = pl.col(column)
    if span is None:
        return wall_clock(instants, timezone)
    steps = utc_offset_steps(timezone, *span)
    offset = pl.lit(steps[0][1])
    for at, step in steps[1:]:
        offset = pl.when(instants >= at).then(pl.lit(step)).otherwise(offset)
    return instants.dt.replace_time_zone(None) + offset


def day_start(day: pl.Expr, timezone: str) -> pl.Expr:
    """The UTC instant each local calendar day of a Date expression begins: the same instant as
    :func:`day_start_utc`, also where clocks change at midnight. A repeated midnight starts
    the day at its first occurrence; where a jump forward skips midnight (Chile, for one), the
    day starts at the jump, an hour after 23:00 of the day before."""
    midnight = day.cast(pl.Datetime("us"))

    def instant(naive: pl.Expr) -> pl.Expr:
        return naive.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")

    jump = instant(midnight - pl.duration(hours=1)) + pl.duration(hours=1)
    return pl.coalesce(instant(midnight), jump).dt.convert_time_zone("UTC")


def local_day_start(column: str | pl.Expr, timezone: str) -> pl.Expr:
    """Start of the local day of a UTC timestamp, as a UTC timestamp: a point-in-time cut-off."""
    return day_start(local_date(column, timezone), timezone)


def visibility(name: str, cutoff: datetime, as_of: date) -> pl.Expr | None:
    """Boolean expression: is a row of table `name` recorded before the cut-off?"""
    column = time_column(TABLES[name])
    if column is None:
        return None
    limit = as_of if TABLES[name].column(column).dtype == pl.Date else cutoff
    return pl.col(column) < limit


def mask_future_payments(repayments: pl.LazyFrame, cutoff: datetime) -> pl.LazyFrame:
    """A payment made at or after the cut-off has not happened yet: it reads as unpaid."""
    paid_before = pl.col("paid_at") < cutoff
    return repayments.with_columns(
        paid_at=pl.when(paid_before).then(pl.col("paid_at")),
        amount_paid=pl.when(paid_before).then(pl.col("amount_paid")).otherwise(0.0),
    )


@dataclass
class TableCount:
    """Rows read from one table at an as-of date, and where they went."""

    rows_read: int
    rows_kept: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rows_set_aside(self) -> int:
        return sum(self.reasons.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_set_aside": self.rows_set_aside,
            "reasons": dict(self.reasons),
        }


@dataclass
class AsOfView:
    """Lazy frames of what was visible at `as_of`, plus the lazy frames of what was set aside."""

    as_of: date
    timezone: str
    kept: dict[str, pl.LazyFrame]
    set_aside: dict[str, pl.LazyFrame]

    @property
    def cutoff(self) -> datetime:
        return day_start_utc(self.as_of, self.timezone)

    def __getitem__(self, name: str) -> pl.LazyFrame:
        return self.kept[name]

    def counts(self) -> dict[str, TableCount]:
        """Count rows read, kept and set aside per table, and check that nothing was lost."""
        result: dict[str, TableCount] = {}
        for name, kept in self.kept.items():
            aside = self.set_aside[name]
            n_kept = kept.select(pl.len()).collect().item()
            reasons = dict(aside.group_by("reason").len().sort("reason").collect().iter_rows())
            n_read = n_kept + sum(reasons.values())
            result[name] = TableCount(rows_read=n_read, rows_kept=n_kept, reasons=reasons)
        return result


def build_view(tables: dict[str, pl.LazyFrame], as_of: date, timezone: str) -> AsOfView:
    """Split each table into the rows visible at `as_of` and the rows set aside, with reasons."""
    cutoff = day_start_utc(as_of, timezone)
    kept: dict[str, pl.LazyFrame] = {}
    aside: dict[str, pl.LazyFrame] = {}
    for name, frame in tables.items():
        if name == "repayments":
            continue
        visible = visibility(name, cutoff, as_of)
        if visible is None:
            kept[name], aside[name] = frame, frame.head(0).with_columns(reason=pl.lit(""))
            continue
        kept[name] = frame.filter(visible)
        aside[name] = frame.filter(~visible).with_columns(reason=pl.lit(AFTER_AS_OF))
    if "repayments" in tables:
        kept["repayments"], aside["repayments"] = _repayments_as_of(
            tables["repayments"], kept.get("applications"), cutoff
        )
    return AsOfView(as_of=as_of, timezone=timezone, kept=kept, set_aside=aside)


def _repayments_as_of(
    repayments: pl.LazyFrame, applications: pl.LazyFrame | None, cutoff: datetime
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Schedules of loans known at the cut-off, with later payments read as not yet made."""
    masked = mask_future_payments(repayments, cutoff)
    if applications is None:
        return masked, repayments.head(0).with_columns(reason=pl.lit(""))
    known = applications.select("loan_id").drop_nulls().unique()
    kept = masked.join(known, on="loan_id", how="semi")
    aside = repayments.join(known, on="loan_id", how="anti").with_columns(
        reason=pl.lit(UNKNOWN_LOAN)
    )
    return kept, aside


def latest_record_dates(tables: dict[str, pl.LazyFrame], timezone: str) -> dict[str, date]:
    """Local date of each table's latest record (tables without rows or time left out).

    Records outside pdflow's bounds on time (``data.contract.within_record_range``), which
    the gate sets aside, are left out too."""
    latest: dict[str, date] = {}
    for name, frame in tables.items():
        table = TABLES[name]
        column = "paid_at" if name == "repayments" else time_column(table)
        if column is None:
            continue
        dtype = table.column(column).dtype
        last = pl.col(column).filter(within_record_range(pl.col(column), dtype)).max()
        if dtype != pl.Date:
            last = local_date(last, timezone)
        value = frame.select(last).collect().item()
        if value is not None:
            latest[name] = value
    return latest


def latest_record_date(tables: dict[str, pl.LazyFrame], timezone: str) -> date | None:
    """Local date of the latest record of any table, or None when every table is empty."""
    return max(latest_record_dates(tables, timezone).values(), default=None)


def default_as_of(tables: dict[str, pl.LazyFrame], timezone: str) -> date:
    """The contract's default as-of date: the day after the local day of the latest record."""
    latest = latest_record_date(tables, timezone)
    if latest is None:
        raise ContractError("every table is empty: there is no as-of date to infer")
    return latest + timedelta(days=1)
