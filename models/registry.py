"""The governed model registry: versions, the ``champion`` and ``challenger`` aliases, the
promotion gate applied, and a complete history of who moved the champion, when and why.

MLflow has no compare-and-set for aliases, so every change of alias (and the registration it
follows) happens under one lock (:func:`promotion_lock`): a file lock beside the SQLite store,
which serialises processes on one machine. The history is kept as tags of the registered model,
``pdflow.history.<n>``, one JSON event each, numbered under that lock.
"""

from __future__ import annotations

import getpass
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from filelock import FileLock, Timeout
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models.config import PromotionSettings
from models.errors import ModelNotFound, RegistryError
from models.pd_model import PDModel
from models.promotion import GateResult, compare, not_comparable

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY = "pdflow.history."
LOCK_WAIT_S = 600  # a promotion holds the lock while it re-scores the champion
REASON_CHARS = 1000
# Version tags written at registration and read back by the gate and `pdflow models`.
FITTED_MONTHS = "pdflow.fitted_months"
EVALUATED_MONTHS = "pdflow.evaluated_fitted_months"
EVALUATED_MODEL = "pdflow.evaluated_model_uri"


def load_pd_model(uri: str) -> PDModel:
    """A registered or logged pdflow PD model; :class:`ModelNotFound` with the reason if the
    URI names none (MLflow's tracking URI must already be set)."""
    import mlflow

    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as err:
        reason = str(err).splitlines()[0].rstrip(".")
        raise ModelNotFound(f"cannot load model {uri}: {reason}") from None
    model = loaded.unwrap_python_model()
    if not isinstance(model, PDModel):
        raise ModelNotFound(f"{uri} is not a pdflow PD model ({type(model).__name__})")
    return model


def lock_path(tracking_uri: str, workspace: Path) -> Path:
    """Beside the SQLite file of an embedded store; for any other store, in the workspace
    (which serialises only the processes of this machine: see the README)."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        return Path(tracking_uri[len(prefix) :] + ".promotion.lock")
    return workspace / "registry.promotion.lock"


@dataclass(frozen=True)
class Event:
    """One change of the champion or challenger alias."""

    number: int
    action: str  # first champion, challenger, promoted, kept champion, recommended, ...
    version: str
    champion_before: str | None
    champion_after: str | None
    by: str
    at: str  # ISO 8601, UTC
    reason: str


@dataclass(frozen=True)
class Settlement:
    """What registering a challenger did: the event, and the gate's result when a champion
    existed to compare with."""

    event: Event
    gate: GateResult | None
    promoted: bool


class Registry:
    """One registered model's versions, aliases and history, on one tracking store."""

    def __init__(self, tracking_uri: str, name: str, lock: Path) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.name = name
        self.lock = lock

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(self.lock), timeout=LOCK_WAIT_S):
                yield
        except Timeout:
            raise RegistryError(
                f"another promotion has held {self.lock} for {LOCK_WAIT_S} s; try again"
            ) from None

    def alias(self, alias: str) -> ModelVersion | None:
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None

    def version(self, version: str) -> ModelVersion:
        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException:
            raise RegistryError(f"{self.name} has no version {version}") from None

    def versions(self) -> list[ModelVersion]:
        found = self.client.search_model_versions(f"name='{self.name}'")
        return sorted(found, key=lambda v: int(v.version))

    def aliases(self) -> dict[str, list[str]]:
        """Version -> its aliases (a search of versions leaves them out)."""
        try:
            held = self.client.get_registered_model(self.name).aliases
        except MlflowException:
            return {}
        by_version: dict[str, list[str]] = {}
        for alias, version in sorted(held.items()):
            by_version.setdefault(str(version), []).append(alias)
        return by_version

    def history(self) -> list[Event]:
        try:
            tags = self.client.get_registered_model(self.name).tags
        except MlflowException:
            return []
        events = [Event(**json.loads(v)) for k, v in tags.items() if k.startswith(HISTORY)]
        return sorted(events, key=lambda e: e.number)

    def register(self, model_uri: str, run_id: str, tags: dict[str, str]) -> ModelVersion:
        """A new version of the model logged at `model_uri` (call it under the lock)."""
        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(self.name)
        return self.client.create_model_version(
            self.name, model_uri, run_id=run_id, tags=tags, await_creation_for=0
        )

    def settle(
        self, version: str, gate: Callable[[ModelVersion], GateResult], mode: str
    ) -> Settlement:
        """Make `version` the challenger and apply the gate (call it under the lock). The
        first version ever registered becomes the champion too; otherwise `gate` compares it
        with the champion, and in ``auto`` mode a pass makes it the champion."""
        champion = self.alias(CHAMPION)
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)
        if champion is None:
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
            event = self._record("first champion", version, None, version, "no champion yet")
            return Settlement(event, None, True)
        result = gate(champion)
        before = str(champion.version)
        promote = result.passed and mode == "auto"
        if promote:
            self.client.set_registered_model_alias(self.name, CHAMPION, version)
        action = {
            (True, "auto"): "promoted",
            (False, "auto"): "kept champion",
            (True, "manual"): "recommended",
            (False, "manual"): "not recommended",
        }[(result.passed, mode)]
        after = version if promote else before
        reason = "; ".join(result.checks)
        return Settlement(self._record(action, version, before, after, reason), result, promote)

    def promote(self, version: str, reason: str) -> Event:
        """A reviewer makes `version` the champion (under the lock); it must be registered
        and its model must load."""
        with self.locked():
            target = self.version(version)
            load_pd_model(f"models:/{self.name}/{target.version}")
            champion = self.alias(CHAMPION)
            before = str(champion.version) if champion else None
            if before == str(target.version):
                raise RegistryError(f"version {target.version} is already the champion")
            self.client.set_registered_model_alias(self.name, CHAMPION, str(target.version))
            event = self._record("promote", str(target.version), before, target.version, reason)
            self._sign(str(target.version), "promoted", event)
            return event

    def rollback(self, reason: str) -> Event:
        """Back to the champion before the current one (under the lock)."""
        with self.locked():
            champion = self.alias(CHAMPION)
            if champion is None:
                raise RegistryError(f"{self.name} has no champion to roll back")
            current = str(champion.version)
            previous = self._previous_champion(current)
            if previous is None:
                raise RegistryError(
                    f"version {current} has no earlier champion of {self.name} to roll back to "
                    "(promote a version with `pdflow promote --version N`)"
                )
            self.version(previous)
            load_pd_model(f"models:/{self.name}/{previous}")
            self.client.set_registered_model_alias(self.name, CHAMPION, previous)
            event = self._record("rollback", previous, current, previous, reason)
            self._sign(previous, "restored", event)
            self._sign(current, "rolled_back", event)
            return event

    def _previous_champion(self, current: str) -> str | None:
        """The champion `current` replaced, with champions already rolled back skipped: the
        history replayed as a stack (a promotion pushes, a rollback pops)."""
        lineage: list[str] = []
        for event in self.history():
            if event.action == "rollback":
                lineage.pop()
            elif event.champion_after and event.champion_after != event.champion_before:
                lineage.append(event.champion_after)
        if lineage and lineage[-1] == current and len(lineage) > 1:
            return lineage[-2]
        return None

    def _record(
        self,
        action: str,
        version: str,
        before: str | None,
        after: str | None,
        reason: str,
    ) -> Event:
        number = len(self.history()) + 1
        event = Event(
            number=number,
            action=action,
            version=str(version),
            champion_before=None if before is None else str(before),
            champion_after=None if after is None else str(after),
            by=getpass.getuser(),
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            reason=reason[:REASON_CHARS],
        )
        self.client.set_registered_model_tag(
            self.name, f"{HISTORY}{number:06d}", json.dumps(asdict(event), sort_keys=True)
        )
        return event

    def _sign(self, version: str, what: str, event: Event) -> None:
        for key, value in (("by", event.by), ("at", event.at), ("reason", event.reason)):
            self.client.set_model_version_tag(self.name, version, f"pdflow.{what}_{key}", value)


def months_before(fitted: str | None, first_month: str) -> bool:
    """Whether a model fitted on months ``"YYYY-MM..YYYY-MM"`` learned nothing from
    `first_month` on (months compare as text)."""
    return bool(fitted) and fitted.split("..")[-1] < first_month  # type: ignore[union-attr]


def fair_champion_uri(registry: Registry, champion: ModelVersion, first_month: str) -> str | None:
    """The champion's model that learned nothing from the challenger's out-of-time loans
    (from `first_month` on): the registered one, else the one evaluated out of time when the
    registered one was refitted on later loans, else None."""
    tags = champion.tags
    if months_before(tags.get(FITTED_MONTHS), first_month):
        return f"models:/{registry.name}/{champion.version}"
    if tags.get(EVALUATED_MODEL) and months_before(tags.get(EVALUATED_MONTHS), first_month):
        return tags[EVALUATED_MODEL]
    return None


def gate_against(
    registry: Registry,
    champion: ModelVersion,
    oot: pl.DataFrame,
    challenger_pd: np.ndarray,
    settings: PromotionSettings,
    bins: int,
) -> GateResult:
    """Re-score the champion on the challenger's out-of-time loans (`oot`: their features
    and labels) through its registered model, and compare."""
    first_month = str(oot["month"].min())
    uri = fair_champion_uri(registry, champion, first_month)
    if uri is None:
        return not_comparable(
            f"no fair comparison: champion version {champion.version} learned from loans of "
            f"{first_month} or later (fitted on {champion.tags.get(FITTED_MONTHS, 'unknown')} "
            "months), the challenger's out-of-time months; a reviewer decides"
        )
    try:
        model = load_pd_model(uri)
        model.check_inputs(oot.columns)
    except (ModelNotFound, ValueError) as err:
        return not_comparable(
            f"the champion (version {champion.version}) cannot be scored on the challenger's "
            f"loans: {err}; a reviewer decides"
        )
    return compare(oot["label"].to_numpy(), challenger_pd, model.predict_pd(oot), settings, bins)


def decision_record(settlement: Settlement, name: str, mode: str) -> dict[str, object]:
    """The gate's decision and every number behind it, as written to
    ``promotion/decision.json``."""
    return {
        "model": name,
        "mode": mode,
        "event": asdict(settlement.event),
        "promoted": settlement.promoted,
        "gate": settlement.gate.as_dict() if settlement.gate else None,
    }


def decision_line(settlement: Settlement) -> str:
    """The decision in one line, for the run's and the version's descriptions."""
    event, gate = settlement.event, settlement.gate
    if gate is None:
        return f"version {event.version} is the first champion (no champion to compare with)"
    if not gate.comparable:
        return f"{event.action}: {gate.checks[0]}"
    return (
        f"{event.action}: AUC {gate.challenger_auc:.4f} against champion version "
        f"{event.champion_before}'s {gate.champion_auc:.4f} on the same loans "
        f"(difference {gate.auc_difference:+.4f}, one-sided DeLong p = {gate.p_value:.3g})"
    )


# The gate's numbers a reviewer scans in the registry's version list; all of them are in
# the version's description and the run's promotion/decision.json.
GATE_TAGS = ("challenger_auc", "champion_auc", "auc_difference", "p_value", "psi")


def version_tags(settlement: Settlement) -> dict[str, str]:
    """The gate's decision and headline numbers as tags of the challenger version."""
    tags = {
        "pdflow.gate.decision": settlement.event.action,
        "pdflow.gate.champion_before": settlement.event.champion_before or "",
    }
    if settlement.gate is not None:
        numbers = settlement.gate.as_dict()
        for key in GATE_TAGS:
            if math.isfinite(numbers[key]):  # type: ignore[arg-type]
                tags[f"pdflow.gate.{key}"] = f"{numbers[key]:.4g}"
    return tags


def version_description(settlement: Settlement, trained: str, card_link: str) -> str:
    """The challenger version's Markdown description: what was trained, the decision with
    every number behind it and the reasons, and the model card."""
    lines = [f"**{trained}**", "", f"**Gate:** {decision_line(settlement)}", ""]
    gate = settlement.gate
    if gate is not None and gate.comparable:
        lines += [
            "| | challenger | champion |",
            "|---|---|---|",
            f"| AUC (out of time) | {gate.challenger_auc:.4f} | {gate.champion_auc:.4f} |",
            f"| Brier score | {gate.challenger_brier:.5f} | {gate.champion_brier:.5f} |",
            f"| expected calibration error | {gate.challenger_ece:.4f} | {gate.champion_ece:.4f} |",
            "",
            f"AUC difference {gate.auc_difference:+.4f} [{gate.auc_difference_low:+.4f}, "
            f"{gate.auc_difference_high:+.4f}], one-sided DeLong p = {gate.p_value:.4g}, on "
            f"{gate.loans:,} loans ({gate.bads:,} bads); PSI of the PD against the champion's "
            f"{gate.psi:.4f}.",
            "",
        ]
    lines += [f"- {check}" for check in (gate.checks if gate else [])]
    lines += ["", f"Model card: [{card_link}]({card_link})"]
    return "\n".join(lines)
