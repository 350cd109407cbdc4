"""The WOE logistic scorecard: the bank's classic, as a candidate model and a baseline.

Each characteristic (feature) is cut into optimal monotonic bins by ``optbinning`` (missing
values in their own bin), every bin replaced by its weight of evidence (WOE), and a logistic
regression on the WOE values gives the log-odds of default. What is kept after fitting is
plain data (bin edges, WOE values, coefficients), so the registered model needs no binning
library and the scorecard can be printed as a points table.

The scorecard's own reasons are the points an applicant lost per characteristic: how far
the characteristic's contribution to the log-odds is above that of its best bin.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
import polars as pl

from models.config import DecisionSettings, ScorecardSettings
from models.metrics import auc

KIND = "scorecard"
# Features must have this many known values on train for their univariate strength to count:
# a floor under which the ranking's AUC is not an estimate, not a modelling choice.
MIN_KNOWN = 100


@dataclass(frozen=True)
class ScorecardParams:
    """How a scorecard is built: the `features` strongest numeric features (univariate AUC on
    the fitting rows) are binned with at most `max_n_bins` bins of at least `min_bin_size` of
    the rows (None: optbinning's defaults), those with information value below `min_iv` are
    dropped, and the logistic regression has inverse L2 strength `C`."""

    features: int = 60
    min_iv: float = 0.02
    max_n_bins: int | None = None
    min_bin_size: float | None = None
    C: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Characteristic:
    """One binned feature: bin ``i`` holds values in ``[splits[i-1], splits[i])``; missing
    values have their own WOE (0 when the fitting rows had none)."""

    column: int  # position in the model's feature matrix
    name: str
    splits: np.ndarray
    woe: np.ndarray
    missing_woe: float
    missing_seen: bool
    iv: float

    def transform(self, values: np.ndarray) -> np.ndarray:
        binned = self.woe[np.searchsorted(self.splits, values, side="right")]
        return np.where(np.isnan(values), self.missing_woe, binned)

    def bin_labels(self) -> list[str]:
        edges = [-np.inf, *self.splits.tolist(), np.inf]
        return [f"[{lo:.6g}, {hi:.6g})" for lo, hi in itertools.pairwise(edges)]

    def attainable_woe(self) -> np.ndarray:
        """WOE values an applicant can have: every bin's, and the missing bin's if seen."""
        return np.append(self.woe, self.missing_woe) if self.missing_seen else self.woe


@dataclass
class Scorecard:
    """A fitted scorecard over the model's feature matrix (columns in the model's order)."""

    characteristics: tuple[Characteristic, ...]
    coefficients: np.ndarray
    intercept: float
    n_features: int
    params: ScorecardParams = field(default_factory=ScorecardParams)
    kind: str = KIND

    def woe_matrix(self, matrix: np.ndarray) -> np.ndarray:
        columns = [c.transform(matrix[:, c.column]) for c in self.characteristics]
        return np.column_stack(columns) if columns else np.empty((len(matrix), 0))

    def log_odds(self, matrix: np.ndarray) -> np.ndarray:
        """Log-odds of default of each row."""
        return self.intercept + self.woe_matrix(matrix) @ self.coefficients

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Per row and feature, the log-odds the row lost against the characteristic's best
        bin (>= 0; 0 for features the scorecard does not use)."""
        lost = np.zeros((len(matrix), self.n_features))
        for coefficient, char, woe in zip(
            self.coefficients, self.characteristics, self.woe_matrix(matrix).T, strict=True
        ):
            best = np.min(coefficient * char.attainable_woe())
            lost[:, char.column] = coefficient * woe - best
        return lost

    def points_table(self, decision: DecisionSettings) -> pl.DataFrame:
        """The scorecard as points: per characteristic and bin, its WOE and the points it
        is worth (the intercept shared evenly, the industry convention), higher is safer."""
        factor = decision.points_to_double_odds / np.log(2)
        offset = decision.base_score - factor * np.log(decision.base_odds)
        share = len(self.characteristics) or 1
        rows = []
        for coefficient, char in zip(self.coefficients, self.characteristics, strict=True):
            bins = [*char.bin_labels(), "missing"]
            for label, woe in zip(bins, [*char.woe, char.missing_woe], strict=True):
                points = offset / share - factor * (coefficient * woe + self.intercept / share)
                rows.append(
                    {"feature": char.name, "bin": label, "woe": float(woe), "points": points}
                )
        return pl.DataFrame(
            rows,
            schema={
                "feature": pl.String,
                "bin": pl.String,
                "woe": pl.Float64,
                "points": pl.Float64,
            },
        )


def numeric_features(frame: pl.DataFrame, names: Sequence[str]) -> list[str]:
    return [n for n in names if frame.schema[n].is_numeric()]


def strongest(frame: pl.DataFrame, names: Sequence[str], labels: np.ndarray) -> list[str]:
    """Numeric features ordered by univariate AUC distance from 0.5, strongest first (ties
    by name); features with fewer than MIN_KNOWN known values or one class are left out."""
    strength = {}
    for name in numeric_features(frame, names):
        values = frame[name].cast(pl.Float64).fill_nan(None).to_numpy()
        known = ~np.isnan(values)
        if known.sum() < MIN_KNOWN or np.unique(labels[known]).size < 2:
            continue
        strength[name] = abs(auc(labels[known], values[known]) - 0.5)
    return sorted(strength, key=lambda n: (-strength[n], n))


class ScorecardFitter:
    """Fits scorecards on one set of rows: ranks the features once and keeps every binning it
    made, so a tuning study re-bins a feature only for bin settings it has not tried."""

    def __init__(self, frame: pl.DataFrame, names: Sequence[str], seed: int) -> None:
        self.names = tuple(names)
        self.labels = frame["label"].to_numpy()
        self.ranked = strongest(frame, names, self.labels)
        self.columns = {
            name: frame[name].cast(pl.Float64).fill_nan(None).to_numpy() for name in self.ranked
        }
        self.seed = seed
        self._bins: dict[tuple[str, int | None, float | None], Characteristic] = {}

    def characteristic(self, name: str, params: ScorecardParams) -> Characteristic:
        key = (name, params.max_n_bins, params.min_bin_size)
        if key not in self._bins:
            self._bins[key] = self._bin(name, params)
        return self._bins[key]

    def _bin(self, name: str, params: ScorecardParams) -> Characteristic:
        from optbinning import OptimalBinning  # slow to import: only when a run needs it

        binning = OptimalBinning(
            name=name,
            dtype="numerical",
            monotonic_trend="auto_asc_desc",
            max_n_bins=params.max_n_bins,
            min_bin_size=params.min_bin_size,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            binning.fit(self.columns[name], self.labels)
        table = binning.binning_table.build(add_totals=False)
        splits = np.asarray(binning.splits, dtype=np.float64)
        woe = table["WoE"].to_numpy(dtype=np.float64)
        counts = table["Count"].to_numpy()
        missing = len(splits) + 2  # after the bins and the "Special" row
        return Characteristic(
            column=self.names.index(name),
            name=name,
            splits=splits,
            woe=woe[: len(splits) + 1],
            missing_woe=float(woe[missing]),
            missing_seen=bool(counts[missing] > 0),
            iv=float(binning.binning_table.iv),
        )

    def fit(self, params: ScorecardParams) -> Scorecard:
        """Bin, select by information value (the strongest is kept whatever its IV), and fit
        the logistic regression on the WOE values."""
        from sklearn.linear_model import LogisticRegression

        binned = [self.characteristic(n, params) for n in self.ranked[: params.features]]
        kept = tuple(c for c in binned if c.iv >= params.min_iv) or tuple(binned[:1])
        woe = np.column_stack([c.transform(self.columns[c.name]) for c in kept])
        model = LogisticRegression(C=params.C, max_iter=1000, random_state=self.seed)
        model.fit(woe, self.labels)
        coefficients = model.coef_[0].astype(np.float64)
        return Scorecard(kept, coefficients, float(model.intercept_[0]), len(self.names), params)


def scorecard_space(
    trial: optuna.Trial, features: int, settings: ScorecardSettings
) -> ScorecardParams:
    """A trial's parameters: up to `features` features, the rest from `settings`' space."""
    return ScorecardParams(
        features=trial.suggest_int("features", min(settings.min_features, features), features),
        min_iv=trial.suggest_float("min_iv", *settings.min_iv_range, log=True),
        max_n_bins=trial.suggest_int("max_n_bins", *settings.max_n_bins_range),
        min_bin_size=trial.suggest_categorical("min_bin_size", settings.min_bin_sizes),
        C=trial.suggest_float("C", *settings.C_range, log=True),
    )


def tuning_start(settings: ScorecardSettings, ranked: int) -> ScorecardParams:
    """The first trial: ``settings``' start, on at most the `ranked` features there are (and
    at least one)."""
    return ScorecardParams(
        features=max(1, min(settings.features, ranked)),
        min_iv=settings.min_iv,
        max_n_bins=settings.max_n_bins,
        min_bin_size=settings.min_bin_size,
        C=settings.C,
    )


@dataclass
class ScorecardTuning:
    params: ScorecardParams
    scorecard: Scorecard
    valid_auc: float
    trials: int
    study: optuna.Study | None


def tune_scorecard(
    fitter: ScorecardFitter,
    valid_matrix: np.ndarray,
    valid_labels: np.ndarray,
    trials: int,
    seed: int,
    settings: ScorecardSettings,
) -> ScorecardTuning:
    """Seeded TPE over the binning and the regularisation (the space of `settings`),
    validation AUC the target; the first trial is :func:`tuning_start`, and ``trials == 0``
    fits it alone."""
    start = tuning_start(settings, len(fitter.ranked))

    def valid_auc(params: ScorecardParams) -> tuple[Scorecard, float]:
        scorecard = fitter.fit(params)
        return scorecard, auc(valid_labels, scorecard.log_odds(valid_matrix))

    if trials == 0:
        scorecard, score = valid_auc(start)
        return ScorecardTuning(start, scorecard, score, 0, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(start.as_dict())
    study.optimize(
        lambda trial: valid_auc(scorecard_space(trial, start.features, settings))[1],
        n_trials=trials,
    )
    best = ScorecardParams(**study.best_params)
    scorecard, score = valid_auc(best)
    return ScorecardTuning(best, scorecard, score, len(study.trials), study)
