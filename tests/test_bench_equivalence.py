"""The benchmark's DuckDB SQL and pandas versions of the consumption family compute the same
features as the Polars family, so that bench_features compares engines on equal work."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from bench import bench_features, consumption_pandas, consumption_sql

from data.asof import day_start_utc, default_as_of
from data.readers import scan_raw
from features.base import APPLICATION, FeatureSettings, with_application_key
from features.engine import Context
from features.families import consumption

# One worker runs the module: its module-scoped worlds are built once, not once per worker.
pytestmark = pytest.mark.xdist_group("bench_equivalence")

TZ = bench_features.TZ
SETTINGS = FeatureSettings()
REL_TOL = 1e-9
ABS_TOL = 1e-12  # entropies and spreads of zero may come out as tiny round-off elsewhere


@pytest.fixture(scope="module")
def as_of(small_raw: Path) -> date:
    return default_as_of(scan_raw(small_raw), TZ)


@pytest.fixture(scope="module")
def spine(small_raw: Path, as_of: date, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "spine.parquet"
    bench_features.write_spine(small_raw, as_of, path)
    return path


@pytest.fixture(scope="module")
def polars_features(small_raw: Path, as_of: date, spine: Path) -> pl.DataFrame:
    tables = bench_features.consumption_view(small_raw, as_of)
    _, frame = consumption.CONSUMPTION.build(tables, pl.scan_parquet(spine), Context(SETTINGS, TZ))
    features = frame.sort("application_id").collect(engine="in-memory")
    assert features.height > 1_000
    return features


# The benchmark's other engines implement a fixed subset of the family (all 82 of its
# features at the default windows when they were written): the features they compute are
# compared, and a feature added to the Polars family needs no edit there.
MIN_COMPARED = 82


def assert_same_features(expected: pl.DataFrame, actual: pl.DataFrame) -> None:
    """Every feature `actual` computes is one of `expected`'s, for the same applications,
    with nulls in the same places and values within tolerance; at least MIN_COMPARED of them."""
    compared = [name for name in actual.columns if name != "application_id"]
    unknown = sorted(set(compared) - set(expected.columns))
    assert not unknown, f"not features of the Polars family: {unknown}"
    assert len(compared) >= MIN_COMPARED, f"only {len(compared)} features compared"
    actual = actual.sort("application_id")
    assert actual["application_id"].to_list() == expected["application_id"].to_list()
    for name in compared:
        want = expected[name].cast(pl.Float64)
        got = actual[name].cast(pl.Float64).fill_nan(None)
        assert want.null_count() < len(want), f"{name} is all null: nothing compared"
        assert (want.is_null() == got.is_null()).all(), f"{name}: nulls differ"
        both = pl.DataFrame({"want": want, "got": got}).drop_nulls()
        off = both.filter(
            (pl.col("want") - pl.col("got")).abs() > REL_TOL * pl.col("want").abs() + ABS_TOL
        )
        assert off.is_empty(), f"{name}: {off.height} values differ, e.g. {off.row(0)}"


def test_duckdb_sql_matches_polars(
    small_raw: Path, as_of: date, spine: Path, polars_features: pl.DataFrame
) -> None:
    con = consumption_sql.connect(threads=2)
    cutoff = day_start_utc(as_of, TZ)
    actual = consumption_sql.consumption_features(con, small_raw, spine, cutoff, SETTINGS, TZ)
    assert_same_features(polars_features, actual)


def test_pandas_matches_polars(
    small_raw: Path, as_of: date, spine: Path, polars_features: pl.DataFrame
) -> None:
    cutoff = day_start_utc(as_of, TZ)
    actual = consumption_pandas.run(small_raw, spine, cutoff, SETTINGS, TZ)
    assert_same_features(polars_features, pl.from_pandas(actual))


def test_sample_root_holds_the_same_features_of_fewer_applications(
    small_raw: Path, as_of: date, spine: Path, polars_features: pl.DataFrame, tmp_path: Path
) -> None:
    root = bench_features.write_sample(small_raw, spine, 0.1, tmp_path / "sample")
    sample_spine = root / bench_features.SPINE_FILE
    expected = polars_features.join(
        pl.read_parquet(sample_spine).select("application_id"), on="application_id", how="semi"
    )
    assert 0 < expected.height < polars_features.height // 5
    cutoff = day_start_utc(as_of, TZ)
    from_pandas = consumption_pandas.run(root, sample_spine, cutoff, SETTINGS, TZ)
    assert_same_features(expected, pl.from_pandas(from_pandas))
    tables = bench_features.consumption_view(root, as_of)
    _, frame = consumption.CONSUMPTION.build(
        tables, pl.scan_parquet(sample_spine), Context(SETTINGS, TZ)
    )
    assert_same_features(expected, frame.collect(engine="streaming"))


def test_floor_scans_what_the_reader_reads(small_raw: Path, as_of: date, spine: Path) -> None:
    """The bare floor reads the same columns of the same rows as the pipeline's reader (no row
    of this root is at or after its as-of date), only without the reader's checks."""
    for bare, through_reader in [
        (bench_features.floor_all, bench_features.reader_all),
        (bench_features.floor_consumption, bench_features.reader_consumption),
    ]:
        _, floor_note = bare(small_raw, as_of, spine, 1.0)()
        _, reader_note = through_reader(small_raw, as_of, spine, 1.0)()
        assert floor_note == reader_note
        assert not floor_note.startswith("0 columns")


def test_join_stage_cuts_rows_as_the_family_does(
    small_raw: Path, as_of: date, spine: Path, polars_features: pl.DataFrame
) -> None:
    """The join stages count, per application, exactly the rows the family counts over its
    longest window: the lower bound does the build's point-in-time cut, no more, no less."""
    keyed = with_application_key(pl.read_parquet(spine).lazy())
    purchases = bench_features.consumption_view(small_raw, as_of)["consumption"]
    counts = bench_features.point_in_time_count(purchases, keyed).collect(engine="streaming")
    counted = keyed.join(counts.lazy(), on=APPLICATION).select("application_id", "rows").collect()
    horizon = max(SETTINGS.windows_days)
    expected = polars_features.filter(pl.col(f"consumption_count_{horizon}d") > 0).select(
        "application_id", rows=pl.col(f"consumption_count_{horizon}d").cast(pl.UInt32)
    )
    assert expected.height > 1_000
    assert counted.sort("application_id").equals(expected.sort("application_id"))
    _, note = bench_features.join_all(small_raw, as_of, spine, 1.0)()
    assert note.endswith(f"pairs of {len(bench_features.JOINED)} tables")
    assert int(note.split()[0].replace(",", "")) > counts["rows"].sum()
