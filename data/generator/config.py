"""Configuration and run report of the synthetic generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class GeneratorConfig:
    """What to simulate.

    Size: ``users`` users over ``months`` calendar months from local midnight of ``start``
    (``timezone``). Users are simulated in blocks of ``block_users``; memory is bounded by the
    block size, and every block draws from its own ``SeedSequence(seed).spawn`` child, so a
    given ``(seed, block_users)`` always yields the same rows.

    World knobs (defaults give the documented magnitudes):

    - ``pd_intercept``: intercept of the true default logit (moves the bad rate).
    - ``approval_threshold``: cut-off of the lender's noisy policy score (moves approval rate).
    - ``application_rate``: base organic applications per user-month.
    - ``activity``: multiplier on behavioural event volumes (consumption, social, app, P2P).
    - ``campaign_start``: fraction of the period after which the push-message campaign runs.
    - ``campaign_rate``: base push-driven applications per user-month while it runs.
    - ``shock_start``: fraction of the period after which the macro shock hits
      gig / self-employed workers and tier 4-5 cities; ``shock_size`` its stress increase.
    - ``pre_registered``: share of users registered before the period starts.
    - ``outsider_share``: expected share of a customer's friendship ties that are to
      outsiders, people who are not customers of the lender. Social interactions and
      person-to-person transfers and red packets name a friend, so about this share of social
      rows and of those transactions names an outsider. Outsiders' ids follow the customers'
      scheme (``U`` + 9 digits) in a range above every customer number (``users`` and up),
      and they have no rows of their own in any table.

    ``workers`` processes generate blocks in parallel (output does not depend on it; peak
    memory grows with it).
    """

    users: int = 20_000
    months: int = 24
    seed: int = 7
    start: date = date(2024, 1, 1)
    timezone: str = "Asia/Shanghai"
    block_users: int = 50_000
    workers: int = 1
    pd_intercept: float = -5.25
    approval_threshold: float = -0.6
    application_rate: float = 0.028
    activity: float = 1.0
    campaign_start: float = 0.5
    campaign_rate: float = 0.012
    shock_start: float = 2 / 3
    shock_size: float = 0.8
    pre_registered: float = 0.6
    outsider_share: float = 0.07

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError("users must be >= 1")
        if self.months < 1:
            raise ValueError("months must be >= 1")
        if self.block_users < 1:
            raise ValueError("block_users must be >= 1")
        if not 0.0 <= self.pre_registered <= 1.0:
            raise ValueError("pre_registered must be in [0, 1]")
        if not 0.0 <= self.outsider_share < 1.0:
            raise ValueError("outsider_share must be in [0, 1)")
        if self.outsider_share > 0 and 2 * self.users > 10**9:
            raise ValueError(
                "users must be at most 500,000,000 when outsider_share > 0 "
                "(outsiders' 9-digit numbers lie above every customer's)"
            )

    @property
    def n_blocks(self) -> int:
        return -(-self.users // self.block_users)


@dataclass
class GenerationReport:
    """What a run wrote and how fast."""

    out: Path
    config: GeneratorConfig
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    event_rows: int = 0  # rows of the event tables (transactions ... bureau_inquiries)
    events_per_second: float = 0.0  # event_rows / seconds
    rows_per_second: float = 0.0  # all rows / seconds
    active_user_months: float = 0.0  # user-months after registration (fractional at edges)
    events_per_active_user_month: float = 0.0
    files: int = 0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())
