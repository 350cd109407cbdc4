"""The application and the applicant's profile, as known on the application day.

Gender is never a feature (protected attribute); the PII columns never leave the reader.
"""

from __future__ import annotations

import polars as pl

from data.contract import APPLICATION_CHANNELS, OCCUPATIONS
from features.base import FeatureDef, FeatureSettings, days_between

FAMILY = "application"
AT_APPLICATION = "at application"

BOUNDS = {
    "application_amount": (0.0, None),
    "application_term_months": (1.0, 60.0),
    "application_age_years": (0.0, 120.0),
    "application_tenure_days": (0.0, None),
    "application_city_tier": (1.0, 5.0),
}
CATEGORICAL = {
    "application_channel": pl.Enum(APPLICATION_CHANNELS),
    "application_occupation": pl.Enum(OCCUPATIONS),
}


def build(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, settings: FeatureSettings, timezone: str
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    users = tables["users"].select(
        "user_id", "registered_at", "birth_year", "city_tier", "occupation"
    )
    application_year = pl.col("applied_at").dt.convert_time_zone(timezone).dt.year()
    columns = {
        "application_amount": (
            "Amount requested (CNY)",
            pl.col("amount_requested"),
        ),
        "application_term_months": ("Term in months", pl.col("term_months").cast(pl.Float64)),
        "application_channel": (
            "Channel the application came through",
            pl.col("channel").cast(CATEGORICAL["application_channel"]),
        ),
        "application_age_years": (
            "Applicant's age in years (calendar year minus birth year)",
            (application_year - pl.col("birth_year")).cast(pl.Float64),
        ),
        "application_tenure_days": (
            "Days since the applicant registered",
            days_between(pl.col("cutoff"), pl.col("registered_at")).clip(lower_bound=0),
        ),
        "application_city_tier": (
            "City tier, 1 (largest) to 5",
            pl.col("city_tier").cast(pl.Float64),
        ),
        "application_occupation": (
            "Occupation",
            pl.col("occupation").cast(CATEGORICAL["application_occupation"]),
        ),
    }
    defs = [
        FeatureDef(name, FAMILY, AT_APPLICATION, desc, *BOUNDS.get(name, (None, None)))
        for name, (desc, _) in columns.items()
    ]
    frame = spine.join(users, on="user_id", how="left").select(
        "application_id", *[expr.alias(name) for name, (_, expr) in columns.items()]
    )
    return defs, frame
