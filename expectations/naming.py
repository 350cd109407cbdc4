"""Names shared by the Polars validation and the GX suites (no GX import: cheap to use)."""

from __future__ import annotations

from pathlib import Path

from data.rules import RULES, Kind, Rule

SUITES_DIR = Path(__file__).resolve().parent / "suites"
FEATURES_SUITE = "features"
TRAINING_SUITE = "training_set"
RULE_COLUMN_PREFIX = "_rule_"

SAMPLE_KINDS = frozenset(
    {Kind.NOT_NULL, Kind.IN_SET, Kind.POSITIVE, Kind.NON_NEGATIVE, Kind.IN_RANGE, Kind.UNIQUE}
)
"""Rules GX checks on the sample's own columns."""
DERIVED_KINDS = frozenset(Kind) - SAMPLE_KINDS
"""Every other rule (references, as-of date, partitions, loan_id iff approved, and any kind
added later) needs other tables or the run's as-of date: the Polars side evaluates it and hands
GX a boolean column ``_rule_<rule name>`` (True where the rule holds)."""


def raw_suite_name(table: str) -> str:
    """The suite of a contract table: ``raw.<table>``."""
    return f"raw.{table}"


def rule_column(rule: Rule | str) -> str:
    """The derived boolean column that carries a rule's verdict per row: ``_rule_<name>``."""
    name = rule if isinstance(rule, str) else rule.name
    return f"{RULE_COLUMN_PREFIX}{name}"


def derived_rules(table: str) -> list[Rule]:
    """The table's rules whose verdict the sample frame must carry as a ``_rule_*`` column."""
    return [rule for rule in RULES[table] if rule.kind in DERIVED_KINDS]
