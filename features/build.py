"""The feature table: every family joined on the application spine, plus the catalogue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from data.config import LabelSettings
from data.contract import TABLES
from features import spines, store
from features.base import FeatureDef, FeatureSettings
from features.engine import Context, EventFamily, Family, check_unique, value_groups
from features.families import (
    app_behaviour,
    application,
    bureau,
    consumption,
    history,
    social,
    transactions,
)

FAMILIES: tuple[Family, ...] = (
    application.PROFILE,
    bureau.BUREAU,
    history.HISTORY,
    consumption.CONSUMPTION,
    transactions.TRANSACTIONS,
    social.SOCIAL,
    app_behaviour.APP_BEHAVIOUR,
)
check_unique(FAMILIES)
KEYS = ("application_id", "user_id", "applied_at")
# Small tables that the spine and several families read: read from the files once. The
# applications alone are spread over one file per day and partition, so each scan of them
# costs more than the rows do.
SHARED_TABLES = ("applications", "repayments")
FAIRNESS = tuple(application.FAIRNESS)
CATEGORICAL = application.CATEGORICAL


def application_spine(applications: pl.LazyFrame, timezone: str) -> pl.LazyFrame:
    """One row per application with its point-in-time cut-off (the start of its local day) and
    ``prev_loan_at``: when the applicant's latest loan with us before that cut-off was
    disbursed (null if none). See ``features.spines`` for the other kinds of rows."""
    return spines.applications({"applications": applications}, timezone)


def family_frames(
    tables: dict[str, pl.LazyFrame],
    spine: pl.LazyFrame,
    settings: FeatureSettings,
    timezone: str,
    labels: LabelSettings,
) -> tuple[list[FeatureDef], list[pl.LazyFrame]]:
    """Every family's definitions and its lazy frame (application_id plus its columns)."""
    defs: list[FeatureDef] = []
    frames: list[pl.LazyFrame] = []
    ctx = Context(settings, timezone, labels)
    for family in FAMILIES:
        family_defs, family_frame = family.build(tables, spine, ctx)
        defs.extend(family_defs)
        frames.append(family_frame)
    return defs, frames


def assemble(
    spine: pl.LazyFrame | pl.DataFrame,
    defs: list[FeatureDef],
    frames: list[pl.LazyFrame] | list[pl.DataFrame],
    settings: FeatureSettings,
) -> tuple[list[FeatureDef], pl.LazyFrame | pl.DataFrame]:
    """Join the families' frames on the spine, in its row order (`frames` is emptied as they
    are joined); add the features that read several families."""
    frame = spine.select(KEYS)
    while frames:  # each family's frame let go once joined: memory holds one table, not two
        frame = frame.join(frames.pop(0), on="application_id", how="left", maintain_order="left")
    across = application.income_relative(settings, {d.name for d in defs})
    frame = frame.with_columns(d.expr.alias(d.name) for d in across)
    defs = [*defs, *(d.definition(application.FAMILY) for d in across)]
    return defs, frame.select(*KEYS, *FAIRNESS, *(d.name for d in defs))


def build_features(
    tables: dict[str, pl.LazyFrame],
    spine: pl.LazyFrame,
    settings: FeatureSettings,
    timezone: str,
    labels: LabelSettings,
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """All families' definitions and one lazy frame: KEYS, the protected attributes (FAIRNESS,
    never model features) and one column per feature.

    `tables` must be a point-in-time view; each family additionally cuts every record at the
    application's own cut-off, so rows recorded on or after the application day never count.
    """
    defs, frames = family_frames(tables, spine, settings, timezone, labels)
    return assemble(spine, defs, frames, settings)


def feature_table(
    tables: dict[str, pl.LazyFrame],
    settings: FeatureSettings,
    timezone: str,
    labels: LabelSettings,
    known: pl.DataFrame | None = None,
    since: datetime | None = None,
    spine: spines.Spine = spines.applications,
) -> tuple[list[FeatureDef], pl.DataFrame]:
    """The feature table of every row of `spine` (default: every application) in a
    point-in-time view (less the `known` keys, if given; only rows whose cut-off is at or
    after `since`, if given), sorted by key.

    Used alike by the nightly flow and ``pdflow features``. The small tables several families
    read (SHARED_TABLES) are read into memory once. Each family is collected on its own by
    the streaming engine, its windowed states in slices of at most ``features.slice_rows``
    spine rows in cut-off order (``features.engine.EventFamily.collect``), so the peak is the
    largest family's on one slice, not the sum of all over the whole history. The streaming group-by
    adds rows in a different order on every run, so the families take sums, means and spreads
    over fixed-point integers (``features.base``): identical inputs give bit-identical tables.
    """
    spine_rows, tables = spine_and_inputs(tables, settings, timezone, known, since, spine)
    slices = spine_slices(spine_rows, settings.slice_rows)
    ctx = Context(settings, timezone, labels)
    built: dict[int, tuple[list[FeatureDef], pl.DataFrame]] = {}
    for i in heaviest_first(FAMILIES, ctx):
        built[i] = FAMILIES[i].collect(tables, spine_rows, ctx, slices)
    defs = [d for i in sorted(built) for d in built[i][0]]
    frames = [built.pop(i)[1] for i in sorted(built)]
    return assemble(spine_rows.sort("application_id"), defs, frames, settings)


def heaviest_first(families: Sequence[Family], ctx: Context) -> list[int]:
    """The order to build families in, so that the slices needing the most memory run while
    few results are held: event families first, those with the most group-bys per (row,
    value) first among them (``features.engine.value_groups``: the distinct and first-seen
    states, whose groups grow with each row's events); results go back in declared order."""

    def weight(i: int) -> tuple[bool, int]:
        family = families[i]
        if not isinstance(family, EventFamily):
            return (True, 0)
        return (False, -len(value_groups(family, ctx)))

    return sorted(range(len(families)), key=weight)


def spine_slices(spine: pl.DataFrame, most: int) -> list[pl.DataFrame]:
    """`spine` cut into as few consecutive slices of at most `most` rows as it takes, of
    about equal size (one if empty)."""
    if spine.is_empty():
        return [spine]
    count = -(-spine.height // most)
    return list(spine.iter_slices(-(-spine.height // count)))


def spine_and_inputs(
    tables: dict[str, pl.LazyFrame],
    settings: FeatureSettings,
    timezone: str,
    known: pl.DataFrame | None = None,
    since: datetime | None = None,
    spine_of: spines.Spine = spines.applications,
) -> tuple[pl.DataFrame, dict[str, pl.LazyFrame]]:
    """The spine of the rows to compute (less `known`, cut-offs from `since`), in cut-off order,
    and the tables as the families read them: SHARED_TABLES in memory, no rows at all without
    spine rows. The engine reads only the events of each slice's windows
    (``features.engine.joined_rows``)."""
    tables = {**tables, **{name: tables[name].collect().lazy() for name in SHARED_TABLES}}
    spine = spine_of(tables, timezone)
    if known is not None:
        spine = spine.join(known.lazy(), on="application_id", how="anti")
    if since is not None:
        spine = spine.filter(pl.col("cutoff") >= since)
    spine_rows = spine.collect()
    if spine_rows.is_empty():  # nothing to compute: read no events at all
        return spine_rows, {name: frame.clear() for name, frame in tables.items()}
    return spine_rows, tables


@dataclass(frozen=True)
class StoreUpdate:
    """What one incremental run did to the feature store."""

    defs: list[FeatureDef]
    added: int
    stored: int
    rebuilt: bool


def store_manifest(
    settings: FeatureSettings, timezone: str, labels: LabelSettings, source: str
) -> dict[str, object]:
    """Rows built under the same manifest are interchangeable; any change forces a rebuild."""
    defs = feature_definitions(settings, timezone)
    return store.manifest(
        [*KEYS, *FAIRNESS, *(d.name for d in defs)],
        {
            "features": settings.model_dump(mode="json"),
            "labels": labels.model_dump(mode="json"),
            "timezone": timezone,
            "source": source,
        },
    )


def update_feature_store(
    tables: dict[str, pl.LazyFrame],
    out: Path,
    settings: FeatureSettings,
    timezone: str,
    labels: LabelSettings,
    tag: str,
    source: str,
) -> StoreUpdate:
    """Compute features only for applications the store lacks and append them (by month).

    A store built under another manifest (feature definitions, settings, time zone or raw
    source) is rebuilt as a whole instead: its rows would not be comparable.
    """
    meta = store_manifest(settings, timezone, labels, source)
    try:
        known = store.stored_ids(out, meta)
    except store.StoreMismatch:
        defs, table = feature_table(tables, settings, timezone, labels)
        store.write_feature_store(table, out, timezone, meta)
        return StoreUpdate(defs, table.height, table.height, rebuilt=True)
    defs, new = feature_table(tables, settings, timezone, labels, known=known)
    store.append_feature_store(new, out, timezone, meta, tag)
    return StoreUpdate(defs, new.height, known.height + new.height, rebuilt=False)


def feature_definitions(settings: FeatureSettings, timezone: str) -> list[FeatureDef]:
    """The catalogue's rows, from the same code that builds the query (no data is read)."""
    empty = {name: pl.LazyFrame(schema=table.read_schema) for name, table in TABLES.items()}
    spine = application_spine(empty["applications"], timezone)
    defs, _ = build_features(empty, spine, settings, timezone, LabelSettings())
    return defs


def catalogue_markdown(defs: Iterable[FeatureDef]) -> str:
    """The feature catalogue as a Markdown page, grouped by family."""
    lines = [
        "# Feature catalogue",
        "",
        "Generated from the feature definitions in `features/` by `make catalogue`; do not edit.",
        "Every feature uses only records strictly before the start of the application's local day.",
        "Protected attributes (gender; age where `features.protected` lists it) are never model",
        "features: the feature table carries them in `fairness_*` columns for fairness reporting.",
        "Windows: `Nd` is the N days before that day; `since_prev_loan` the time since the",
        "applicant's previous loan with us was disbursed (within the longest window).",
        "",
    ]
    by_family: dict[str, list[FeatureDef]] = {}
    for feature in defs:
        by_family.setdefault(feature.family, []).append(feature)
    for family, items in by_family.items():
        lines += [f"## {family} ({len(items)})", "", "| feature | window | description |"]
        lines += ["| --- | --- | --- |"]
        lines += [f"| `{f.name}` | {f.window} | {f.description} |" for f in items]
        lines.append("")
    return "\n".join(lines)
