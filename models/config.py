"""Typed settings of the modelling stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
