"""Configuration and run report of the synthetic generator, and the preset worlds (scenarios)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .timeline import add_months

SIGNALS = (
    "bureau_signal",
    "consumption_signal",
    "transactions_signal",
    "social_signal",
    "app_signal",
)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to simulate.

    Size: ``users`` users over ``months`` calendar months from local midnight of ``start``
    (``timezone``). Users are simulated in blocks of ``block_users``; memory is bounded by the
    block size, and every block draws from its own ``SeedSequence(seed).spawn`` child, so a
    given ``(seed, block_users)`` always yields the same rows.

    Revealed days: the world is simulated ``reserve_months`` further than the period, and only
    what happened before local midnight of :attr:`cut` is written: the period's end plus
    ``extra_days``. Appending days to a root (:func:`data.generator.append_days`) raises
    ``extra_days`` and writes the root again: the same world, so every row before the old cut
    is unchanged and the new days carry on the same users, their stress, their loans and the
    repayments that come due. A repayment paid at or after the cut is unpaid in the root.

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
    - ``community_weight`` (>= 0, default 1): multiplier on the community's effect on
      stress and default: the community risk factor (in the stress level, the true default
      logit and the campaign's selection) and the monthly community shocks to stress. Above
      1, more of the risk is shared by friends; 0 removes it. Unlike the signal knobs, it changes
      who defaults (the bad rate rises with it: about 5.9% of labelled loans at 1 and 7.6%
      at 2, 8,000 users over 24 months).

    Signal knobs change what the tables show, never the world itself: the users, their
    stress, applications, decisions, repayments and ``_truth`` are the same whatever their
    values (for the same size, seed and other knobs).

    - ``bureau_signal``, ``consumption_signal``, ``transactions_signal``, ``social_signal``,
      ``app_signal`` (>= 0, default 1): how strongly each family's tables reflect the
      users' latent risk. The family's tables (``bureau_snapshots`` and ``bureau_inquiries``;
      ``consumption``; ``transactions``; ``social``; ``app_events``) are drawn from a view of
      the latent state in which every latent quantity (stress, income, stability,
      impulsivity, discipline, appetite) is ``mean + signal * (x - mean)``, the mean taken
      over the block's users (per month for stress); the states simulated from them (loans
      and delinquency at other lenders, credit cards, devices) are re-simulated from that
      view, coupled to the real ones (the same uniforms; Poisson counts thinned or topped
      up), and the friendships the social and transfer rows name keep their real peer with
      probability ``signal`` (else a random customer of the block; above 1, ties outside
      the user's community move into it with probability ``1 - 1 / signal``). 1 is the
      default world; 0 draws the family as if every user had the population's typical
      latent risk, so it tells nothing about who defaults beyond the observable profile;
      above 1 the deviations are amplified, each quantity clipped to the range of the
      block's real values and the other lenders' loan, card and device rates to the range
      of the real rates (rates are exponential in the latents, so 2 already makes heavy
      multi-lenders common). Rows that repeat this lender's own applications
      and repayments (its bureau inquiry at each application, its disbursements and
      repayments in ``transactions``, the application and repayment sessions in
      ``app_events``) are kept as they are.
    - ``bureau_coverage`` (in (0, 1], default 1): share of users the credit bureau has a
      file on; the others have no rows in ``bureau_snapshots`` or ``bureau_inquiries`` (a
      thin-file world). The lender's existing policy still decides as in the default world.

    Drift uses ``shock_start`` / ``shock_size`` and ``campaign_start`` / ``campaign_rate``.

    ``scenario`` names the preset of :data:`SCENARIOS` the values were resolved from. Direct
    construction only records the name (it must be a known one): the world is what the
    fields say. :meth:`from_scenario` applies a preset under explicit values, and so do the
    settings (``generator: {scenario: thin_file}`` in ``mlflow.yml``,
    ``PDFLOW_GENERATOR__SCENARIO``, ``pdflow generate --scenario``).

    ``workers`` processes generate blocks in parallel (output does not depend on it; peak
    memory grows with it).
    """

    users: int = 20_000
    months: int = 24
    seed: int = 7
    start: date = date(2024, 1, 1)
    timezone: str = "Asia/Shanghai"
    reserve_months: int = 1
    extra_days: int = 0
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
    community_weight: float = 1.0
    bureau_signal: float = 1.0
    consumption_signal: float = 1.0
    transactions_signal: float = 1.0
    social_signal: float = 1.0
    app_signal: float = 1.0
    bureau_coverage: float = 1.0
    scenario: str = "default"

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError("users must be >= 1")
        if self.months < 1:
            raise ValueError("months must be >= 1")
        if self.reserve_months < 0 or self.extra_days < 0:
            raise ValueError("reserve_months and extra_days must be >= 0")
        if self.cut > add_months(self.start, self.horizon_months):
            room = (add_months(self.start, self.horizon_months) - self.period_end).days
            raise ValueError(
                f"{self.extra_days} days after the period do not fit in the simulated world: "
                f"its reserve of {self.reserve_months} month(s) holds {room} days "
                "(generate the root again with more reserve months)"
            )
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
        for name in ("community_weight", *SIGNALS):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0")
        if not 0.0 < self.bureau_coverage <= 1.0:
            raise ValueError("bureau_coverage must be in (0, 1]")
        if self.scenario not in SCENARIOS:
            raise ValueError(unknown_scenario(self.scenario))

    @property
    def n_blocks(self) -> int:
        return -(-self.users // self.block_users)

    @property
    def horizon_months(self) -> int:
        """Months simulated: the period and its reserve."""
        return self.months + self.reserve_months

    @property
    def period_end(self) -> date:
        return add_months(self.start, self.months)

    @property
    def cut(self) -> date:
        """The first local day not written: the period's end plus the revealed days."""
        return self.period_end + timedelta(days=self.extra_days)

    @classmethod
    def from_scenario(cls, name: str = "default", **overrides: Any) -> GeneratorConfig:
        """The preset world ``name`` of :data:`SCENARIOS`, with ``overrides`` on top."""
        return cls(**with_scenario({**overrides, "scenario": name}))


@dataclass(frozen=True)
class Scenario:
    """A preset world: what it is, and the config fields it sets (the rest are defaults)."""

    description: str
    overrides: Mapping[str, Any]


_PRESETS = {
    "default": Scenario("today's world: 20,000 users over 24 months", {}),
    # Loans mature over the 6-month window and 90 days past due, so 12 months of history
    # leave 3 complete monthly cohorts: too few for a train / validation / out-of-time split.
    "small_lender": Scenario(
        "a small lender: 5,000 users over 18 months", {"users": 5_000, "months": 18}
    ),
    "short_history": Scenario(
        "a lender's data from another source with a short history: 40,000 users, 14 months",
        {"users": 40_000, "months": 14},
    ),
    "bureau_heavy": Scenario(
        "the bureau tells much, alternative data little: 30,000 users, 18 months",
        {
            "users": 30_000,
            "months": 18,
            "bureau_signal": 1.5,
            "consumption_signal": 0.5,
            "transactions_signal": 0.5,
            "social_signal": 0.5,
            "app_signal": 0.5,
        },
    ),
    "thin_file": Scenario(
        "the bureau has a file on 30% of users and says little; alternative data carries the "
        "signal: 30,000 users, 18 months",
        {"users": 30_000, "months": 18, "bureau_coverage": 0.3, "bureau_signal": 0.5},
    ),
    "social_heavy": Scenario(
        "friends share more of the risk, and the social table shows it more: 20,000 users, "
        "24 months",
        {"community_weight": 2.0, "social_signal": 1.5},
    ),
    "noisy_app": Scenario(
        "app behaviour is mostly noise: 20,000 users, 24 months", {"app_signal": 0.2}
    ),
    "strong_drift": Scenario(
        "an earlier, bigger macro shock and a bigger push campaign: 20,000 users, 24 months",
        {"shock_start": 0.5, "shock_size": 2.0, "campaign_rate": 0.03},
    ),
    "large_lender": Scenario(
        "a large lender with a short history: 300,000 users over 14 months",
        {"users": 300_000, "months": 14},
    ),
}

#: Preset worlds: name -> the :class:`GeneratorConfig` fields it sets (the rest are defaults).
SCENARIOS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {name: MappingProxyType(dict(p.overrides)) for name, p in _PRESETS.items()}
)
#: Preset worlds: name -> one line on what the world is.
SCENARIO_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {name: p.description for name, p in _PRESETS.items()}
)


def unknown_scenario(name: object) -> str:
    return f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}"


def with_scenario(values: Mapping[str, Any]) -> dict[str, Any]:
    """Config field values from explicit ``values`` that may name a ``scenario`` (default
    ``"default"``): the preset's values, with every value given in ``values`` on top.

    The one place presets are applied (:meth:`GeneratorConfig.from_scenario` and the
    settings' ``generator`` section). Resolving a result again changes nothing."""
    name = values.get("scenario", "default")
    if not isinstance(name, str) or name not in SCENARIOS:
        raise ValueError(unknown_scenario(name))
    return {**SCENARIOS[name], **values, "scenario": name}


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
