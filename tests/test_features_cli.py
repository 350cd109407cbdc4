"""`pdflow features`: the point-in-time feature table of every application before the as-of day."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from data.asof import day_start_utc, local_date
from data.readers import scan_table
from features.base import FeatureSettings
from features.build import FAIRNESS, KEYS, feature_definitions
from features.store import MONTH, part_files, scan_feature_store
from flows.cli import app

# Each test runs `pdflow features` end to end (the gate, then the whole build) on the test root.
pytestmark = pytest.mark.slow
TZ = "Asia/Shanghai"
AS_OF = date(2025, 3, 1)
runner = CliRunner()


def build(
    small_raw: Path, tmp_path: Path, out: Path, *extra: str, as_of: date = AS_OF
) -> pl.DataFrame:
    return build_with_output(small_raw, tmp_path, out, *extra, as_of=as_of)[0]


def build_with_output(
    small_raw: Path, tmp_path: Path, out: Path, *extra: str, as_of: date = AS_OF
) -> tuple[pl.DataFrame, str]:
    args = ["--workspace", str(tmp_path / "ws"), "features", "--raw", str(small_raw), *extra]
    result = runner.invoke(app, [*args, "--as-of", as_of.isoformat(), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return scan_feature_store(out).collect().sort("application_id"), result.output


def test_one_row_per_application_before_the_as_of_day(small_raw: Path, tmp_path: Path) -> None:
    table, output = build_with_output(small_raw, tmp_path, tmp_path / "features")
    applications = scan_table(small_raw, "applications")
    before = applications.filter(pl.col("applied_at") < day_start_utc(AS_OF, TZ)).collect()
    later = applications.collect().height - before.height
    assert later > 0  # the as-of day really cuts, and the run says what it left out
    total = applications.collect().height
    assert (
        f"set aside: applications {later:,} of {total:,} rows (applied_at_before_as_of {later:,})"
        in output
    )
    assert table["application_id"].to_list() == sorted(before["application_id"].to_list())
    assert (
        table.join(before, on="application_id")
        .filter(pl.col("user_id") != pl.col("user_id_right"))
        .is_empty()
    )
    names = [d.name for d in feature_definitions(FeatureSettings(), TZ)]
    assert table.columns == [*KEYS, *FAIRNESS, *names, MONTH]
    # Each row sits in the partition of its local application month.
    month = local_date("applied_at", TZ).dt.strftime("%Y-%m")
    assert (table[MONTH].cast(pl.String) == table.select(month).to_series()).all()
    assert table[MONTH].n_unique() > 10


def test_a_rerun_replaces_the_table_with_the_same_rows(small_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    first = build(small_raw, tmp_path, out)
    stray = out / f"{MONTH}=1999-01"
    stray.mkdir()
    second = build(small_raw, tmp_path, out)
    assert first.equals(second)
    assert not stray.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".features")]


def test_a_foreign_output_folder_is_left_alone(small_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ["features", "--raw", str(small_raw), "--out", str(out)]
    result = runner.invoke(app, ["--workspace", str(tmp_path / "ws"), *args])
    assert result.exit_code == 2
    assert "not a feature table" in result.output
    assert (out / "notes.txt").read_text() == "keep me"


def test_incremental_runs_add_only_new_applications_and_equal_a_full_rebuild(
    small_raw: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    early = build(small_raw, tmp_path, store, "--incremental", as_of=date(2025, 1, 1))
    early_files = {p: p.read_bytes() for p in part_files(store)}
    late = build(small_raw, tmp_path, store, "--incremental")
    # Rows once stored never change: the early files are untouched, later ones are added.
    assert all(p.read_bytes() == content for p, content in early_files.items())
    assert late.height > early.height
    assert late.join(early, on="application_id", how="semi").equals(early)
    full = build(small_raw, tmp_path, tmp_path / "full")
    assert late.drop(MONTH).equals(full.drop(MONTH))
    # A run killed before its last month file: the re-run adds exactly the missing rows.
    added = sorted(set(part_files(store)) - set(early_files))
    added[-1].unlink()
    assert build(small_raw, tmp_path, store, "--incremental").drop(MONTH).equals(full.drop(MONTH))
    # Nothing new: nothing written.
    before = part_files(store)
    build(small_raw, tmp_path, store, "--incremental")
    assert part_files(store) == before


def test_incremental_run_rebuilds_a_store_built_with_other_settings(
    small_raw: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    build(small_raw, tmp_path, store, "--incremental", as_of=date(2025, 1, 1))
    config = tmp_path / "other.yml"
    config.write_text("features:\n  windows_days: [30, 90, 180]\n")
    args = ["--workspace", str(tmp_path / "ws"), "--config", str(config), "features"]
    args += ["--raw", str(small_raw), "--incremental", "--out", str(store)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Rebuilt" in result.output
    columns = scan_feature_store(store).collect_schema().names()
    assert "consumption_count_30d" in columns and "consumption_count_7d" not in columns
