"""Reason codes: why the model put an applicant's PD where it did.

Every model splits an applicant's log-odds of default into one contribution per feature:
LightGBM's own TreeSHAP (``predict(pred_contrib=True)``, against the average applicant), the
scorecard's points lost per characteristic (against its best bin), a blend the weighted sum of
its parts'. The adverse factors are the features that pushed the PD up the most; each is given
in words from the feature catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightgbm as lgb
import numpy as np
import polars as pl


def contributions(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """Per row and feature, the TreeSHAP contribution to the log-odds (the bias column
    dropped)."""
    return np.asarray(booster.predict(matrix, pred_contrib=True))[:, :-1]


def reason_words(name: str, words: Mapping[str, str]) -> str:
    """A feature in words: its catalogue description and window, or its name if it has none."""
    return words.get(name, name)


def reason_codes(
    shap: np.ndarray,
    names: tuple[str, ...],
    words: Mapping[str, str],
    top: int,
) -> pl.DataFrame:
    """The `top` adverse factors of each row of `shap` (per-feature contributions to the
    log-odds of default), largest first: ``reason_codes`` (feature names) and ``reasons`` (in
    words). Only features that raised the PD count, so a low-risk applicant may have fewer
    than `top` reasons. Ties go to the earlier feature."""
    order = np.argsort(-shap, axis=1, kind="stable")[:, :top]
    adverse = np.take_along_axis(shap, order, axis=1) > 0
    ranked = pl.DataFrame(
        {
            f"code_{i}": pl.Series(np.asarray(names)[order[:, i]]).set(
                pl.Series(~adverse[:, i]), None
            )
            for i in range(order.shape[1])
        },
        schema={f"code_{i}": pl.String for i in range(order.shape[1])},
    )
    in_words = {name: reason_words(name, words) for name in names}
    codes = pl.concat_list(pl.all()).list.drop_nulls()
    return ranked.select(
        codes.alias("reason_codes"),
        codes.list.eval(pl.element().replace_strict(in_words)).alias("reasons"),
    )
