"""The data gate as a whole: Polars enforces, Great Expectations records and cross-checks.

1. ``data.validation.run_gate`` evaluates every contract rule on every row in Polars, sets
   rows aside with the rule they broke, and checks rows read = kept + set aside.
2. Each table's committed suite (``expectations/suites/raw.<table>.json``) runs in GX on a
   bounded sample of that table, set-aside rows first. GX's unexpected count of every
   row-level rule must equal the Polars verdicts on the same rows: a disagreement means the two
   engines read a rule differently, and stops the run as an internal error.
3. Statistical expectations (volumes, amount medians, enumeration shares against recent
   history) run in GX on small daily aggregates; each one warns or stops, by setting.

GX thus sees every rule and every check, and its results and Data Docs are the record, while
the cost of pandas is bounded by the sample size rather than the data size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from data.asof import latest_record_dates
from data.config import ValidationSettings
from data.rules import RULES, Kind
from data.storage import write_text_atomic
from data.validation import GateReport, flag, run_gate, scan_validated
from expectations.naming import SAMPLE_KINDS, raw_suite_name
from expectations.runner import SuiteResult, validate

COMPARED_KINDS = (SAMPLE_KINDS - {Kind.UNIQUE}) | {
    Kind.BEFORE_AS_OF,
    Kind.PARTITION_DATE,
    Kind.LOAN_ID_IFF_APPROVED,
    Kind.DIFFERS_FROM,
    Kind.LOAN_BEFORE_AS_OF,
    Kind.REFERENCE,
}


class DataGateStop(Exception):
    """The data gate found problems that must stop the run (each one named); `outcome` is the
    gate's whole verdict when the stop came from :func:`gate_or_stop`."""

    def __init__(
        self,
        problems: list[str],
        report: Path | None = None,
        outcome: DataGateOutcome | None = None,
    ) -> None:
        self.problems = problems
        self.outcome = outcome
        where = f" (report: {report})" if report else ""
        super().__init__("the data gate stopped the run" + where + ":\n  " + "\n  ".join(problems))


class EnginesDisagree(RuntimeError):
    """GX and Polars counted a rule differently on the same rows: a bug, not bad data."""


@dataclass
class DataGateOutcome:
    """The gate's verdict: Polars counts, GX results, and what stops or warns."""

    report: GateReport
    results: list[SuiteResult] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.stops

    @property
    def as_of(self) -> date:
        return self.report.as_of

    def as_dict(self) -> dict[str, object]:
        summary = self.report.as_dict()
        summary.update(
            ok=self.ok,
            stops=list(self.stops),
            warnings=list(self.warnings),
            expectations={
                r.suite_name: {"success": r.success, "skipped": r.skipped, "action": r.action}
                for r in self.results
            },
        )
        return summary


def _comparable(column: pl.Series, kind: Kind) -> bool:
    # pandas reads a float NaN as missing; Polars keeps NaN apart from null. Where a sample
    # holds NaN the two engines legitimately file it under different rules.
    float_kinds = (Kind.NOT_NULL, Kind.POSITIVE, Kind.NON_NEGATIVE, Kind.IN_RANGE)
    return not (kind in float_kinds and column.dtype.is_float() and column.is_nan().any())


def check_agreement(result: SuiteResult, sample: pl.DataFrame, table: str) -> None:
    """Raise :class:`EnginesDisagree` where GX and Polars count a rule differently."""
    by_rule = {outcome.rule: outcome for outcome in result.results if outcome.rule}
    problems = []
    for rule in RULES[table]:
        outcome = by_rule.get(rule.name)
        if outcome is None or rule.kind not in COMPARED_KINDS:
            continue
        if not _comparable(sample[rule.column], rule.kind):
            continue
        polars_count = int((~sample[flag(rule)]).sum())
        if outcome.unexpected_count != polars_count:
            problems.append(f"{rule.name}: GX {outcome.unexpected_count}, Polars {polars_count}")
    if problems:
        raise EnginesDisagree(f"table {table}: " + "; ".join(problems))


def latest_records(report: GateReport, timezone: str) -> str:
    """Each table's latest kept record, newest first: the as-of date's likely source."""
    latest = latest_record_dates(scan_validated(report, timezone), timezone)
    newest = sorted(latest.items(), key=lambda item: item[1], reverse=True)
    return "Latest record per table: " + ", ".join(f"{name} {day}" for name, day in newest)


def gate_or_stop(
    raw: Path,
    out: Path,
    settings: ValidationSettings,
    timezone: str,
    as_of: date | None = None,
) -> DataGateOutcome:
    """The gate as every command runs it: :func:`run_data_gate`, then :class:`DataGateStop`
    (naming the report under `out`, carrying the outcome) when it says stop."""
    outcome = run_data_gate(raw, out, settings, timezone, as_of)
    if not outcome.ok:
        raise DataGateStop(outcome.stops, out / "report.json", outcome)
    return outcome


def run_data_gate(
    raw: Path,
    out: Path,
    settings: ValidationSettings,
    timezone: str,
    as_of: date | None = None,
) -> DataGateOutcome:
    """Run the whole gate on a raw root; write its report and GX results under `out`."""
    from expectations.stats import FRESHNESS, history_start, statistical_checks

    report = run_gate(raw, out, settings, timezone, as_of)
    outcome = DataGateOutcome(
        report=report, stops=list(report.stops), warnings=list(report.warnings)
    )
    for table, sample in report.samples.items():
        result = validate(raw_suite_name(table), sample.drop("_reason"), action="stop")
        check_agreement(result, sample, table)
        outcome.results.append(result)
    if report.ok:
        since = history_start(report.as_of, settings.stats)
        kept = {name: count.rows_kept for name, count in report.tables.items()}
        checks = statistical_checks(
            scan_validated(report, timezone, since), report.as_of, timezone, settings.stats, kept
        )
        for check in checks:
            outcome.results.append(check)
            if check.success or check.skipped:
                continue
            message = (
                "; ".join(o.message for o in check.results if not o.success) or check.suite_name
            )
            if check.suite_name == FRESHNESS:
                message += ". " + latest_records(report, timezone)
            (outcome.stops if check.action == "stop" else outcome.warnings).append(message)
    write_text_atomic(json.dumps(outcome.as_dict(), indent=2, sort_keys=True), out / "report.json")
    return outcome
