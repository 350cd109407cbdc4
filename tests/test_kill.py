"""`pdflow train` killed (SIGKILL) during the feature build, during training and during the
registry step, one run after the other on the same workspace and store: each time nothing
half-written is left (the feature store reads whole, no application twice, no champion that
a killed run set), and the next run completes, taking the gate and the training that
finished before the registry step was killed from their persisted results instead of running
them again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import polars as pl
import pytest
from training_runs import PDFLOW, SMALL_TRAINING, run_pdflow

from models.registry import load_pd_model

pytestmark = pytest.mark.slow

GATE, TRAINING = "Task run 'data gate", "Task run 'split, tune and train"
STAGES = [
    # (what the run is doing, what the log line after which it is doing it holds, seconds)
    ("feature build", ("data gate as of",), 1.0),
    ("training", ("tuning warm-starts from",), 3.0),
    ("registry step", (TRAINING, "Finished in state Completed()"), 2.0),
]


def killed_after(marker: tuple[str, ...], delay: float, env: dict[str, str], raw: Path) -> str:
    """Start `pdflow train`, SIGKILL its process group `delay` seconds after a line holding
    every part of `marker` is logged; its output."""
    run = subprocess.Popen(
        [PDFLOW, "train", "--raw", str(raw)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    assert run.stdout is not None
    for line in run.stdout:
        seen.append(line)
        if all(part in line for part in marker):
            time.sleep(delay)
            break
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    output = "".join(seen)
    assert run.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{output}"
    return output


def store_is_whole(store: Path) -> int:
    """Every file of the feature store reads; no application is stored twice. Its rows."""
    files = sorted(store.rglob("*.parquet"))
    for path in files:
        pl.read_parquet(path)  # a half-written file would not read
    if not files:
        return 0
    ids = pl.read_parquet(store / "**" / "*.parquet")["application_id"]
    assert ids.n_unique() == ids.len()
    return ids.len()


def test_a_run_killed_at_any_stage_leaves_nothing_partial_and_the_next_completes(
    small_raw: Path, tmp_path: Path
) -> None:
    workspace, tracking = tmp_path / "ws", f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        **os.environ,
        "PDFLOW_WORKSPACE": str(workspace),
        "MLFLOW_TRACKING_URI": tracking,
        "PDFLOW_MLFLOW__ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
        **SMALL_TRAINING,
    }
    for stage, marker, delay in STAGES:
        killed_after(marker, delay, env, small_raw)
        store_is_whole(workspace / "feature_store")
        champion_loads(tracking, stage)
    result = run_pdflow(["train", "--raw", str(small_raw)], workspace, tracking)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = store_is_whole(workspace / "feature_store")
    features = pl.read_parquet(workspace / "runs" / "2025-09-01" / "features.parquet")
    assert rows == features.height > 0
    assert champion_loads(tracking, "the completed run")
    assert "Model version" in result.stdout
    output = result.stdout + result.stderr
    for task in (GATE, TRAINING):
        ended = [line for line in output.splitlines() if task in line and "Finished" in line]
        assert ended and "Cached(type=COMPLETED)" in ended[-1], ended


def champion_loads(tracking: str, stage: str) -> bool:
    """A champion, where there is one, is a whole model version: it loads and scores."""
    mlflow.set_tracking_uri(tracking)
    client = mlflow.MlflowClient()
    if not client.search_registered_models():
        return False
    if "champion" not in client.get_registered_model("pdflow-pd").aliases:
        return False
    model = load_pd_model("models:/pdflow-pd@champion")
    assert model.spec.names, f"the champion after the {stage} has no features"
    return True
