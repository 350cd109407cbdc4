"""Social ties: friends, interactions, reciprocity and defaults among friends.

A declaration read by the feature engine (``features.engine``). Interaction features count
what the applicant initiated (rows with ``user_id`` = applicant). Reciprocity also needs what
the applicant received: the source reads the table both ways round (``peer_id`` = applicant
too), and a peer is mutual in a window when rows of both directions with it are in it.
Friendships and friends' defaults are a view over all history (:func:`friend_features`).
"""

from __future__ import annotations

import polars as pl

from data.contract import INTERACTIONS
from data.labels import default_observed_dates
from features.base import (
    APPLICATION,
    SHARE,
    FeatureDef,
    events_before_cutoff,
    per_application,
    ratio,
)
from features.engine import Context, Count, Distinct, EventFamily, PerWindow, Source

FAMILY = "social"

OUTGOING = pl.col("outgoing")
COUNT = (0.0, None)
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


STATES = (  # counts over the applicant's own (outgoing) interactions: EventFamily.state_rows
    Count("n"),
    *(Count(count_state(kind), when=pl.col("interaction") == kind) for kind in INTERACTIONS),
    Distinct("peers", "peer_id", all_of=(OUTGOING,)),
    Distinct("mutual", "peer_id", all_of=(OUTGOING, ~OUTGOING)),
)

FEATURES = (
    PerWindow(
        "social_interactions", "Interactions initiated with other users", lambda s: s("n"), COUNT
    ),
    PerWindow(
        "social_distinct_peers", "Distinct users interacted with", lambda s: s("peers"), COUNT
    ),
    *(
        PerWindow(
            f"social_{kind}s",
            interaction_description(kind),
            lambda s, k=kind: s(count_state(k)),
            COUNT,
        )
        for kind in INTERACTIONS
    ),
    PerWindow(
        "social_reciprocity",
        "Share of the users reached who also reached the applicant in the window",
        lambda s: ratio(s("mutual"), s("peers")),
        SHARE,
    ),
)


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
    tables: dict[str, pl.LazyFrame], spine: pl.LazyFrame, ctx: Context
) -> tuple[list[FeatureDef], pl.LazyFrame]:
    """Friends made before the cut-off, over all history, and the share of them with a default
    observable by then."""
    timezone = ctx.timezone
    observed = default_observed_dates(
        tables["applications"], tables["repayments"], timezone, ctx.labels
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


SOCIAL = EventFamily(
    FAMILY,
    Source("social", ("user_id", "peer_id", "ts", "interaction"), prepare=both_directions),
    STATES,
    FEATURES,
    state_rows=OUTGOING,
    views=(friend_features,),
)
