"""Row rules of the raw-log contract, derived from the typed schemas in ``data.contract``.

Each rule has a stable name (the reason a set-aside row carries), a kind, the table and
column it applies to, and parameters. The Polars validation engine (``data.validation``) and
the Great Expectations suites (``expectations/``) are both generated from this list, so the
two agree by construction.

Rules are evaluated in order and a row carries the name of the first rule it breaks:
row-level rules first, then uniqueness among the rows that passed them, then references to
rows of other tables that were kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from data.contract import EARLIEST_RECORD, LATEST_RECORD, TABLES, Table


class Kind(StrEnum):
    NOT_NULL = "not_null"
    IN_SET = "in_set"
    POSITIVE = "positive"
    NON_NEGATIVE = "non_negative"
    IN_RANGE = "in_range"
    TIME_RANGE = "time_range"
    BEFORE_AS_OF = "before_as_of"
    PARTITION_DATE = "partition_date"
    LOAN_ID_IFF_APPROVED = "loan_id_iff_approved"
    DIFFERS_FROM = "differs_from"
    UNIQUE = "unique"
    LOAN_BEFORE_AS_OF = "loan_before_as_of"
    REFERENCE = "reference"


VALUE_KINDS = (
    Kind.NOT_NULL,
    Kind.IN_SET,
    Kind.POSITIVE,
    Kind.NON_NEGATIVE,
    Kind.IN_RANGE,
    Kind.TIME_RANGE,
)
"""Rules a row breaks by the value of one of its columns alone."""
ROW_KINDS = (
    *VALUE_KINDS,
    Kind.BEFORE_AS_OF,
    Kind.PARTITION_DATE,
    Kind.LOAN_ID_IFF_APPROVED,
    Kind.DIFFERS_FROM,
)


@dataclass(frozen=True)
class Rule:
    """One contract rule on the rows of one table."""

    name: str
    table: str
    kind: Kind
    columns: tuple[str, ...]
    values: tuple[object, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    references: tuple[str, str] | None = None  # (table, column) that must hold the value
    description: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def column(self) -> str:
        return self.columns[0]


def referenced_column(column: str, target: str) -> str:
    """The target's column a reference points at: the same name, else the target's id."""
    target_table = TABLES[target]
    return column if column in target_table.column_names else target_table.unique[0]


def _column_rules(table: Table) -> list[Rule]:
    rules: list[Rule] = []
    for col in table.readable:
        name = col.name
        if not col.nullable:
            rules.append(
                Rule(
                    f"{name}_not_null",
                    table.name,
                    Kind.NOT_NULL,
                    (name,),
                    description=f"{name} is set",
                )
            )
        if col.values is not None:
            rules.append(
                Rule(
                    f"{name}_in_set",
                    table.name,
                    Kind.IN_SET,
                    (name,),
                    values=tuple(col.values),
                    description=f"{name} is one of the contract's values",
                )
            )
        if col.positive:
            rules.append(
                Rule(
                    f"{name}_positive",
                    table.name,
                    Kind.POSITIVE,
                    (name,),
                    description=f"{name} > 0",
                )
            )
        if col.non_negative:
            rules.append(
                Rule(
                    f"{name}_non_negative",
                    table.name,
                    Kind.NON_NEGATIVE,
                    (name,),
                    description=f"{name} >= 0",
                )
            )
        if col.differs_from is not None:
            rules.append(
                Rule(
                    f"{name}_differs_from_{col.differs_from}",
                    table.name,
                    Kind.DIFFERS_FROM,
                    (name, col.differs_from),
                    description=f"{name} names another user than {col.differs_from}",
                )
            )
        if col.min_value is not None or col.max_value is not None:
            rules.append(
                Rule(
                    f"{name}_in_range",
                    table.name,
                    Kind.IN_RANGE,
                    (name,),
                    min_value=col.min_value,
                    max_value=col.max_value,
                    description=_range_description(name, col.min_value, col.max_value),
                )
            )
        if col.dtype.is_temporal():
            rules.append(
                Rule(
                    f"{name}_in_range",
                    table.name,
                    Kind.TIME_RANGE,
                    (name,),
                    description=f"{name} on or after {EARLIEST_RECORD} and before "
                    f"{LATEST_RECORD} (pdflow's bound)",
                )
            )
    return rules


def _range_description(name: str, low: float | None, high: float | None) -> str:
    if low is None:
        return f"{name} <= {high:g}"
    if high is None:
        return f"{name} >= {low:g}"
    return f"{name} within [{low:g}, {high:g}]"


def time_column(table: Table) -> str | None:
    """The column that says when a row was recorded (what the as-of date cuts on)."""
    if table.time_column:
        return table.time_column
    return {"users": "registered_at", "bureau_snapshots": "report_date"}.get(table.name)


def rules_for(table: Table) -> list[Rule]:
    """All rules of a table, in evaluation order."""
    rules = _column_rules(table)
    when = time_column(table)
    if when:
        rules.append(
            Rule(
                f"{when}_before_as_of",
                table.name,
                Kind.BEFORE_AS_OF,
                (when,),
                description=f"{when} is before the start of the as-of day (local time)",
            )
        )
    if table.partitioned and table.time_column:
        rules.append(
            Rule(
                f"{table.time_column}_matches_partition",
                table.name,
                Kind.PARTITION_DATE,
                (table.time_column,),
                description="the local date of the timestamp is the dt= partition it was filed in",
            )
        )
    if table.name == "applications":
        rules.append(
            Rule(
                "loan_id_iff_approved",
                table.name,
                Kind.LOAN_ID_IFF_APPROVED,
                ("loan_id", "decision"),
                description="loan_id is set exactly when the application was approved",
            )
        )
    if table.name == "repayments":
        rules.append(
            Rule(
                "loan_applied_before_as_of",
                table.name,
                Kind.LOAN_BEFORE_AS_OF,
                ("loan_id",),
                description="the loan's application was recorded before the as-of day",
            )
        )
    key = table.unique or tuple(table.column_names)
    rules.append(
        Rule(
            "_".join(table.unique) + "_unique" if table.unique else "row_unique",
            table.name,
            Kind.UNIQUE,
            key,
            description="no two rows share "
            + ("/".join(table.unique) if table.unique else "every column (a row loaded twice)"),
        )
    )
    for column, target in table.references.items():
        target_column = referenced_column(column, target)
        rules.append(
            Rule(
                f"{column}_known",
                table.name,
                Kind.REFERENCE,
                (column,),
                references=(target, target_column),
                description=f"{column} is a kept {target}.{target_column}"
                + (" of an approved application" if column == "loan_id" else ""),
            )
        )
    return rules


RULES: dict[str, list[Rule]] = {name: rules_for(table) for name, table in TABLES.items()}
