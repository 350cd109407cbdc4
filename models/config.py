"""Typed settings of the modelling stage."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class SplitSettings(BaseModel):
    """Time-ordered split of mature loans by application month (the last months are out of time)."""

    model_config = ConfigDict(extra="forbid")

    oot_months: int = Field(2, ge=1, description="Most recent mature months held out of time")
    valid_months: int = Field(2, ge=1, description="Months before those, for early stopping")
    min_train_months: int = Field(3, ge=1)


CandidateName = Literal["scorecard", "lightgbm", "blend"]
CANDIDATES: tuple[CandidateName, ...] = ("scorecard", "lightgbm", "blend")


class PreselectSettings(BaseModel):
    """Pre-selection of features before tuning, on the training split only.

    It runs when the model has more features than the training split has bads (``auto``),
    always, or never. Features too weak by ``method`` (no more important than to a model of
    shuffled labels, or an information value below ``min_iv``) or whose distribution shifts
    between the earlier and the later half of the training months beyond ``max_psi`` are
    dropped; of the rest, the strongest are kept, at most one per ``bads_per_feature`` bads
    (and at least ``min_features``)."""

    model_config = ConfigDict(extra="forbid")

    when: Literal["auto", "always", "never"] = "auto"
    method: Literal["null_importance", "iv"] = Field(
        "null_importance", description="How strength is measured (see models.preselect)"
    )
    null_runs: int = Field(8, ge=1, description="Fits on shuffled labels (null_importance)")
    null_rounds: int = Field(200, ge=10, description="Boosting rounds of each of those fits")
    null_quantile: float = Field(0.75, gt=0, lt=1, description="Quantile of the null gains")
    min_iv: float = Field(0.02, ge=0, description="Weakest information value kept (iv)")
    max_psi: float = Field(0.25, gt=0, description="Largest shift within train (PSI) kept")
    bads_per_feature: float = Field(2.0, gt=0, description="Bads per feature kept, at most")
    min_features: int = Field(10, ge=1, description="Features kept, at least")
    bins: int = Field(10, ge=2, description="Equal-count bins of IV and PSI")


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(gt=0, le=1)]
Probability = Annotated[float, Field(ge=0, le=1)]
BinCount = Annotated[int, Field(ge=2)]


def ordered_range(bounds: tuple[float, float]) -> tuple[float, float]:
    """`bounds` as given, when the low end is not above the high end."""
    low, high = bounds
    if low > high:
        raise ValueError(f"range {list(bounds)} must go from low to high")
    return bounds


class TuningSettings(BaseModel):
    """LightGBM's search space (the ranges Optuna samples, log-scaled where the code says so)
    and the pruning of poor trials.

    The leaves' ranges scale with the training split (``models.train.SearchBounds``): at most
    a leaf per ten bads, capped at `max_leaves`; a smallest leaf of about two bads, from
    `min_leaf` up; a largest minimum of a tenth of the loans, capped at `max_min_leaf`."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: tuple[Positive, Positive] = Field(
        (0.01, 0.2), description="Learning rates searched (log scale)"
    )
    feature_fraction: tuple[Share, Share] = Field(
        (0.05, 1.0), description="Shares of the features each tree sees (log scale)"
    )
    bagging_fraction: tuple[Share, Share] = Field(
        (0.5, 1.0), description="Shares of the rows each tree is grown on"
    )
    lambda_l2: tuple[Positive, Positive] = Field(
        (1e-3, 1000.0), description="L2 regularisation searched (log scale)"
    )
    lambda_l1: tuple[Positive, Positive] = Field(
        (1e-3, 10.0),
        description="L1 regularisation searched (log scale); the base parameters take the low end",
    )
    min_gain_to_split: tuple[NonNegative, NonNegative] = Field(
        (0.0, 1.0), description="Smallest gain a split must bring"
    )
    drop_rate: tuple[Probability, Probability] = Field(
        (0.02, 0.3), description="DART only: share of the trees dropped per round"
    )
    skip_drop: tuple[Probability, Probability] = Field(
        (0.3, 0.8), description="DART only: probability of skipping the dropout in a round"
    )
    max_leaves: int = Field(255, ge=2, description="Most leaves a tree may have, however many bads")
    min_leaf: int = Field(
        5, ge=1, description="Smallest minimum leaf size searched, however few loans per bad"
    )
    max_min_leaf: int = Field(
        5000, ge=4, description="Largest minimum leaf size searched, however many loans"
    )
    pruner_startup_trials: int = Field(
        3, ge=0, description="Trials completed before the median pruner stops any"
    )
    pruner_warmup_steps: int = Field(
        50, ge=0, description="Boosting rounds of a trial before it may be pruned"
    )

    @field_validator(
        "learning_rate",
        "feature_fraction",
        "bagging_fraction",
        "lambda_l2",
        "lambda_l1",
        "min_gain_to_split",
        "drop_rate",
        "skip_drop",
    )
    @classmethod
    def _low_to_high(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        return ordered_range(bounds)

    @model_validator(mode="after")
    def _leaf_sizes_fit(self) -> TuningSettings:
        if self.max_min_leaf // 4 < self.min_leaf:
            raise ValueError(
                f"max_min_leaf ({self.max_min_leaf}) must be at least four times min_leaf "
                f"({self.min_leaf}): the smallest leaf is searched up to a quarter of it"
            )
        return self


class ScorecardSettings(BaseModel):
    """The WOE scorecard's tuning: its first trial and the space later trials search.

    The first trial bins the `features` strongest features with at most `max_n_bins` bins of
    at least `min_bin_size` of the rows, drops those with an information value below `min_iv`
    and fits the logistic regression with inverse L2 strength `C`. Later trials search
    `min_features` to `features` features, `min_bin_sizes`, and the ranges."""

    model_config = ConfigDict(extra="forbid")

    features: int = Field(
        60, ge=1, description="Strongest features the scorecard may use (all in the first trial)"
    )
    min_features: int = Field(5, ge=1, description="Fewest features a trial uses")
    min_iv: float = Field(0.02, ge=0, description="First trial: weakest information value kept")
    max_n_bins: BinCount = Field(10, description="First trial: most bins per feature")
    min_bin_size: float = Field(
        0.05, gt=0, lt=0.5, description="First trial: smallest bin, share of the training rows"
    )
    C: float = Field(1.0, gt=0, description="First trial: inverse L2 strength")
    min_iv_range: tuple[Positive, Positive] = Field(
        (0.005, 0.1), description="Weakest information values kept, searched (log scale)"
    )
    max_n_bins_range: tuple[BinCount, BinCount] = Field(
        (3, 10), description="Most bins per feature, searched"
    )
    min_bin_sizes: tuple[float, ...] = Field(
        (0.02, 0.05, 0.1),
        min_length=1,
        description="Smallest bins tried, as shares of the training rows (the coarsest bins)",
    )
    C_range: tuple[Positive, Positive] = Field(
        (1e-3, 10.0), description="Inverse L2 strengths searched (log scale)"
    )

    @field_validator("min_iv_range", "max_n_bins_range", "C_range")
    @classmethod
    def _low_to_high(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        return ordered_range(bounds)

    @field_validator("min_bin_sizes")
    @classmethod
    def _bin_sizes_are_shares(cls, sizes: tuple[float, ...]) -> tuple[float, ...]:
        if not all(0 < size < 0.5 for size in sizes):
            raise ValueError(f"min_bin_sizes {list(sizes)} must be shares between 0 and 0.5")
        return sizes

    @model_validator(mode="after")
    def _first_trial_in_the_space(self) -> ScorecardSettings:
        """The first trial is enqueued into the study: it must be a point of the space."""
        outside = [
            name
            for name, value, (low, high) in (
                ("min_iv", self.min_iv, self.min_iv_range),
                ("max_n_bins", self.max_n_bins, self.max_n_bins_range),
                ("C", self.C, self.C_range),
            )
            if not low <= value <= high
        ]
        if self.min_bin_size not in self.min_bin_sizes:
            outside.append("min_bin_size")
        if self.min_features > self.features:
            outside.append("min_features")
        if outside:
            raise ValueError(f"the first trial's {outside} lie outside the searched space")
        return self


class TrainSettings(BaseModel):
    """Candidates, LightGBM and tuning settings. Fixed threads and seeds make runs repeatable."""

    model_config = ConfigDict(extra="forbid")

    candidates: tuple[CandidateName, ...] = Field(
        CANDIDATES,
        description="Model families tried on the same split; the best on validation AUC wins",
    )
    choice: Literal["best", "simplest_within_one_se"] = Field(
        "simplest_within_one_se",
        description="best: the highest validation AUC; simplest_within_one_se: the simplest "
        "candidate (scorecard, lightgbm, blend) whose validation AUC is within one standard "
        "error of the highest (on few validation bads, differences smaller than that are noise)",
    )
    scorecard_trials: int = Field(
        20, ge=0, description="Optuna trials of the scorecard's binning and regularisation"
    )
    final_refit: Literal["none", "train_valid", "all"] = Field(
        "train_valid",
        description="Refit the chosen candidate with the settings found: none (train only, "
        "calibrated on validation), train_valid (train + validation, calibrated out of fold; "
        "scored out of time), all (as train_valid for the evaluation, then once more on every "
        "matured loan, out of time included, for the registered version)",
    )
    preselect: PreselectSettings = Field(default_factory=PreselectSettings)
    tuning: TuningSettings = Field(default_factory=TuningSettings)
    scorecard: ScorecardSettings = Field(default_factory=ScorecardSettings)
    blend_weights: int = Field(
        21,
        ge=2,
        description="Weights of LightGBM in the blend tried: this many, evenly spaced from 0 to 1",
    )

    seed: int = 42
    num_threads: int = Field(2, ge=1)
    trials: int = Field(10, ge=0, description="Optuna trials; 0 trains the base parameters only")
    timeout_minutes: float | None = Field(None, gt=0, description="Tuning budget in minutes")
    max_rounds: int = Field(2000, ge=10)
    early_stopping_rounds: int = Field(100, ge=5)
    learning_rate: float = Field(0.03, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(100, ge=1)
    feature_fraction: float = Field(0.7, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    boosting: Literal["gbdt", "dart"] = Field(
        "gbdt", description="dart: dropout trees, a fixed number of rounds (no early stopping)"
    )
    dart_rounds: int = Field(300, ge=10, description="Boosting rounds of a DART model")
    monotone: dict[str, Literal[-1, 1]] = Field(
        default_factory=dict,
        description="Feature -> direction policy fixes: 1 PD may only rise with it, -1 fall",
    )

    @field_validator("candidates")
    @classmethod
    def _candidates_make_sense(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if "lightgbm" not in names:
            raise ValueError("candidates must include lightgbm (baselines and ablation use it)")
        if "blend" in names and "scorecard" not in names:
            raise ValueError("the blend candidate needs the scorecard candidate")
        if len(set(names)) != len(names):
            raise ValueError("candidates are listed once each")
        return names


class EvaluationSettings(BaseModel):
    """Calibration and the out-of-time evaluation every run reports."""

    model_config = ConfigDict(extra="forbid")

    calibration: Literal["auto", "isotonic", "platt"] = Field(
        "auto", description="auto: the method with the lower out-of-fold validation Brier score"
    )
    calibration_folds: int = Field(5, ge=2, description="Contiguous folds of the validation split")
    pd_floor: float = Field(
        0.0003,
        ge=0.0,
        lt=0.5,
        description="Every PD is at least this and at most 1 minus it (Basel's 0.03% floor)",
    )
    bins: int = Field(10, ge=2, description="Equal-count bins of PD: deciles, ECE, PSI")
    baselines: bool = Field(True, description="Fit the baselines and the family ablation")
    ablation_families: tuple[str, ...] = Field(
        ("bureau", "consumption", "transactions", "social", "app_behaviour"),
        description="Families added one at a time, the first alone",
    )


class Grade(BaseModel):
    """A risk grade: the PD band up to `max_pd`, and the policy that applies to it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    max_pd: float = Field(gt=0, le=1, description="Upper PD bound (inclusive) of the grade")
    credit_limit: float = Field(ge=0, description="Credit limit offered; 0 declines")
    price_tier: str = Field(description="Pricing tier of the offer (or 'decline')")


DEFAULT_GRADES = (
    Grade(name="A", max_pd=0.01, credit_limit=50_000, price_tier="T1"),
    Grade(name="B", max_pd=0.02, credit_limit=30_000, price_tier="T2"),
    Grade(name="C", max_pd=0.04, credit_limit=20_000, price_tier="T3"),
    Grade(name="D", max_pd=0.07, credit_limit=10_000, price_tier="T4"),
    Grade(name="E", max_pd=0.12, credit_limit=5_000, price_tier="T5"),
    Grade(name="F", max_pd=0.20, credit_limit=2_000, price_tier="T6"),
    Grade(name="G", max_pd=1.0, credit_limit=0, price_tier="decline"),
)


class DecisionSettings(BaseModel):
    """From PD to decision: scorecard scaling, risk grades and the policy table.

    Points follow the industry convention: `base_score` points at good:bad odds of
    `base_odds` to 1, and `points_to_double_odds` more points each time the odds double.
    """

    model_config = ConfigDict(extra="forbid")

    base_score: float = 600.0
    base_odds: float = Field(50.0, gt=0)
    points_to_double_odds: float = Field(20.0, gt=0)
    grades: tuple[Grade, ...] = DEFAULT_GRADES
    binomial_alpha: float = Field(
        0.05, gt=0, lt=1, description="Two-sided level of the per-grade calibration test"
    )
    reasons: int = Field(4, ge=1, description="Adverse factors given per applicant")

    @field_validator("grades")
    @classmethod
    def _bands_cover_all_pds(cls, grades: tuple[Grade, ...]) -> tuple[Grade, ...]:
        bounds = [g.max_pd for g in grades]
        if not grades or bounds != sorted(set(bounds)) or bounds[-1] != 1.0:
            raise ValueError("grades need strictly increasing max_pd, the last one 1.0")
        if len({g.name for g in grades}) != len(grades):
            raise ValueError("grade names must be unique")
        return grades


class PromotionSettings(BaseModel):
    """When a newly trained model (the challenger) replaces the one in use (the champion).

    The champion is re-scored on the challenger's out-of-time loans; the challenger is promoted
    only if its AUC is higher and a paired one-sided DeLong test rejects "no better" at
    `level`, its Brier score and expected calibration error are not worse than the champion's
    beyond their tolerances, and the PSI of its PD against the champion's on the same loans is
    below `max_psi`. In ``manual`` mode the gate only recommends; a reviewer promotes."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "manual"] = Field(
        "auto", description="auto: the gate moves the champion alias; manual: it recommends"
    )
    level: float = Field(0.05, gt=0, lt=0.5, description="One-sided level of the DeLong test")
    brier_tolerance: float = Field(
        0.002, ge=0, description="Largest rise in out-of-time Brier score accepted"
    )
    ece_tolerance: float = Field(
        0.01, ge=0, description="Largest rise in expected calibration error accepted"
    )
    max_psi: float = Field(
        0.25, gt=0, description="Largest PSI of the challenger's PD against the champion's"
    )


class EarlyWarningSettings(BaseModel):
    """When a loan on book goes on the post-loan early-warning list: its PD re-scored with the
    features as of the scoring day, against its PD on its own application's features. Both
    come from the model in use that day, so a new champion moves no loan by itself."""

    model_config = ConfigDict(extra="forbid")

    grades_worse: int = Field(
        1, ge=1, description="Grades below its grade at disbursal that put a loan on the list"
    )
    pd_factor: float = Field(
        2.0, gt=1, description="PD today over PD at disbursal that puts a loan on the list"
    )
    reasons: int = Field(3, ge=1, description="Features that raised the PD most, per loan listed")


class MonitorSettings(BaseModel):
    """The daily monitor of the model in use: what it compares and when it warns or asks for a
    retrain (``models.monitor``)."""

    model_config = ConfigDict(extra="forbid")

    recent_days: int = Field(30, ge=1, description="Days of recent applications compared")
    reference_days: int = Field(
        90, ge=1, description="Days of applications before the training day kept as reference"
    )
    psi_warn: float = Field(0.1, gt=0, description="PSI of the PD that warns")
    psi_retrain: float = Field(0.25, gt=0, description="PSI of the PD that asks for a retrain")
    csi_warn: float = Field(0.25, gt=0, description="CSI of a model feature that warns")
    auc_drop_warn: float = Field(
        0.03, gt=0, description="Fall of AUC on matured loans below training's that warns"
    )
    auc_drop_retrain: float = Field(
        0.06, gt=0, description="Fall of AUC on matured loans that asks for a retrain"
    )
    min_matured_loans: int = Field(
        200, ge=1, description="Matured loans below which AUC and calibration are not judged"
    )
