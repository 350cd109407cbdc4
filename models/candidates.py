"""Candidate models, chosen on validation, and the refit of the one chosen.

Every run fits the same candidates on the same time split:

- ``scorecard``: the WOE logistic scorecard, its binning and regularisation tuned on
  validation AUC (:mod:`models.scorecard`);
- ``lightgbm``: LightGBM tuned by Optuna on validation AUC (:mod:`models.train`);
- ``blend``: a weighted average of the two's log-odds. Its weight is chosen on the validation
  split out of fold: each contiguous fold of validation rows is scored with the weight that
  ranks the other folds best, so its validation AUC is no more flattered by the choice of
  weight than the others' are by their tuning.

The choice is made on validation AUC: by default the simplest candidate (in the order above)
within one standard error of the highest, since on a validation split with few bads smaller
differences are noise; ``training.choice: best`` takes the highest (ties to the simpler). A
fitted candidate is a *scorer* (log-odds and per-feature contributions from the model's
feature matrix) and a *recipe* that fits the same kind of scorer with the settings found on
other rows: the refit on train + validation, and the out-of-fold scores its calibration
is fitted on, use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import optuna
import polars as pl
from scipy.special import expit
from sklearn.model_selection import KFold

from models.calibration import METHODS, Calibrator, Method, choose_calibrator
from models.config import CandidateName, TrainSettings
from models.explain import contributions as tree_shap
from models.metrics import auc, auc_standard_error
from models.scorecard import Scorecard, ScorecardFitter, ScorecardParams, tune_scorecard
from models.train import FeatureSpec, TrainData, TuningResult, fit, fit_rounds, tune


class Scorer(Protocol):
    """A fitted model over the model's feature matrix."""

    kind: str

    def log_odds(self, matrix: np.ndarray) -> np.ndarray: ...

    def contributions(self, matrix: np.ndarray) -> np.ndarray: ...


class BoosterScorer:
    """A LightGBM booster at its best iteration; contributions are TreeSHAP's."""

    kind = "lightgbm"

    def __init__(self, booster: lgb.Booster) -> None:
        self.model_string = booster.model_to_string(num_iteration=booster.best_iteration)
        self._booster: lgb.Booster | None = None

    @property
    def booster(self) -> lgb.Booster:
        if self._booster is None:
            self._booster = lgb.Booster(model_str=self.model_string)
        return self._booster

    def log_odds(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(matrix, raw_score=True), dtype=np.float64)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        return tree_shap(self.booster, matrix)

    def __getstate__(self) -> dict[str, Any]:
        return {"model_string": self.model_string, "_booster": None}


@dataclass
class Blend:
    """``weight`` x LightGBM's log-odds + (1 - ``weight``) x the scorecard's; its
    contributions are the same weighted sum of the two's."""

    lightgbm: BoosterScorer
    scorecard: Scorecard
    weight: float
    kind: str = "blend"

    def log_odds(self, matrix: np.ndarray) -> np.ndarray:
        w = self.weight
        return w * self.lightgbm.log_odds(matrix) + (1 - w) * self.scorecard.log_odds(matrix)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        w = self.weight
        lightgbm, scorecard = (
            self.lightgbm.contributions(matrix),
            self.scorecard.contributions(matrix),
        )
        return w * lightgbm + (1 - w) * scorecard


def booster_of(scorer: Scorer) -> lgb.Booster | None:
    """The LightGBM booster inside a scorer, if it has one."""
    if isinstance(scorer, BoosterScorer):
        return scorer.booster
    if isinstance(scorer, Blend):
        return scorer.lightgbm.booster
    return None


class Recipe(Protocol):
    """Fits a candidate's kind of scorer, with the settings found, on other rows."""

    def fit(self, spec: FeatureSpec, frame: pl.DataFrame, settings: TrainSettings) -> Scorer: ...


@dataclass(frozen=True)
class LightGBMRecipe:
    """The tuned parameters, and the rounds early stopping chose per training row (a refit
    on more rows boosts proportionally more rounds; DART keeps its fixed rounds)."""

    params: dict[str, Any]
    rounds: int
    train_rows: int

    def rounds_for(self, rows: int, settings: TrainSettings) -> int:
        if self.params.get("boosting") == "dart":
            return settings.dart_rounds
        return max(1, round(self.rounds * rows / self.train_rows))

    def fit(self, spec: FeatureSpec, frame: pl.DataFrame, settings: TrainSettings) -> BoosterScorer:
        rounds = self.rounds_for(frame.height, settings)
        return BoosterScorer(fit_rounds(spec, frame, self.params, settings, rounds))


@dataclass(frozen=True)
class ScorecardRecipe:
    params: ScorecardParams

    def fit(self, spec: FeatureSpec, frame: pl.DataFrame, settings: TrainSettings) -> Scorecard:
        return ScorecardFitter(frame, spec.names, settings.seed).fit(self.params)


@dataclass(frozen=True)
class BlendRecipe:
    lightgbm: LightGBMRecipe
    scorecard: ScorecardRecipe
    weight: float

    def fit(self, spec: FeatureSpec, frame: pl.DataFrame, settings: TrainSettings) -> Scorer:
        booster = self.lightgbm.fit(spec, frame, settings)
        return Blend(booster, self.scorecard.fit(spec, frame, settings), self.weight)


@dataclass
class Candidate:
    """A candidate fitted on the training split: its scorer, its validation AUC (the choice's
    measure), its validation log-odds and how to fit it again."""

    name: CandidateName
    scorer: Scorer
    recipe: LightGBMRecipe | ScorecardRecipe | BlendRecipe
    valid_auc: float
    valid_log_odds: np.ndarray
    params: dict[str, Any]
    # The validation scores `valid_auc` is measured on (out of fold for the blend).
    valid_scored: np.ndarray | None = None

    @property
    def scored(self) -> np.ndarray:
        return self.valid_log_odds if self.valid_scored is None else self.valid_scored


@dataclass
class CandidateSet:
    candidates: dict[str, Candidate]
    lightgbm_tuning: TuningResult
    scorecard_study: optuna.Study | None  # the scorecard's tuning, None without a scorecard


def fit_candidates(
    spec: FeatureSpec,
    parts: Mapping[str, pl.DataFrame],
    settings: TrainSettings,
    folds: int,
    show_progress: bool = True,
    warm_start: dict[str, Any] | None = None,
) -> CandidateSet:
    """Every configured candidate fitted on train and scored on validation."""
    train, valid = parts["train"], parts["valid"]
    valid_matrix = spec.matrix(valid)
    valid_labels = valid["label"].to_numpy()
    data = TrainData.build(spec, train, valid)
    tuning = tune(data, settings, show_progress=show_progress, warm_start=warm_start)
    booster = fit(data, tuning.params, settings)
    lightgbm_scorer = BoosterScorer(booster)
    lightgbm_recipe = LightGBMRecipe(tuning.params, booster.best_iteration, train.height)
    candidates: dict[str, Candidate] = {}
    lightgbm_odds = lightgbm_scorer.log_odds(valid_matrix)
    candidates["lightgbm"] = Candidate(
        "lightgbm",
        lightgbm_scorer,
        lightgbm_recipe,
        auc(valid_labels, lightgbm_odds),
        lightgbm_odds,
        {**tuning.params, "rounds": booster.best_iteration},
    )
    scorecard_study = None
    if "scorecard" in settings.candidates:
        fitter = ScorecardFitter(train, spec.names, settings.seed)
        found = tune_scorecard(
            fitter,
            valid_matrix,
            valid_labels,
            settings.scorecard_trials,
            settings.seed,
            settings.scorecard,
        )
        scorecard_study = found.study
        odds = found.scorecard.log_odds(valid_matrix)
        candidates["scorecard"] = Candidate(
            "scorecard",
            found.scorecard,
            ScorecardRecipe(found.params),
            found.valid_auc,
            odds,
            found.params.as_dict() | {"characteristics": len(found.scorecard.characteristics)},
        )
    if "blend" in settings.candidates:
        candidates["blend"] = blend(
            candidates["lightgbm"],
            candidates["scorecard"],
            valid_labels,
            folds,
            blend_weights(settings.blend_weights),
        )
    ordered = {name: candidates[name] for name in settings.candidates}
    return CandidateSet(ordered, tuning, scorecard_study)


def blend_weights(points: int) -> np.ndarray:
    """The weights of LightGBM in the blend tried (the scorecard has the rest): `points`
    evenly spaced from 0 to 1."""
    return np.linspace(0.0, 1.0, points)


def _best_weight(
    lightgbm: np.ndarray, scorecard: np.ndarray, labels: np.ndarray, weights: np.ndarray
) -> float:
    scores = [auc(labels, w * lightgbm + (1 - w) * scorecard) for w in weights]
    return float(weights[int(np.argmax(scores))])


def blend(
    lightgbm: Candidate,
    scorecard: Candidate,
    labels: np.ndarray,
    folds: int,
    weights: np.ndarray,
) -> Candidate:
    """The blend of two fitted candidates, its weight (one of `weights`) chosen on validation
    out of fold."""
    a, b = lightgbm.valid_log_odds, scorecard.valid_log_odds
    held_out = np.empty(len(labels))
    for fit_rows, held in KFold(n_splits=folds, shuffle=False).split(labels):
        if np.unique(labels[fit_rows]).size < 2:
            weight = 0.5
        else:
            weight = _best_weight(a[fit_rows], b[fit_rows], labels[fit_rows], weights)
        held_out[held] = weight * a[held] + (1 - weight) * b[held]
    weight = _best_weight(a, b, labels, weights)
    assert isinstance(lightgbm.scorer, BoosterScorer)
    assert isinstance(lightgbm.recipe, LightGBMRecipe)
    assert isinstance(scorecard.recipe, ScorecardRecipe)
    return Candidate(
        "blend",
        Blend(lightgbm.scorer, scorecard.scorer, weight),
        BlendRecipe(lightgbm.recipe, scorecard.recipe, weight),
        auc(labels, held_out),
        weight * a + (1 - weight) * b,
        {"weight_lightgbm": weight},
        held_out,
    )


def choose(
    candidates: Mapping[str, Candidate], labels: np.ndarray, rule: str = "best"
) -> tuple[Candidate, str]:
    """The chosen candidate and why: the highest validation AUC (``best``; the first listed
    on a tie), or the first listed (the simplest) whose validation AUC is within one standard
    error of the highest (``simplest_within_one_se``). `labels` are the validation labels."""
    ranked = sorted(candidates.values(), key=lambda c: -c.valid_auc)  # stable: ties keep order
    best = ranked[0]
    others = ", ".join(f"{c.name} {c.valid_auc:.4f}" for c in ranked[1:])
    then = f" (then {others})" if others else ""
    if rule == "best":
        return best, f"highest validation AUC: {best.name} {best.valid_auc:.4f}{then}"
    se = auc_standard_error(labels, best.scored)
    chosen = next(c for c in candidates.values() if c.valid_auc >= best.valid_auc - se)
    if chosen is best:
        return best, f"highest validation AUC: {best.name} {best.valid_auc:.4f}{then}"
    return chosen, (
        f"simplest within one standard error ({se:.4f}) of the highest validation AUC: "
        f"{chosen.name} {chosen.valid_auc:.4f} against {best.name} {best.valid_auc:.4f}"
    )


@dataclass
class Refit:
    """A scorer fitted on every row of a frame, and the calibration fitted on the out-of-fold
    scores of the same recipe over those rows."""

    scorer: Scorer
    calibrator: Calibrator
    brier: dict[str, float]
    rows: int
    oof_auc: float  # the out-of-fold scores' AUC over the rows
    oof_se: float  # its DeLong standard error

    @property
    def ranks(self) -> bool:
        """Whether the recipe ranks loans out of fold better than chance, by more than a
        standard error: a refit that does not (a near-constant model of a few boosting
        rounds on a few dozen bads) would be calibrated to one PD for everybody."""
        return self.oof_auc - self.oof_se > 0.5


def out_of_fold_scores(
    recipe: Recipe, spec: FeatureSpec, frame: pl.DataFrame, settings: TrainSettings, folds: int
) -> np.ndarray:
    """Each contiguous fold of `frame` (in its order) scored by the recipe fitted on the
    other folds: scores no model saw the labels of."""
    matrix = spec.matrix(frame)
    scores = np.empty(frame.height)
    for fit_rows, held in KFold(n_splits=folds, shuffle=False).split(matrix):
        scorer = recipe.fit(spec, frame[fit_rows], settings)
        scores[held] = expit(scorer.log_odds(matrix[held]))
    return scores


def refit(
    recipe: Recipe,
    spec: FeatureSpec,
    frame: pl.DataFrame,
    settings: TrainSettings,
    folds: int,
    methods: Sequence[Method] = METHODS,
    floor: float = 0.0,
) -> Refit:
    """The recipe fitted on all of `frame` (time-ordered), calibrated out of fold, every PD
    within `floor` of 0 and 1."""
    scores = out_of_fold_scores(recipe, spec, frame, settings, folds)
    labels = frame["label"].to_numpy()
    choice = choose_calibrator(scores, labels, folds, tuple(methods), floor)
    return Refit(
        recipe.fit(spec, frame, settings),
        choice.calibrator,
        choice.brier,
        frame.height,
        auc(labels, scores),
        auc_standard_error(labels, scores),
    )
