"""Every evaluation chart is written as a real PNG file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from models.config import TrainSettings
from models.metrics import decile_table
from models.pd_model import PDModel
from models.plots import evaluation_plots
from models.train import FeatureSpec, TrainData, fit, tune

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_chart_is_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 4_000
    frame = pl.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n)})
    risk = 1 / (1 + np.exp(-(-2 + frame["x"].to_numpy())))
    frame = frame.with_columns(label=pl.Series((rng.random(n) < risk).astype(np.int64)))
    spec = FeatureSpec.from_frame(frame, ["x", "z"])
    data = TrainData.build(spec, frame.head(3_000), frame.tail(1_000))
    settings = TrainSettings(trials=3, max_rounds=60, early_stopping_rounds=10)
    tuning = tune(data, settings, show_progress=False)
    model = PDModel(fit(data, tuning.params, settings), spec)
    oot = frame.tail(1_000)
    tables = {
        "evaluation/oot_deciles.csv": decile_table(oot["label"].to_numpy(), model.predict_pd(oot)),
        "evaluation/ablation.csv": pl.DataFrame(
            {"family_added": ["bureau", "consumption"], "oot_auc": [0.6, 0.7]}
        ),
    }
    paths = evaluation_plots(model, oot, tables, tuning.study, 10, tmp_path / "plots")
    names = {p.name for p in paths}
    assert {"roc.png", "ks.png", "reliability.png", "scores.png", "shap_summary.png"} <= names
    assert {"gain_importance.png", "deciles.png", "ablation.png", "optuna_history.png"} <= names
    assert "optuna_importances.png" in names
    for path in paths:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5_000, path.name
