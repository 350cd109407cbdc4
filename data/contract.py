"""The raw-log contract, version 1.1 (``shared/DATA_CONTRACT.md``) as typed table schemas.

This module is the single source of truth for table names, column names, types, value sets
and row rules. The readers, the synthetic generator and the expectation suites all derive
from it; nothing else spells a column type out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

import polars as pl

CONTRACT_VERSION = "1.1"
# pdflow's own bound on money columns, which the contract leaves open ("float64 CNY", > 0):
# no single amount in a consumer lender's logs comes near 1e12 CNY, so one above it is an
# export fault (a unit or sentinel value), and the features' exact sums and spreads, 128-bit
# integers of millionths and of hundredths, can only hold amounts up to a bound (at 1e12
# CNY a square of hundredths is 1e28, so a sum of them holds over 1e10 rows). Such rows
# are set aside like any other rule's, rather than crash the build or wrap around.
MAX_AMOUNT = 1e12
# pdflow's own bounds on every timestamp and date, which the contract leaves open: Python's
# dates end in year 9999 (a default as-of date is the day after the latest record), and no
# lender's log predates 1900 (the contract's own earliest birth year), so a record outside
# them is an export fault (a sentinel or a unit error) and is set aside.
EARLIEST_RECORD = date(1900, 1, 1)
LATEST_RECORD = date(9999, 1, 1)
UTC_TIMESTAMP = pl.Datetime("us", "UTC")


def within_record_range(values: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Whether each timestamp or date lies in [EARLIEST_RECORD, LATEST_RECORD)."""
    if dtype == pl.Date:
        return values.is_between(EARLIEST_RECORD, LATEST_RECORD, closed="left")
    bounds = [datetime.combine(d, time(), tzinfo=UTC) for d in (EARLIEST_RECORD, LATEST_RECORD)]
    return values.is_between(*(pl.lit(b, dtype=dtype) for b in bounds), closed="left")


@dataclass(frozen=True)
class Column:
    """One contract column: its type, whether nulls are allowed, and the rules on its values."""

    name: str
    dtype: pl.DataType
    nullable: bool = False
    values: tuple[str, ...] | tuple[int, ...] | None = None
    positive: bool = False
    non_negative: bool = False
    min_value: float | None = None
    max_value: float | None = None
    differs_from: str | None = None  # another column of the row it must not equal
    pii: bool = False
    description: str = ""


@dataclass(frozen=True)
class Table:
    """One contract table: its columns, unique key, event-time column and references.

    ``references`` are the columns whose value must name a kept row of another table (the
    contract's "must resolve"); a row whose value does not is set aside. A peer or counterparty
    names another person by the same id scheme, but need not be a customer: those columns are
    not references, only ``differs_from`` the row's own user."""

    name: str
    columns: tuple[Column, ...]
    unique: tuple[str, ...] = ()
    time_column: str | None = None
    partitioned: bool = False
    required: bool = True
    references: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def readable(self) -> tuple[Column, ...]:
        """The columns the pipeline reads: all but PII, which files must carry but no stage
        after the reader ever sees."""
        return tuple(c for c in self.columns if not c.pii)

    @property
    def read_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.readable})

    @property
    def read_names(self) -> list[str]:
        return [c.name for c in self.readable]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")


GENDERS = ("F", "M", "U")
OCCUPATIONS = ("salaried", "self_employed", "gig", "student", "retired", "unemployed")
DIRECTIONS = ("in", "out")
TXN_TYPES = (
    "salary",
    "transfer",
    "red_packet",
    "loan_disbursement",
    "loan_repayment",
    "refund",
    "other",
)
TXN_CHANNELS = ("wallet", "bank_card")
MERCHANT_CATEGORIES = (
    "groceries",
    "dining",
    "transport",
    "shopping",
    "utilities",
    "telecom",
    "entertainment",
    "travel",
    "education",
    "medical",
    "gaming",
    "luxury",
)
PAY_METHODS = ("balance", "bank_card", "credit")
INTERACTIONS = ("friend_add", "message", "moment_like", "moment_comment", "red_packet")
APP_EVENTS = (
    "login",
    "view_loan_product",
    "view_rate_compare",
    "limit_check",
    "apply_start",
    "apply_submit",
    "repayment_page",
    "push_open",
)
INQUIRY_REASONS = ("loan_approval", "credit_card_approval", "guarantee", "self_query", "post_loan")
INSTITUTION_TYPES = ("bank", "consumer_finance", "microloan", "other")
TERMS = (5, 10, 20)
APPLICATION_CHANNELS = ("organic", "push_message", "referral")
DECISIONS = ("approved", "rejected")

USERS = Table(
    name="users",
    description="One row per registered user: profile attributes and PII.",
    unique=("user_id",),
    columns=(
        Column("user_id", pl.String()),
        Column("registered_at", UTC_TIMESTAMP),
        Column("birth_year", pl.Int16(), min_value=1900, max_value=2100),
        Column("gender", pl.String(), values=GENDERS),
        Column("city_tier", pl.Int8(), min_value=1, max_value=5),
        Column("occupation", pl.String(), values=OCCUPATIONS),
        Column("id_number", pl.String(), pii=True),
        Column("phone", pl.String(), pii=True),
    ),
)

TRANSACTIONS = Table(
    name="transactions",
    description="Payments and transfers in and out of the user's wallet or bank card.",
    unique=("txn_id",),
    time_column="ts",
    partitioned=True,
    references={"user_id": "users"},
    columns=(
        Column("txn_id", pl.String()),
        Column("user_id", pl.String()),
        Column("ts", UTC_TIMESTAMP),
        Column("direction", pl.String(), values=DIRECTIONS),
        Column("txn_type", pl.String(), values=TXN_TYPES),
        Column("amount", pl.Float64(), positive=True, max_value=MAX_AMOUNT),
        Column(
            "counterparty_id",
            pl.String(),
            nullable=True,
            differs_from="user_id",
            description="another person's user_id, a customer or not",
        ),
        Column("channel", pl.String(), values=TXN_CHANNELS),
    ),
)

CONSUMPTION = Table(
    name="consumption",
    description="Merchant purchases.",
    unique=("order_id",),
    time_column="ts",
    partitioned=True,
    references={"user_id": "users"},
    columns=(
        Column("order_id", pl.String()),
        Column("user_id", pl.String()),
        Column("ts", UTC_TIMESTAMP),
        Column("amount", pl.Float64(), positive=True, max_value=MAX_AMOUNT),
        Column("merchant_category", pl.String(), values=MERCHANT_CATEGORIES),
        Column("city", pl.String()),
        Column("device_id", pl.String()),
        Column("pay_method", pl.String(), values=PAY_METHODS),
    ),
)

SOCIAL = Table(
    name="social",
    description="Interactions between users.",
    time_column="ts",
    partitioned=True,
    references={"user_id": "users"},
    columns=(
        Column("user_id", pl.String()),
        Column(
            "peer_id",
            pl.String(),
            differs_from="user_id",
            description="another person's user_id, a customer or not",
        ),
        Column("ts", UTC_TIMESTAMP),
        Column("interaction", pl.String(), values=INTERACTIONS),
    ),
)

APP_EVENTS_TABLE = Table(
    name="app_events",
    description="In-app behaviour.",
    time_column="ts",
    partitioned=True,
    references={"user_id": "users"},
    columns=(
        Column("user_id", pl.String()),
        Column("ts", UTC_TIMESTAMP),
        Column("event", pl.String(), values=APP_EVENTS),
        Column("session_id", pl.String()),
        Column("device_id", pl.String()),
    ),
)

BUREAU_INQUIRIES = Table(
    name="bureau_inquiries",
    description="Credit-bureau inquiries made about the user.",
    time_column="ts",
    partitioned=True,
    references={"user_id": "users"},
    columns=(
        Column("user_id", pl.String()),
        Column("ts", UTC_TIMESTAMP),
        Column("reason", pl.String(), values=INQUIRY_REASONS),
        Column("institution_type", pl.String(), values=INSTITUTION_TYPES),
    ),
)

BUREAU_SNAPSHOTS = Table(
    name="bureau_snapshots",
    description="Monthly credit-bureau report summaries.",
    unique=("user_id", "report_date"),
    references={"user_id": "users"},
    columns=(
        Column("user_id", pl.String()),
        Column("report_date", pl.Date()),
        Column("open_accounts", pl.Int16(), non_negative=True),
        Column("total_limit", pl.Float64(), non_negative=True, max_value=MAX_AMOUNT),
        Column("total_balance", pl.Float64(), non_negative=True, max_value=MAX_AMOUNT),
        Column("max_dpd_current", pl.Int16(), non_negative=True),
        Column("max_dpd_24m", pl.Int16(), non_negative=True),
    ),
)

APPLICATIONS = Table(
    name="applications",
    description="Loan applications and the lender's decision; approved ones carry a loan_id.",
    unique=("application_id",),
    time_column="applied_at",
    partitioned=True,
    references={"user_id": "users"},
    columns=(
        Column("application_id", pl.String()),
        Column("user_id", pl.String()),
        Column("applied_at", UTC_TIMESTAMP),
        Column("amount_requested", pl.Float64(), positive=True, max_value=MAX_AMOUNT),
        Column("term_months", pl.Int8(), values=TERMS),
        Column("channel", pl.String(), values=APPLICATION_CHANNELS),
        Column("decision", pl.String(), values=DECISIONS),
        Column("loan_id", pl.String(), nullable=True),
    ),
)

REPAYMENTS = Table(
    name="repayments",
    description="Installment schedule of each loan and what was paid.",
    unique=("loan_id", "installment_no"),
    references={"loan_id": "applications"},
    columns=(
        Column("loan_id", pl.String()),
        Column("installment_no", pl.Int16(), min_value=1),
        Column("due_date", pl.Date()),
        Column("amount_due", pl.Float64(), positive=True, max_value=MAX_AMOUNT),
        Column("paid_at", UTC_TIMESTAMP, nullable=True),
        Column("amount_paid", pl.Float64(), non_negative=True, max_value=MAX_AMOUNT),
    ),
)

TRUTH = Table(
    name="_truth",
    description="Synthetic data only: the default probability the simulator used.",
    unique=("application_id",),
    required=False,
    references={"application_id": "applications"},
    columns=(
        Column("application_id", pl.String()),
        Column("true_pd", pl.Float64(), min_value=0.0, max_value=1.0),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        USERS,
        TRANSACTIONS,
        CONSUMPTION,
        SOCIAL,
        APP_EVENTS_TABLE,
        BUREAU_INQUIRIES,
        BUREAU_SNAPSHOTS,
        APPLICATIONS,
        REPAYMENTS,
        TRUTH,
    )
}
EVENT_TABLES = tuple(name for name, t in TABLES.items() if t.partitioned and name != "applications")
PARTITION_COLUMN = "dt"
