"""The registered model object: a feature frame in; probability of default, scorecard
score, grade, offer and reasons out.

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

from models.calibration import Calibrator
from models.config import DecisionSettings
from models.decision import decide
from models.errors import ModelInputError
from models.explain import reason_codes
from models.train import FeatureSpec


class PDModel(mlflow.pyfunc.PythonModel):
    """LightGBM booster (at its best iteration), the feature specification, the calibration
    map from the booster's score to a probability (none: the score is used as it is), and the
    decision settings that turn a probability into score, grade and offer."""

    def __init__(
        self,
        booster: lgb.Booster,
        spec: FeatureSpec,
        calibrator: Calibrator | None = None,
        decision: DecisionSettings | None = None,
        words: dict[str, str] | None = None,
    ) -> None:
        self._model_string = booster.model_to_string(num_iteration=booster.best_iteration)
        self._spec = spec.as_dict()
        self._booster: lgb.Booster | None = None
        self.calibrator = calibrator
        self.decision = decision or DecisionSettings()
        self.words = dict(words or {})  # feature -> catalogue description, for reasons

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self._spec)

    @property
    def booster(self) -> lgb.Booster:
        if self._booster is None:
            self._booster = lgb.Booster(model_str=self._model_string)
        return self._booster

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
        """The booster's own probability, before calibration."""
        return self.booster.predict(self.spec.matrix(features))

    def calibrate(self, score: np.ndarray) -> np.ndarray:
        return score if self.calibrator is None else self.calibrator.transform(score)

    def predict_pd(self, features: pl.DataFrame) -> np.ndarray:
        return self.calibrate(self.raw_score(features))

    def decide(self, features: pl.DataFrame) -> pl.DataFrame:
        """Per row of `features`, in order: ``pd``, scorecard ``score``, ``grade``,
        ``credit_limit``, ``price_tier``, and the adverse factors (``reason_codes``: feature
        names; ``reasons``: in words)."""
        matrix = self.spec.matrix(features)
        pd = self.calibrate(self.booster.predict(matrix))
        reasons = reason_codes(
            self.booster, matrix, self.spec.names, self.words, self.decision.reasons
        )
        return pl.concat([decide(pd, self.decision), reasons], how="horizontal")

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.predict_pd(pl.from_pandas(model_input))

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Models registered before calibration, decisions and reason words existed load with
        # their defaults: the booster's own score, the default policy, features named as is.
        self.__dict__.update({"calibrator": None, "words": {}, **state})
        if "decision" not in state:
            self.decision = DecisionSettings()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_booster"] = None
        return state
