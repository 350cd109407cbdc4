"""`pdflow score --as-of D` end to end (the daily-score flow): the day before's applications and
every loan on book, each scored as the registered model scores its point-in-time features; the
early-warning list; one partition written whole, the same on a re-run; nothing on a gate stop."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import mlflow
import polars as pl
import pytest
from training_runs import Store, run_pdflow

from data.asof import build_view, day_start_utc
from data.config import LabelSettings
from data.readers import scan_raw
from features import spines
from features.base import FeatureSettings
from features.build import feature_table
from models.config import EarlyWarningSettings

pytestmark = pytest.mark.slow

TZ = "Asia/Shanghai"
DAY = date(2025, 8, 1)


def loans_on_book(raw: Path, day: date) -> list[str]:
    """Approved before the day, with an instalment not paid before it: read from the raw
    tables directly."""
    cutoff = day_start_utc(day, TZ)
    apps = pl.read_parquet(raw / "applications")
    repayments = pl.read_parquet(raw / "repayments")
    unpaid = repayments.filter(pl.col("paid_at").is_null() | (pl.col("paid_at") >= cutoff))
    approved = apps.filter((pl.col("decision") == "approved") & (pl.col("applied_at") < cutoff))
    return sorted(approved.join(unpaid, on="loan_id", how="semi")["loan_id"].to_list())


@pytest.mark.xdist_group("two_trainings")
def test_daily_scoring_writes_the_days_scores_and_early_warnings(
    small_raw: Path, two_trainings: Store, tmp_path: Path
) -> None:
    workspace, tracking = two_trainings.workspace, two_trainings.tracking_uri
    out = tmp_path / "scores"
    args = ["score", "--raw", str(small_raw), "--as-of", DAY.isoformat(), "--out", str(out)]
    args += ["--model", "models:/pdflow-pd/1"]
    result = run_pdflow(args, workspace, tracking)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "on the early-warning list" in result.stdout
    part = out / f"dt={DAY}"
    assert sorted(p.name for p in out.iterdir()) == [part.name]  # nothing staged is left
    mlflow.set_tracking_uri(tracking)
    model = mlflow.pyfunc.load_model("models:/pdflow-pd/1").unwrap_python_model()

    # (a) The applications of the day before, each on its own point-in-time features: the
    # training run's (as of 2025-09-01) are the same features, built later.
    trained_on = pl.read_parquet(workspace / "runs" / "2025-09-01" / "features.parquet")
    local_day = pl.col("applied_at").dt.convert_time_zone(TZ).dt.date()
    yesterday = trained_on.filter(local_day == DAY - timedelta(days=1)).sort("application_id")
    applications = pl.read_parquet(part / "applications.parquet")
    assert applications["application_id"].to_list() == yesterday["application_id"].to_list()
    assert applications.height > 0
    assert applications["pd"].to_list() == model.decide(yesterday)["pd"].to_list()
    assert applications["model_version"].unique().to_list() == ["pdflow-pd/1"]

    # (b) Every loan on book, re-scored on the features as of the day, against its PD on its
    # own application's features.
    loans = pl.read_parquet(part / "loans.parquet").sort("application_id")
    assert sorted(loans["loan_id"].to_list()) == loans_on_book(small_raw, DAY)
    view = build_view(scan_raw(small_raw), DAY, TZ)
    _, today = feature_table(
        view.kept, FeatureSettings(), TZ, LabelSettings(), spine=spines.loans_on(DAY)
    )
    assert today["application_id"].to_list() == loans["application_id"].to_list()
    assert loans["pd"].to_list() == model.decide(today)["pd"].to_list()
    at_disbursal = trained_on.join(loans.select("application_id"), on="application_id")
    expected_then = model.predict_pd(at_disbursal.sort("application_id"))
    assert loans["pd_at_disbursal"].to_list() == expected_then.tolist()

    # The list: the loans past either threshold, each with its trigger, what moved, and the
    # days to its next instalment (from the raw schedule).
    rule = EarlyWarningSettings()
    moved = (pl.col("grade_steps") >= rule.grades_worse) | (pl.col("pd_ratio") >= rule.pd_factor)
    listed = pl.read_parquet(part / "early_warning.parquet").sort("application_id")
    assert listed["application_id"].to_list() == loans.filter(moved)["application_id"].to_list()
    assert listed.height > 0
    assert listed["trigger"].null_count() == 0
    assert (listed["change_reasons"].list.len() > 0).all()
    repayments = pl.read_parquet(small_raw / "repayments")
    cutoff = day_start_utc(DAY, TZ)
    next_due = (
        repayments.filter(pl.col("paid_at").is_null() | (pl.col("paid_at") >= cutoff))
        .group_by("loan_id")
        .agg(pl.col("due_date").min())
    )
    checked = listed.join(next_due, on="loan_id")
    assert checked.height == listed.height
    assert (
        checked.select((pl.col("due_date") - pl.lit(DAY)).dt.total_days()).to_series().to_list()
        == checked["days_to_next_instalment"].to_list()
    )
    summary = json.loads((part / "summary.json").read_text())
    assert summary["loans_on_book"] == loans.height
    assert summary["early_warnings"] == listed.height
    assert summary["applications_scored"] == applications.height

    # A re-run of the same day replaces the partition with the same rows: nothing doubles.
    result = run_pdflow(args, workspace, tracking)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in out.iterdir()) == [part.name]
    assert pl.read_parquet(part / "loans.parquet").sort("application_id").equals(loans)
    assert pl.read_parquet(part / "applications.parquet").equals(applications)

    # A stopped data gate scores nothing and writes no partition.
    broken = tmp_path / "broken"
    shutil.copytree(small_raw, broken)
    for path in sorted((broken / "transactions").rglob("*.parquet"))[:300]:
        pl.read_parquet(path).with_columns(txn_type=pl.lit("crypto")).write_parquet(path)
    stopped = tmp_path / "stopped"
    args = ["score", "--raw", str(broken), "--as-of", DAY.isoformat(), "--out", str(stopped)]
    result = run_pdflow([*args, "--model", "models:/pdflow-pd/1"], workspace, tracking)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "data gate stopped" in result.stderr and "Traceback" not in result.stderr
    assert not stopped.exists()


@pytest.mark.xdist_group("two_trainings")
def test_monitor_reports_against_the_reference_saved_with_the_model(
    small_raw: Path, two_trainings: Store, tmp_path: Path
) -> None:
    """`pdflow monitor`: the report (JSON) and its MLflow run in the monitoring experiment,
    tagged with the version; its stability on the reference's own days is near zero; a re-run
    logs no second run; exit code 1 only for retrain."""
    workspace, tracking = two_trainings.workspace, two_trainings.tracking_uri
    report_path = tmp_path / "monitor.json"
    args = ["monitor", "--raw", str(small_raw), "--as-of", "2025-09-01"]
    args += ["--model", "models:/pdflow-pd/1", "--json", str(report_path)]
    result = run_pdflow(args, workspace, tracking)
    report = json.loads(report_path.read_text())
    assert result.returncode == (1 if report["verdict"] == "retrain" else 0), result.stderr
    assert f"verdict: {report['verdict']}" in result.stdout
    assert report["model_version"] == "pdflow-pd/1" and report["trained_as_of"] == "2025-09-01"
    assert report["applications"] > 0
    # The last 30 days are inside the reference's 90: the population has barely moved.
    assert report["score_psi"] < 0.1
    assert report["matured_loans"] == 0 and report["auc"] is None  # none matured since
    model = mlflow.pyfunc.load_model("models:/pdflow-pd/1").unwrap_python_model()
    assert set(report["feature_csi"]) == set(model.spec.names)
    client = mlflow.MlflowClient(tracking)
    trained = client.get_run(client.get_model_version("pdflow-pd", "1").run_id)
    assert model.reference.auc == pytest.approx(trained.data.metrics["oot_auc"])

    experiment = client.get_experiment_by_name("pdflow-pd-monitor")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    tags = runs[0].data.tags
    assert tags["pdflow.model_version"] == "pdflow-pd/1" and tags["pdflow.as_of"] == "2025-09-01"
    assert runs[0].data.metrics["score_psi"] == pytest.approx(report["score_psi"])
    assert run_pdflow(args, workspace, tracking).returncode == result.returncode
    assert len(client.search_runs([experiment.experiment_id])) == 1


@pytest.mark.xdist_group("two_trainings")
def test_backfill_runs_each_date_in_order_and_skips_what_is_complete(
    small_raw: Path, two_trainings: Store, tmp_path: Path
) -> None:
    """Scores and monitor reports for two dates with the champion, in a workspace of their
    own; a second backfill of the same range finds every date complete and runs nothing."""
    workspace = tmp_path / "ws"
    args = ["backfill", "--raw", str(small_raw), "--from", "2025-08-30", "--to", "2025-08-31"]
    args += ["--flows", "daily-score,daily-monitor"]
    result = run_pdflow(args, workspace, two_trainings.tracking_uri)
    assert result.returncode == 0, result.stdout + result.stderr
    for day in ("2025-08-30", "2025-08-31"):
        assert (workspace / "scores" / f"dt={day}" / "summary.json").is_file()
        assert json.loads((workspace / "monitor" / f"{day}.json").read_text())["as_of"] == day
    assert result.stdout.count("│ ran ") == 4
    again = run_pdflow(args, workspace, two_trainings.tracking_uri)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("│ skipped ") == 4 and "│ ran " not in again.stdout
    bad = run_pdflow([*args[:-1], "daily-scores"], workspace, two_trainings.tracking_uri)
    assert bad.returncode == 2 and "unknown ['daily-scores']" in bad.stderr
