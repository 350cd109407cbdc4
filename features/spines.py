"""The rows features are built for: a spine of ``(key, user_id, cutoff, optional application
attributes)``, each row seeing only what was recorded before its own cut-off.

Three kinds share one engine (``features.build.feature_table``):

- applications at the start of their own local day (training, backtests): :func:`applications`
  (some of them: :func:`applications_of`);
- every loan on book at a date D, re-scored with what is known at the start of D:
  :func:`loans_on`;
- every user with an event in the days before D, with no application (the application family
  then yields the profile only, by declaration): :func:`users_on`.

Every spine carries ``application_id`` (the row's key: the application for the first two
kinds, the user for the third), ``user_id``, ``applied_at`` (null without an application),
``cutoff`` and ``prev_loan_at`` (when the user's latest loan with us before the cut-off was
disbursed). Spines of applications also carry ``amount_requested``, ``term_months`` and
``channel``; the application family declares which of its features read them, and leaves those
out for a spine of users.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Literal

import polars as pl

from data.asof import day_start_utc, local_day_start

Spine = Callable[[dict[str, pl.LazyFrame], str], pl.LazyFrame]
APPLICATION_ATTRIBUTES = {
    "applied_at": pl.Datetime("us", "UTC"),
    "amount_requested": pl.Float64,
    "term_months": pl.Int8,
    "channel": pl.String,
}
# Tables whose rows are a user's own activity: a user with one in the window is active.
ACTIVITY = {
    "transactions": "ts",
    "consumption": "ts",
    "social": "ts",
    "app_events": "ts",
    "applications": "applied_at",
}


def with_previous_loan(spine: pl.LazyFrame, applications: pl.LazyFrame) -> pl.LazyFrame:
    """`spine` in a total order (cut-off, then key: the families number its rows, and every
    evaluation of a lazy spine must number them alike), with ``prev_loan_at``: when the user's
    latest approved application before the row's cut-off was made (null if none)."""
    loans = (
        applications.filter(pl.col("decision") == "approved")
        .select("user_id", prev_loan_at="applied_at")
        .sort("prev_loan_at")
    )
    return spine.sort("cutoff", "application_id").join_asof(
        loans,
        left_on="cutoff",
        right_on="prev_loan_at",
        by="user_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )


def applications(tables: dict[str, pl.LazyFrame], timezone: str) -> pl.LazyFrame:
    """One row per application, cut at the start of its own local day."""
    spine = tables["applications"].select(
        "application_id",
        "user_id",
        *APPLICATION_ATTRIBUTES,
        cutoff=local_day_start("applied_at", timezone),
    )
    return with_previous_loan(spine, tables["applications"])


def applications_of(keys: pl.DataFrame) -> Spine:
    """The applications whose ``application_id`` is in `keys`, each cut at the start of its own
    local day (a loan's features at disbursal)."""

    def spine(tables: dict[str, pl.LazyFrame], timezone: str) -> pl.LazyFrame:
        chosen = keys.lazy().select("application_id")
        every = applications(tables, timezone)
        return every.join(chosen, on="application_id", how="semi", maintain_order="left")

    return spine


def loans_on(day: date) -> Spine:
    """Every loan on book at the start of local `day`: approved before it, with an installment
    not yet paid by then (unpaid, or paid on or after the cut-off). Keyed by its application."""

    def spine(tables: dict[str, pl.LazyFrame], timezone: str) -> pl.LazyFrame:
        cutoff = day_start_utc(day, timezone)
        open_loans = (
            tables["repayments"]
            .filter(pl.col("paid_at").is_null() | (pl.col("paid_at") >= cutoff))
            .select("loan_id")
            .unique()
        )
        loans = (
            tables["applications"]
            .filter((pl.col("decision") == "approved") & (pl.col("applied_at") < cutoff))
            .join(open_loans, on="loan_id", how="semi")
            .select("application_id", "user_id", *APPLICATION_ATTRIBUTES)
            .with_columns(cutoff=pl.lit(cutoff))
        )
        return with_previous_loan(loans, tables["applications"])

    return spine


def users_on(day: date, active_days: int) -> Spine:
    """Every user with any activity (payments, purchases, social, app, applications) in the
    `active_days` days before local `day`, cut at its start; no application attributes."""

    def spine(tables: dict[str, pl.LazyFrame], timezone: str) -> pl.LazyFrame:
        cutoff = day_start_utc(day, timezone)
        since = cutoff - timedelta(days=active_days)
        active = pl.concat(
            [
                tables[name]
                .filter(pl.col(ts).is_between(since, cutoff, closed="left"))
                .select("user_id")
                for name, ts in ACTIVITY.items()
            ]
        ).unique()
        users = active.select(
            pl.col("user_id").alias("application_id"),
            "user_id",
            pl.lit(None, APPLICATION_ATTRIBUTES["applied_at"]).alias("applied_at"),
            cutoff=pl.lit(cutoff),
        )
        return with_previous_loan(users, tables["applications"])

    return spine


def on_day(kind: Literal["loans", "users"], day: date, active_days: int) -> Spine:
    """The spine of loans on book or of active users at the start of `day`."""
    return loans_on(day) if kind == "loans" else users_on(day, active_days)


def keyed_on_day(
    table: pl.DataFrame, kind: Literal["loans", "users"], day: date, timezone: str
) -> pl.DataFrame:
    """A feature table of loans or users scored on `day`, keyed by the spine's key (the loan's
    application_id, or user_id), with the common ``cutoff`` beside the keys."""
    cutoff = pl.lit(day_start_utc(day, timezone)).alias("cutoff")
    if kind == "users":
        rest = [c for c in table.columns if c not in ("application_id", "user_id", "applied_at")]
        return table.select("user_id", cutoff, *rest).sort("user_id")
    keys = ("application_id", "user_id", "applied_at")
    rest = [c for c in table.columns if c not in keys]
    return table.select(*keys, cutoff, *rest).sort("application_id")
