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
    BUCKET,
    SHARE,
    FeatureDef,
    FeatureSettings,
    PerWindow,
    bucket_totals,
    by_bucket,
    events_before_cutoff,
    expand,
    per_application,
    ratio,
    window_bucket,
    window_label,
    with_application_key,
    with_states,
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


def count_state(kind: str) -> str:
    return f"n_{kind}"


def bucket_states(rows: pl.LazyFrame, windows: list[int]) -> pl.LazyFrame:
    """Per (application, window bucket): the applicant's own interactions, by kind."""
    counts = [
        pl.len().alias("n"),
        *((pl.col("interaction") == k).sum().alias(count_state(k)) for k in INTERACTIONS),
    ]
    return by_bucket(rows.filter(OUTGOING), windows, counts)


def peer_states(rows: pl.LazyFrame, windows: list[int]) -> pl.LazyFrame:
    """``peers@<window>``: distinct peers the applicant reached in the window; ``mutual@``: of
    them, those who also reached the applicant in it. A peer is in every window that holds
    its latest interaction that way, the lowest bucket."""
    pairs = rows.group_by(APPLICATION, "peer_id").agg(
        pl.when(OUTGOING).then(pl.col(BUCKET)).min().alias("sent"),
        pl.when(~OUTGOING).then(pl.col(BUCKET)).min().alias("received"),
    )
    exprs = []
    for i, days in enumerate(windows):
        reached = (pl.col("sent") <= i).fill_null(False)
        mutual = reached & (pl.col("received") <= i).fill_null(False)
        label = window_label(days)
        exprs += [reached.sum().alias(f"peers@{label}"), mutual.sum().alias(f"mutual@{label}")]
    return pairs.group_by(APPLICATION).agg(exprs)


def interaction_features() -> list[PerWindow]:
    """Over the applicant's own (outgoing) interactions."""
    return [
        PerWindow(
            "social_interactions", "Interactions initiated with other users", lambda s: s("n")
        ),
        PerWindow("social_distinct_peers", "Distinct users interacted with", lambda s: s("peers")),
        *(
            PerWindow(
                f"social_{kind}s",
                interaction_description(kind),
                lambda s, k=kind: s(count_state(k)),
            )
            for kind in INTERACTIONS
        ),
    ]


def reciprocity() -> PerWindow:
    """Of the distinct peers the applicant reached, the share who also reached the applicant
    in the same window (null when the applicant reached nobody)."""
    return PerWindow(
        "social_reciprocity",
        "Share of the users reached who also reached the applicant in the window",
        lambda s: ratio(s("mutual"), s("peers")),
        bounds=SHARE,
    )


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


def interactions_and_reciprocity(
    spine: pl.LazyFrame, social: pl.LazyFrame, windows: list[int]
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """Both directions are joined to the spine once and feed both aggregations."""
    rows = events_before_cutoff(spine, both_directions(social), windows[-1]).with_columns(
        window_bucket(windows).alias(BUCKET)
    )
    buckets, peers = pl.collect_all(
        [bucket_states(rows, windows), peer_states(rows, windows)], engine="streaming"
    )
    states = (
        buckets.lazy()
        .group_by(APPLICATION)
        .agg(bucket_totals(["n", *map(count_state, INTERACTIONS)], windows))
        .join(peers.lazy(), on=APPLICATION, how="full", coalesce=True)
    )
    defs, exprs = expand(FAMILY, [*interaction_features(), reciprocity()], windows)
    return defs, with_states(spine, states).select("application_id", *exprs)


def friends_before_cutoff(spine: pl.LazyFrame, social: pl.LazyFrame) -> pl.LazyFrame:
    """Per application: its applicant's friends (``peer_id``), made by a friend_add either way
    before the cut-off. The adds are joined to the applications before the pairs are made
    unique, so only applicants' friendships are ever grouped."""
    adds = social.filter(pl.col("interaction") == "friend_add").select("user_id", "peer_id", "ts")
    both_ways = pl.concat(
        [adds, adds.select(user_id="peer_id", peer_id="user_id", ts="ts")], how="vertical"
    )
    rows = events_before_cutoff(spine, both_ways, None)
    return rows.group_by(APPLICATION, "peer_id").agg(pl.col("cutoff").first())


def friend_features(
    tables: dict[str, pl.LazyFrame],
    spine: pl.LazyFrame,
    labels: LabelSettings,
    timezone: str,
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    observed = default_observed_dates(
        tables["applications"], tables["repayments"], timezone, labels
    ).rename({"user_id": "peer_id"})
    friends = friends_before_cutoff(spine, tables["social"]).join(
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
    spine = with_application_key(spine)
    events = tables["social"].select("user_id", "peer_id", "ts", "interaction")
    windows = sorted(settings.windows_days)
    defs, interactions = interactions_and_reciprocity(spine, events, windows)
    friend_defs, friend_frame = friend_features(tables, spine, labels or LabelSettings(), timezone)
    frame = interactions.join(friend_frame, on="application_id", how="left")
    return defs + friend_defs, frame
