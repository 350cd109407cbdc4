"""The application and the applicant's profile, as known on the application day.

Protected attributes (gender always; age when ``features.protected`` lists it) are never model
features: they are carried beside the features in the ``fairness_*`` columns, for fairness
reporting only. The PII columns of ``users`` never leave the reader.
"""

from __future__ import annotations

import polars as pl

from data.contract import APPLICATION_CHANNELS, GENDERS, OCCUPATIONS
from features.base import AcrossFamilies, FeatureDef, FeatureSettings, days_between, ratio
from features.engine import Context, QueryFamily

FAMILY = "application"
# The application's own columns (a spine of users has none) and the features that read them.
APPLICATION_COLUMNS = ("amount_requested", "term_months", "channel")
APPLICATION_FEATURES = ("application_amount", "application_term_months", "application_channel")
AT_APPLICATION = "at application"
INCOME_MONTHS = 6
INCOME_FEATURE = "txn_salary_amount_{days}d"

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
FAIRNESS = {
    "fairness_gender": pl.col("gender").cast(pl.Enum(GENDERS)),
    "fairness_age_years": pl.col("age_years"),
}


def columns() -> dict[str, tuple[str, pl.Expr]]:
    """Every profile feature a lender may use, before protected ones are taken out."""
    return {
        "application_amount": ("Amount requested (CNY)", pl.col("amount_requested")),
        "application_term_months": ("Term in months", pl.col("term_months").cast(pl.Float64)),
        "application_channel": (
            "Channel the application came through",
            pl.col("channel").cast(CATEGORICAL["application_channel"]),
        ),
        "application_age_years": (
            "Applicant's age in years (calendar year minus birth year)",
            pl.col("age_years"),
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


def model_columns(settings: FeatureSettings) -> dict[str, tuple[str, pl.Expr]]:
    protected = {"application_age_years"} if "age" in settings.protected else set()
    return {k: v for k, v in columns().items() if k not in protected}


def income_relative(settings: FeatureSettings, built: set[str]) -> list[AcrossFamilies]:
    """Amount requested against an income proxy: salary received over the longest window,
    per month. Computed after the families are joined (it reads the transactions family);
    none where the spine has no applications (no ``application_amount`` among `built`)."""
    if "application_amount" not in built:
        return []
    days = max(settings.windows_days)
    monthly_salary = pl.col(INCOME_FEATURE.format(days=days)) / (days / 30.0)
    return [
        AcrossFamilies(
            "application_amount_to_monthly_salary",
            f"{days}d",
            f"Amount requested over mean monthly salary received in the last {days} days "
            "(null without salary)",
            ratio(pl.col("application_amount"), monthly_salary),
        )
    ]


def profile_features(
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, ctx: Context
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """The profile as known at the cut-off; the application's own columns only where the spine
    has applications (a spine of users has none)."""
    settings, timezone = ctx.settings, ctx.timezone
    has_applications = set(APPLICATION_COLUMNS) <= set(spine.collect_schema().names())
    users = tables["users"].select(
        "user_id", "registered_at", "birth_year", "gender", "city_tier", "occupation"
    )
    # The cut-off's local year: an application's own day, or the day a loan or user is scored.
    application_year = pl.col("cutoff").dt.convert_time_zone(timezone).dt.year()
    chosen = model_columns(settings)
    if not has_applications:
        chosen = {k: v for k, v in chosen.items() if k not in APPLICATION_FEATURES}
    defs = [
        FeatureDef(name, FAMILY, AT_APPLICATION, desc, *BOUNDS.get(name, (None, None)))
        for name, (desc, _) in chosen.items()
    ]
    frame = (
        spine.join(users, on="user_id", how="left")
        .with_columns(age_years=(application_year - pl.col("birth_year")).cast(pl.Float64))
        .select(
            "application_id",
            *[expr.alias(name) for name, (_, expr) in chosen.items()],
            *[expr.alias(name) for name, expr in FAIRNESS.items()],
        )
    )
    return defs, frame


PROFILE = QueryFamily(FAMILY, profile_features)
