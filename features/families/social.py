"""Social ties: friends, interactions, reciprocity and defaults among friends.

Interaction features count what the applicant initiated (rows with ``user_id`` = applicant).
Reciprocity also needs what the applicant received: the same table read the other way round
(``peer_id`` = applicant). Both directions are joined to the spine once; the reciprocity is
then computed per (application, peer) pair, so its cost is linear in the joined rows.
"""

from __future__ import annotations

import polars as pl

from data.config import LabelSettings
from data.contract import INTERACTIONS
from data.labels import default_observed_dates
from features.base import (
    APPLICATION,
    SHARE,
    Aggregate,
    FeatureDef,
    FeatureSettings,
    count,
    counts_by_value,
    events_before_cutoff,
    per_application,
    ratio,
    window_label,
    windowed,
    with_application_key,
)

FAMILY = "social"
OUTGOING = pl.col("outgoing")
INTERACTION_DESCRIPTIONS = {
    "friend_add": "New friends added",
    "message": "Messages sent to other users",
    "moment_like": "Likes given to other users' moments",
    "moment_comment": "Comments on other users' moments",
    "red_packet": "Red packets sent to other users",
}


def interaction_description(kind: str) -> str:
    return INTERACTION_DESCRIPTIONS.get(kind, f"Interactions of type {kind} initiated")


def aggregates() -> list[Aggregate]:
    """Over the applicant's own (outgoing) interactions."""
    by_kind = counts_by_value(
        "interaction", INTERACTIONS, lambda kind: f"social_{kind}s", interaction_description
    )
    return [
        Aggregate("social_interactions", "Interactions initiated with other users", count),
        Aggregate(
            "social_distinct_peers",
            "Distinct users interacted with",
            lambda w: pl.col("peer_id").filter(w).n_unique(),
        ),
        *by_kind,
    ]


def both_directions(social: pl.LazyFrame) -> pl.LazyFrame:
    """Every interaction twice: as sent by `user_id` (outgoing) and as received by `peer_id`."""
    sent = social.select("user_id", "peer_id", "ts", "interaction", outgoing=pl.lit(True))
    received = social.select(
        user_id="peer_id",
        peer_id="user_id",
        ts="ts",
        interaction=pl.lit(None, pl.String),
        outgoing=pl.lit(False),
    )
    return pl.concat([sent, received], how="vertical")


def reciprocity(
    spine: pl.LazyFrame, rows: pl.LazyFrame, windows: list[int]
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """Per window: of the distinct peers the applicant reached, the share who also reached the
    applicant in the same window (null when the applicant reached nobody)."""
    pairs = rows.group_by(APPLICATION, "peer_id").agg(
        pl.col("cutoff").first(),
        last_sent=pl.when(OUTGOING).then(pl.col("ts")).max(),
        last_received=pl.when(~OUTGOING).then(pl.col("ts")).max(),
    )
    defs: list[FeatureDef] = []
    exprs: list[pl.Expr] = []
    for days in windows:
        start = pl.col("cutoff") - pl.duration(days=days)
        reached = (pl.col("last_sent") >= start).fill_null(False)
        mutual = reached & (pl.col("last_received") >= start).fill_null(False)
        name = f"social_reciprocity_{window_label(days)}"
        defs.append(
            FeatureDef(
                name,
                FAMILY,
                window_label(days),
                "Share of the users reached who also reached the applicant in the window",
                *SHARE,
            )
        )
        exprs.append(ratio(mutual.sum(), reached.sum()).alias(name))
    return defs, per_application(spine, pairs, exprs)


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
    # Observable from the morning of default_observed_on: the nightly run of that day sees it.
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
    windows = settings.windows_days
    spine = with_application_key(spine)
    defs, exprs, fills = windowed(FAMILY, aggregates(), windows)
    events = tables["social"].select("user_id", "peer_id", "ts", "interaction")
    rows = events_before_cutoff(spine, both_directions(events), max(windows))
    interactions = per_application(spine, rows.filter(OUTGOING), exprs, fills)
    reciprocity_defs, reciprocity_frame = reciprocity(spine, rows, windows)
    friend_defs, friend_frame = friend_features(tables, spine, labels or LabelSettings(), timezone)
    frame = interactions.join(reciprocity_frame, on="application_id", how="left").join(
        friend_frame, on="application_id", how="left"
    )
    return defs + reciprocity_defs + friend_defs, frame
