"""The evaluation charts of a training run, as PNG files (matplotlib, scikit-learn's and
LightGBM's and Optuna's own plotting where they have one).

Every chart is of the out-of-time split unless its title says otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import lightgbm as lgb
import matplotlib.pyplot as plt
import numpy as np
import optuna
import polars as pl
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import RocCurveDisplay, roc_curve

from models.pd_model import PDModel

SHAP_ROWS = 5_000  # rows explained for the SHAP summary (the first ones: deterministic)
TOP_FEATURES = 20


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def roc(labels: np.ndarray, pd: np.ndarray, path: Path) -> Path:
    display = RocCurveDisplay.from_predictions(labels, pd, name="PD model", plot_chance_level=True)
    display.ax_.set_title("ROC, out of time")
    return _save(display.figure_, path)


def ks_curve(labels: np.ndarray, pd: np.ndarray, path: Path) -> Path:
    """Shares of goods and bads below each PD threshold (from the ROC curve, as
    :func:`models.metrics.ks`); KS is the widest gap."""
    fpr, tpr, thresholds = roc_curve(labels, pd)
    thresholds, goods, bads = thresholds[1:], 1 - fpr[1:], 1 - tpr[1:]  # the first is +inf
    widest = int(np.argmax(goods - bads))
    figure, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(thresholds, goods, label="goods (share below PD)")
    ax.plot(thresholds, bads, label="bads (share below PD)")
    ax.vlines(thresholds[widest], bads[widest], goods[widest], colors="k", linestyles="--")
    ax.set(xlabel="PD", ylabel="share below PD", title=f"KS = {goods[widest] - bads[widest]:.3f}")
    ax.legend()
    return _save(figure, path)


def reliability(labels: np.ndarray, pd: np.ndarray, bins: int, path: Path) -> Path:
    display = CalibrationDisplay.from_predictions(
        labels, pd, n_bins=bins, strategy="quantile", name="PD model"
    )
    display.ax_.set_title("Reliability, out of time (equal-count bins)")
    return _save(display.figure_, path)


def score_distributions(scores: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    figure, ax = plt.subplots(figsize=(6, 4.5))
    edges = np.histogram_bin_edges(scores, bins=40)
    ax.hist(scores[labels == 0], bins=edges, alpha=0.6, density=True, label="goods")
    ax.hist(scores[labels == 1], bins=edges, alpha=0.6, density=True, label="bads")
    ax.set(xlabel="scorecard points", ylabel="density", title="Score of goods and bads")
    ax.legend()
    return _save(figure, path)


def decile_bad_rates(deciles: pl.DataFrame, path: Path) -> Path:
    figure, ax = plt.subplots(figsize=(6, 4.5))
    ax.bar(deciles["decile"].to_list(), deciles["bad_rate"].to_list(), label="observed bad rate")
    ax.plot(deciles["decile"].to_list(), deciles["mean_pd"].to_list(), "k.-", label="mean PD")
    ax.set(xlabel="PD decile (1 = riskiest)", ylabel="rate", title="Bad rate by decile")
    ax.legend()
    return _save(figure, path)


def shap_summary(model: PDModel, features: pl.DataFrame, path: Path) -> Path:
    """Mean absolute contribution (log-odds) of the top features: TreeSHAP for LightGBM,
    log-odds lost against the best bin for a scorecard, their weighted sum for a blend."""
    mean_abs = np.abs(model.contributions(features.head(SHAP_ROWS))).mean(axis=0)
    top = np.argsort(-mean_abs, kind="stable")[:TOP_FEATURES][::-1]
    figure, ax = plt.subplots(figsize=(7, 6))
    ax.barh([model.spec.names[i] for i in top], mean_abs[top])
    ax.set(
        xlabel="mean |contribution| (log-odds)", title=f"{model.kind}: contributions, out of time"
    )
    return _save(figure, path)


def gain_importance(booster: lgb.Booster, path: Path) -> Path:
    ax = lgb.plot_importance(
        booster,
        importance_type="gain",
        max_num_features=TOP_FEATURES,
        figsize=(7, 6),
        title="Gain importance",
        precision=0,
    )
    return _save(ax.figure, path)


def ablation_chart(table: pl.DataFrame, path: Path) -> Path:
    figure, ax = plt.subplots(figsize=(7, 4.5))
    steps = [f"+ {f}" if i else f for i, f in enumerate(table["family_added"].to_list())]
    ax.bar(steps, table["oot_auc"].to_list())
    low = min(table["oot_auc"].min(), 0.5)  # type: ignore[type-var]
    ax.set_ylim(low, min(1.0, table["oot_auc"].max() + 0.02))  # type: ignore[operator]
    ax.set(ylabel="out-of-time AUC", title="Families added to bureau data")
    ax.tick_params(axis="x", rotation=20)
    return _save(figure, path)


def _optuna(plot: Callable[[optuna.Study], Any], study: optuna.Study, path: Path) -> Path:
    with warnings.catch_warnings():  # Optuna marks its matplotlib backend experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot(study)
    return _save(ax.figure, path)


def evaluation_plots(
    model: PDModel,
    oot: pl.DataFrame,
    tables: dict[str, pl.DataFrame],
    study: optuna.Study | None,
    bins: int,
    folder: Path,
) -> list[Path]:
    """Every chart of a run, written under `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = oot["label"].to_numpy()
    decided = model.decide(oot)
    pd = decided["pd"].to_numpy()
    paths = [
        roc(labels, pd, folder / "roc.png"),
        ks_curve(labels, pd, folder / "ks.png"),
        reliability(labels, pd, bins, folder / "reliability.png"),
        score_distributions(decided["score"].to_numpy(), labels, folder / "scores.png"),
        shap_summary(model, oot, folder / "shap_summary.png"),
    ]
    if model.booster is not None:
        paths.append(gain_importance(model.booster, folder / "gain_importance.png"))
    if "evaluation/oot_deciles.csv" in tables:
        paths.append(decile_bad_rates(tables["evaluation/oot_deciles.csv"], folder / "deciles.png"))
    if "evaluation/ablation.csv" in tables:
        paths.append(ablation_chart(tables["evaluation/ablation.csv"], folder / "ablation.png"))
    complete = optuna.trial.TrialState.COMPLETE
    completed = [t for t in study.trials if t.state == complete] if study else []
    if study is not None and len(completed) >= 2:
        from optuna.visualization.matplotlib import (
            plot_optimization_history,
            plot_param_importances,
        )

        paths.append(_optuna(plot_optimization_history, study, folder / "optuna_history.png"))
        paths.append(_optuna(plot_param_importances, study, folder / "optuna_importances.png"))
    return paths
