"""The command line: help everywhere, generate end to end, clear errors without tracebacks."""

from __future__ import annotations

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
