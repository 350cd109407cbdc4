"""`pdflow train` end to end: Prefect flow, MLflow run and registered version, clear failures."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow.tracking import MlflowClient
from training_runs import Store, run_pdflow

from flows.settings import MlflowSettings
from flows.tracking import find_champion

pytestmark = pytest.mark.slow


@pytest.mark.xdist_group("two_trainings")
def test_train_registers_a_model_version(
    small_raw: Path, two_trainings: Store, tmp_path: Path
) -> None:
    """The first of two trainings on one store (the second is the registry tests')."""
    stdout = two_trainings.outputs[0]
    assert "Model version" in stdout and "out-of-time AUC" in stdout
    assert "Candidates" in stdout and "Chosen: " in stdout
    tracking, workspace = two_trainings.tracking_uri, two_trainings.workspace

    mlflow.set_tracking_uri(tracking)
    client = MlflowClient()
    experiment = client.get_experiment_by_name("pdflow-pd")
    parents = "tags.pdflow.flow = 'nightly-retrain'"
    runs = client.search_runs([experiment.experiment_id], parents, order_by=["start_time ASC"])
    assert len(runs) == 2
    metrics = runs[0].data.metrics
    assert 0.5 < metrics["oot_auc"] <= 1.0 and 0.0 < metrics["oot_ks"] <= 1.0
    assert metrics["rows_oot"] > 0 and metrics["rows_train"] > metrics["rows_oot"]
    for name in ("brier", "log_loss", "pr_auc", "ece", "gini"):
        assert np.isfinite(metrics[f"oot_{name}"]), name
    assert metrics["psi_train_to_oot"] >= 0.0
    for baseline in ("lightgbm_default", "woe_scorecard", "bureau_only"):
        margin = metrics[f"oot_auc_margin_over_{baseline}"]
        assert margin == pytest.approx(metrics["oot_auc"] - metrics[f"oot_auc_{baseline}"])
    beats = all(metrics[k] > 0 for k in metrics if k.startswith("oot_auc_margin_over_"))
    assert metrics["beats_all_baselines"] == float(beats)
    assert runs[0].data.params["calibration"] in ("isotonic", "platt")
    chosen = runs[0].data.params["calibration"]
    assert metrics[f"calibration_oof_brier_{chosen}"] == min(
        metrics["calibration_oof_brier_isotonic"], metrics["calibration_oof_brier_platt"]
    )
    params = runs[0].data.params
    candidate = params["chosen_candidate"]
    valid = {
        name: metrics[f"candidate_{name}_valid_auc"] for name in ("scorecard", "lightgbm", "blend")
    }
    assert valid[candidate] == metrics["valid_auc"]
    because = params["chosen_because"]
    if valid[candidate] == max(valid.values()):
        assert because.startswith(f"highest validation AUC: {candidate}")
    else:  # the default rule: the simplest within one standard error of the best
        assert because.startswith("simplest within one standard error")
    assert params["fitted_on_evaluated"] == params["fitted_on_registered"]
    assert params["fitted_on_evaluated"].startswith("train + valid")
    assert runs[0].data.tags["pdflow.chosen_candidate"] == candidate
    assert runs[0].data.params["as_of"] == "2025-09-01"
    versions = client.search_model_versions("name='pdflow-pd'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert client.get_model_version("pdflow-pd", "1").run_id == runs[0].info.run_id

    run_dir = workspace / "runs" / "2025-09-01"
    features = pl.read_parquet(run_dir / "features.parquet")
    model = mlflow.pyfunc.load_model("models:/pdflow-pd/1")
    spec = model.unwrap_python_model().spec
    scores = np.asarray(model.predict(spec.to_pandas(features.head(50))))
    assert scores.shape == (50,) and ((scores > 0) & (scores < 1)).all()
    decided = model.unwrap_python_model().decide(features.head(50))
    assert decided["pd"].to_list() == pytest.approx(scores.tolist())
    assert decided["grade"].null_count() == 0 and decided["score"].is_finite().all()
    words = model.unwrap_python_model().words
    assert set(words) == set(spec.names)  # every feature has its catalogue words
    reasons = decided["reasons"].explode().drop_nulls()
    assert reasons.len() > 0 and set(reasons) <= set(words.values())
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"feature_catalogue.md", "split.json", "data_gate", "evaluation", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}
    assert {"plots/roc.png", "plots/reliability.png", "plots/ablation.png"} <= plots
    deciles = pl.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=runs[0].info.run_id, artifact_path="evaluation/oot_deciles.csv"
        )
    )
    check_backtest_scoring(small_raw, features, model, tmp_path, workspace, tracking)
    evaluation = {a.path for a in client.list_artifacts(runs[0].info.run_id, "evaluation")}
    assert {"evaluation/oot_grades.csv", "evaluation/ablation.csv"} <= evaluation
    assert {"evaluation/candidates.csv", "evaluation/preselection.csv"} <= evaluation
    assert deciles["n"].sum() == metrics["rows_oot"] and deciles["decile"].to_list() == list(
        range(1, 11)
    )
    gate = {a.path for a in client.list_artifacts(runs[0].info.run_id, "data_gate")}
    assert {"data_gate/report.json", "data_gate/gx_results.json", "data_gate/data_docs"} <= gate
    assert metrics["gate_consumption_rows_read"] == metrics["gate_consumption_rows_kept"] > 0


def test_unusable_raw_root_stops_with_a_clear_message(small_raw: Path, tmp_path: Path) -> None:
    broken = tmp_path / "raw"
    shutil.copytree(small_raw, broken)
    shutil.rmtree(broken / "bureau_snapshots")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_pdflow(["train", "--raw", str(broken)], tmp_path / "ws", tracking)
    assert result.returncode == 2
    assert "table folder is missing" in result.stderr and "bureau_snapshots" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_raw_root_is_a_clear_error(tmp_path: Path) -> None:
    result = run_pdflow(["train", "--raw", str(tmp_path / "nope")], tmp_path / "ws", "sqlite:///x")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_gate_stop_registers_nothing(small_raw: Path, tmp_path: Path) -> None:
    broken = tmp_path / "raw"
    shutil.copytree(small_raw, broken)
    for path in sorted((broken / "transactions").rglob("*.parquet"))[:300]:
        pl.read_parquet(path).with_columns(txn_type=pl.lit("crypto")).write_parquet(path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_pdflow(["train", "--raw", str(broken)], tmp_path / "ws", tracking)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "data gate stopped" in result.stderr and "txn_type_in_set" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists()
    report = tmp_path / "ws" / "runs" / "2025-09-01" / "gate" / "report.json"
    assert '"ok": false' in report.read_text()


def check_backtest_scoring(
    raw: Path, features: pl.DataFrame, model: Any, tmp_path: Path, workspace: Path, tracking: str
) -> None:
    """`pdflow score` gives each application in the range the decision the registered model
    makes on the training run's features: the same point-in-time features, built later."""
    out = tmp_path / "scored.parquet"
    args = ["score", "--raw", str(raw), "--from", "2025-06-01", "--to", "2025-06-30"]
    result = run_pdflow(
        [*args, "--out", str(out), "--model", "models:/pdflow-pd/1"], workspace, tracking
    )
    assert result.returncode == 0, result.stdout + result.stderr
    scored = pl.read_parquet(out)
    local_day = pl.col("applied_at").dt.convert_time_zone("Asia/Shanghai").dt.date()
    expected_ids = features.filter(local_day.is_between(date(2025, 6, 1), date(2025, 6, 30)))
    assert scored.height == expected_ids.height > 0
    assert scored["model_version"].unique().to_list() == ["pdflow-pd/1"]
    same = features.join(scored.select("application_id"), on="application_id").sort(
        "application_id"
    )
    expected = model.unwrap_python_model().decide(same)
    got = scored.sort("application_id")
    assert got["pd"].to_list() == expected["pd"].to_list()
    assert got["grade"].to_list() == expected["grade"].to_list()
    assert got["reasons"].to_list() == expected["reasons"].to_list()

    # An application of the range that breaks the contract is not scored, and the run says so.
    broken = tmp_path / "broken"
    shutil.copytree(raw, broken)
    june = sorted((broken / "applications").glob("dt=2025-06-1*/*.parquet"))[0]
    first = pl.int_range(pl.len()) == 0
    pl.read_parquet(june).with_columns(
        channel=pl.when(first).then(pl.lit("carrier_pigeon")).otherwise("channel")
    ).write_parquet(june)
    result = run_pdflow(
        ["score", "--raw", str(broken), "--from", "2025-06-01", "--to", "2025-06-30"]
        + ["--out", str(out), "--model", "models:/pdflow-pd/1"],
        workspace,
        tracking,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not scored: 1 application of the range" in result.stdout
    assert "(channel_in_set 1)" in result.stdout
    assert pl.read_parquet(out).height == expected_ids.height - 1

    # Training set the champion: scoring needs no --model, and the next tuning starts from
    # the champion's parameters.
    client = MlflowClient(tracking_uri=tracking)
    result = run_pdflow([*args, "--out", str(out)], workspace, tracking)
    assert result.returncode == 0 and "pdflow-pd/1" in result.stdout, result.stderr
    champion = find_champion(MlflowSettings(tracking_uri=tracking))
    assert champion is not None and champion.version == "1"
    logged = client.get_model_version("pdflow-pd", "1").run_id
    params = client.get_run(logged).data.params
    assert champion.params["num_leaves"] == int(params["lgbm_num_leaves"])
    assert champion.params["learning_rate"] == float(params["lgbm_learning_rate"])

    backwards = ["score", "--raw", str(raw), "--from", "2025-06-30", "--to", "2025-06-01"]
    result = run_pdflow([*backwards, "--out", str(out)], workspace, tracking)
    assert result.returncode == 2 and "before --from" in result.stderr
