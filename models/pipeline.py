"""From a feature table and labels to a tuned, evaluated PD model (no orchestration here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from models.baselines import ablation, baseline_scores
from models.calibration import METHODS, Calibrator, choose_calibrator
from models.config import DecisionSettings, EvaluationSettings, SplitSettings, TrainSettings
from models.decision import grade_calibration
from models.metrics import auc, decile_table, gini_by_month, psi, summary
from models.pd_model import PDModel
from models.split import SPLITS, SplitError, time_split
from models.train import FeatureSpec, TrainData, TuningResult, fit, tune


@dataclass
class TrainingOutcome:
    """Everything a run reports about the model it trained."""

    model: PDModel
    params: dict[str, object]
    best_iteration: int
    metrics: dict[str, float]
    split_rows: dict[str, int]
    split_months: dict[str, str]
    tuning: TuningResult
    training_set: pl.DataFrame
    tables: dict[str, pl.DataFrame]  # evaluation tables, by artifact name


def training_set(features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Labelled loans of complete monthly cohorts, joined to their features.

    Immature loans and partly mature months would bias bad rates (see ``data.labels``).
    """
    mature = labels.filter(pl.col("cohort_complete") & pl.col("is_labelled")).select(
        "application_id", "label"
    )
    return features.join(mature, on="application_id", how="inner").sort(
        "applied_at", "application_id"
    )


def train_pd_model(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    feature_families: Mapping[str, str],
    split_settings: SplitSettings,
    train_settings: TrainSettings,
    timezone: str,
    truth: pl.DataFrame | None = None,
    show_progress: bool = True,
    evaluation: EvaluationSettings | None = None,
    decision: DecisionSettings | None = None,
    words: Mapping[str, str] | None = None,
    warm_start: dict[str, object] | None = None,
) -> TrainingOutcome:
    """Split by time, tune on validation, calibrate on validation, evaluate out of time
    against the baselines. `words` gives each feature in words, for reason codes;
    `warm_start` (the champion's parameters) is the second trial of the tuning study."""
    evaluation = evaluation or EvaluationSettings()
    decision = decision or DecisionSettings()
    data = time_split(training_set(features, labels), split_settings, timezone)
    parts = {name: data.filter(pl.col("split") == name) for name in SPLITS}
    _require_both_classes(parts)
    names = list(feature_families)
    spec = FeatureSpec.from_frame(data, names)
    train_data = TrainData.build(spec, parts["train"], parts["valid"])
    tuning = tune(train_data, train_settings, show_progress=show_progress, warm_start=warm_start)
    booster = fit(train_data, tuning.params, train_settings)
    uncalibrated = PDModel(booster, spec)
    calibrator, metrics = _calibrate(uncalibrated, parts["valid"], evaluation)
    model = PDModel(booster, spec, calibrator, decision, dict(words or {}))

    all_pd = model.predict_pd(data)
    pd = {name: all_pd[(data["split"] == name).to_numpy()] for name in SPLITS}
    oot = parts["oot"]
    oot_labels = oot["label"].to_numpy()
    metrics.update({f"oot_{k}": v for k, v in summary(oot_labels, pd["oot"]).items()})
    metrics["oot_auc_uncalibrated"] = auc(oot_labels, uncalibrated.predict_pd(oot))
    metrics["valid_auc"] = auc(parts["valid"]["label"].to_numpy(), pd["valid"])
    metrics["psi_train_to_oot"] = psi(pd["train"], pd["oot"], evaluation.bins)
    grades = grade_calibration(oot_labels, pd["oot"], decision)
    metrics["oot_grades_failing_binomial_test"] = float((~grades["calibrated"]).sum())
    tables: dict[str, pl.DataFrame] = {}
    if evaluation.baselines:
        metrics.update(_baselines(parts, feature_families, train_settings, metrics["oot_auc"]))
        tables["evaluation/ablation.csv"] = ablation(
            parts, feature_families, evaluation.ablation_families, tuning.params, train_settings
        )
    if truth is not None and truth.height:
        metrics.update(_oracle(oot, truth))
    if "oot_oracle_auc" in metrics:
        metrics["oot_auc_to_oracle"] = metrics["oot_auc"] / metrics["oot_oracle_auc"]
    return TrainingOutcome(
        model=model,
        params=tuning.params,
        best_iteration=booster.best_iteration,
        metrics=metrics,
        split_rows={name: part.height for name, part in parts.items()},
        split_months={
            name: f"{part['month'].min()}..{part['month'].max()}" for name, part in parts.items()
        },
        tuning=tuning,
        training_set=data,
        tables={
            **tables,
            "evaluation/oot_deciles.csv": decile_table(oot_labels, pd["oot"], evaluation.bins),
            "evaluation/oot_grades.csv": grades,
            "evaluation/gini_by_month.csv": gini_by_month(data, all_pd).join(
                data.group_by("month").agg(pl.col("split").first()), on="month"
            ),
        },
    )


def _calibrate(
    model: PDModel, valid: pl.DataFrame, settings: EvaluationSettings
) -> tuple[Calibrator, dict[str, float]]:
    """The calibration map fitted on the validation split, and its out-of-fold Brier scores."""
    methods = METHODS if settings.calibration == "auto" else (settings.calibration,)
    choice = choose_calibrator(
        model.raw_score(valid), valid["label"].to_numpy(), settings.calibration_folds, methods
    )
    return choice.calibrator, {f"valid_brier_{m}": b for m, b in choice.brier.items()}


def _require_both_classes(parts: dict[str, pl.DataFrame]) -> None:
    for name, part in parts.items():
        counts = part["label"].value_counts()
        if counts.height < 2:
            raise SplitError(
                f"the {name} split has {part.height} loans and only one class; "
                "more months of data or a different split is needed"
            )


def _baselines(
    parts: dict[str, pl.DataFrame],
    families: Mapping[str, str],
    settings: TrainSettings,
    model_auc: float,
) -> dict[str, float]:
    """Each baseline's out-of-time AUC, the tuned model's margin over it, and whether the
    model beats them all (1.0) or not (0.0)."""
    labels = parts["oot"]["label"].to_numpy()
    metrics = {}
    for name, scores in baseline_scores(parts, families, settings).items():
        metrics[f"oot_auc_{name}"] = auc(labels, scores)
        metrics[f"oot_auc_margin_over_{name}"] = model_auc - metrics[f"oot_auc_{name}"]
    margins = [v for k, v in metrics.items() if k.startswith("oot_auc_margin_over_")]
    metrics["beats_all_baselines"] = float(min(margins) > 0)
    return metrics


def _oracle(oot: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    """AUC of the simulator's true PD on the same out-of-time loans (synthetic data only)."""
    joined = oot.join(truth, on="application_id", how="inner")
    if joined.height < oot.height or joined["label"].n_unique() < 2:
        return {}
    oracle = auc(joined["label"].to_numpy(), joined["true_pd"].to_numpy())
    return {"oot_oracle_auc": oracle}


def finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
