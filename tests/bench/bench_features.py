"""The feature build against a bare scan, DuckDB SQL and pandas, side by side on one raw root.

    .venv/bin/python tests/bench/bench_features.py --raw DIR [--as-of YYYY-MM-DD]
        [--stages STAGE ...] [--pandas-sample FRACTION] [--repeat N]

The spine (one row per application: application_id, user_id, cutoff, prev_loan_at) is built
once with Polars and written to a temporary Parquet file that every engine reads; each engine
reads the consumption table's Parquet files itself, with the as-of cut. Each stage runs in its
own process (so peak RSS is its own), one after the other:

- ``floor-consumption``: the floor: a bare scan of the consumption columns the family reads
  (one reduction per column) straight from the same files with ``pl.scan_parquet``: no
  contract check of the footers, no cast, no as-of view;
- ``reader-consumption``: the same scan through the pipeline's reader and as-of view (every
  footer checked against the contract, columns cast to it, rows at or after the as-of date
  cut): the floor plus what reading contract data costs before any feature;
- ``join-consumption``: the point-in-time join alone, through the reader: each application
  joined to its user's purchases, cut at its cut-off and its longest window
  (``features.base.events_before_cutoff``, as the family does), one count per application
  and nothing else. What no point-in-time feature of this table can do without;
- ``polars-consumption``: ``features.families.consumption.CONSUMPTION``, collected by the streaming
  engine as the pipeline does (``polars-consumption-in-memory``: the in-memory engine);
- ``duckdb-consumption``: the family's features as DuckDB SQL (``consumption_sql.py``: a fixed
  subset, the 82 features at the default windows; features added to the Polars family later
  are not in it, so the Polars stage does at least the same work);
- ``pandas-consumption``: the same subset as vectorised pandas (``consumption_pandas.py``),
  against ``polars-consumption-sample``: the Polars family on the same raw root. With
  ``--pandas-sample FRACTION`` both run on a sample root written before any stage (untimed):
  the purchases of a random FRACTION of the applicants, as one Parquet file in the raw files'
  columns, and their spine; both engines read those same files from start to end;
- ``floor-all``: the floor for the whole build: a bare scan of every column it reads, as above;
- ``reader-all``: the same through the pipeline's reader and as-of view;
- ``join-all``: the point-in-time join alone for every event table the build joins
  (``JOINED``), on the spine the whole build uses, one count per application and table;
- ``polars-all``: the whole feature table (``features.build.feature_table``).

A stage's seconds run from the raw files to the result in memory: for the Polars and reader
stages, the pipeline's reader, its footer checks and as-of view included; not for the floors.
What only sets a stage up (writing the sample root, probing which columns the build reads) is
not timed. Prints one Markdown row per stage: applications out, seconds, the ratio to the
Polars stage of its group (measured seconds, also for a pandas sample, whose row says the
fraction: nothing is extrapolated) and the peak RSS. With ``--repeat N`` every stage runs N
times, round robin, and the fastest run counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

TZ = "Asia/Shanghai"
DUCKDB_THREADS = 2
DUCKDB_MEMORY_SHARE = 0.5
CONSUMPTION = (
    "floor-consumption",
    "reader-consumption",
    "join-consumption",
    "polars-consumption",
    "polars-consumption-in-memory",
    "duckdb-consumption",
    "polars-consumption-sample",
    "pandas-consumption",
)
SAMPLED = ("polars-consumption-sample", "pandas-consumption")
SPINE_FILE = "spine.parquet"
ALL = ("floor-all", "reader-all", "join-all", "polars-all")
# The event tables the families join to the applications on user_id and cut at the cut-off.
JOINED = ("consumption", "transactions", "bureau_inquiries", "social", "app_events")
STAGES = (*CONSUMPTION, *ALL)
Measured = tuple[int | None, str]  # applications out (none for a floor), a note for the row
Work = Callable[[], Measured]
DEFAULT_STAGES = tuple(s for s in STAGES if s != "polars-consumption-in-memory")
REFERENCE = {
    **dict.fromkeys(CONSUMPTION, "polars-consumption"),
    "polars-consumption-sample": "polars-consumption-sample",
    "pandas-consumption": "polars-consumption-sample",  # like for like: the same users
    **dict.fromkeys(ALL, "polars-all"),
}


def write_spine(raw: Path, as_of: date, out: Path) -> int:
    """The application spine of the as-of view, as Parquet; returns the number of applications."""
    from data.asof import build_view
    from data.readers import scan_raw
    from features.base import SPINE_COLUMNS
    from features.build import application_spine

    view = build_view(scan_raw(raw, ["applications"]), as_of, TZ)
    spine = application_spine(view["applications"], TZ).select(SPINE_COLUMNS).collect()
    spine.write_parquet(out)
    return spine.height


def bare_scan(frame: pl.LazyFrame, columns: list[str]) -> list[pl.Expr]:
    """One cheap reduction per column, so that every value of it is read and decoded."""
    schema = frame.collect_schema()
    exprs = [pl.len().alias("__rows")]
    for name in columns:
        dtype = schema[name]
        column = pl.col(name)
        if dtype == pl.String:
            column = column.str.len_bytes()
        elif dtype.is_temporal():
            column = column.to_physical()
        exprs.append(column.cast(pl.Float64).sum().alias(name))
    return exprs


def columns_read(
    tables: dict[str, pl.LazyFrame], build: Callable[[dict[str, pl.LazyFrame]], pl.LazyFrame]
) -> dict[str, list[str]]:
    """The columns of each table that `build` depends on: a column is read when the built
    frame's schema no longer resolves without it (probed on empty frames: no data is read)."""
    empty = {name: pl.LazyFrame(schema=frame.collect_schema()) for name, frame in tables.items()}

    def resolves(probe: dict[str, pl.LazyFrame]) -> bool:
        try:
            build(probe).collect_schema()
        except pl.exceptions.PolarsError:  # column not found, or a join/cast that needs it
            return False
        return True

    used: dict[str, list[str]] = {}
    for name, frame in empty.items():
        for column in frame.collect_schema().names():
            if not resolves({**empty, name: frame.drop(column)}):
                used.setdefault(name, []).append(column)
    return used


def whole_build(tables: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    """The whole feature build's lazy frame (as ``features.build.feature_table`` builds it)."""
    from data.config import LabelSettings
    from features.base import FeatureSettings
    from features.build import application_spine, build_features

    spine = application_spine(tables["applications"], TZ)
    return build_features(tables, spine, FeatureSettings(), TZ, LabelSettings())[1]


def consumption_frame(tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame) -> pl.LazyFrame:
    """The consumption family's lazy frame, as the pipeline builds it."""
    from features.base import FeatureSettings
    from features.engine import Context
    from features.families import consumption

    return consumption.CONSUMPTION.build(tables, spine, Context(FeatureSettings(), TZ))[1]


def consumption_build(spine: Path) -> Callable[[dict[str, pl.LazyFrame]], pl.LazyFrame]:
    """The consumption family's lazy frame over the spine file, for given tables."""
    return lambda tables: consumption_frame(tables, pl.scan_parquet(spine))


def bare_tables(raw: Path, names: list[str]) -> dict[str, pl.LazyFrame]:
    """The tables' files as Polars scans them, with nothing of the pipeline's reader: the same
    files it reads, in their own column types."""
    from data.contract import TABLES
    from data.readers import list_table_files

    files = {name: list_table_files(raw, TABLES[name]).files for name in names}
    return {name: pl.scan_parquet(paths, hive_partitioning=False) for name, paths in files.items()}


def floor(tables: dict[str, pl.LazyFrame], used: dict[str, list[str]]) -> Measured:
    """Scan every used column of every table in one query (no applications come out)."""
    frames = [tables[t].select(bare_scan(tables[t], columns)) for t, columns in used.items()]
    rows = sum(frame["__rows"].item() for frame in pl.collect_all(frames))
    return None, f"{sum(map(len, used.values()))} columns of {len(used)} tables, {rows:,} rows"


def consumption_view(raw: Path, as_of: date) -> dict[str, pl.LazyFrame]:
    from data.asof import build_view
    from data.readers import scan_raw

    return build_view(scan_raw(raw, ["consumption"]), as_of, TZ).kept


def whole_view(raw: Path, as_of: date) -> dict[str, pl.LazyFrame]:
    from data.asof import build_view
    from data.readers import scan_raw

    return build_view(scan_raw(raw), as_of, TZ).kept


def write_sample(raw: Path, spine: Path, fraction: float, out: Path, seed: int = 0) -> Path:
    """A raw root under `out` holding the purchases of a random `fraction` of the spine's users
    (fixed seed: the same every run) in the raw files' own columns, and their spine; returns it."""
    users = pl.read_parquet(spine, columns=["user_id"])["user_id"].unique().sort()
    chosen = users.sample(fraction=fraction, seed=seed).to_frame().lazy()
    (out / "consumption").mkdir(parents=True)
    purchases = pl.scan_parquet(raw / "consumption", hive_partitioning=False)
    purchases.join(chosen, on="user_id", how="semi").sink_parquet(out / "consumption" / "0.parquet")
    pl.scan_parquet(spine).join(chosen, on="user_id", how="semi").sink_parquet(out / SPINE_FILE)
    return out


def floor_consumption(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    used = columns_read(consumption_view(raw, as_of), consumption_build(spine))
    return lambda: floor(bare_tables(raw, list(used)), used)


def reader_consumption(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    used = columns_read(consumption_view(raw, as_of), consumption_build(spine))
    return lambda: floor(consumption_view(raw, as_of), used)


def point_in_time_count(events: pl.LazyFrame, spine: pl.LazyFrame) -> pl.LazyFrame:
    """Each application's rows of `events` in its longest window before its cut-off, counted:
    the join and cut every event family starts from, and nothing else."""
    from features.base import APPLICATION, FeatureSettings, events_before_cutoff

    horizon = max(FeatureSettings().windows_days)
    rows = events_before_cutoff(spine, events.select("user_id", "ts"), horizon)
    return rows.group_by(APPLICATION).agg(pl.len().alias("rows"))


def counted(frames: list[pl.LazyFrame]) -> int:
    """Rows counted over the `point_in_time_count` frames (streaming engine, as the families)."""
    done = pl.collect_all(frames, engine="streaming")
    return sum(int(frame["rows"].sum()) for frame in done)


def join_consumption(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    from features.base import with_application_key

    def work() -> Measured:
        purchases = consumption_view(raw, as_of)["consumption"]
        keyed = with_application_key(pl.read_parquet(spine).lazy())
        rows = counted([point_in_time_count(purchases, keyed)])
        return None, f"{rows:,} (application, purchase) pairs in the longest window"

    return work


def join_all(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    from features.base import FeatureSettings, with_application_key
    from features.build import spine_and_inputs

    def work() -> Measured:
        applications, tables = spine_and_inputs(whole_view(raw, as_of), FeatureSettings(), TZ)
        keyed = with_application_key(applications.lazy())
        rows = counted([point_in_time_count(tables[name], keyed) for name in JOINED])
        return None, f"{rows:,} (application, event) pairs of {len(JOINED)} tables"

    return work


def polars_consumption(engine: str) -> Callable[[Path, date, Path, float], Work]:
    """The Polars family, collected by `engine`."""

    def prepare(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
        note = f"engine={engine}" + (f", sample: {sample:g} of users" if sample < 1 else "")

        def work() -> Measured:
            lazy = consumption_frame(consumption_view(raw, as_of), pl.scan_parquet(spine))
            return len(lazy.sort("application_id").collect(engine=engine)), note

        return work

    return prepare


def duckdb_consumption(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    import consumption_sql

    from data.asof import day_start_utc
    from features.base import FeatureSettings

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * DUCKDB_MEMORY_SHARE
    limit = f"{memory / 1024**3:.1f}GiB"
    note = f"threads={DUCKDB_THREADS}, memory_limit={limit}"

    def work() -> Measured:
        con = consumption_sql.connect(DUCKDB_THREADS, limit)
        cutoff = day_start_utc(as_of, TZ)
        frame = consumption_sql.consumption_features(con, raw, spine, cutoff, FeatureSettings(), TZ)
        return len(frame), note

    return work


def pandas_consumption(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    import consumption_pandas

    from data.asof import day_start_utc
    from features.base import FeatureSettings

    note = "all users" if sample == 1 else f"sample: {sample:g} of users"

    def work() -> Measured:
        cutoff = day_start_utc(as_of, TZ)
        frame = consumption_pandas.run(raw, spine, cutoff, FeatureSettings(), TZ)
        return len(frame), note

    return work


def floor_all(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    used = columns_read(whole_view(raw, as_of), whole_build)
    return lambda: floor(bare_tables(raw, list(used)), used)


def reader_all(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    used = columns_read(whole_view(raw, as_of), whole_build)
    return lambda: floor(whole_view(raw, as_of), used)


def polars_all(raw: Path, as_of: date, spine: Path, sample: float) -> Work:
    from data.config import LabelSettings
    from features.base import FeatureSettings
    from features.build import feature_table

    def work() -> Measured:
        defs, table = feature_table(whole_view(raw, as_of), FeatureSettings(), TZ, LabelSettings())
        return len(table), f"{len(defs)} features, streaming engine"

    return work


PREPARE: dict[str, Callable[[Path, date, Path, float], Work]] = {
    "floor-consumption": floor_consumption,
    "reader-consumption": reader_consumption,
    "join-consumption": join_consumption,
    "polars-consumption": polars_consumption("streaming"),
    "polars-consumption-in-memory": polars_consumption("in-memory"),
    "polars-consumption-sample": polars_consumption("streaming"),
    "duckdb-consumption": duckdb_consumption,
    "pandas-consumption": pandas_consumption,
    "floor-all": floor_all,
    "reader-all": reader_all,
    "join-all": join_all,
    "polars-all": polars_all,
}


def run_stage(name: str, raw: Path, as_of: date, spine: Path, sample: float) -> dict[str, object]:
    """Prepare one stage (untimed: probes, samples), then time its work from the raw files to
    the result in memory; peak RSS is this process's."""
    work = PREPARE[name](raw, as_of, spine, sample)
    started = time.perf_counter()
    applications, note = work()
    seconds = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "seconds": seconds,
        "peak_rss_gib": peak_gib,
        "applications": applications,
        "note": note,
    }


def run_in_subprocess(
    name: str, raw: Path, as_of: date, spine: Path, sample: float
) -> dict[str, object]:
    command = [sys.executable, __file__, "--raw", str(raw), "--as-of", str(as_of)]
    command += ["--spine", str(spine), "--pandas-sample", str(sample), "--stage", name]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"failed": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict[str, object]]) -> dict[str, object]:
    """The fastest of a stage's runs, with the highest peak RSS of them all."""
    done = [run for run in runs if "failed" not in run]
    if not done:
        return runs[-1]
    best = min(done, key=lambda run: run["seconds"])
    return {**best, "peak_rss_gib": max(run["peak_rss_gib"] for run in done)}


def markdown(results: dict[str, dict[str, object]]) -> list[str]:
    lines = [
        "| stage | applications | seconds | x Polars | peak RSS GiB | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        if "failed" in r:
            lines.append(f"| {name} | | | | | failed: {r['failed']} |")
            continue
        reference = results.get(REFERENCE[name], {}).get("seconds")
        ratio = f"{r['seconds'] / reference:.2f}" if reference else ""
        apps = f"{r['applications']:,}" if r["applications"] is not None else ""
        lines.append(
            f"| {name} | {apps} | {r['seconds']:.2f} | {ratio} | {r['peak_rss_gib']:.2f} "
            f"| {r['note']} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(DEFAULT_STAGES))
    parser.add_argument("--pandas-sample", type=float, default=1.0, metavar="FRACTION")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Runs per stage (round robin); the fastest counts"
    )
    parser.add_argument("--spine", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 < args.pandas_sample <= 1:
        parser.error("--pandas-sample must be in (0, 1]")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.as_of is None:
        from data.asof import default_as_of
        from data.readers import scan_raw

        args.as_of = default_as_of(scan_raw(args.raw), TZ)
    if args.stage:
        stage = run_stage(args.stage, args.raw, args.as_of, args.spine, args.pandas_sample)
        print(json.dumps(stage))
        return
    with tempfile.TemporaryDirectory() as tmp:
        spine = Path(tmp) / SPINE_FILE
        started = time.perf_counter()
        n = write_spine(args.raw, args.as_of, spine)
        spine_seconds = time.perf_counter() - started
        sampled = args.raw, spine
        if args.pandas_sample < 1 and set(SAMPLED) & set(args.stages):
            root = write_sample(args.raw, spine, args.pandas_sample, Path(tmp) / "sample")
            sampled = root, root / SPINE_FILE
        stages = [s for s in STAGES if s in args.stages]
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in stages}
        for _ in range(args.repeat):
            for name in stages:
                raw, on, fraction = (*sampled, args.pandas_sample)
                if name not in SAMPLED:
                    raw, on, fraction = args.raw, spine, 1.0
                run = run_in_subprocess(name, raw, args.as_of, on, fraction)
                runs[name].append(run)
                print(f"{name}: {run}", file=sys.stderr)
    results = {name: best_of(stage_runs) for name, stage_runs in runs.items()}
    print(f"raw: {args.raw}, as of {args.as_of}, {n:,} applications (spine {spine_seconds:.1f} s)")
    print(f"seconds: the fastest of {args.repeat} run(s) per stage; peak RSS: the highest")
    print(*markdown(results), sep="\n")


if __name__ == "__main__":
    main()
