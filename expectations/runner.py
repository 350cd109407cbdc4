"""Validate a Polars frame against a GX suite in one reusable in-memory GX context.

GX 1.24 has no Polars engine, so the frame goes through pandas: keep it small (a sample of a
table, or an aggregate). ``result_format`` is ``BASIC`` by default: unexpected counts and a few
unexpected values, never the full unexpected row list (``SUMMARY`` adds value counts, which
cost noticeably more time on a suite as large as the feature table's).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import great_expectations as gx
import pandas as pd
import polars as pl

from expectations.naming import SUITES_DIR

ResultFormat = Literal["BOOLEAN_ONLY", "BASIC", "SUMMARY"]
Action = Literal["warn", "stop"]

DATASOURCE = "pdflow"
BATCH_DEFINITION = "whole"
MAX_EXAMPLES = 5

_LOCK = threading.RLock()  # validate() holds it while context() takes it again
_CONTEXT: Any = None


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict, mapped back to the contract rule (or named check) it checks.

    ``observed_value`` is the aggregate GX observed (a mean, a row count, the column set) or,
    for a row-level expectation that failed, a few of the unexpected values.
    """

    rule: str | None
    expectation_type: str
    column: str | None
    success: bool
    unexpected_count: int | None
    observed_value: Any
    severity: str
    check: str | None = None
    element_count: int | None = None
    unexpected_percent: float | None = None
    exception: str | None = None
    message: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The rule name, else the check name, else the expectation type."""
        return self.rule or self.check or self.expectation_type


@dataclass(frozen=True)
class SuiteResult:
    """One suite validated on one frame.

    ``action`` is what a failure should do ("warn" or "stop"); structural suites leave it None
    and the caller decides. ``skipped`` marks a check that had too little data to run (it
    succeeds, and ``notes`` says why). ``raw`` is GX's validation result as a JSON-serialisable
    dict and ``suite`` the suite that was run, so Data Docs can be rebuilt from these alone.
    """

    suite_name: str
    success: bool
    results: list[ExpectationOutcome]
    raw: dict[str, Any]
    action: Action | None = None
    skipped: bool = False
    notes: list[str] = field(default_factory=list)
    suite: dict[str, Any] = field(default_factory=dict, repr=False)
    rows: int | None = None
    seconds: float | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success]

    @property
    def stops(self) -> bool:
        """True when the suite failed and its action is "stop"."""
        return not self.success and self.action == "stop"

    @property
    def failed_rules(self) -> list[str]:
        return [r.name for r in self.failures]

    def messages(self) -> list[str]:
        """One line per failed expectation (notes of skipped checks when nothing failed)."""
        lines = [f"{self.suite_name}: {r.message}" for r in self.failures]
        return lines or [f"{self.suite_name}: {note}" for note in self.notes]


def load_suite(name: str, directory: Path = SUITES_DIR) -> gx.ExpectationSuite:
    """The committed suite ``expectations/suites/<name>.json`` (e.g. ``raw.transactions``)."""
    path = directory / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.json"))
        raise FileNotFoundError(f"no suite {name!r} in {directory} (known: {', '.join(known)})")
    return gx.ExpectationSuite(**json.loads(path.read_text(encoding="utf-8")))


def context() -> Any:
    """The process's ephemeral GX context (created once, progress bars off)."""
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
            ctx.data_sources.add_pandas(DATASOURCE)
            _CONTEXT = ctx
        return _CONTEXT


def _batch_definition(asset_name: str) -> Any:
    """A whole-dataframe batch definition for an asset named after the suite (reused)."""
    source = context().data_sources.get(DATASOURCE)
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except (KeyError, LookupError):
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)


def to_pandas(frame: pl.DataFrame | pl.LazyFrame | pd.DataFrame) -> pd.DataFrame:
    if isinstance(frame, pd.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    return frame.to_pandas()


def validate(
    suite: gx.ExpectationSuite | str,
    frame: pl.DataFrame | pl.LazyFrame | pd.DataFrame,
    *,
    result_format: ResultFormat = "BASIC",
    action: Action | None = None,
    notes: list[str] | None = None,
) -> SuiteResult:
    """Validate `frame` against `suite` (an object, or the name of a committed suite).

    `action` defaults to the suite's ``meta.action`` (the features and training-set suites
    carry one from the settings; the raw-table suites do not).

    Expectations that cannot run (a missing column) fail with ``exception`` set; nothing raises
    for bad data.
    """
    if isinstance(suite, str):
        suite = load_suite(suite)
    if action is None:
        action = (suite.meta or {}).get("action")
    started = time.perf_counter()
    data = to_pandas(frame)
    with _LOCK:  # GX contexts are not thread-safe: one validation at a time per process
        batch = _batch_definition(suite.name).get_batch(batch_parameters={"dataframe": data})
        result = batch.validate(suite, result_format=result_format)
    suite_data = jsonable(suite.to_json_dict())
    raw = jsonable(result.to_json_dict())
    outcomes = [_outcome(r) for r in raw.get("results", [])]
    # GX returns results in its own order; keep the suite's.
    positions: dict[tuple[Any, ...], int] = {}
    for i, expectation in enumerate(suite_data.get("expectations", [])):
        positions.setdefault(_key(expectation.get("type"), expectation), i)
    outcomes.sort(key=lambda o: positions.get(_key(o.expectation_type, o), len(positions)))
    return SuiteResult(
        suite_name=suite.name,
        success=bool(result.success),
        results=outcomes,
        raw=raw,
        action=action,
        notes=list(notes or []),
        suite=suite_data,
        rows=len(data),
        seconds=round(time.perf_counter() - started, 4),
    )


def _key(kind: Any, item: dict[str, Any] | ExpectationOutcome) -> tuple[Any, ...]:
    if isinstance(item, ExpectationOutcome):
        return (kind, item.rule, item.check, item.column)
    meta = item.get("meta") or {}
    kwargs = item.get("kwargs") or {}
    column = kwargs.get("column")
    if column is None and kwargs.get("column_list"):
        column = ",".join(kwargs["column_list"])
    return (kind, meta.get("rule"), meta.get("check"), column)


def _outcome(item: dict[str, Any]) -> ExpectationOutcome:
    config = item.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    meta = dict(config.get("meta") or {})
    result = item.get("result") or {}
    exception = _exception_message(item.get("exception_info"))
    column = kwargs.get("column")
    if column is None and kwargs.get("column_list"):
        column = ",".join(kwargs["column_list"])
    unexpected = result.get("unexpected_count")
    observed = result.get("observed_value")
    if observed is None and unexpected:
        observed = list(result.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]
    outcome = ExpectationOutcome(
        rule=meta.get("rule"),
        check=meta.get("check"),
        expectation_type=config.get("type", ""),
        column=column,
        success=bool(item.get("success")),
        unexpected_count=None if unexpected is None else int(unexpected),
        observed_value=observed,
        severity=str(config.get("severity") or "critical"),
        element_count=result.get("element_count"),
        unexpected_percent=result.get("unexpected_percent"),
        exception=exception,
        meta=meta,
    )
    return _with_message(outcome, kwargs)


def _with_message(outcome: ExpectationOutcome, kwargs: dict[str, Any]) -> ExpectationOutcome:
    target = f"{outcome.name} ({outcome.column})" if outcome.column else outcome.name
    if outcome.exception:
        text = f"{target} could not be checked: {outcome.exception}"
    elif outcome.success:
        text = f"{target} holds"
    elif outcome.unexpected_count is not None:
        total = outcome.element_count
        of = f" of {total:,}" if total is not None else ""
        text = (
            f"{target} broken by {outcome.unexpected_count:,}{of} rows"
            f" (e.g. {outcome.observed_value!r})"
        )
    else:
        bounds = {
            k: v
            for k, v in kwargs.items()
            if k in ("min_value", "max_value", "value_set", "column_set") and v is not None
        }
        text = f"{target} failed: observed {outcome.observed_value!r}, expected {bounds}"
    return replace(outcome, message=text)


def _exception_message(info: Any) -> str | None:
    """GX reports exceptions either flat or keyed by metric id; return the first message."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for value in info.values():
        message = _exception_message(value)
        if message:
            return message
    return None


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy: numpy/pandas scalars to Python, dates to ISO, NaN to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or value is pd.NaT or isinstance(value, bool | str | int):
        return None if value is pd.NaT else value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return jsonable(tolist())
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


logging.getLogger("great_expectations").setLevel(logging.WARNING)
