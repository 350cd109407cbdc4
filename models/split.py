"""Time-ordered train / validation / out-of-time split: nothing random crosses time."""

from __future__ import annotations

import polars as pl

from models.config import SplitSettings

SPLITS = ("train", "valid", "oot")


class SplitError(ValueError):
    """Too few months of mature loans for the configured split."""


def application_month(timezone: str) -> pl.Expr:
    return pl.col("applied_at").dt.convert_time_zone(timezone).dt.truncate("1mo").dt.date()


def time_split(labelled: pl.DataFrame, settings: SplitSettings, timezone: str) -> pl.DataFrame:
    """Add `month` and `split` to mature labelled loans, by local application month.

    The most recent `oot_months` months are out of time, the `valid_months` before them are
    the validation split, and everything earlier is training data.
    """
    frame = labelled.with_columns(month=application_month(timezone))
    months = frame.get_column("month").unique().sort().to_list()
    needed = settings.oot_months + settings.valid_months + settings.min_train_months
    if len(months) < needed:
        raise SplitError(
            f"{len(months)} months of mature loans ({months[0] if months else '-'} to "
            f"{months[-1] if months else '-'}); the split needs at least {needed}: "
            f"{settings.min_train_months} train + {settings.valid_months} validation + "
            f"{settings.oot_months} out-of-time"
        )
    oot_start = months[-settings.oot_months]
    valid_start = months[-settings.oot_months - settings.valid_months]
    return frame.with_columns(
        split=pl.when(pl.col("month") >= oot_start)
        .then(pl.lit("oot"))
        .when(pl.col("month") >= valid_start)
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
    )
