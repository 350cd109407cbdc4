"""Feature definitions: each feature is a name, a family, a window, a description and a Polars
aggregation, so the query and the catalogue come from the same place and cannot drift apart.

Point in time: every family sees only records strictly before the start of the application's
local day (the ``cutoff`` column of the spine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

SPINE_KEYS = ("application_id", "user_id", "cutoff")
SHARE = (0.0, 1.0)
UNBOUNDED = (None, None)


class FeatureSettings(BaseModel):
    """Windows (days before the cut-off) of the windowed aggregates."""

    model_config = ConfigDict(extra="forbid")

    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 90, 180], min_length=1)
    night_end_hour: int = Field(6, ge=1, le=12, description="Night-time is 00:00 to this hour")


@dataclass(frozen=True)
class FeatureDef:
    """One feature as the catalogue lists it."""

    name: str
    family: str
    window: str
    description: str
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class Aggregate:
    """A feature computed by one aggregation over a family's event rows.

    ``agg`` receives a boolean expression that marks the rows inside the window and returns
    the aggregate. ``fill`` is the value for an application with no rows at all (a count is 0,
    a share or a mean is unknown and stays null). ``bounds`` is the range any value must lie in
    (the feature table's expectation suite checks it).
    """

    stem: str
    description: str
    agg: Callable[[pl.Expr], pl.Expr]
    fill: float | None = 0.0
    bounds: tuple[float | None, float | None] = (0.0, None)


def count(mask: pl.Expr, where: pl.Expr | None = None) -> pl.Expr:
    rows = mask if where is None else mask & where
    return rows.sum()


def total(mask: pl.Expr, column: str, where: pl.Expr | None = None) -> pl.Expr:
    rows = mask if where is None else mask & where
    return pl.col(column).filter(rows).sum()


def share(mask: pl.Expr, where: pl.Expr) -> pl.Expr:
    """Share of the window's rows that satisfy `where`; null for an empty window."""
    n = mask.sum()
    return pl.when(n > 0).then((mask & where).sum() / n)


def window_label(days: int) -> str:
    return f"{days}d"


def windowed(
    family: str, specs: Sequence[Aggregate], windows: Sequence[int], time_column: str = "ts"
) -> tuple[list[FeatureDef], list[pl.Expr], dict[str, float]]:
    """Expand aggregates over windows: definitions, aggregation expressions and fill values."""
    defs: list[FeatureDef] = []
    exprs: list[pl.Expr] = []
    fills: dict[str, float] = {}
    for spec in specs:
        for days in windows:
            name = f"{spec.stem}_{window_label(days)}"
            in_window = pl.col(time_column) >= pl.col("cutoff") - pl.duration(days=days)
            low, high = spec.bounds
            defs.append(FeatureDef(name, family, window_label(days), spec.description, low, high))
            exprs.append(spec.agg(in_window).alias(name))
            if spec.fill is not None:
                fills[name] = spec.fill
    return defs, exprs, fills


def events_before_cutoff(
    spine: pl.LazyFrame, events: pl.LazyFrame, horizon_days: int | None, time_column: str = "ts"
) -> pl.LazyFrame:
    """Each application joined to its user's events in [cutoff - horizon, cutoff)."""
    joined = spine.select(SPINE_KEYS).join(events, on="user_id", how="inner")
    before = pl.col(time_column) < pl.col("cutoff")
    if horizon_days is not None:
        before &= pl.col(time_column) >= pl.col("cutoff") - pl.duration(days=horizon_days)
    return joined.filter(before)


def per_application(
    spine: pl.LazyFrame,
    rows: pl.LazyFrame,
    exprs: Sequence[pl.Expr],
    fills: dict[str, float],
) -> pl.LazyFrame:
    """Aggregate joined rows per application; every spine application gets a row."""
    aggregated = rows.group_by("application_id").agg(exprs)
    return (
        spine.select("application_id")
        .join(aggregated, on="application_id", how="left")
        .with_columns(pl.col(name).fill_null(value) for name, value in fills.items())
    )


def local_hour(column: str, timezone: str) -> pl.Expr:
    return pl.col(column).dt.convert_time_zone(timezone).dt.hour()


def days_between(later: pl.Expr, earlier: pl.Expr) -> pl.Expr:
    """Fractional days from `earlier` to `later`."""
    return (later - earlier).dt.total_seconds(fractional=True) / 86_400.0
