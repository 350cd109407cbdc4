"""The command line: help everywhere, generate end to end, clear errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [["--help"], ["generate", "--help"], ["train", "--help"]])
def test_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.output


def test_generate_writes_the_contract_tables(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    args = ["generate", "--out", str(out), "--users", "200", "--months", "3", "--seed", "5"]
    result = runner.invoke(app, [*args, "--start", "2024-02-01"])
    assert result.exit_code == 0, result.output
    users = pl.read_parquet(out / "users" / "*.parquet")
    assert users.height == 200
    days = sorted(p.name for p in (out / "consumption").iterdir())
    assert days[0] >= "dt=2024-02-01" and days[-1] <= "dt=2024-04-30"


def test_generate_appends_days_to_a_root_and_keeps_its_world(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    args = ["generate", "--out", str(out), "--users", "200", "--months", "2"]
    assert runner.invoke(app, [*args, "--start", "2024-02-01"]).exit_code == 0
    result = runner.invoke(app, ["generate", "--out", str(out), "--append-days", "3"])
    assert result.exit_code == 0, result.output
    assert "local days 2024-02-01 to 2024-04-03" in " ".join(result.output.split())
    assert (out / "consumption" / "dt=2024-04-03").is_dir()
    refused = runner.invoke(app, [*args, "--append-days", "1"])
    assert refused.exit_code == 2 and "--users, --months cannot change" in refused.output
    assert not (out / "consumption" / "dt=2024-04-04").exists()


def test_generate_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["generate", "--out", str(tmp_path), "--users", "10"])
    assert result.exit_code == 2
    assert "not a previous generator output" in result.output
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_invalid_date_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--raw", str(tmp_path), "--as-of", "2024-13-01"])
    assert result.exit_code == 2 and "--as-of" in result.output


def _copy_with_bad_rows(small_raw: Path, tmp_path: Path, rows: int) -> Path:
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small_raw, raw)
    target = sorted((raw / "consumption").rglob("*.parquet"))[0]
    frame = pl.read_parquet(target)
    bad = pl.when(pl.int_range(pl.len()) < rows).then(-1.0).otherwise(pl.col("amount"))
    frame.with_columns(amount=bad).write_parquet(target)
    return raw


@pytest.mark.slow  # `pdflow validate` end to end on the test root
def test_validate_clean_data_exits_zero_with_the_json_report(
    small_raw: Path, tmp_path: Path
) -> None:
    report = tmp_path / "gate.json"
    args = ["--workspace", str(tmp_path / "ws"), "validate", "--raw", str(small_raw)]
    result = runner.invoke(app, [*args, "--json", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["ok"] is True and data["as_of"] == "2025-09-01"
    consumption = data["tables"]["consumption"]
    assert consumption["rows_read"] == consumption["rows_kept"] > 0
    assert consumption["rows_set_aside"] == 0 and consumption["reasons"] == {}
    assert "data can be used" in result.output


@pytest.mark.slow  # `pdflow validate` end to end on the test root
def test_validate_sets_rows_aside_and_still_passes(small_raw: Path, tmp_path: Path) -> None:
    raw = _copy_with_bad_rows(small_raw, tmp_path, rows=3)
    report = tmp_path / "gate.json"
    args = ["--workspace", str(tmp_path / "ws"), "validate", "--raw", str(raw)]
    result = runner.invoke(app, [*args, "--json", str(report)])
    assert result.exit_code == 0, result.output
    table = json.loads(report.read_text())["tables"]["consumption"]
    assert table["reasons"] == {"amount_positive": 3} and table["rows_set_aside"] == 3
    assert table["rows_read"] == table["rows_kept"] + 3


@pytest.mark.slow  # `pdflow validate` end to end on the test root
def test_validate_exits_non_zero_when_the_gate_stops(small_raw: Path, tmp_path: Path) -> None:
    raw = _copy_with_bad_rows(small_raw, tmp_path, rows=10**9)
    for path in sorted((raw / "consumption").rglob("*.parquet"))[1:200]:
        pl.read_parquet(path).with_columns(amount=pl.lit(-1.0)).write_parquet(path)
    report = tmp_path / "gate.json"
    args = ["--workspace", str(tmp_path / "ws"), "validate", "--raw", str(raw)]
    result = runner.invoke(app, [*args, "--json", str(report)])
    assert result.exit_code == 1
    assert "stopped" in result.output and "amount_positive" in result.output
    assert json.loads(report.read_text())["ok"] is False
