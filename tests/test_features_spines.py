"""Any spine: loans on book and active users on a day D get features cut at the start of D,
by the same engine and point-in-time rules as applications."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data.asof import build_view, day_start_utc
from data.config import LabelSettings
from data.readers import scan_raw
from features import spines
from features.base import FeatureSettings
from features.build import build_features
from features.families import application

pytestmark = pytest.mark.slow
TZ = "Asia/Shanghai"
SETTINGS = FeatureSettings()
DAY = date(2025, 3, 1)


@pytest.fixture(scope="module")
def tables(small_raw: Path) -> dict[str, pl.LazyFrame]:
    return {name: frame.collect().lazy() for name, frame in scan_raw(small_raw).items()}


def features_on(
    tables: dict[str, pl.LazyFrame], spine: spines.Spine, recorded_before: date
) -> pl.DataFrame:
    """Features of `spine`'s rows built on what was recorded before `recorded_before`."""
    view = build_view(tables, recorded_before, TZ)
    rows = spine(view.kept, TZ)
    _, frame = build_features(view.kept, rows, SETTINGS, TZ, LabelSettings())
    return frame.collect().sort("application_id")


@pytest.mark.parametrize(
    "spine", [spines.loans_on(DAY), spines.users_on(DAY, 30)], ids=["loans", "users"]
)
def test_records_at_or_after_the_cutoff_change_nothing(
    tables: dict[str, pl.LazyFrame], spine: spines.Spine
) -> None:
    on_the_day = features_on(tables, spine, DAY)
    later = features_on(tables, spine, DAY + timedelta(days=60))
    assert on_the_day.height > 100
    assert_frame_equal(later, on_the_day)


def test_loans_on_book_are_approved_before_the_day_and_not_yet_repaid(
    tables: dict[str, pl.LazyFrame],
) -> None:
    view = build_view(tables, DAY + timedelta(days=60), TZ).kept
    cutoff = day_start_utc(DAY, TZ)
    found = set(spines.loans_on(DAY)(view, TZ).collect()["application_id"])
    repayments = view["repayments"].collect()
    applications = view["applications"].collect()
    expected = set()
    for row in applications.filter(pl.col("decision") == "approved").iter_rows(named=True):
        if row["applied_at"] >= cutoff:
            continue
        schedule = repayments.filter(pl.col("loan_id") == row["loan_id"])
        if any(paid is None or paid >= cutoff for paid in schedule["paid_at"]):
            expected.add(row["application_id"])
    assert found == expected and len(found) > 100


def test_active_users_are_those_with_activity_in_the_window(
    tables: dict[str, pl.LazyFrame],
) -> None:
    view = build_view(tables, DAY, TZ).kept
    cutoff = day_start_utc(DAY, TZ)
    rows = spines.users_on(DAY, 30)(view, TZ).collect()
    assert rows["application_id"].to_list() == rows["user_id"].to_list()
    assert rows["applied_at"].null_count() == rows.height
    since = cutoff - timedelta(days=30)
    expected: set[str] = set()
    for name, ts in spines.ACTIVITY.items():
        frame = view[name].collect()
        recent = frame.filter((pl.col(ts) >= since) & (pl.col(ts) < cutoff))
        expected |= set(recent["user_id"])
    assert set(rows["user_id"]) == expected and rows.height == len(expected)
    fewer = spines.users_on(DAY, 7)(view, TZ).collect()
    assert set(fewer["user_id"]) < expected


def test_users_get_profile_features_and_no_application_ones(
    tables: dict[str, pl.LazyFrame],
) -> None:
    users = features_on(tables, spines.users_on(DAY, 30), DAY)
    loans = features_on(tables, spines.loans_on(DAY), DAY)
    left_out = {*application.APPLICATION_FEATURES, "application_amount_to_monthly_salary"}
    assert left_out <= set(loans.columns)
    assert not left_out & set(users.columns)
    assert set(users.columns) == set(loans.columns) - left_out
    assert users["application_tenure_days"].null_count() == 0
    assert users["fairness_age_years"].null_count() == 0


def test_pdflow_features_on_a_day(small_raw: Path, tmp_path: Path) -> None:
    """`--loans-on D` and `--users-on D` write the same features as the engine on that spine,
    keyed by the spine's key with the common cut-off; the flags exclude --as-of."""
    from typer.testing import CliRunner

    from features.store import scan_feature_store
    from flows.cli import app

    runner = CliRunner()
    base = ["--workspace", str(tmp_path / "ws"), "features", "--raw", str(small_raw)]
    loans_out = tmp_path / "loans"
    result = runner.invoke(app, [*base, "--loans-on", DAY.isoformat(), "--out", str(loans_out)])
    assert result.exit_code == 0, result.output
    assert "loans on 2025-03-01" in result.output
    loans = scan_feature_store(loans_out).collect()
    assert loans.columns[:4] == ["application_id", "user_id", "applied_at", "cutoff"]
    assert loans["cutoff"].unique().to_list() == [day_start_utc(DAY, TZ)]
    tables = {name: frame.collect().lazy() for name, frame in scan_raw(small_raw).items()}
    expected = features_on(tables, spines.loans_on(DAY), DAY)
    assert sorted(loans["application_id"]) == sorted(expected["application_id"])

    users_out = tmp_path / "users"
    result = runner.invoke(app, [*base, "--users-on", DAY.isoformat(), "--out", str(users_out)])
    assert result.exit_code == 0, result.output
    users = scan_feature_store(users_out).collect()
    assert users.columns[:2] == ["user_id", "cutoff"] and "application_id" not in users.columns
    assert users["user_id"].is_unique().all()

    both = [*base, "--users-on", "2025-03-01", "--as-of", "2025-03-01", "--out", str(users_out)]
    refused = runner.invoke(app, both)
    assert refused.exit_code == 2 and "give one of" in refused.output
