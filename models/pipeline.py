"""From a feature table and labels to a chosen, refitted and evaluated PD model (no
orchestration here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import optuna
import polars as pl
from scipy.special import expit

from models.baselines import ablation, baseline_scores
from models.calibration import METHODS, Calibrator, choose_calibrator
from models.candidates import Blend, Candidate, CandidateSet, choose, fit_candidates, refit
from models.config import DecisionSettings, EvaluationSettings, SplitSettings, TrainSettings
from models.decision import grade_calibration
from models.errors import NoUsableModel
from models.metrics import auc, decile_table, gini_by_month, psi, summary
from models.pd_model import PDModel
from models.preselect import preselect
from models.scorecard import Scorecard
from models.split import SPLITS, SplitError, time_split
from models.train import FeatureSpec, TuningResult


@dataclass
class TrainingOutcome:
    """Everything a run reports about the models it trained.

    `model` is the model the out-of-time metrics describe; `registered` the one to register:
    the same object, unless ``training.final_refit`` is ``all`` (then refitted on every matured
    loan, out-of-time ones included). `fitted_on` says which loans each was fitted on."""

    model: PDModel
    registered: PDModel
    chosen: str
    choice: str  # why it was chosen
    params: dict[str, object]  # the tuned LightGBM candidate's parameters
    candidate_params: dict[str, dict[str, object]]
    best_iteration: int
    metrics: dict[str, float]
    split_rows: dict[str, int]
    split_months: dict[str, str]
    fitted_on: dict[str, str]
    fitted_months: dict[str, str]  # "evaluated"/"registered" -> "YYYY-MM..YYYY-MM" learned from
    tuning: TuningResult
    studies: dict[str, optuna.Study]  # each tuned candidate's Optuna study
    training_set: pl.DataFrame
    tables: dict[str, pl.DataFrame]  # evaluation tables, by artifact name
    # Out-of-time scores, in the out-of-time split's row order: "model" (the evaluated
    # model's PD), each candidate as fitted on train ("candidate_<name>") and each baseline.
    oot_scores: dict[str, np.ndarray]


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
    """Split by time; pre-select features on train if it has fewer bads than features; fit
    every candidate on train and choose on validation; refit the chosen one as
    ``training.final_refit`` says, calibrated out of fold; evaluate out of time against the
    baselines. `words` gives each feature in words, for reason codes; `warm_start` (the
    champion's LightGBM parameters) is the second trial of the LightGBM study."""
    evaluation = evaluation or EvaluationSettings()
    decision = decision or DecisionSettings()
    words = dict(words or {})
    data = time_split(training_set(features, labels), split_settings, timezone)
    parts = {name: data.filter(pl.col("split") == name) for name in SPLITS}
    _require_both_classes(parts)
    selection = preselect(
        parts["train"], list(feature_families), train_settings.preselect, train_settings
    )
    spec = FeatureSpec.from_frame(data, selection.kept)
    words = {name: words[name] for name in spec.names if name in words}
    found = fit_candidates(
        spec, parts, train_settings, evaluation.calibration_folds, show_progress, warm_start
    )
    chosen, choice = choose(
        found.candidates, parts["valid"]["label"].to_numpy(), train_settings.choice
    )
    final = _final_models(
        chosen, found.candidates, spec, parts, train_settings, evaluation, decision, words
    )
    if final.why:
        choice = (
            f"{'; '.join(final.why)}: the next by validation AUC, {final.chosen.name} ({choice})"
        )
        chosen = final.chosen
    candidates, oot_scores = _candidate_table(
        found.candidates, chosen.name, spec, parts, evaluation
    )
    model = final.evaluated
    all_pd = model.predict_pd(data)
    pd = {name: all_pd[(data["split"] == name).to_numpy()] for name in SPLITS}
    oot = parts["oot"]
    oot_labels = oot["label"].to_numpy()
    metrics = {
        **{f"calibration_oof_brier_{m}": b for m, b in final.brier.items()},
        **{f"oot_{k}": v for k, v in summary(oot_labels, pd["oot"]).items()},
        "oot_auc_uncalibrated": auc(oot_labels, model.raw_score(oot)),
        "valid_auc": chosen.valid_auc,
        "psi_train_to_oot": psi(pd["train"], pd["oot"], evaluation.bins),
        "features_after_preselection": float(len(selection.kept)),
    }
    for row in candidates.iter_rows(named=True):
        for key in ("valid_auc", "oot_auc", "oot_ks", "oot_brier"):
            metrics[f"candidate_{row['candidate']}_{key}"] = row[key]
    grades = grade_calibration(oot_labels, pd["oot"], decision)
    metrics["oot_grades_failing_binomial_test"] = float((~grades["calibrated"]).sum())
    tables: dict[str, pl.DataFrame] = {
        "evaluation/candidates.csv": candidates,
        "evaluation/preselection.csv": selection.table,
    }
    if isinstance(model.scorer, Scorecard | Blend):
        tables["model/scorecard_points.csv"] = _points(model.scorer, decision)
    oot_scores["model"] = pd["oot"]
    if evaluation.baselines:
        baselines = baseline_scores(parts, feature_families, train_settings)
        oot_scores.update(baselines)
        metrics.update(_margins(oot_labels, baselines, metrics["oot_auc"]))
        tables["evaluation/ablation.csv"] = ablation(
            parts,
            feature_families,
            evaluation.ablation_families,
            found.lightgbm_tuning.params,
            train_settings,
        )
    if truth is not None and truth.height:
        metrics.update(_oracle(oot, truth))
    if "oot_oracle_auc" in metrics:
        metrics["oot_auc_to_oracle"] = metrics["oot_auc"] / metrics["oot_oracle_auc"]
    lightgbm = found.candidates["lightgbm"]
    return TrainingOutcome(
        model=model,
        registered=final.registered,
        chosen=chosen.name,
        choice=choice,
        params=found.lightgbm_tuning.params,
        candidate_params={name: c.params for name, c in found.candidates.items()},
        best_iteration=int(lightgbm.params["rounds"]),  # type: ignore[call-overload]
        metrics=metrics,
        split_rows={name: part.height for name, part in parts.items()},
        split_months={name: _months(part) for name, part in parts.items()},
        fitted_on=final.fitted_on,
        fitted_months=final.fitted_months,
        tuning=found.lightgbm_tuning,
        studies=_studies(found),
        training_set=data,
        oot_scores=oot_scores,
        tables={
            **tables,
            "evaluation/oot_deciles.csv": decile_table(oot_labels, pd["oot"], evaluation.bins),
            "evaluation/oot_grades.csv": grades,
            "evaluation/gini_by_month.csv": gini_by_month(data, all_pd).join(
                data.group_by("month").agg(pl.col("split").first()), on="month"
            ),
        },
    )


def _studies(found: CandidateSet) -> dict[str, optuna.Study]:
    studies = {"lightgbm": found.lightgbm_tuning.study, "scorecard": found.scorecard_study}
    return {name: study for name, study in studies.items() if study is not None}


def _points(scorer: Scorecard | Blend, decision: DecisionSettings) -> pl.DataFrame:
    return (scorer if isinstance(scorer, Scorecard) else scorer.scorecard).points_table(decision)


def _months(part: pl.DataFrame) -> str:
    return f"{part['month'].min()}..{part['month'].max()}"


@dataclass
class FinalModels:
    chosen: Candidate  # the chosen candidate, or the next one if its refit does not rank
    why: list[str]  # why a better-ranked candidate was passed over, if one was
    evaluated: PDModel
    registered: PDModel
    brier: dict[str, float]  # out-of-fold Brier score of each calibration method
    fitted_on: dict[str, str]  # "evaluated"/"registered" -> the splits and months
    # "evaluated"/"registered" -> the months whose labels each learned from, calibration too
    fitted_months: dict[str, str]


def _final_models(
    chosen: Candidate,
    candidates: Mapping[str, Candidate],
    spec: FeatureSpec,
    parts: Mapping[str, pl.DataFrame],
    settings: TrainSettings,
    evaluation: EvaluationSettings,
    decision: DecisionSettings,
    words: dict[str, str],
) -> FinalModels:
    """The chosen candidate as ``training.final_refit`` says: fitted on train and calibrated
    on validation (``none``); refitted on train + validation and calibrated out of fold
    (``train_valid``); and for ``all`` once more on every matured loan for registration. A
    refit whose out-of-fold scores rank no better than chance passes the choice to the next
    of `candidates` by validation AUC; when none ranks, :class:`NoUsableModel`."""
    methods = METHODS if evaluation.calibration == "auto" else (evaluation.calibration,)
    folds = evaluation.calibration_folds

    def model(scorer: object, calibrator: Calibrator) -> PDModel:
        return PDModel(scorer, spec, calibrator, decision, words)  # type: ignore[arg-type]

    def described(names: tuple[str, ...]) -> str:
        frame = pl.concat([parts[n] for n in names])
        return f"{' + '.join(names)} ({_months(frame)}, {frame.height} loans)"

    if settings.final_refit == "none":
        valid = parts["valid"]
        raw = expit(chosen.scorer.log_odds(spec.matrix(valid)))
        labels = valid["label"].to_numpy()
        calibration = choose_calibrator(raw, labels, folds, methods, evaluation.pd_floor)
        evaluated = model(chosen.scorer, calibration.calibrator)
        scope = described(("train",)) + ", calibrated on valid"
        fitted = {"evaluated": scope, "registered": scope}
        months = dict.fromkeys(fitted, _months(pl.concat([parts["train"], valid])))
        return FinalModels(chosen, [], evaluated, evaluated, calibration.brier, fitted, months)
    seen = pl.concat([parts["train"], parts["valid"]])
    others = sorted(candidates.values(), key=lambda c: -c.valid_auc)
    ranked = [chosen, *(c for c in others if c is not chosen)]
    passed_over = []
    for chosen in ranked:
        refitted = refit(chosen.recipe, spec, seen, settings, folds, methods, evaluation.pd_floor)
        if refitted.ranks:
            break
        passed_over.append(
            f"{chosen.name} refitted on train + valid ranks no better than chance out of fold "
            f"(AUC {refitted.oof_auc:.3f}, standard error {refitted.oof_se:.3f})"
        )
    else:
        raise NoUsableModel(
            "no candidate ranks loans better than chance out of fold: "
            + "; ".join(passed_over)
            + ". More labelled loans (more bads) are needed"
        )
    evaluated = model(refitted.scorer, refitted.calibrator)
    scope = described(("train", "valid"))
    if settings.final_refit == "train_valid":
        fitted = {"evaluated": scope, "registered": scope}
        months = dict.fromkeys(fitted, _months(seen))
        return FinalModels(
            chosen, passed_over, evaluated, evaluated, refitted.brier, fitted, months
        )
    every = pl.concat([seen, parts["oot"]])
    serving = refit(chosen.recipe, spec, every, settings, folds, methods, evaluation.pd_floor)
    return FinalModels(
        chosen,
        passed_over,
        evaluated,
        model(serving.scorer, serving.calibrator),
        refitted.brier,
        {"evaluated": scope, "registered": described(("train", "valid", "oot"))},
        {"evaluated": _months(seen), "registered": _months(every)},
    )


def _candidate_table(
    candidates: Mapping[str, Candidate],
    chosen: str,
    spec: FeatureSpec,
    parts: Mapping[str, pl.DataFrame],
    evaluation: EvaluationSettings,
) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """Each candidate as fitted on train and calibrated on validation: validation AUC (the
    choice's measure) and out-of-time AUC, KS and Brier score of its PD, as the model's own
    out-of-time metrics are (reported, never chosen on); and each one's out-of-time PD."""
    methods = METHODS if evaluation.calibration == "auto" else (evaluation.calibration,)
    valid_labels = parts["valid"]["label"].to_numpy()
    oot_matrix = spec.matrix(parts["oot"])
    oot_labels = parts["oot"]["label"].to_numpy()
    rows, scores = [], {}
    for name, candidate in candidates.items():
        calibration = choose_calibrator(
            expit(candidate.valid_log_odds),
            valid_labels,
            evaluation.calibration_folds,
            methods,
            evaluation.pd_floor,
        )
        raw = expit(candidate.scorer.log_odds(oot_matrix))
        scores[f"candidate_{name}"] = calibration.calibrator.transform(raw)
        scored = summary(oot_labels, scores[f"candidate_{name}"])
        rows.append(
            {
                "candidate": name,
                "chosen": name == chosen,
                "valid_auc": candidate.valid_auc,
                "oot_auc": scored["auc"],
                "oot_ks": scored["ks"],
                "oot_brier": scored["brier"],
            }
        )
    return pl.DataFrame(rows), scores


def _require_both_classes(parts: dict[str, pl.DataFrame]) -> None:
    for name, part in parts.items():
        counts = part["label"].value_counts()
        if counts.height < 2:
            raise SplitError(
                f"the {name} split has {part.height} loans and only one class; "
                "more months of data or a different split is needed"
            )


MARGIN = "oot_auc_margin_over_"


def baseline_margins(metrics: Mapping[str, float]) -> dict[str, float]:
    """Baseline name -> the model's out-of-time AUC margin over it, from a run's metrics (the
    one place that reads the ``oot_auc_margin_over_<baseline>`` keys)."""
    return {k.removeprefix(MARGIN): v for k, v in metrics.items() if k.startswith(MARGIN)}


def _margins(
    labels: np.ndarray, baselines: Mapping[str, np.ndarray], model_auc: float
) -> dict[str, float]:
    """Each baseline's out-of-time AUC, the model's margin over it, and whether the model
    beats them all (1.0) or not (0.0)."""
    metrics = {}
    for name, scores in baselines.items():
        metrics[f"oot_auc_{name}"] = auc(labels, scores)
        metrics[f"{MARGIN}{name}"] = model_auc - metrics[f"oot_auc_{name}"]
    metrics["beats_all_baselines"] = float(min(baseline_margins(metrics).values()) > 0)
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
