"""Discrimination metrics of a PD score."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def ks(labels: np.ndarray, scores: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the bads' and goods' score CDFs."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.max(tpr - fpr))


def summary(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    labels = np.asarray(labels)
    return {
        "auc": auc(labels, scores),
        "gini": 2 * auc(labels, scores) - 1,
        "ks": ks(labels, scores),
        "bad_rate": float(labels.mean()),
        "n": float(len(labels)),
    }
