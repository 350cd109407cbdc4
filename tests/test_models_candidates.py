"""Candidates chosen on validation, the refit, and the registered model of every candidate type,
on synthetic worlds whose right model is known."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

import models.pipeline as pipeline
from models.calibration import Calibrator
from models.candidates import (
    Blend,
    BoosterScorer,
    Candidate,
    LightGBMRecipe,
    ScorecardRecipe,
    choose,
    fit_candidates,
    refit,
)
from models.config import (
    DecisionSettings,
    EvaluationSettings,
    ScorecardSettings,
    SplitSettings,
    TrainSettings,
)
from models.decision import score_points
from models.errors import NoUsableModel
from models.metrics import auc, auc_standard_error
from models.pd_model import PDModel
from models.scorecard import ScorecardFitter, ScorecardParams, tune_scorecard
from models.split import time_split
from models.train import FeatureSpec

# One worker runs the module: its module-scoped worlds are built once, not once per worker.
pytestmark = pytest.mark.xdist_group("models_candidates")

TZ = "Asia/Shanghai"
SETTINGS = TrainSettings(trials=4, scorecard_trials=4, max_rounds=300, early_stopping_rounds=30)
QUICK = EvaluationSettings(baselines=False)
SPLIT = SplitSettings(oot_months=2, valid_months=3, min_train_months=3)
N_FEATURES = 12
NAMES = [f"f{i}" for i in range(N_FEATURES)]
FAMILIES = dict.fromkeys(NAMES, "bureau")


def world(kind: str, n: int = 12_000, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features and labels of `n` loans over 12 months.

    ``linear``: the log-odds are a sum of many small, monotone effects (a scorecard's world).
    ``interactions``: the risk lives in interactions no additive model can express (a tree's).
    Either way f11 is noise, and f0 has 10% missing values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    if kind == "linear":
        logit = -2.8 + x[:, :10] @ np.full(10, 0.3)
    elif kind == "noise":
        logit = np.full(n, -2.8)
    else:
        logit = -3.2 + 2.2 * (x[:, 0] * x[:, 1] > 0) + 1.6 * (np.abs(x[:, 2]) > 1.0)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    start = datetime(2024, 1, 1, 4, tzinfo=UTC)
    applied = [start + timedelta(days=int(d)) for d in np.sort(rng.integers(0, 360, n))]
    features = pl.DataFrame(
        {
            "application_id": [f"A{i:06d}" for i in range(n)],
            "applied_at": applied,
            **{name: x[:, i] for i, name in enumerate(NAMES)},
        }
    ).with_columns(
        pl.when(pl.lit(rng.random(n) < 0.1)).then(None).otherwise(pl.col("f0")).alias("f0")
    )
    labels = pl.DataFrame(
        {
            "application_id": features["application_id"],
            "label": label,
            "cohort_complete": True,
            "is_labelled": True,
        }
    )
    return features, labels


def train(
    kind: str, evaluation: EvaluationSettings = QUICK, n: int = 12_000, **settings: object
) -> pipeline.TrainingOutcome:
    features, labels = world(kind, n)
    return pipeline.train_pd_model(
        features,
        labels,
        FAMILIES,
        SPLIT,
        SETTINGS.model_copy(update=settings),
        TZ,
        show_progress=False,
        evaluation=evaluation,
    )


@pytest.fixture(scope="module")
def linear() -> pipeline.TrainingOutcome:
    return train("linear", choice="best")


@pytest.fixture(scope="module")
def parts() -> dict[str, pl.DataFrame]:
    features, labels = world("linear")
    data = time_split(pipeline.training_set(features, labels), SPLIT, TZ)
    return {name: data.filter(pl.col("split") == name) for name in ("train", "valid", "oot")}


def test_the_validation_winner_is_chosen_and_every_candidate_is_reported(linear) -> None:
    table = linear.tables["evaluation/candidates.csv"]
    assert table["candidate"].to_list() == ["scorecard", "lightgbm", "blend"]
    best = table.sort("valid_auc", descending=True, maintain_order=True)["candidate"][0]
    assert linear.chosen == best == table.filter("chosen")["candidate"].item()
    assert linear.metrics["valid_auc"] == table.filter("chosen")["valid_auc"].item()
    assert linear.choice.startswith(f"highest validation AUC: {best}")
    for name in table["candidate"]:
        assert 0.5 < linear.metrics[f"candidate_{name}_oot_auc"] < 1


def test_a_linear_world_is_won_by_the_scorecard_or_the_blend(linear) -> None:
    assert linear.chosen in {"scorecard", "blend"}
    table = linear.tables["evaluation/candidates.csv"].sort("candidate")
    scorecard, lightgbm = (
        table.filter(pl.col("candidate") == n) for n in ("scorecard", "lightgbm")
    )
    assert scorecard["valid_auc"].item() > lightgbm["valid_auc"].item()


def test_a_world_of_interactions_is_won_by_lightgbm_or_the_blend() -> None:
    outcome = train("interactions")  # the default rule: LightGBM must win beyond the noise
    assert outcome.chosen in {"lightgbm", "blend"}
    table = outcome.tables["evaluation/candidates.csv"]
    scorecard, lightgbm = (
        table.filter(pl.col("candidate") == n) for n in ("scorecard", "lightgbm")
    )
    assert lightgbm["valid_auc"].item() > scorecard["valid_auc"].item() + 0.03


def test_ties_go_to_the_simpler_candidate() -> None:
    def candidate(name: str, score: float) -> Candidate:
        return Candidate(name, None, None, score, np.zeros(1), {})  # type: ignore[arg-type]

    labels = np.array([0, 1] * 50)
    tied = {n: candidate(n, 0.7) for n in ("scorecard", "lightgbm", "blend")}
    best, why = choose(tied, labels, "best")
    assert best.name == "scorecard" and "then lightgbm 0.7000, blend 0.7000" in why


def test_the_simplest_candidate_within_one_standard_error_is_chosen() -> None:
    def candidate(name: str, labels: np.ndarray, signal: float) -> Candidate:
        noise = np.random.default_rng(labels.size).normal(size=labels.size)  # shared
        scores = noise + signal * labels
        return Candidate(name, None, None, auc(labels, scores), scores, {})  # type: ignore[arg-type]

    few = np.array([1] * 20 + [0] * 480)  # 20 bads: the AUC's standard error is about 0.05
    close = {
        "scorecard": candidate("scorecard", few, 0.9),
        "lightgbm": candidate("lightgbm", few, 1.1),
    }
    gap = close["lightgbm"].valid_auc - close["scorecard"].valid_auc
    assert 0 < gap < auc_standard_error(few, close["lightgbm"].valid_log_odds)
    chosen, why = choose(close, few, "simplest_within_one_se")
    assert chosen.name == "scorecard" and why.startswith("simplest within one standard error")
    assert choose(close, few, "best")[0].name == "lightgbm"
    many = np.array([1] * 2_000 + [0] * 20_000)  # a gap of that size is beyond the noise here
    clear = {
        "scorecard": candidate("scorecard", many, 0.9),
        "lightgbm": candidate("lightgbm", many, 1.1),
    }
    assert choose(clear, many, "simplest_within_one_se")[0].name == "lightgbm"


def test_the_auc_standard_error_matches_the_bootstrap() -> None:
    rng = np.random.default_rng(5)
    labels = np.array([1] * 60 + [0] * 1_000)
    scores = rng.normal(size=labels.size) + 0.9 * labels
    resampled = []
    for _ in range(1_000):
        rows = np.concatenate([rng.choice(60, 60), 60 + rng.choice(1_000, 1_000)])
        resampled.append(auc(labels[rows], scores[rows]))
    assert auc_standard_error(labels, scores) == pytest.approx(np.std(resampled), rel=0.1)


@pytest.mark.parametrize("final_refit", ["none", "train_valid", "all"])
def test_the_refit_sees_what_the_setting_says(monkeypatch, final_refit: str) -> None:
    seen: list[list[str]] = []

    def recording(recipe, spec, frame, settings, folds, methods, floor):
        seen.append(sorted(frame["split"].unique()))
        return refit(recipe, spec, frame, settings, folds, methods, floor)

    monkeypatch.setattr(pipeline, "refit", recording)
    outcome = train("linear", n=4_000, final_refit=final_refit, trials=1, scorecard_trials=1)
    expected = {
        "none": [],
        "train_valid": [["train", "valid"]],
        "all": [["train", "valid"], ["oot", "train", "valid"]],
    }[final_refit]
    assert seen == expected
    assert (outcome.registered is outcome.model) == (final_refit != "all")
    assert outcome.fitted_on["evaluated"].startswith(
        "train" if final_refit == "none" else "train + valid"
    )
    if final_refit == "all":
        assert outcome.fitted_on["registered"].startswith("train + valid + oot")


def test_the_refit_calibration_is_fitted_out_of_fold(parts) -> None:
    """Each fold's scores come from a model fitted without it; the final model sees all."""
    seen = pl.concat([parts["train"], parts["valid"]])
    spec = FeatureSpec.from_frame(seen, NAMES)
    fitted: list[int] = []

    class Recording(ScorecardRecipe):
        def fit(self, spec, frame, settings):
            fitted.append(frame.height)
            return super().fit(spec, frame, settings)

    result = refit(Recording(ScorecardParams(features=10)), spec, seen, SETTINGS, folds=4)
    assert fitted[:4] == [seen.height - len(f) for f in np.array_split(np.arange(seen.height), 4)]
    assert fitted[4] == result.rows == seen.height
    assert set(result.brier) == {"isotonic", "platt"}
    assert isinstance(result.calibrator, Calibrator)


def test_lightgbm_refits_boost_rounds_in_proportion_to_rows() -> None:
    recipe = LightGBMRecipe({"boosting": "gbdt"}, rounds=120, train_rows=4_000)
    assert recipe.rounds_for(6_000, SETTINGS) == 180
    dart = LightGBMRecipe({"boosting": "dart"}, rounds=120, train_rows=4_000)
    assert dart.rounds_for(6_000, SETTINGS) == SETTINGS.dart_rounds


def fitted_candidates(parts: dict[str, pl.DataFrame]) -> dict[str, Candidate]:
    spec = FeatureSpec.from_frame(parts["train"], NAMES)
    return fit_candidates(spec, parts, SETTINGS, folds=5, show_progress=False).candidates


@pytest.fixture(scope="module")
def candidates(parts) -> dict[str, Candidate]:
    return fitted_candidates(parts)


def test_every_candidate_type_is_deterministic(parts, candidates) -> None:
    """Fitted twice, every candidate is the same to the byte; so is the refit of the blend,
    which refits the scorecard and LightGBM inside it (and calibrates out of fold)."""
    first, second = candidates, fitted_candidates(parts)
    spec = FeatureSpec.from_frame(parts["train"], NAMES)
    seen = pl.concat([parts["train"], parts["valid"]])
    for name in ("scorecard", "lightgbm", "blend"):
        assert pickle.dumps(first[name].scorer) == pickle.dumps(second[name].scorer), name
        assert first[name].valid_auc == second[name].valid_auc
    a, b = (refit(c["blend"].recipe, spec, seen, SETTINGS, 2) for c in (first, second))
    assert isinstance(a.scorer, Blend)
    assert pickle.dumps(a.scorer) == pickle.dumps(b.scorer)
    assert a.brier == b.brier


def test_the_blend_weight_is_chosen_out_of_fold(parts, candidates) -> None:
    blend = candidates["blend"]
    assert isinstance(blend.scorer, Blend) and 0 <= blend.scorer.weight <= 1
    matrix = FeatureSpec.from_frame(parts["valid"], NAMES).matrix(parts["valid"])
    w = blend.scorer.weight
    expected = (
        w * candidates["lightgbm"].valid_log_odds + (1 - w) * candidates["scorecard"].valid_log_odds
    )
    np.testing.assert_allclose(blend.scorer.log_odds(matrix), expected)
    # Out of fold, the weight is never chosen on the rows it scores: no better than in sample.
    in_sample = auc(parts["valid"]["label"].to_numpy(), expected)
    assert blend.valid_auc <= in_sample + 1e-12


@pytest.mark.parametrize("kind", ["scorecard", "lightgbm", "blend"])
def test_every_candidate_type_decides_with_reasons(parts, candidates, kind: str) -> None:
    candidate = candidates[kind]
    spec = FeatureSpec.from_frame(parts["train"], NAMES)
    words = {name: f"feature {name} in words" for name in NAMES}
    model = PDModel(candidate.scorer, spec, words=words)
    assert model.kind == kind
    oot = parts["oot"]
    decided = model.decide(oot)
    assert decided.columns == [
        "pd",
        "score",
        "grade",
        "credit_limit",
        "price_tier",
        "reason_codes",
        "reasons",
    ]
    np.testing.assert_allclose(decided["pd"].to_numpy(), model.predict_pd(oot))
    # The riskiest applicant's first reason is a feature that carries risk, never the noise.
    riskiest = int(np.argmax(decided["pd"].to_numpy()))
    codes = decided["reason_codes"][riskiest].to_list()
    assert codes and codes[0] != "f11"
    assert decided["reasons"][riskiest].to_list()[0] == words[codes[0]]
    # A pickled model (what MLflow stores) decides the same.
    again = pickle.loads(pickle.dumps(model))
    assert again.decide(oot).equals(decided)
    assert (model.booster is None) == (kind == "scorecard")


def test_the_scorecard_tuning_starts_and_searches_where_its_settings_say(parts) -> None:
    spec = FeatureSpec.from_frame(parts["train"], NAMES)
    fitter = ScorecardFitter(parts["train"], spec.names, seed=1)
    valid = parts["valid"]
    matrix, labels = spec.matrix(valid), valid["label"].to_numpy()
    default = tune_scorecard(fitter, matrix, labels, 1, 1, ScorecardSettings())
    assert default.study is not None
    assert default.study.trials[0].params == {
        "features": N_FEATURES,  # every ranked feature: fewer than the 60 allowed
        "min_iv": 0.02,
        "max_n_bins": 10,
        "min_bin_size": 0.05,
        "C": 1.0,
    }
    start = {"features": 4, "min_iv": 0.01, "max_n_bins": 5, "min_bin_size": 0.1, "C": 0.5}
    settings = ScorecardSettings(**start, min_features=2, min_bin_sizes=(0.1, 0.2))
    found = tune_scorecard(fitter, matrix, labels, 3, 1, settings)
    assert found.study is not None and found.study.trials[0].params == start
    for trial in found.study.trials:
        assert 2 <= trial.params["features"] <= 4
        assert trial.params["min_bin_size"] in (0.1, 0.2)
    assert len(found.scorecard.characteristics) <= 4


@pytest.mark.parametrize(
    "nonsense",
    [
        {"min_bin_size": 0.03},  # the first trial must be one of min_bin_sizes
        {"max_n_bins": 12},  # outside max_n_bins_range
        {"min_features": 70},  # more than features
        {"min_iv_range": (0.1, 0.01)},
        {"min_bin_sizes": (0.05, 0.6)},  # a bin of more than half the rows
        {"features": 0},
    ],
)
def test_nonsense_scorecard_settings_are_refused(nonsense: dict) -> None:
    with pytest.raises(ValidationError):
        TrainSettings(scorecard=nonsense)


def test_the_blend_weight_comes_from_the_configured_grid(parts) -> None:
    spec = FeatureSpec.from_frame(parts["train"], NAMES)
    quick = SETTINGS.model_copy(update={"trials": 0, "scorecard_trials": 0})
    fine = fit_candidates(spec, parts, quick, folds=3, show_progress=False)
    assert fine.candidates["blend"].params["weight_lightgbm"] not in (0.0, 1.0)
    coarse = quick.model_copy(update={"blend_weights": 2})
    either = fit_candidates(spec, parts, coarse, folds=3, show_progress=False)
    assert either.candidates["blend"].params["weight_lightgbm"] in (0.0, 1.0)
    with pytest.raises(ValidationError):
        TrainSettings(blend_weights=1)


def test_scorecard_reasons_are_points_lost_against_the_best_bin(parts) -> None:
    spec = FeatureSpec.from_frame(parts["train"], NAMES)
    card = ScorecardFitter(parts["train"], spec.names, seed=1).fit(ScorecardParams(features=10))
    matrix = spec.matrix(parts["oot"])
    lost = card.contributions(matrix)
    assert lost.shape == matrix.shape and (lost >= -1e-12).all()
    used = [c.column for c in card.characteristics]
    assert not lost[:, [i for i in range(N_FEATURES) if i not in used]].any()
    # Every used characteristic has applicants in its best bin, who lost nothing on it.
    assert (lost[:, used].min(axis=0) < 1e-12).all()
    # Log-odds = the best applicant's log-odds + everything lost.
    best = card.intercept + sum(
        np.min(b * c.attainable_woe())
        for b, c in zip(card.coefficients, card.characteristics, strict=True)
    )
    np.testing.assert_allclose(card.log_odds(matrix), best + lost.sum(axis=1))


def test_the_scorecard_matches_optbinning_and_its_points_add_up(parts) -> None:
    from optbinning import BinningProcess

    train = parts["train"]
    spec = FeatureSpec.from_frame(train, NAMES)
    params = ScorecardParams(features=12, min_iv=0.0, max_n_bins=6, min_bin_size=0.05)
    card = ScorecardFitter(train, spec.names, seed=1).fit(params)
    chosen = [c.name for c in card.characteristics]
    process = BinningProcess(
        chosen,
        binning_fit_params={
            c: {"monotonic_trend": "auto_asc_desc", "max_n_bins": 6, "min_bin_size": 0.05}
            for c in chosen
        },
    ).fit(train.select(chosen).to_pandas(), train["label"].to_numpy())
    oot = parts["oot"]
    theirs = process.transform(
        oot.select(chosen).to_pandas(), metric="woe", metric_missing="empirical"
    )
    np.testing.assert_allclose(card.woe_matrix(spec.matrix(oot)), theirs.to_numpy(), atol=1e-9)
    # The points table: an applicant's points summed over characteristics is the score of
    # the scorecard's own (uncalibrated) PD.
    points = card.points_table(PDModel(card, spec).decision)
    applicant = oot.head(1)
    total = 0.0
    for char in card.characteristics:
        value = spec.matrix(applicant)[0, char.column]
        rows = points.filter(pl.col("feature") == char.name)["points"].to_list()
        index = (
            len(rows) - 1 if np.isnan(value) else int(np.searchsorted(char.splits, value, "right"))
        )
        total += rows[index]
    raw_pd = PDModel(card, spec).raw_score(applicant)
    expected = pl.select(score_points(pl.lit(raw_pd[0]), PDModel(card, spec).decision)).item()
    assert total == pytest.approx(expected)


def test_a_model_registered_before_candidates_loads_as_lightgbm(parts, candidates) -> None:
    booster = candidates["lightgbm"].scorer
    assert isinstance(booster, BoosterScorer)
    spec = FeatureSpec.from_frame(parts["train"], NAMES)
    old = PDModel.__new__(PDModel)
    old.__setstate__(
        {"_model_string": booster.model_string, "_booster": None, "_spec": spec.as_dict()}
    )
    assert old.kind == "lightgbm" and old.calibrator is None
    np.testing.assert_allclose(
        old.raw_score(parts["oot"]), PDModel(booster, spec).raw_score(parts["oot"])
    )


class Constant:
    """A recipe whose models rank nobody: every loan gets the same log-odds."""

    def fit(self, spec, frame, settings):
        class Scorer:
            kind = "constant"

            def log_odds(self, matrix):
                return np.full(len(matrix), -2.0)

            def contributions(self, matrix):
                return np.zeros(matrix.shape)

        return Scorer()


def test_a_refit_that_ranks_no_better_than_chance_passes_the_choice_on(parts, candidates) -> None:
    spec = FeatureSpec.from_frame(parts["train"], NAMES)
    flat = Candidate("lightgbm", None, Constant(), 0.99, np.zeros(1), {})  # type: ignore[arg-type]
    both = {"lightgbm": flat, "scorecard": candidates["scorecard"]}
    final = pipeline._final_models(flat, both, spec, parts, SETTINGS, QUICK, DecisionSettings(), {})
    assert final.chosen is candidates["scorecard"] and final.evaluated.kind == "scorecard"
    assert (
        final.why
        and "lightgbm refitted on train + valid ranks no better than chance" in final.why[0]
    )
    with pytest.raises(NoUsableModel, match="no candidate ranks loans better than chance"):
        alone = {"lightgbm": flat}
        pipeline._final_models(flat, alone, spec, parts, SETTINGS, QUICK, DecisionSettings(), {})


def test_a_world_without_signal_stops_with_a_clear_error() -> None:
    two_folds = QUICK.model_copy(update={"calibration_folds": 2})
    with pytest.raises(NoUsableModel, match="More labelled loans"):
        train("noise", two_folds, trials=1, scorecard_trials=1)
