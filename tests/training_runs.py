"""`pdflow` in a subprocess with small training settings, and a store holding two trainings."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PDFLOW = str(Path(sys.executable).parent / "pdflow")
# Few trials and rounds: the end-to-end tests check wiring, not model quality.
SMALL_TRAINING = {
    "PDFLOW_TRAINING__TRIALS": "2",
    "PDFLOW_TRAINING__SCORECARD_TRIALS": "3",
    "PDFLOW_TRAINING__MAX_ROUNDS": "300",
    "PDFLOW_TRAINING__MIN_DATA_IN_LEAF": "20",
}


def run_pdflow(
    args: list[str], workspace: Path, tracking_uri: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "PDFLOW_WORKSPACE": str(workspace),
        "MLFLOW_TRACKING_URI": tracking_uri,
        # Artifacts beside the store, not in the repository's default .pdflow/mlartifacts.
        "PDFLOW_MLFLOW__ARTIFACT_LOCATION": str(workspace.parent / "mlartifacts"),
        **SMALL_TRAINING,
        **(env or {}),
    }
    return subprocess.run(
        [PDFLOW, *args], env=full_env, capture_output=True, text=True, timeout=600, check=False
    )


@dataclass
class Store:
    """An MLflow store after `pdflow train` ran on it (each run's stdout kept)."""

    tracking_uri: str
    workspace: Path
    outputs: list[str]


def train_twice(raw: Path, folder: Path) -> Store:
    """`pdflow train` twice on the same raw root and store, as `make run` twice does."""
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    outputs = []
    for _ in range(2):
        result = run_pdflow(["train", "--raw", str(raw)], folder / "ws", tracking)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)
    return Store(tracking, folder / "ws", outputs)
