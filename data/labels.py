"""The contract's default label, computed at an as-of date.

A loan is *bad* when an installment due within its first ``window_months`` on book reaches
``threshold_days`` past due: paid that many days or more after its due date, or still unpaid
that many days after it at the as-of date. A loan is *labelled* when it is already bad or when
every installment due in the window is at least ``threshold_days`` past its due date; other
loans are immature. Rejected applications are never labelled.

Besides the contract's label, each loan gets ``is_mature`` (every in-window installment is past
the threshold, bad or not) and ``cohort_complete`` (every loan disbursed in the same calendar
month has had time to mature). Training sets use complete cohorts only: the labelled-but-immature
loans of recent months are all bad, and in a partly mature month the mature loans are mostly
the short-term ones, so either would bias bad rates.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from data.asof import local_date
from data.config import LabelSettings

LABEL_SCHEMA = pl.Schema(
    {
        "application_id": pl.String(),
        "loan_id": pl.String(),
        "user_id": pl.String(),
        "applied_at": pl.Datetime("us", "UTC"),
        "disbursal_date": pl.Date(),
        "installments_in_window": pl.UInt32(),
        "worst_dpd_in_window": pl.Int64(),
        "is_bad": pl.Boolean(),
        "is_mature": pl.Boolean(),
        "is_labelled": pl.Boolean(),
        "cohort_complete": pl.Boolean(),
        "label": pl.Int8(),
    }
)


def installment_status(
    repayments: pl.LazyFrame, as_of: date, timezone: str, threshold_days: int
) -> pl.LazyFrame:
    """Per installment, as seen at `as_of`: days past due so far, and whether it is bad/mature.

    `repayments` must already be the as-of view (payments on or after `as_of` read as unpaid).
    """
    paid_date = local_date("paid_at", timezone)
    days_since_due = (pl.lit(as_of) - pl.col("due_date")).dt.total_days()
    dpd_if_paid = (paid_date - pl.col("due_date")).dt.total_days()
    return repayments.with_columns(
        dpd=pl.when(pl.col("paid_at").is_not_null())
        .then(dpd_if_paid)
        .otherwise(days_since_due)
        .clip(lower_bound=0),
        is_bad=pl.when(pl.col("paid_at").is_not_null())
        .then(dpd_if_paid >= threshold_days)
        .otherwise(days_since_due >= threshold_days),
        is_mature=days_since_due >= threshold_days,
    )


def cohort_complete(as_of: date, settings: LabelSettings) -> pl.Expr:
    """Whether the loan's whole disbursal month is past the window and the threshold at `as_of`."""
    last_day = pl.col("disbursal_date").dt.month_end()
    window_end = last_day.dt.offset_by(f"{settings.window_months}mo")
    return window_end + pl.duration(days=settings.threshold_days) <= pl.lit(as_of)


def label_loans(
    applications: pl.LazyFrame,
    repayments: pl.LazyFrame,
    as_of: date,
    timezone: str,
    settings: LabelSettings,
) -> pl.LazyFrame:
    """One row per approved loan known at `as_of`, with the contract label (null if immature).

    Loans without a single installment due in the window (a broken schedule) stay unlabelled:
    the contract's "every installment is past the threshold" would hold vacuously for them.
    """
    loans = (
        applications.filter((pl.col("decision") == "approved") & pl.col("loan_id").is_not_null())
        .select("application_id", "loan_id", "user_id", "applied_at")
        .with_columns(disbursal_date=local_date("applied_at", timezone))
    )
    window_end = pl.col("disbursal_date").dt.offset_by(f"{settings.window_months}mo")
    in_window = (
        installment_status(repayments, as_of, timezone, settings.threshold_days)
        .join(loans.select("loan_id", "disbursal_date"), on="loan_id", how="inner")
        .filter(pl.col("due_date") <= window_end)
        .group_by("loan_id")
        .agg(
            installments_in_window=pl.len(),
            worst_dpd_in_window=pl.col("dpd").max(),
            is_bad=pl.col("is_bad").any(),
            is_mature=pl.col("is_mature").all(),
        )
    )
    has_schedule = pl.col("installments_in_window").fill_null(0) > 0
    is_bad = has_schedule & pl.col("is_bad").fill_null(False)
    is_mature = has_schedule & pl.col("is_mature").fill_null(False)
    return (
        loans.join(in_window, on="loan_id", how="left")
        .with_columns(
            installments_in_window=pl.col("installments_in_window").fill_null(0),
            is_bad=is_bad,
            is_mature=is_mature,
            is_labelled=is_bad | is_mature,
            cohort_complete=cohort_complete(as_of, settings),
        )
        .with_columns(label=pl.when(pl.col("is_labelled")).then(pl.col("is_bad").cast(pl.Int8)))
        .select(LABEL_SCHEMA.names())
        .cast(dict(LABEL_SCHEMA))
    )


def default_observed_dates(
    applications: pl.LazyFrame,
    repayments: pl.LazyFrame,
    timezone: str,
    settings: LabelSettings,
) -> pl.LazyFrame:
    """Per user, the first local day on which one of their loans was observably bad.

    An installment due in the window that was not paid within ``threshold_days`` is observable
    as bad from the morning of ``due_date + threshold_days``: that is the day an as-of run
    would first label it. Features may use a peer's default only from that day on.
    """
    loans = applications.filter(pl.col("loan_id").is_not_null()).select(
        "loan_id", "user_id", disbursal_date=local_date("applied_at", timezone)
    )
    window_end = pl.col("disbursal_date").dt.offset_by(f"{settings.window_months}mo")
    paid_late = (local_date("paid_at", timezone) - pl.col("due_date")).dt.total_days()
    not_paid_in_time = pl.col("paid_at").is_null() | (paid_late >= settings.threshold_days)
    return (
        repayments.join(loans, on="loan_id", how="inner")
        .filter((pl.col("due_date") <= window_end) & not_paid_in_time)
        .group_by("user_id")
        .agg(
            default_observed_on=(
                pl.col("due_date") + pl.duration(days=settings.threshold_days)
            ).min()
        )
    )
