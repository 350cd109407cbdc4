"""Reason codes from LightGBM's TreeSHAP contributions."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from models.explain import contributions, reason_codes

NAMES = ("utilisation", "inquiries", "noise")
WORDS = {"utilisation": "Latest bureau utilisation (latest)", "inquiries": "Inquiries (30d)"}


def model() -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5_000, 3))
    risk = 2.0 * x[:, 0] + 0.7 * x[:, 1]
    y = (rng.random(5_000) < 1 / (1 + np.exp(-(risk - 2)))).astype(int)
    params = {"objective": "binary", "verbosity": -1, "seed": 1, "deterministic": True}
    booster = lgb.train({**params, "num_threads": 1}, lgb.Dataset(x, y), 60)
    return booster, x


def test_contributions_add_up_to_the_log_odds() -> None:
    booster, x = model()
    shap = np.asarray(booster.predict(x[:100], pred_contrib=True))
    raw = booster.predict(x[:100], raw_score=True)
    assert np.allclose(shap.sum(axis=1), raw)
    assert contributions(booster, x[:100]).shape == (100, 3)


def test_the_main_driver_of_a_high_pd_comes_first_in_words() -> None:
    booster, _ = model()
    risky = np.array([[3.0, 0.0, 0.0], [2.5, 2.5, 0.0]])
    reasons = reason_codes(contributions(booster, risky), NAMES, WORDS, top=2)
    assert reasons["reason_codes"].to_list()[0][0] == "utilisation"
    assert reasons["reasons"].to_list()[0][0] == WORDS["utilisation"]
    assert set(reasons["reason_codes"].to_list()[1]) == {"utilisation", "inquiries"}


def test_only_factors_that_raised_the_pd_are_reasons() -> None:
    booster, x = model()
    reasons = reason_codes(contributions(booster, x), NAMES, WORDS, top=3)
    shap = contributions(booster, x)
    for row, codes in enumerate(reasons["reason_codes"].to_list()):
        adverse = [NAMES[i] for i in np.argsort(-shap[row], kind="stable") if shap[row, i] > 0]
        assert codes == adverse
    safe = reason_codes(contributions(booster, np.array([[-3.0, -3.0, 0.0]])), NAMES, WORDS, top=3)
    assert "utilisation" not in safe["reason_codes"][0].to_list()


def test_a_feature_without_words_is_named() -> None:
    booster, _ = model()
    reasons = reason_codes(contributions(booster, np.array([[0.0, 0.0, 3.0]])), NAMES, {}, top=3)
    assert reasons["reasons"][0].to_list() == reasons["reason_codes"][0].to_list()
