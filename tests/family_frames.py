"""Helpers of the per-family tests: hand-made frames written in local wall-clock time, and one
family built on them with its output checked."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from features.base import FeatureSettings
from features.build import application_spine
from features.engine import Context, Family

TZ = "Asia/Shanghai"
WINDOWS = tuple(FeatureSettings().windows_days)
APPLICATION_DEFAULTS = {
    "amount_requested": pl.lit(1000.0),
    "term_months": pl.lit(5, pl.Int8),
    "channel": pl.lit("organic"),
    "decision": pl.lit("rejected"),
}


def utc(column: str) -> pl.Expr:
    """A local wall-clock time written as text ("YYYY-MM-DD HH:MM"), as the contract's UTC
    timestamp."""
    local = pl.col(column).str.to_datetime("%Y-%m-%d %H:%M", time_unit="us", time_zone=TZ)
    return local.dt.convert_time_zone("UTC")


def applications(rows: Sequence[tuple], columns: Sequence[str]) -> pl.LazyFrame:
    """Applications from rows of `columns` (``applied_at`` as local text); the other columns a
    family reads get plain defaults (1,000 CNY over 5 months, organic, rejected)."""
    frame = pl.LazyFrame(rows, schema=list(columns), orient="row", infer_schema_length=None)
    defaults = {k: v for k, v in APPLICATION_DEFAULTS.items() if k not in columns}
    return frame.with_columns(applied_at=utc("applied_at"), **defaults)


def build_family(
    family: Family, tables: dict[str, pl.LazyFrame], settings: FeatureSettings | None = None
) -> pl.DataFrame:
    """One family's features over `tables` (which hold ``applications``), sorted by id; checks
    that the columns are exactly the family's definitions, each named once."""
    spine = application_spine(tables["applications"], TZ)
    defs, frame = family.build(tables, spine, Context(settings or FeatureSettings(), TZ))
    table = frame.collect().sort("application_id")
    assert table.columns == ["application_id", *(d.name for d in defs)]
    assert len({d.name for d in defs}) == len(defs)
    return table


def row(features: pl.DataFrame, application_id: str) -> dict:
    return features.filter(pl.col("application_id") == application_id).row(0, named=True)


def by_window(values: dict, stem: str) -> list:
    return [values[f"{stem}_{n}d"] for n in WINDOWS]
