"""The registered model object: a feature frame in; probability of default, scorecard
score, grade, offer and reasons out, whichever candidate won (LightGBM, scorecard, blend).

What is registered in MLflow is exactly this object, so scoring uses the same feature
encoding, calibration and policy as training.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
from scipy.special import expit

from models.calibration import Calibrator
from models.candidates import BoosterScorer, Scorer, booster_of
from models.config import DecisionSettings
from models.decision import decide
from models.drift import Reference
from models.errors import ModelInputError
from models.explain import reason_codes
from models.train import FeatureSpec


class PDModel(mlflow.pyfunc.PythonModel):
    """The chosen candidate's scorer (LightGBM, scorecard or blend: log-odds and per-feature
    contributions), the feature specification, the calibration map from the scorer's
    probability to a PD (none: the probability is used as it is), and the decision settings
    that turn a PD into score, grade and offer. A LightGBM booster may be given in place of
    a scorer. The monitor's `reference` (the population it was trained for) is saved with it."""

    def __init__(
        self,
        scorer: Scorer | lgb.Booster,
        spec: FeatureSpec,
        calibrator: Calibrator | None = None,
        decision: DecisionSettings | None = None,
        words: dict[str, str] | None = None,
    ) -> None:
        self.scorer: Scorer = BoosterScorer(scorer) if isinstance(scorer, lgb.Booster) else scorer
        self._spec = spec.as_dict()
        self.calibrator = calibrator
        self.decision = decision or DecisionSettings()
        self.words = dict(words or {})  # feature -> catalogue description, for reasons
        self.reference: Reference | None = None  # set when trained (models.drift.with_reference)

    @property
    def kind(self) -> str:
        """The candidate type: ``lightgbm``, ``scorecard`` or ``blend``."""
        return self.scorer.kind

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self._spec)

    @property
    def booster(self) -> lgb.Booster | None:
        """The LightGBM booster the model holds (a blend's too), or None for a scorecard."""
        return booster_of(self.scorer)

    def check_inputs(self, columns: list[str]) -> None:
        """Raise :class:`ModelInputError` naming the model's features that `columns` lacks."""
        missing = [name for name in self.spec.names if name not in columns]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            shown = ", ".join(missing[:5]) + more
            raise ModelInputError(
                f"the feature table lacks {len(missing)} of the model's {len(self.spec.names)} "
                f"features ({shown}): was the model trained with other feature settings?"
            )

    def raw_score(self, features: pl.DataFrame) -> np.ndarray:
        """The scorer's own probability, before calibration."""
        return expit(self.scorer.log_odds(self.spec.matrix(features)))

    def calibrate(self, score: np.ndarray) -> np.ndarray:
        return score if self.calibrator is None else self.calibrator.transform(score)

    def predict_pd(self, features: pl.DataFrame) -> np.ndarray:
        return self.calibrate(self.raw_score(features))

    def contributions(self, features: pl.DataFrame) -> np.ndarray:
        """Per row and feature (in ``spec.names`` order), the contribution to the log-odds
        of default the model's reasons rank."""
        return self.scorer.contributions(self.spec.matrix(features))

    def decide(self, features: pl.DataFrame) -> pl.DataFrame:
        """Per row of `features`, in order: ``pd``, scorecard ``score``, ``grade``,
        ``credit_limit``, ``price_tier``, and the adverse factors (``reason_codes``: feature
        names; ``reasons``: in words)."""
        matrix = self.spec.matrix(features)
        pd = self.calibrate(expit(self.scorer.log_odds(matrix)))
        reasons = reason_codes(
            self.scorer.contributions(matrix), self.spec.names, self.words, self.decision.reasons
        )
        return pl.concat([decide(pd, self.decision), reasons], how="horizontal")

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.predict_pd(pl.from_pandas(model_input))

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Models registered before candidates, calibration, decisions and reason words existed
        # load as LightGBM models with their defaults: the booster's own score, the default
        # policy, features named as is.
        state = {"calibrator": None, "words": {}, "reference": None, **state}
        if "_model_string" in state:
            booster = lgb.Booster(model_str=state.pop("_model_string"))
            state.pop("_booster", None)
            state["scorer"] = BoosterScorer(booster)
        self.__dict__.update(state)
        if "decision" not in state:
            self.decision = DecisionSettings()
