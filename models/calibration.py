"""Calibration: from the booster's score to a probability of default one can take at its word.

Both of scikit-learn's methods are candidates, fitted on scores the model did not learn
from (the validation split, or out-of-fold scores): Platt scaling (a logistic regression on
the score's log-odds) and isotonic regression. Both maps are non-decreasing, so calibration
never reverses the model's ranking: a Platt slope below zero is held at zero. The method
with the lower Brier score wins. Fitting and scoring on the same rows would always favour
isotonic, which can follow every wiggle, so the Brier scores compared are out of fold: the
rows are cut, in time order, into contiguous folds, and each fold is scored by a calibrator
fitted on the others.

A PD floor (``EvaluationSettings.pd_floor``, Basel's 0.03% by default) bounds every PD to
``[floor, 1 - floor]``: isotonic regression would otherwise give the lowest scores a PD of
exactly zero, which no borrower has and no ratio of PDs survives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import KFold

Method = Literal["isotonic", "platt"]
METHODS: tuple[Method, ...] = ("isotonic", "platt")
# Keeps log-odds finite for scores of exactly 0 or 1.
EPSILON = 1e-9


def log_odds(score: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(score, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """A fitted calibration map from booster score to probability of default."""

    method: Method
    model: IsotonicRegression | LogisticRegression
    floor: float = 0.0

    @classmethod
    def fit(
        cls, method: Method, score: np.ndarray, labels: np.ndarray, floor: float = 0.0
    ) -> Calibrator:
        if method == "isotonic":
            model: IsotonicRegression | LogisticRegression = IsotonicRegression(
                y_min=floor, y_max=1.0 - floor, out_of_bounds="clip"
            ).fit(score, labels)
        else:
            # No penalty: two parameters on thousands of rows need no shrinking.
            model = LogisticRegression(C=np.inf).fit(log_odds(score)[:, None], labels)
            if model.coef_[0, 0] < 0:
                _flatten(model, labels)
        return cls(method, model, floor)

    def transform(self, score: np.ndarray) -> np.ndarray:
        if isinstance(self.model, IsotonicRegression):
            pd = np.asarray(self.model.predict(score), dtype=np.float64)
        else:
            pd = self.model.predict_proba(log_odds(score)[:, None])[:, 1]
        return np.clip(pd, self.floor, 1.0 - self.floor)


def _flatten(model: LogisticRegression, labels: np.ndarray) -> None:
    """Platt scaling held to a non-decreasing map: where the best slope is negative (scores
    that fall as risk rises, as a near-constant model's noise can), the likelihood is
    concave in the slope, so the best slope >= 0 is 0 and the map is the mean bad rate."""
    rate = float(np.clip(np.mean(labels), EPSILON, 1 - EPSILON))
    model.coef_[:] = 0.0
    model.intercept_[:] = np.log(rate / (1 - rate))


def out_of_fold_brier(
    method: Method, score: np.ndarray, labels: np.ndarray, folds: int, floor: float = 0.0
) -> float:
    """Brier score of `method` when every row is calibrated by a map fitted without it."""
    calibrated = np.empty(len(score), dtype=np.float64)
    for fit_rows, held_rows in KFold(n_splits=folds, shuffle=False).split(score):
        fitted = Calibrator.fit(method, score[fit_rows], labels[fit_rows], floor)
        calibrated[held_rows] = fitted.transform(score[held_rows])
    return float(brier_score_loss(labels, calibrated))


@dataclass
class CalibrationChoice:
    calibrator: Calibrator
    brier: dict[str, float]  # out-of-fold validation Brier score per method


def choose_calibrator(
    score: np.ndarray,
    labels: np.ndarray,
    folds: int = 5,
    methods: tuple[Method, ...] = METHODS,
    floor: float = 0.0,
) -> CalibrationChoice:
    """Fit the method with the lowest out-of-fold Brier score on all validation rows.

    `score` and `labels` must be in time order (the folds are contiguous blocks of rows).
    Ties go to the first method in `methods`.
    """
    score = np.asarray(score, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    brier = {m: out_of_fold_brier(m, score, labels, folds, floor) for m in methods}
    best = min(methods, key=lambda m: brier[m])
    return CalibrationChoice(Calibrator.fit(best, score, labels, floor), brier)
