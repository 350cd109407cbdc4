"""The consumption family written as idiomatic vectorised pandas, for bench_features.

The definitions are those of ``features.families.consumption``: every application is joined
to its user's purchases in [cutoff - longest window, cutoff); each window is a row filter
followed by one named group-by aggregation. Loops run over the fixed windows only, never over
users or applications.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from data.contract import MERCHANT_CATEGORIES
from features.base import FeatureSettings

PREFIX = "consumption"
SPINE_COLUMNS = ["application_id", "user_id", "cutoff", "prev_loan_at"]
EVENT_COLUMNS = ["user_id", "ts", "amount", "merchant_category", "city", "device_id", "pay_method"]
KEY = "application_id"


def read_inputs(
    raw: Path, spine: Path, as_of_cutoff: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The spine and the purchases before the as-of cut-off."""
    applications = pd.read_parquet(spine, columns=SPINE_COLUMNS)
    filters = [("ts", "<", pd.Timestamp(as_of_cutoff))]
    events = pd.read_parquet(Path(raw) / "consumption", columns=EVENT_COLUMNS, filters=filters)
    return applications, events


def event_rows(
    spine: pd.DataFrame, events: pd.DataFrame, settings: FeatureSettings, timezone: str
) -> pd.DataFrame:
    """Each application's purchases in the longest window, with the per-row flags."""
    horizon = pd.Timedelta(days=max(settings.windows_days))
    rows = spine.merge(events, on="user_id", how="inner")
    rows = rows[(rows["ts"] < rows["cutoff"]) & (rows["ts"] >= rows["cutoff"] - horizon)]
    local = rows["ts"].dt.tz_convert(timezone)
    user_mean = rows.groupby(KEY)["amount"].transform("mean")
    return rows.assign(
        local_day=local.dt.normalize(),
        is_night=local.dt.hour < settings.night_end_hour,
        is_weekend=local.dt.day_of_week >= 5,
        is_luxury=rows["merchant_category"] == "luxury",
        is_gaming=rows["merchant_category"] == "gaming",
        is_credit=rows["pay_method"] == "credit",
        is_large=rows["amount"] > settings.large_multiple * user_mean,
        since_loan=rows["ts"] >= rows["prev_loan_at"],  # False where there was no loan
    )


def entropy(rows: pd.DataFrame) -> pd.Series:
    """Shannon entropy (nats) of each application's merchant-category shares."""
    counts = rows.groupby([KEY, "merchant_category"], observed=True).size()
    shares = counts / counts.groupby(level=KEY).transform("sum")
    return -(shares * np.log(shares)).groupby(level=KEY).sum()


def window_features(rows: pd.DataFrame) -> pd.DataFrame:
    """The windowed aggregates of the rows of one window (stems without the window label)."""
    aggregated = rows.groupby(KEY).agg(
        count=("amount", "size"),
        amount_sum=("amount", "sum"),
        amount_mean=("amount", "mean"),
        amount_std=("amount", "std"),
        amount_max=("amount", "max"),
        active_days=("local_day", "nunique"),
        night_share=("is_night", "mean"),
        weekend_share=("is_weekend", "mean"),
        luxury_share=("is_luxury", "mean"),
        gaming_share=("is_gaming", "mean"),
        credit_share=("is_credit", "mean"),
        distinct_cities=("city", "nunique"),
        distinct_devices=("device_id", "nunique"),
        large_count=("is_large", "sum"),
    )
    mean = aggregated["amount_mean"]
    aggregated["amount_cv"] = (aggregated["amount_std"] / mean).where(mean > 0)
    aggregated["category_entropy"] = entropy(rows)
    return aggregated


FILLED = (
    "count",
    "amount_sum",
    "active_days",
    "distinct_cities",
    "distinct_devices",
    "large_count",
)
ORDER = (
    "count",
    "amount_sum",
    "amount_mean",
    "amount_std",
    "amount_cv",
    "amount_max",
    "active_days",
    "night_share",
    "weekend_share",
    "luxury_share",
    "gaming_share",
    "credit_share",
    "category_entropy",
    "distinct_cities",
    "distinct_devices",
    "large_count",
)


def category_shares(rows: pd.DataFrame, horizon: str) -> pd.DataFrame:
    """Each merchant category's share of the purchases over the longest window."""
    counts = rows.groupby([KEY, "merchant_category"], observed=True).size().unstack(fill_value=0)
    counts = counts.reindex(columns=list(MERCHANT_CATEGORIES), fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0)
    return shares.rename(columns=lambda c: f"{PREFIX}_category_share_{c}_{horizon}")


def windowed(
    rows: pd.DataFrame, index: pd.Index, settings: FeatureSettings
) -> dict[str, pd.Series]:
    """Every windowed feature, in the Polars family's order (``<stem>_<N>d``)."""
    per_window = {
        f"{days}d": window_features(rows[rows["ts"] >= rows["cutoff"] - pd.Timedelta(days=days)])
        for days in settings.windows_days
    }
    features = {}
    for stem in ORDER:
        for w, frame in per_window.items():
            value = frame[stem].reindex(index)
            features[f"{PREFIX}_{stem}_{w}"] = value.fillna(0) if stem in FILLED else value
    return features


def since_previous_loan(rows: pd.DataFrame, applications: pd.DataFrame) -> dict[str, pd.Series]:
    """Count and amount since the previous loan: null without one, else filled with 0."""
    since = rows[rows["since_loan"]].groupby(KEY)["amount"].agg(["size", "sum"])
    had_loan = applications["prev_loan_at"].notna()
    return {
        f"{PREFIX}_{stem}_since_prev_loan": since[column]
        .reindex(applications.index)
        .fillna(0)
        .where(had_loan)
        for stem, column in (("count", "size"), ("amount_sum", "sum"))
    }


def recency_and_last_n(
    rows: pd.DataFrame, applications: pd.DataFrame, settings: FeatureSettings
) -> dict[str, pd.Series]:
    """Days from the last purchase to the cut-off; mean amount of the latest N purchases."""
    index = applications.index
    last_ts = rows.groupby(KEY)["ts"].max().reindex(index)
    latest = rows.sort_values([KEY, "ts", "amount"]).groupby(KEY).tail(settings.last_n)
    days_since = (applications["cutoff"] - last_ts).dt.total_seconds() / 86_400.0
    mean_latest = latest.groupby(KEY)["amount"].mean().reindex(index)
    return {
        f"{PREFIX}_days_since_last": days_since,
        f"{PREFIX}_amount_mean_last{settings.last_n}": mean_latest,
    }


def trends(features: dict[str, pd.Series], settings: FeatureSettings) -> dict[str, pd.Series]:
    """Per-day rate of the short window over that of the long one (null when that is 0)."""
    short, long = settings.trend_days
    out = {}
    for stem in ("count", "amount_sum"):
        rate_short = features[f"{PREFIX}_{stem}_{short}d"] / short
        rate_long = features[f"{PREFIX}_{stem}_{long}d"] / long
        out[f"{PREFIX}_{stem}_trend_{short}d_{long}d"] = (rate_short / rate_long).where(
            rate_long > 0
        )
    return out


def consumption_features(
    spine: pd.DataFrame, events: pd.DataFrame, settings: FeatureSettings, timezone: str
) -> pd.DataFrame:
    """The consumption features of every spine application, sorted by application id."""
    rows = event_rows(spine, events, settings, timezone)
    applications = spine.set_index(KEY).sort_index()
    horizon = f"{max(settings.windows_days)}d"
    features = {
        **windowed(rows, applications.index, settings),
        **since_previous_loan(rows, applications),
        **category_shares(rows, horizon).reindex(applications.index).to_dict("series"),
        **recency_and_last_n(rows, applications, settings),
    }
    features.update(trends(features, settings))
    return pd.DataFrame(features, index=applications.index).reset_index()


def run(
    raw: Path,
    spine: Path,
    as_of_cutoff: datetime,
    settings: FeatureSettings,
    timezone: str,
) -> pd.DataFrame:
    """Read the inputs and compute the features of every spine application."""
    applications, events = read_inputs(raw, spine, as_of_cutoff)
    return consumption_features(applications, events, settings, timezone)
