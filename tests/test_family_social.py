"""Social family on a hand-made log: exact counts, reciprocity and friends' defaults, nothing at
or after the cut-off."""

from __future__ import annotations

import polars as pl
import pytest
from family_frames import applications, build_family, by_window, row, utc

from features.families import social

APPLICATIONS = [
    # application_id, user_id, applied_at (local), decision, loan_id
    ("a1", "u1", "2024-07-01 10:00", "rejected", None),
    ("a2", "u7", "2024-07-01 10:00", "rejected", None),
    ("a3", "u5", "2024-07-01 10:00", "rejected", None),
    ("l2", "u2", "2024-01-01 10:00", "approved", "L2"),
    ("l8", "u8", "2024-01-01 10:00", "approved", "L8"),
]
REPAYMENTS = [
    # Never paid: u2's default is observable from the morning of 2024-07-01 (due + 90 days),
    # the application day itself (the nightly run of that day sees it); u8's only a day later.
    ("L2", "2024-04-02"),
    ("L8", "2024-04-03"),
]
SOCIAL = [
    # user_id, peer_id, ts (local), interaction
    ("u1", "u2", "2024-06-28 12:00", "message"),
    ("u2", "u1", "2024-06-29 12:00", "message"),
    ("u1", "u3", "2024-06-27 12:00", "moment_like"),
    ("u3", "u1", "2024-06-10 12:00", "message"),
    ("u1", "u4", "2024-06-26 12:00", "red_packet"),
    ("u4", "u1", "2024-07-01 00:00", "message"),  # at the cut-off: u4 never reached u1 in time
    ("u5", "u1", "2024-06-28 12:00", "message"),  # u1 never reached u5
    ("u1", "u2", "2024-03-01 12:00", "friend_add"),
    ("u2", "u1", "2024-05-01 12:00", "moment_comment"),
    ("u1", "u6", "2024-02-01 12:00", "message"),
    ("u6", "u1", "2024-01-20 12:00", "message"),
    ("u8", "u1", "2024-02-10 12:00", "friend_add"),
    ("u10", "u1", "2023-01-01 12:00", "friend_add"),
    # At the cut-off: neither an interaction nor a friendship yet.
    ("u1", "u2", "2024-07-01 00:00", "message"),
    ("u9", "u1", "2024-07-01 00:00", "friend_add"),
]


def tables() -> dict[str, pl.LazyFrame]:
    apps = applications(
        APPLICATIONS, ["application_id", "user_id", "applied_at", "decision", "loan_id"]
    )
    repayments = pl.LazyFrame(
        REPAYMENTS, schema=["loan_id", "due_date"], orient="row"
    ).with_columns(
        due_date=pl.col("due_date").str.to_date(),
        installment_no=pl.lit(1, pl.Int16),
        amount_due=pl.lit(200.0),
        paid_at=pl.lit(None, pl.Datetime("us", "UTC")),
        amount_paid=pl.lit(0.0),
    )
    events = pl.LazyFrame(
        SOCIAL, schema=["user_id", "peer_id", "ts", "interaction"], orient="row"
    ).with_columns(ts=utc("ts"))
    return {"applications": apps, "repayments": repayments, "social": events}


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return build_family(social.SOCIAL, tables())


def test_interaction_counts_by_type(features: pl.DataFrame) -> None:
    a1 = row(features, "a1")
    assert by_window(a1, "social_interactions") == [3, 3, 3, 5]
    assert by_window(a1, "social_messages") == [1, 1, 1, 2]
    assert by_window(a1, "social_moment_likes") == [1, 1, 1, 1]
    assert by_window(a1, "social_red_packets") == [1, 1, 1, 1]
    assert by_window(a1, "social_moment_comments") == [0, 0, 0, 0]
    assert by_window(a1, "social_friend_adds") == [0, 0, 0, 1]
    assert by_window(a1, "social_distinct_peers") == [3, 3, 3, 4]


def test_reciprocity_counts_peers_who_reached_back_in_the_same_window(
    features: pl.DataFrame,
) -> None:
    # Reached u2, u3, u4 in 7 days (and u6 in 180): u2 answered within 7 days, u3 within 30,
    # u6 within 180, u4 only at the cut-off; u5 reached u1 but was never reached.
    assert by_window(row(features, "a1"), "social_reciprocity") == pytest.approx(
        [1 / 3, 2 / 3, 2 / 3, 3 / 4]
    )
    # u5 reached u1, who never reached back.
    assert by_window(row(features, "a3"), "social_reciprocity") == [0.0, 0.0, 0.0, 0.0]


def test_no_interactions_counts_zero_and_leaves_shares_null(features: pl.DataFrame) -> None:
    a2 = row(features, "a2")
    assert by_window(a2, "social_interactions") == [0, 0, 0, 0]
    assert by_window(a2, "social_reciprocity") == [None] * 4
    assert a2["social_friends_total"] == 0
    assert a2["social_friends_defaulted_share"] is None


def test_friends_and_defaults_known_before_the_application_day(features: pl.DataFrame) -> None:
    a1 = row(features, "a1")
    # u2, u8 and u10 (all history); u9's friend_add at the cut-off is not yet a friendship.
    assert a1["social_friends_total"] == 3
    # u2's default is observable on the application day's morning; u8's only a day later.
    assert a1["social_friends_defaulted_share"] == pytest.approx(1 / 3)
