"""Monitoring a model in use: has the population moved since it was trained, and does it still
rank and calibrate on the loans that matured since?

- The **reference** is frozen when the model is trained and saved with it
  (:attr:`models.pd_model.PDModel.reference`, built by :mod:`models.drift`).
- **Stability**: the PSI of the PD and the characteristic stability index (CSI) of every
  feature of recent applications against the reference, on the frozen bins
  (:func:`models.drift.stability`).
- **Performance**: AUC, KS and the per-grade calibration test on the loans applied since the
  training day that are labelled by now.
- A **verdict** from thresholds in :class:`models.config.MonitorSettings`: ``ok``, ``warn`` or
  ``retrain``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

from data.asof import day_start_utc
from data.config import LabelSettings, ValidationSettings
from data.labels import label_loans
from data.validation import scan_validated
from expectations.gate import gate_or_stop
from features.base import FeatureSettings
from features.build import feature_table
from models.config import DecisionSettings, MonitorSettings
from models.decision import grade_calibration
from models.drift import stability
from models.errors import NoReference
from models.metrics import auc, ks

if TYPE_CHECKING:
    from models.pd_model import PDModel

Verdict = Literal["ok", "warn", "retrain"]


@dataclass
class Performance:
    """The model on the loans applied since it was trained and labelled by now."""

    loans: int
    bads: int
    auc: float | None
    ks: float | None
    grades: pl.DataFrame | None  # the per-grade calibration test (models.decision)

    @property
    def grades_failing(self) -> int:
        if self.grades is None:
            return 0
        return int(self.grades["calibrated"].eq(False).sum())


def performance(
    labels: np.ndarray, pd: np.ndarray, decision: DecisionSettings, min_loans: int
) -> Performance:
    """AUC, KS and calibration by grade of matured loans; none below `min_loans` loans or
    without both outcomes."""
    labels = np.asarray(labels, dtype=np.float64)
    bads = int(labels.sum())
    if len(labels) < min_loans or bads in (0, len(labels)):
        return Performance(len(labels), bads, None, None, None)
    return Performance(
        len(labels),
        bads,
        auc(labels, pd),
        ks(labels, pd),
        grade_calibration(labels, pd, decision),
    )


@dataclass
class MonitorReport:
    """The verdict and what it rests on."""

    as_of: date
    model_version: str
    trained_as_of: date
    applications: int
    stability: pl.DataFrame
    performance: Performance
    trained_auc: float | None
    verdict: Verdict
    reasons: list[str]

    @property
    def score_psi(self) -> float | None:
        return self.stability.row(0, named=True)["index"]

    def as_dict(self) -> dict[str, object]:
        perf = self.performance
        return {
            "as_of": self.as_of.isoformat(),
            "model_version": self.model_version,
            "trained_as_of": self.trained_as_of.isoformat(),
            "verdict": self.verdict,
            "reasons": self.reasons,
            "applications": self.applications,
            "score_psi": self.score_psi,
            "feature_csi": dict(self.stability.tail(-1).select("column", "index").iter_rows()),
            "matured_loans": perf.loans,
            "matured_bads": perf.bads,
            "auc": perf.auc,
            "trained_auc": self.trained_auc,
            "ks": perf.ks,
            "grades": perf.grades.to_dicts() if perf.grades is not None else None,
        }

    def metrics(self) -> dict[str, float]:
        """The report's figures as MLflow metrics."""
        values = {
            "applications": float(self.applications),
            "matured_loans": float(self.performance.loans),
            "grades_failing_calibration": float(self.performance.grades_failing),
            "verdict_level": float(("ok", "warn", "retrain").index(self.verdict)),
        }
        if self.score_psi is not None:
            values["score_psi"] = self.score_psi
            values["max_feature_csi"] = float(self.stability.tail(-1)["index"].max() or 0.0)
        if self.performance.auc is not None:
            values["auc"] = self.performance.auc
        if self.performance.ks is not None:
            values["ks"] = self.performance.ks
        return values


def verdict(
    table: pl.DataFrame,
    perf: Performance,
    trained_auc: float | None,
    settings: MonitorSettings,
) -> tuple[Verdict, list[str]]:
    """``retrain`` when the PD has shifted past ``psi_retrain`` or the AUC fell by
    ``auc_drop_retrain``; ``warn`` when the PD moved past ``psi_warn``, a feature past
    ``csi_warn``, the AUC fell by ``auc_drop_warn`` or a grade failed its calibration test;
    else ``ok``. The reasons say which, with the figures."""
    retrain: list[str] = []
    warn: list[str] = []
    score_psi = table.row(0, named=True)["index"]
    if score_psi is None:
        warn.append("no applications in the recent days to compare with the reference")
    elif score_psi >= settings.psi_retrain:
        retrain.append(f"PSI of the PD {score_psi:.3f} >= {settings.psi_retrain}")
    elif score_psi >= settings.psi_warn:
        warn.append(f"PSI of the PD {score_psi:.3f} >= {settings.psi_warn}")
    moved = table.tail(-1).filter(pl.col("index") >= settings.csi_warn)
    if moved.height:
        shown = ", ".join(
            f"{c} {v:.3f}" for c, v in moved.head(5).select("column", "index").iter_rows()
        )
        warn.append(f"{moved.height} feature(s) with CSI >= {settings.csi_warn}: {shown}")
    if perf.auc is not None and trained_auc is not None:
        drop = trained_auc - perf.auc
        line = (
            f"AUC {perf.auc:.4f} on {perf.loans:,} matured loans, {drop:.4f} below "
            f"training's {trained_auc:.4f}"
        )
        if drop >= settings.auc_drop_retrain:
            retrain.append(line)
        elif drop >= settings.auc_drop_warn:
            warn.append(line)
    if perf.grades_failing:
        warn.append(f"{perf.grades_failing} grade(s) fail the binomial calibration test")
    if retrain:
        return "retrain", retrain + warn
    return ("warn", warn) if warn else ("ok", [])


def monitor_day(
    raw: Path,
    day: date,
    model: PDModel,
    version: str,
    *,
    timezone: str,
    validation: ValidationSettings,
    features: FeatureSettings,
    labels: LabelSettings,
    settings: MonitorSettings,
    gate_dir: Path,
) -> MonitorReport:
    """The monitor's report on day `day` (what was recorded before it): the applications of
    the last ``recent_days`` days against the model's reference, and the loans applied since
    its training day that are labelled by now. The gate runs as of `day`."""
    reference = model.reference
    if reference is None:
        raise NoReference(
            f"{version} was registered without a monitoring reference: retrain to monitor it"
        )
    outcome = gate_or_stop(raw, gate_dir, validation, timezone, day)
    tables = scan_validated(outcome.report, timezone)
    recent_from = day - timedelta(days=settings.recent_days)
    since = day_start_utc(min(recent_from, reference.as_of), timezone)
    _, built = feature_table(tables, features, timezone, labels, since=since)
    model.check_inputs(built.columns)
    recent = built.filter(pl.col("applied_at") >= day_start_utc(recent_from, timezone))
    table = stability(reference, recent, predicted(model, recent))
    labelled = label_loans(tables["applications"], tables["repayments"], day, timezone, labels)
    matured = built.join(
        labelled.filter(pl.col("label").is_not_null()).select("application_id", "label").collect(),
        on="application_id",
    ).filter(pl.col("applied_at") >= day_start_utc(reference.as_of, timezone))
    perf = performance(
        matured["label"].to_numpy(),
        predicted(model, matured),
        model.decision,
        settings.min_matured_loans,
    )
    said, reasons = verdict(table, perf, reference.auc, settings)
    return MonitorReport(
        as_of=day,
        model_version=version,
        trained_as_of=reference.as_of,
        applications=recent.height,
        stability=table,
        performance=perf,
        trained_auc=reference.auc,
        verdict=said,
        reasons=reasons,
    )


def predicted(model: PDModel, features: pl.DataFrame) -> np.ndarray:
    """The model's PD of each row (none for no rows)."""
    return model.predict_pd(features) if features.height else np.empty(0)
