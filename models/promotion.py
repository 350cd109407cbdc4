"""The promotion gate: is the challenger better than the champion on the same loans?

Pure statistics over two PD vectors and the loans' labels (no registry code here): a paired
one-sided DeLong test of the AUCs, the Brier score and expected calibration error of each, and
the PSI of the challenger's PD against the champion's. ``models.registry`` applies the result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import brier_score_loss

from models.config import PromotionSettings
from models.metrics import expected_calibration_error, paired_delong, psi


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and every number behind it (NaN where there was nothing to compare).

    `passed` is whether every check holds; `checks` says each in words; `comparable` is False
    when the champion could not be scored fairly on the challenger's loans."""

    passed: bool
    comparable: bool
    discriminates: bool = False
    calibrated: bool = False
    stable: bool = False
    checks: list[str] = field(default_factory=list)
    loans: int = 0
    bads: int = 0
    challenger_auc: float = math.nan
    champion_auc: float = math.nan
    auc_difference: float = math.nan
    auc_difference_low: float = math.nan  # two-sided interval at 1 - 2 * level
    auc_difference_high: float = math.nan
    p_value: float = math.nan  # one-sided: H0 challenger AUC <= champion AUC
    challenger_brier: float = math.nan
    champion_brier: float = math.nan
    challenger_ece: float = math.nan
    champion_ece: float = math.nan
    psi: float = math.nan

    @property
    def psi_only_failure(self) -> bool:
        """Everything but the score shift holds: a reviewer may accept the shift."""
        return self.discriminates and self.calibrated and not self.stable

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """The numbers as ``promotion_*`` metrics (NaN ones left out by the caller)."""
        numbers = {k: v for k, v in asdict(self).items() if isinstance(v, float | int)}
        numbers = {k: v for k, v in numbers.items() if not isinstance(v, bool)}
        return {f"promotion_{k}": float(v) for k, v in numbers.items()}


def not_comparable(why: str) -> GateResult:
    """No fair comparison was possible (the champion cannot be scored on these loans, or it
    learned from them): the gate does not pass."""
    return GateResult(passed=False, comparable=False, checks=[why])


def compare(
    labels: np.ndarray,
    challenger_pd: np.ndarray,
    champion_pd: np.ndarray,
    settings: PromotionSettings,
    bins: int = 10,
) -> GateResult:
    """The gate on one set of loans, each scored by both models. Checks, in order:
    discrimination (higher AUC and the DeLong test rejecting "no better" at
    ``settings.level``), calibration (Brier and ECE not worse beyond the tolerances) and
    shift (PSI of the challenger's PD against the champion's below ``settings.max_psi``)."""
    labels = np.asarray(labels)
    test = paired_delong(labels, challenger_pd, champion_pd)
    low, high = test.interval(1 - 2 * settings.level)
    briers = brier_score_loss(labels, challenger_pd), brier_score_loss(labels, champion_pd)
    eces = (
        expected_calibration_error(labels, challenger_pd, bins),
        expected_calibration_error(labels, champion_pd, bins),
    )
    shift = psi(champion_pd, challenger_pd, bins)
    better = test.difference > 0 and test.p_value < settings.level
    calibrated = (
        briers[0] <= briers[1] + settings.brier_tolerance
        and eces[0] <= eces[1] + settings.ece_tolerance
    )
    stable = shift < settings.max_psi
    checks = [
        f"discrimination: {'passes' if better else 'fails'}: out-of-time AUC {test.auc_a:.4f} "
        f"against the champion's {test.auc_b:.4f} on the same {len(labels):,} loans "
        f"({test.bads:,} bads), difference {test.difference:+.4f} "
        f"[{low:+.4f}, {high:+.4f}], one-sided DeLong p = {test.p_value:.4g} "
        f"({'below' if test.p_value < settings.level else 'not below'} {settings.level:g})",
        f"calibration: {'passes' if calibrated else 'fails'}: Brier {briers[0]:.5f} against "
        f"{briers[1]:.5f} (tolerance +{settings.brier_tolerance:g}), ECE {eces[0]:.4f} against "
        f"{eces[1]:.4f} (tolerance +{settings.ece_tolerance:g})",
        f"shift: {'passes' if stable else 'fails'}: PSI of the PD against the champion's "
        f"{shift:.4f} (limit {settings.max_psi:g})",
    ]
    return GateResult(
        passed=better and calibrated and stable,
        comparable=True,
        discriminates=better,
        calibrated=calibrated,
        stable=stable,
        checks=checks,
        loans=len(labels),
        bads=test.bads,
        challenger_auc=test.auc_a,
        champion_auc=test.auc_b,
        auc_difference=test.difference,
        auc_difference_low=low,
        auc_difference_high=high,
        p_value=test.p_value,
        challenger_brier=briers[0],
        champion_brier=briers[1],
        challenger_ece=eces[0],
        champion_ece=eces[1],
        psi=shift,
    )
