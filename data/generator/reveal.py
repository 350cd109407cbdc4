"""What a root shows of its simulated world: what happened before the cut.

The world runs ``reserve_months`` past the period (:class:`.config.GeneratorConfig`); a root
holds only the rows of events, applications and registrations before local midnight of the
cut, bureau snapshots reported before it, the schedules of loans disbursed before it (an
installment paid at or after it unpaid there), and the truth of the applications it holds.
Filtering never reorders rows, so ids and files of the days before the cut do not depend on
where the cut lies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from .tables import TS, Chunk
from .timeline import Timeline


@dataclass(frozen=True)
class Cut:
    """The first local day a root does not hold: its index, date and UTC midnight."""

    day: int
    date: date
    utc_us: int

    @classmethod
    def of(cls, cut: date, tl: Timeline) -> Cut:
        day = (cut - tl.start).days
        return cls(day, cut, int(tl.to_utc(np.array([day]), np.array([0]))[0]))

    @property
    def instant(self) -> pl.Expr:
        return pl.lit(self.utc_us).cast(TS)


def before(chunk: Chunk, cut: Cut) -> Chunk:
    """The rows of ``chunk`` that happened before the cut: an event or application by its local
    day, a user by registration, a bureau snapshot by its report date."""
    if chunk.day is not None:
        keep = chunk.day < cut.day
        return Chunk(chunk.name, chunk.frame.filter(pl.Series(keep)), chunk.day[keep])
    if chunk.name == "users":
        return Chunk(chunk.name, chunk.frame.filter(pl.col("registered_at") < cut.instant), None)
    if chunk.name == "bureau_snapshots":
        return Chunk(chunk.name, chunk.frame.filter(pl.col("report_date") < cut.date), None)
    raise ValueError(f"{chunk.name} rows are cut with their applications (loans_before)")


def loans_before(
    applications: Chunk, repayments: Chunk, truth: Chunk, cut: Cut
) -> tuple[Chunk, Chunk, Chunk]:
    """The applications made before the cut, the schedules of their loans (as the lender saw
    them at the cut) and their truth."""
    applications = before(applications, cut)
    loans = applications.frame["loan_id"].drop_nulls()
    paid = pl.col("paid_at") < cut.instant
    schedules = repayments.frame.filter(pl.col("loan_id").is_in(loans)).with_columns(
        paid_at=pl.when(paid).then("paid_at"),
        amount_paid=pl.when(paid).then("amount_paid").otherwise(0.0),
    )
    held = applications.frame["application_id"]
    return (
        applications,
        Chunk(repayments.name, schedules, None),
        Chunk(truth.name, truth.frame.filter(pl.col("application_id").is_in(held)), None),
    )
