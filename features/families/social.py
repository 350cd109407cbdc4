"""Social ties: friends, interactions, reciprocity and defaults among friends."""

from __future__ import annotations

import polars as pl

from data.config import LabelSettings
from data.labels import default_observed_dates
from features.base import (
    SHARE,
    Aggregate,
    FeatureDef,
    FeatureSettings,
    count,
    events_before_cutoff,
    per_application,
    windowed,
)

FAMILY = "social"


def aggregates() -> list[Aggregate]:
    return [
        Aggregate("social_interactions", "Interactions initiated with other users", count),
        Aggregate(
            "social_distinct_peers",
            "Distinct users interacted with",
            lambda w: pl.col("peer_id").filter(w).n_unique(),
        ),
        Aggregate(
            "social_friend_adds",
            "New friends added",
            lambda w: count(w, pl.col("interaction") == "friend_add"),
        ),
    ]


def friendships(social: pl.LazyFrame) -> pl.LazyFrame:
    """Undirected friendships with the time they formed (the first friend_add either way)."""
    adds = social.filter(pl.col("interaction") == "friend_add").select("user_id", "peer_id", "ts")
    both_ways = pl.concat(
        [adds, adds.select(user_id="peer_id", peer_id="user_id", ts="ts")], how="vertical"
    )
    return both_ways.group_by("user_id", "peer_id").agg(pl.col("ts").min())


def friend_features(
    tables: dict[str, pl.LazyFrame],
    spine: pl.LazyFrame,
    labels: LabelSettings,
    timezone: str,
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    observed = default_observed_dates(
        tables["applications"], tables["repayments"], timezone, labels
    ).rename({"user_id": "peer_id"})
    friends = events_before_cutoff(spine, friendships(tables["social"]), None).join(
        observed, on="peer_id", how="left"
    )
    application_day = pl.col("cutoff").dt.convert_time_zone(timezone).dt.date()
    known_bad = pl.col("default_observed_on") <= application_day
    defs = [
        FeatureDef(
            "social_friends_total",
            FAMILY,
            "all history",
            "Friends made before the application",
            min_value=0.0,
        ),
        FeatureDef(
            "social_friends_defaulted_share",
            FAMILY,
            "all history",
            "Share of friends with a default observable before the application day",
            *SHARE,
        ),
    ]
    exprs = [
        pl.len().alias("social_friends_total"),
        known_bad.fill_null(False).mean().alias("social_friends_defaulted_share"),
    ]
    return defs, per_application(spine, friends, exprs, {"social_friends_total": 0.0})


def build(
    tables: dict[str, pl.LazyFrame],
    spine: pl.LazyFrame,
    settings: FeatureSettings,
    timezone: str,
    labels: LabelSettings | None = None,
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    defs, exprs, fills = windowed(FAMILY, aggregates(), settings.windows_days)
    events = tables["social"].select("user_id", "peer_id", "ts", "interaction")
    rows = events_before_cutoff(spine, events, max(settings.windows_days))
    windowed_frame = per_application(spine, rows, exprs, fills)
    friend_defs, friend_frame = friend_features(tables, spine, labels or LabelSettings(), timezone)
    frame = windowed_frame.join(friend_frame, on="application_id", how="left")
    return defs + friend_defs, frame
