"""The versioned expectation suites, generated from the contract's rules and the settings.

``python -m expectations.suites`` writes one JSON file per suite into ``expectations/suites/``
(``--check`` only reports stale files). The files are derived data, kept in the repository so a
reviewer can read and diff what the data gate checks; never edit them by hand. A test asserts
that the committed files equal what this module generates.

Rule kind -> expectation:

- ``not_null`` -> ``expect_column_values_to_not_be_null``
- ``in_set`` -> ``expect_column_values_to_be_in_set``
- ``positive`` / ``non_negative`` / ``in_range`` -> ``expect_column_values_to_be_between``
- ``unique`` -> ``expect_column_values_to_be_unique`` (one column) or
  ``expect_compound_columns_to_be_unique`` (several)
- ``reference``, ``before_as_of``, ``partition_date``, ``loan_id_iff_approved`` need other tables
  or the run's as-of date, and ``differs_from`` compares two columns of a row: the Polars side
  supplies the boolean column ``_rule_<name>`` and the suite expects it to be True.

Every rule's expectation carries ``meta.rule`` (the rule name a set-aside row carries);
expectations that are not contract rules carry ``meta.check`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe

from data.config import ContractSettings, StatsSettings, ValidationSettings
from data.contract import CONTRACT_VERSION, TABLES
from data.rules import RULES, Kind, Rule
from expectations.naming import (
    DERIVED_KINDS,
    FEATURES_SUITE,
    SUITES_DIR,
    TRAINING_SUITE,
    raw_suite_name,
    rule_column,
)
from features.base import FeatureDef, FeatureSettings
from features.build import KEYS, feature_definitions

GENERATOR = "python -m expectations.suites"
LABEL_COLUMN = "label"
ID_COLUMN = "application_id"


def _rule_meta(rule: Rule, notes: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "rule": rule.name,
        "description": rule.description,
        "kind": rule.kind.value,
        "table": rule.table,
    }
    if notes:
        meta["notes"] = notes
    return meta


def _finite(rule: Rule, bound: float | None, sign: int) -> float | None:
    """`bound`, or for a float column the largest finite float of that `sign` where the rule
    has none: an infinite amount breaks the rule (as in data.validation), which an open bound
    would let pass."""
    if bound is not None:
        return bound
    dtype = TABLES[rule.table].column(rule.column).dtype
    return sign * sys.float_info.max if dtype.is_float() else None


def rule_expectation(rule: Rule) -> gxe.Expectation:
    """The one GX expectation that checks a contract rule on a sample of the table's rows."""
    meta = _rule_meta(rule)
    column = rule.column
    if rule.kind in DERIVED_KINDS:
        derived = rule_column(rule)
        meta["notes"] = (
            f"{derived} is computed by the Polars validation (data.validation): True where "
            "the rule holds; the rule needs other tables or the run's as-of date."
        )
        return gxe.ExpectColumnValuesToBeInSet(column=derived, value_set=[True], meta=meta)
    if rule.kind is Kind.NOT_NULL:
        return gxe.ExpectColumnValuesToNotBeNull(column=column, meta=meta)
    if rule.kind is Kind.IN_SET:
        return gxe.ExpectColumnValuesToBeInSet(
            column=column, value_set=list(rule.values or ()), meta=meta
        )
    if rule.kind is Kind.POSITIVE:
        return gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=0, strict_min=True, max_value=_finite(rule, None, 1), meta=meta
        )
    if rule.kind is Kind.NON_NEGATIVE:
        return gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=0, max_value=_finite(rule, None, 1), meta=meta
        )
    if rule.kind is Kind.IN_RANGE:
        return gxe.ExpectColumnValuesToBeBetween(
            column=column,
            min_value=_finite(rule, rule.min_value, -1),
            max_value=_finite(rule, rule.max_value, 1),
            meta=meta,
        )
    if rule.kind is Kind.UNIQUE:
        if len(rule.columns) == 1:
            return gxe.ExpectColumnValuesToBeUnique(column=column, meta=meta)
        return gxe.ExpectCompoundColumnsToBeUnique(column_list=list(rule.columns), meta=meta)
    raise ValueError(f"no expectation for rule {rule.name!r} of kind {rule.kind}")


def raw_suite(table: str) -> gx.ExpectationSuite:
    """The suite of one contract table: its columns, then one expectation per rule."""
    contract = TABLES[table]
    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=contract.read_names,
            exact_match=False,
            meta={
                "check": "contract_columns",
                "description": "every non-PII contract column is present (PII is checked in "
                "the file footers and never read; derived _rule_* columns "
                "may be added)",
                "table": table,
            },
        )
    ]
    expectations += [rule_expectation(rule) for rule in RULES[table]]
    return gx.ExpectationSuite(
        name=raw_suite_name(table),
        expectations=expectations,
        meta=_suite_meta(
            f"Contract v{CONTRACT_VERSION} rules of table {table!r} (data.rules.RULES), "
            "checked on a sample of the rows read."
        ),
    )


def features_suite(defs: Sequence[FeatureDef], stats: StatsSettings) -> gx.ExpectationSuite:
    """The feature table: every feature present, not (almost) always null, within its bounds."""
    mostly = round(1.0 - stats.feature_max_null_share, 12)
    expectations: list[gxe.Expectation] = [*_id_expectations("features")]
    for key in KEYS:
        if key != ID_COLUMN:
            expectations.append(
                gxe.ExpectColumnToExist(
                    column=key, meta={"check": f"{key}_exists", "description": "key column"}
                )
            )
    for d in defs:
        base = {"feature": d.name, "family": d.family, "window": d.window}
        expectations.append(
            gxe.ExpectColumnToExist(
                column=d.name,
                meta={**base, "check": f"{d.name}_exists", "description": d.description},
            )
        )
        expectations.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column=d.name,
                mostly=mostly,
                meta={
                    **base,
                    "check": f"{d.name}_not_always_null",
                    "description": f"at most {stats.feature_max_null_share:.1%} of rows null",
                },
            )
        )
        low, high = getattr(d, "min_value", None), getattr(d, "max_value", None)
        if low is not None or high is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=d.name,
                    min_value=low,
                    max_value=high,
                    meta={
                        **base,
                        "check": f"{d.name}_in_range",
                        "description": f"within [{low}, {high}] (nulls ignored)",
                    },
                )
            )
    return gx.ExpectationSuite(
        name=FEATURES_SUITE,
        expectations=expectations,
        meta={
            **_suite_meta("The feature table: one row per application, one column per feature."),
            "action": stats.feature_action,
        },
    )


def training_suite(stats: StatsSettings) -> gx.ExpectationSuite:
    """The labelled training set: ids, a 0/1 label and a plausible bad rate."""
    low, high = stats.bad_rate
    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(
            min_value=1, meta={"check": "not_empty", "description": "at least one labelled loan"}
        ),
        *_id_expectations("training_set"),
        gxe.ExpectColumnValuesToNotBeNull(
            column=LABEL_COLUMN,
            meta={"check": "label_not_null", "description": "every row is labelled"},
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column=LABEL_COLUMN,
            value_set=[0, 1],
            meta={"check": "label_in_set", "description": "label is 0 (good) or 1 (bad)"},
        ),
        gxe.ExpectColumnMeanToBeBetween(
            column=LABEL_COLUMN,
            min_value=low,
            max_value=high,
            meta={
                "check": "bad_rate",
                "description": f"bad rate of matured loans within [{low}, {high}]",
                "action": stats.bad_rate_action,
            },
        ),
    ]
    return gx.ExpectationSuite(
        name=TRAINING_SUITE,
        expectations=expectations,
        meta={
            **_suite_meta("The labelled training set: matured loans of complete cohorts."),
            "action": stats.bad_rate_action,
        },
    )


def _id_expectations(prefix: str) -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(
            column=ID_COLUMN,
            meta={"check": f"{ID_COLUMN}_not_null", "description": f"{prefix}: id is set"},
        ),
        gxe.ExpectColumnValuesToBeUnique(
            column=ID_COLUMN,
            meta={"check": f"{ID_COLUMN}_unique", "description": f"{prefix}: one row per id"},
        ),
    ]


def _suite_meta(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "generated_by": GENERATOR,
        "contract_version": CONTRACT_VERSION,
    }


def build_suites(
    feature_settings: FeatureSettings | None = None,
    validation: ValidationSettings | None = None,
    timezone: str | None = None,
) -> dict[str, gx.ExpectationSuite]:
    """Every suite by name, for the given settings (defaults: the committed files).

    The committed files are generated at the default settings; a run with other feature
    windows or statistical thresholds builds its suites with this function instead.
    """
    feature_settings = feature_settings or FeatureSettings()
    validation = validation or ValidationSettings()
    timezone = timezone or ContractSettings().timezone
    suites = {raw_suite_name(name): raw_suite(name) for name in TABLES}
    suites[FEATURES_SUITE] = features_suite(
        feature_definitions(feature_settings, timezone), validation.stats
    )
    suites[TRAINING_SUITE] = training_suite(validation.stats)
    return suites


def suite_dict(suite: gx.ExpectationSuite) -> dict[str, Any]:
    """A suite as a plain dict without per-process fields (ids, GX version)."""
    data = suite.to_json_dict()
    data.pop("id", None)
    meta = data.get("meta") or {}
    data["meta"] = {k: v for k, v in meta.items() if k != "great_expectations_version"}
    for expectation in data.get("expectations", []):
        expectation.pop("id", None)
    return data


def suite_json(suite: gx.ExpectationSuite) -> str:
    """Deterministic, pretty-printed JSON of a suite (what the committed files hold)."""
    return json.dumps(suite_dict(suite), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def suite_path(name: str, directory: Path = SUITES_DIR) -> Path:
    return directory / f"{name}.json"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stale_suites(
    suites: dict[str, gx.ExpectationSuite] | None = None, directory: Path = SUITES_DIR
) -> list[str]:
    """Names of suite files that are missing, differ from the generator, or are left over."""
    suites = build_suites() if suites is None else suites
    stale = [
        name
        for name, suite in suites.items()
        if not suite_path(name, directory).is_file()
        or suite_path(name, directory).read_text(encoding="utf-8") != suite_json(suite)
    ]
    extra = sorted(p.stem for p in directory.glob("*.json") if p.stem not in suites)
    return stale + extra


def write_suites(
    suites: dict[str, gx.ExpectationSuite] | None = None, directory: Path = SUITES_DIR
) -> list[Path]:
    """Write every suite atomically; remove suite files no generator produces any more."""
    suites = build_suites() if suites is None else suites
    written = []
    for name, suite in suites.items():
        path = suite_path(name, directory)
        text = suite_json(suite)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            _write_atomic(path, text)
        written.append(path)
    for leftover in directory.glob("*.json"):
        if leftover.stem not in suites:
            leftover.unlink()
    return written


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=GENERATOR, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale suite files")
    parser.add_argument("--out", type=Path, default=SUITES_DIR, help="suite folder")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.check:
        stale = stale_suites(directory=args.out)
        for name in stale:
            print(f"stale: {suite_path(name, args.out)}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_suites(directory=args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
