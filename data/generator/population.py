"""The latent world of one user block: traits, communities, the stress process and credit state.

Everything here is hidden from the pipeline; the tables in :mod:`data.generator.tables` are
noisy views of it.

Per-user traits
    occupation, city tier, age (observable) drive a lognormal monthly income, an income
    stability in (0, 1) (Beta by occupation: salaried/retired stable, gig/unemployed not),
    impulsivity (younger a bit higher), repayment discipline (older a bit higher, impulsive
    lower) and appetite for credit (impulsive and poorer users higher). Gender is drawn
    independently of everything and has no effect anywhere.

Communities (homophily)
    Users of a block are sorted on a noisy mix of appetite, impulsivity, city tier and
    (lack of) discipline and cut into contiguous communities of 15-120 users, so members
    resemble each other; each community also carries its own risk factor ``cf`` (shared
    local economy / peer norms) that raises stress and default. Friendship ties among users
    are ~85% within the community, the rest random within the block. ``community_weight``
    multiplies the factor (everywhere it acts) and the monthly community shocks to stress.

Outsiders (friends who are not customers)
    Not every friend is a customer of the lender. On top of the ties among users, each user
    gets ties to outsiders, about ``outsider_share`` of all their ties (Poisson, in proportion
    to their ties among users, so users without friends among users have none). Block ``b``
    has one outsider per user slot, numbered above every user of the run (``users +
    first_user + k``, same ``U`` + 9-digit scheme), so no outsider id is ever a user's, in any
    block. Outsider ``k`` belongs to the community of slot ``k``; ~85% of outsider ties are
    within the user's community, so members share outsider friends as they share friends.
    Outsiders have no traits, stress or rows of their own: they only appear as the
    ``peer_id`` of social rows and the ``counterparty_id`` of transfers and red packets.

Financial stress (dynamic risk)
    ``S[u, j]`` for j = 0..months (column 0 is the month before the period) is an AR(1)
    around a user mean (low stability, low income, community factor, unemployment raise it)
    with idiosyncratic noise, a community shock shared by members each month, rare jumps
    (job loss, illness) and a macro shock: from ``shock_start`` on, gig / self-employed
    workers and tier 4-5 cities get ``shock_size`` more stress (ramped over 3 months).

Credit state (the bureau's view)
    New loans from other lenders arrive at a rate rising with appetite and stress
    (multi-lending); each stays open 6 months. Delinquency on them starts with a probability
    rising with stress and falling with discipline and persists / deepens under stress;
    ``max_dpd_24m`` is the rolling 24-month maximum including an older history. The draws
    behind this state are kept (:class:`CreditDraws`) for the views.

Views (the signal knobs)
    Each family of tables reads the world through :func:`family_view` at its signal: the
    latent quantities pulled towards (below 1) or pushed away from (above 1) the block's
    mean, the credit state and devices re-simulated from them with the same uniforms, and
    friendships among users partly rewired. The world itself (this module's
    :class:`Population`, which applications, decisions and defaults read) never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from data.contract import GENDERS, OCCUPATIONS

from .config import GeneratorConfig
from .timeline import Timeline

OCC = {name: i for i, name in enumerate(OCCUPATIONS)}
OCC_P = np.array(
    [
        {
            "salaried": 0.45,
            "self_employed": 0.13,
            "gig": 0.17,
            "student": 0.10,
            "retired": 0.05,
            "unemployed": 0.10,
        }[o]
        for o in OCCUPATIONS
    ]
)
OCC_LOG_INCOME = np.array(
    [
        {
            "salaried": 0.15,
            "self_employed": 0.2,
            "gig": -0.15,
            "student": -1.0,
            "retired": -0.3,
            "unemployed": -0.9,
        }[o]
        for o in OCCUPATIONS
    ]
)
OCC_STABILITY_AB = np.array(
    [
        {
            "salaried": (8, 2),
            "self_employed": (3, 3),
            "gig": (2, 4),
            "student": (3, 3),
            "retired": (9, 1.5),
            "unemployed": (1.5, 5),
        }[o]
        for o in OCCUPATIONS
    ],
    dtype=float,
)
TIER_P = np.array([0.10, 0.20, 0.30, 0.25, 0.15])
TIER_LOG_INCOME = np.array([0.45, 0.25, 0.0, -0.15, -0.3])
GENDER_P = np.array([{"F": 0.48, "M": 0.49, "U": 0.03}[g] for g in GENDERS])
MEAN_LOG_INCOME = 8.35  # about 4,200 CNY a month

CITIES_BY_TIER = (
    ("Beijing", "Shanghai", "Guangzhou", "Shenzhen"),
    ("Chengdu", "Hangzhou", "Wuhan", "Nanjing", "Chongqing", "Xi'an", "Suzhou", "Tianjin"),
    ("Kunming", "Nanning", "Taiyuan", "Lanzhou", "Guiyang", "Haikou", "Yinchuan", "Xining"),
    ("Zhuzhou", "Mianyang", "Jiujiang", "Zhanjiang", "Handan", "Liuzhou", "Baoding", "Yulin"),
    ("Anshun", "Hegang", "Qitaihe", "Baise", "Tongren", "Dingxi", "Longnan", "Zhaotong"),
)
CITIES = tuple(c for tier in CITIES_BY_TIER for c in tier)
_CITY_OFFSET = np.cumsum([0] + [len(t) for t in CITIES_BY_TIER])[:-1]
_CITY_COUNT = np.array([len(t) for t in CITIES_BY_TIER])
# first six digits of the id number (administrative area), one per city
_AREA_CODES = np.array([110101 + 1013 * i for i in range(len(CITIES))], dtype=np.int64)

MAX_DEVICES = 4
WITHIN_COMMUNITY = 0.85  # share of friendship ties inside the user's community
PRE_PERIOD_TIES = 0.75  # share of ties possible before the period that formed before it


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class CreditDraws:
    """The random draws behind the credit state at other lenders, kept so that a family's
    view (:func:`family_view`) can re-simulate it from other latent values."""

    hist: np.ndarray  # (n, 5) new loans in the 5 months before column 0
    nnew: np.ndarray  # (n, months + 1) new loans per month
    u_start: np.ndarray  # (n, months + 1) uniforms: delinquency starts when below its chance
    u_stay: np.ndarray  # (n, months + 1) uniforms: delinquency persists when below its chance
    fresh: np.ndarray  # (n, months + 1) days past due of a delinquency that starts
    u_hist0: np.ndarray  # (n,) uniforms: an older delinquency when below its chance
    b_hist0: np.ndarray  # (n,) its days past due


@dataclass
class Population:
    """Latent and observable state of the users of one block (index 0..n-1 inside the block)."""

    block: int
    n: int
    first_user: int
    uid: pl.Series  # user_id strings
    # observable profile
    occ: np.ndarray
    tier: np.ndarray
    age: np.ndarray
    birth_year: np.ndarray
    gender: np.ndarray
    home_city: np.ndarray
    reg_day: np.ndarray  # local day index of registration (negative: before the period)
    reg_us: np.ndarray
    # latent traits
    log_inc: np.ndarray
    income: np.ndarray
    stab: np.ndarray
    imp: np.ndarray
    disc: np.ndarray
    app: np.ndarray
    eng: np.ndarray
    # communities and friendship graph
    comm: np.ndarray
    cf: np.ndarray  # community factor per user, times community_weight
    mu: np.ndarray  # the user's mean stress level
    e_src: np.ndarray
    e_peer: np.ndarray  # < n: a user of the block; n + k: the block's outsider k
    e_formed: np.ndarray  # local day the tie formed; -1 = before the period
    e_start: np.ndarray  # first edge of each user
    e_count: np.ndarray
    # dynamics, (n, months + 1); column j is month j - 1
    S: np.ndarray
    nnew: np.ndarray
    L: np.ndarray
    dpd: np.ndarray
    max24: np.ndarray
    cards: np.ndarray
    card_limit: np.ndarray
    card_factor: np.ndarray  # card_limit / income
    draws: CreditDraws  # the draws of the credit state, for views
    # activity window per (user, month)
    lo: np.ndarray  # first local day a user can act in month m
    frac: np.ndarray  # share of month m the user is registered
    # devices
    dev_start: np.ndarray  # (n, MAX_DEVICES) first day of each device; huge = never
    dev_slots: np.ndarray  # (n, MAX_DEVICES) first day each device would have
    k_dev: np.ndarray  # Poisson draw of device changes (devices: 1 + min(k_dev, MAX - 1))
    dev_ids: pl.Series  # n * MAX_DEVICES strings
    peer_ids: pl.Series  # ids of peer indices: the n users, then the block's n outsiders

    @property
    def Sm(self) -> np.ndarray:
        """Stress of the simulated months, (n, months)."""
        return self.S[:, 1:]

    def device_at(self, rng: np.random.Generator, u: np.ndarray, day: np.ndarray) -> pl.Series:
        """Device in use by users ``u`` on local days ``day`` (mostly the newest one)."""
        k = (self.dev_start[u] <= day[:, None]).sum(axis=1) - 1
        old = rng.random(u.size) < 0.06
        k = np.where(old, 0, np.maximum(k, 0))
        return self.dev_ids.gather(u * MAX_DEVICES + k)

    def pick_peer(
        self, rng: np.random.Generator, u: np.ndarray, day: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A random friend of each ``u`` whose tie exists on ``day``; returns (peer, valid).

        ``peer`` indexes :attr:`peer_ids` (an outsider when ``>= n``)."""
        cnt = self.e_count[u]
        has = cnt > 0
        e = self.e_start[u] + np.floor(rng.random(u.size) * np.maximum(cnt, 1)).astype(np.int64)
        e = np.where(has, e, 0)
        if self.e_src.size == 0:
            return np.zeros(u.size, dtype=np.int64), np.zeros(u.size, dtype=bool)
        valid = has & (self.e_formed[e] <= day)
        return self.e_peer[e], valid


def user_ids(first: int, n: int) -> pl.Series:
    """``U`` + 9-digit global user number."""
    return (
        pl.select(
            pl.concat_str(pl.lit("U"), pl.int_range(first, first + n).cast(pl.String).str.zfill(9))
        )
        .to_series()
        .rename("user_id")
    )


def build_population(
    block: int,
    first_user: int,
    n: int,
    tl: Timeline,
    cfg: GeneratorConfig,
    rng: np.random.Generator,
    outsider_rng: np.random.Generator,
) -> Population:
    """The world of users ``first_user .. first_user + n - 1``; ``outsider_rng`` draws only
    the ties to outsiders, so the rest of the world does not depend on ``outsider_share``."""
    M = tl.months
    occ = rng.choice(len(OCCUPATIONS), n, p=OCC_P)
    tier = rng.choice(5, n, p=TIER_P) + 1
    age = np.clip(rng.normal(34, 9, n), 20, 60)
    age = np.where(occ == OCC["student"], rng.uniform(18, 25, n), age)
    age = np.where(occ == OCC["retired"], rng.uniform(56, 75, n), age)
    birth_year = (tl.start.year - np.floor(age)).astype(np.int64)
    age_z = (age - 35) / 10
    gender = rng.choice(len(GENDERS), n, p=GENDER_P)
    home_city = _CITY_OFFSET[tier - 1] + np.floor(rng.random(n) * _CITY_COUNT[tier - 1]).astype(
        np.int64
    )

    log_inc = (
        MEAN_LOG_INCOME
        + OCC_LOG_INCOME[occ]
        + TIER_LOG_INCOME[tier - 1]
        + 0.15 * np.clip(age_z, -1.5, 1.0)
        + rng.normal(0, 0.45, n)
    )
    income = np.exp(log_inc)
    ab = OCC_STABILITY_AB[occ]
    stab = rng.beta(ab[:, 0], ab[:, 1])
    imp = rng.normal(0, 1, n) + 0.35 * (age < 26)
    disc = 0.85 * rng.normal(0, 1, n) - 0.35 * imp + 0.25 * np.clip(age_z, -2, 2)
    app = (
        0.8 * rng.normal(0, 1, n)
        + 0.35 * imp
        - 0.3 * (log_inc - MEAN_LOG_INCOME)
        + 0.2 * np.isin(occ, [OCC["gig"], OCC["unemployed"]])
    )
    eng = rng.lognormal(0, 0.35, n)

    # registration, within the period (not its reserve): a root holds every user
    period_days = int(tl.month_start[cfg.months])
    pre = rng.random(n) < cfg.pre_registered
    reg_day = np.where(
        pre, -rng.integers(1, 900, n), rng.integers(0, max(period_days - 1, 1), n)
    ).astype(np.int64)
    reg_us = tl.to_utc(reg_day, rng.integers(0, 86_400_000_000, n))

    # communities: homophily by sorting on a noisy trait mix and cutting into chunks
    key = 0.5 * app + 0.3 * imp + 0.25 * tier - 0.3 * disc + rng.normal(0, 0.8, n)
    order = np.argsort(key, kind="stable")
    sizes = rng.integers(15, 121, n // 15 + 2)
    cut = np.cumsum(sizes)
    n_comm = int(np.searchsorted(cut, n) + 1)
    sizes = sizes[:n_comm].copy()
    sizes[-1] = n - (cut[n_comm - 2] if n_comm > 1 else 0)
    comm_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comm = np.empty(n, dtype=np.int64)
    comm[order] = np.repeat(np.arange(n_comm), sizes)
    cf_comm = rng.normal(0, 1, n_comm)
    cf = cf_comm[comm] * cfg.community_weight  # the factor as it acts on stress and default

    # friendship graph
    deg = 1 + rng.poisson(5 * eng)
    src = np.repeat(np.arange(n), deg)
    c = comm[src]
    inside = rng.random(src.size) < WITHIN_COMMUNITY
    within = order[comm_start[c] + np.floor(rng.random(src.size) * sizes[c]).astype(np.int64)]
    peer = np.where(inside, within, np.floor(rng.random(src.size) * n).astype(np.int64))
    keep = peer != src
    key_e = np.unique(src[keep] * n + peer[keep])  # dedupe; sorted by source
    e_src, e_peer = key_e // n, key_e % n
    earliest = np.maximum(reg_day[e_src], reg_day[e_peer]) + 1
    formed, alive = _tie_days(rng, earliest, tl.n_days)
    e_src, e_peer, formed = e_src[alive], e_peer[alive], formed[alive]
    e_src, e_peer, formed = _with_outsiders(
        outsider_rng, cfg.outsider_share, comm, reg_day, e_src, e_peer, formed, tl.n_days
    )
    e_count = np.bincount(e_src, minlength=n)
    e_start = np.concatenate([[0], np.cumsum(e_count)[:-1]])

    # stress process, columns 0..M (0 = month before the period)
    mu = (
        0.55 * (0.55 - stab)
        - 0.25 * (log_inc - MEAN_LOG_INCOME)
        + 0.25 * cf
        + 0.3 * (occ == OCC["unemployed"])
        + 0.1 * app
    )
    exposed = (np.isin(occ, [OCC["gig"], OCC["self_employed"]]) | (tier >= 4)).astype(float)
    shock_m = round(cfg.shock_start * cfg.months)
    macro = np.zeros(M + 1)
    for j in range(1, M + 1):
        m = j - 1
        if m >= shock_m:
            macro[j] = cfg.shock_size * min(1.0, (m - shock_m + 1) / 3)
    comm_shock = rng.normal(0, 1, (n_comm, M + 1))
    S = np.empty((n, M + 1))
    S[:, 0] = mu + rng.normal(0, 0.6, n)
    for j in range(1, M + 1):  # loop over months, vectorised over users
        jump = (rng.random(n) < 0.012) * rng.exponential(1.2, n)
        level = mu + macro[j] * exposed
        prev_level = mu + macro[j - 1] * exposed
        S[:, j] = (
            level
            + 0.72 * (S[:, j - 1] - prev_level)
            + 0.42 * rng.normal(0, 1, n)
            + (0.22 * cfg.community_weight) * comm_shock[comm, j]
            + jump
        )

    # multi-lending at other lenders: new loans per month, each open 6 months
    hist = rng.poisson(_lending_rate(app, S[:, :1], imp), (n, 5))
    nnew = rng.poisson(_lending_rate(app, S, imp))
    L = _open_loans(hist, nnew)

    # delinquency at other lenders (the uniforms are kept: views re-use them)
    u_start = np.empty((n, M + 1))
    u_stay = np.empty((n, M + 1))
    fresh = np.empty((n, M + 1), dtype=np.int64)
    for j in range(M + 1):
        u_start[:, j] = rng.random(n)
        u_stay[:, j] = rng.random(n)
        fresh[:, j] = rng.integers(1, 30, n) + 30 * rng.choice(4, n, p=[0.6, 0.25, 0.1, 0.05])
    u_hist0 = rng.random(n)
    b_hist0 = rng.choice(np.array([15, 45, 75, 120]), n, p=[0.45, 0.3, 0.15, 0.1])
    draws = CreditDraws(hist, nnew, u_start, u_stay, fresh, u_hist0, b_hist0)
    dpd, max24 = _delinquency(draws, disc, S, L, mu)

    n_cards = rng.poisson(_cards_rate(log_inc, stab))
    card_factor = rng.lognormal(1.1, 0.4, n)
    card_limit = income * card_factor

    # activity windows
    ms, me = tl.month_start[:-1], tl.month_start[1:]
    lo = np.maximum(ms[None, :], reg_day[:, None] + 1)
    frac = np.clip((me[None, :] - lo) / (me - ms)[None, :], 0.0, 1.0)

    # devices: more devices (phone changes) for appetite / stress / impulsivity
    k_dev = rng.poisson(_devices_rate(app, mu, imp))
    first_day = np.maximum(reg_day, 0)
    span = np.maximum(tl.n_days - first_day, 1)
    starts = first_day[:, None] + np.sort(
        np.floor(rng.random((n, MAX_DEVICES - 1)) * span[:, None]).astype(np.int64), axis=1
    )
    dev_slots = np.concatenate([np.full((n, 1), -(10**9)), starts], axis=1)
    dev_start = _devices(dev_slots, k_dev)

    uid = user_ids(first_user, n)
    peer_ids = pl.concat([uid, user_ids(cfg.users + first_user, n)]).rename("peer_id")
    dev_ids = (
        pl.select(
            pl.concat_str(
                pl.lit("D"),
                (pl.int_range(0, n * MAX_DEVICES) // MAX_DEVICES + first_user)
                .cast(pl.String)
                .str.zfill(9),
                pl.lit("-"),
                (pl.int_range(0, n * MAX_DEVICES) % MAX_DEVICES).cast(pl.String),
            )
        )
        .to_series()
        .rename("device_id")
    )

    return Population(
        block=block,
        n=n,
        first_user=first_user,
        uid=uid,
        occ=occ,
        tier=tier,
        age=age,
        birth_year=birth_year,
        gender=gender,
        home_city=home_city,
        reg_day=reg_day,
        reg_us=reg_us,
        log_inc=log_inc,
        income=income,
        stab=stab,
        imp=imp,
        disc=disc,
        app=app,
        eng=eng,
        comm=comm,
        cf=cf,
        mu=mu,
        e_src=e_src,
        e_peer=e_peer,
        e_formed=formed,
        e_start=e_start,
        e_count=e_count,
        S=S,
        nnew=nnew,
        L=L,
        dpd=dpd,
        max24=max24,
        cards=n_cards,
        card_limit=card_limit,
        card_factor=card_factor,
        draws=draws,
        lo=lo,
        frac=frac,
        dev_start=dev_start,
        dev_slots=dev_slots,
        k_dev=k_dev,
        dev_ids=dev_ids,
        peer_ids=peer_ids,
    )


def _tie_days(
    rng: np.random.Generator, earliest: np.ndarray, n_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Local day each tie forms (-1: before the period) given the first day it can, and
    whether it forms before the end of the period at all."""
    pre_tie = (earliest <= 0) & (rng.random(earliest.size) < PRE_PERIOD_TIES)
    first = np.maximum(earliest, 0)
    formed = first + np.floor(rng.random(earliest.size) * np.maximum(n_days - first, 0)).astype(
        np.int64
    )
    formed = np.where(pre_tie, -1, formed)
    return formed, pre_tie | (first < n_days)


def _with_outsiders(
    rng: np.random.Generator,
    share: float,
    comm: np.ndarray,
    reg_day: np.ndarray,
    e_src: np.ndarray,
    e_peer: np.ndarray,
    formed: np.ndarray,
    n_days: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ties among users plus ties to outsiders (peer ``n + k``), sorted by source.

    A user with ``c`` ties among users gets Poisson(``c * share / (1 - share)``) outsider
    ties, so outsiders are about ``share`` of all ties; the ties among users are unchanged.
    """
    n = comm.size
    if share <= 0 or e_src.size == 0:
        return e_src, e_peer, formed
    k = rng.poisson(np.bincount(e_src, minlength=n) * (share / (1 - share)))
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    members = np.argsort(comm, kind="stable")  # outsider slots grouped by community
    size = np.bincount(comm)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    c = comm[src]
    inside = rng.random(src.size) < WITHIN_COMMUNITY
    within = members[start[c] + np.floor(rng.random(src.size) * size[c]).astype(np.int64)]
    slot = np.where(inside, within, np.floor(rng.random(src.size) * n).astype(np.int64))
    key = np.unique(src * n + slot)  # dedupe
    o_src, o_peer = key // n, n + key % n
    o_formed, alive = _tie_days(rng, reg_day[o_src] + 1, n_days)
    all_src = np.concatenate([e_src, o_src[alive]])
    order = np.argsort(all_src, kind="stable")  # a user's ties among users first
    return (
        all_src[order],
        np.concatenate([e_peer, o_peer[alive]])[order],
        np.concatenate([formed, o_formed[alive]])[order],
    )


def _lending_rate(app: np.ndarray, S: np.ndarray, imp: np.ndarray) -> np.ndarray:
    """New loans per month at other lenders (multi-lending), by appetite, stress, impulsivity."""
    return 0.12 * np.exp(0.75 * app[:, None] + 0.55 * S + 0.15 * imp[:, None])


def _open_loans(hist: np.ndarray, nnew: np.ndarray) -> np.ndarray:
    """Loans open at other lenders per month (each stays open 6 months)."""
    n = nnew.shape[0]
    cs = np.cumsum(np.concatenate([hist, nnew], axis=1), axis=1)
    shifted = np.concatenate([np.zeros((n, 6), dtype=cs.dtype), cs[:, :-6]], axis=1)
    return (cs - shifted)[:, 5:]


def _delinquency(
    draws: CreditDraws, disc: np.ndarray, S: np.ndarray, L: np.ndarray, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Current and rolling 24-month worst days past due at other lenders, per month."""
    n, cols = S.shape
    dpd = np.zeros((n, cols), dtype=np.int64)
    prev = np.zeros(n, dtype=np.int64)
    for j in range(cols):
        start_p = sigmoid(-4.3 - 0.85 * disc + 1.0 * S[:, j] + 0.12 * L[:, j])
        stay_p = sigmoid(-0.5 - 0.6 * disc + 0.6 * S[:, j])
        new = (prev == 0) & (draws.u_start[:, j] < start_p)
        stay = (prev > 0) & (draws.u_stay[:, j] < stay_p)
        cur = np.where(new, draws.fresh[:, j], np.where(stay, np.minimum(prev + 30, 180), 0))
        dpd[:, j] = cur
        prev = cur
    hist0 = np.where(draws.u_hist0 < sigmoid(-2.8 - 0.85 * disc + 0.5 * mu), draws.b_hist0, 0)
    max24 = np.maximum.accumulate(dpd, axis=1)
    if cols > 24:  # true rolling 24-month window
        from numpy.lib.stride_tricks import sliding_window_view

        padded = np.concatenate([np.zeros((n, 23), dtype=dpd.dtype), dpd], axis=1)
        max24 = sliding_window_view(padded, 24, axis=1).max(axis=2)
    months = np.arange(cols)
    return dpd, np.maximum(max24, np.where(months[None, :] < 12, hist0[:, None], 0))


def _cards_rate(log_inc: np.ndarray, stab: np.ndarray) -> np.ndarray:
    return np.exp(-0.4 + 0.6 * (log_inc - MEAN_LOG_INCOME) + 0.3 * stab)


def _devices_rate(app: np.ndarray, mu: np.ndarray, imp: np.ndarray) -> np.ndarray:
    return 0.15 * np.exp(0.4 * app + 0.3 * mu + 0.3 * imp)


def _devices(dev_slots: np.ndarray, k_dev: np.ndarray) -> np.ndarray:
    """First day of each device in use (huge: never): the first ``1 + k_dev`` slots."""
    n_dev = 1 + np.minimum(k_dev, MAX_DEVICES - 1)
    never = np.iinfo(np.int64).max // 4
    return np.where(np.arange(MAX_DEVICES)[None, :] < n_dev[:, None], dev_slots, never)


def family_view(pop: Population, signal: float, rng: np.random.Generator) -> Population:
    """The world as one family of tables shows it: ``pop`` itself at ``signal`` 1.

    Otherwise every latent quantity a table reads (stress, income, stability, impulsivity,
    discipline, appetite, the mean stress level) is ``mean + signal * (x - mean)``, the mean
    over the block's users (per month for stress), above 1 clipped to the range of the
    block's own values (an amplified user is no more extreme in any one quantity than the
    most extreme real one). The states simulated from them (loans and delinquency at other
    lenders, credit cards, devices) are simulated again from those values with the same
    uniforms, Poisson counts thinned or topped up, so they move smoothly with ``signal``.
    Friendship ties among customers keep their peer with probability ``signal`` (else a
    random other customer of the block) or, above 1, move from outside the user's
    community into it with probability ``1 - 1 / signal``. The observable profile,
    registration, engagement and outsider ties are as they are. ``rng`` (a stream of its
    own) draws only what the view adds.
    """
    if signal == 1.0:
        return pop

    def view(x: np.ndarray) -> np.ndarray:
        mean = x.mean(axis=0, keepdims=True)
        shown = mean + signal * (x - mean)
        if signal <= 1.0:
            return shown
        return np.clip(shown, x.min(axis=0, keepdims=True), x.max(axis=0, keepdims=True))

    v = {k: view(getattr(pop, k)) for k in ("S", "log_inc", "stab", "imp", "disc", "app", "mu")}
    hist = _coupled_poisson(
        rng,
        pop.draws.hist,
        _lending_rate(pop.app, pop.S[:, :1], pop.imp),
        _lending_rate(v["app"], v["S"][:, :1], v["imp"]),
    )
    nnew = _coupled_poisson(
        rng,
        pop.draws.nnew,
        _lending_rate(pop.app, pop.S, pop.imp),
        _lending_rate(v["app"], v["S"], v["imp"]),
    )
    draws = replace(pop.draws, hist=hist, nnew=nnew)
    L = _open_loans(hist, nnew)
    dpd, max24 = _delinquency(draws, v["disc"], v["S"], L, v["mu"])
    cards = _coupled_poisson(
        rng, pop.cards, _cards_rate(pop.log_inc, pop.stab), _cards_rate(v["log_inc"], v["stab"])
    )
    k_dev = _coupled_poisson(
        rng,
        pop.k_dev,
        _devices_rate(pop.app, pop.mu, pop.imp),
        _devices_rate(v["app"], v["mu"], v["imp"]),
    )
    income = np.exp(v["log_inc"])
    return replace(
        pop,
        **v,
        income=income,
        card_limit=income * pop.card_factor,
        cards=cards,
        draws=draws,
        nnew=nnew,
        L=L,
        dpd=dpd,
        max24=max24,
        k_dev=k_dev,
        dev_start=_devices(pop.dev_slots, k_dev),
        e_peer=_rewired(rng, pop, signal),
    )


def _coupled_poisson(
    rng: np.random.Generator, k: np.ndarray, lam: np.ndarray, lam_view: np.ndarray
) -> np.ndarray:
    """A Poisson(``lam_view``) count coupled to ``k`` ~ Poisson(``lam``): ``k`` thinned where
    ``lam_view < lam``, topped up by Poisson(``lam_view - lam``) where it is larger.

    ``lam_view`` is first clipped to the range of ``lam`` (a no-op unless deviations were
    amplified), so no user of a view has a higher rate than the most extreme real one."""
    lam = np.broadcast_to(lam, k.shape)
    lam_view = np.broadcast_to(np.clip(lam_view, lam.min(), lam.max()), k.shape)
    kept = rng.binomial(k, np.minimum(lam_view / lam, 1.0))
    return kept + rng.poisson(np.maximum(lam_view - lam, 0.0))


def _rewired(rng: np.random.Generator, pop: Population, signal: float) -> np.ndarray:
    """The peers of :attr:`Population.e_peer` as a family at ``signal`` shows them."""
    n, src, peer = pop.n, pop.e_src, pop.e_peer
    if signal == 1.0 or n < 2 or src.size == 0:
        return peer
    customer = peer < n
    draw, pick = rng.random(src.size), rng.random(src.size)
    if signal < 1.0:
        other = np.floor(pick * (n - 1)).astype(np.int64)
        other += other >= src  # anyone but the user
        return np.where(customer & (draw >= signal), other, peer)
    comm = pop.comm
    members = np.argsort(comm, kind="stable")
    position = np.empty(n, dtype=np.int64)
    position[members] = np.arange(n)
    size = np.bincount(comm)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    c = comm[src]
    outside = customer & (comm[np.where(customer, peer, 0)] != c)
    move = outside & (size[c] > 1) & (draw < 1.0 - 1.0 / signal)
    k = start[c] + np.floor(pick * np.maximum(size[c] - 1, 1)).astype(np.int64)
    k += k >= position[src]  # anyone of the community but the user
    return np.where(move, members[np.minimum(k, n - 1)], peer)


def id_numbers(rng: np.random.Generator, pop: Population) -> pl.Series:
    """18-character resident id numbers: area code, birth date, sequence, ISO 7064 check."""
    n = pop.n
    area = _AREA_CODES[pop.home_city]
    month = rng.integers(1, 13, n)
    day = rng.integers(1, 29, n)
    seq = rng.integers(0, 1000, n)
    body = ((area * 10_000 + pop.birth_year) * 100 + month) * 100 + day
    body = body * 1000 + seq  # 17 digits
    digits = (body[:, None] // (10 ** np.arange(16, -1, -1))[None, :]) % 10
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = (digits * weights).sum(axis=1) % 11
    check_chars = pl.Series(list("10X98765432")).gather(check)
    return (
        pl.DataFrame({"b": body, "c": check_chars})
        .select(pl.concat_str(pl.col("b").cast(pl.String), pl.col("c")))
        .to_series()
    )


def phones(rng: np.random.Generator, n: int) -> pl.Series:
    prefix = rng.choice(
        np.array(
            [
                130,
                131,
                132,
                135,
                136,
                137,
                138,
                139,
                150,
                151,
                152,
                155,
                156,
                157,
                158,
                159,
                170,
                176,
                177,
                180,
                181,
                185,
                186,
                187,
                188,
                189,
                191,
                198,
                199,
            ]
        ),
        n,
    )
    number = prefix.astype(np.int64) * 100_000_000 + rng.integers(0, 100_000_000, n)
    return pl.Series(number).cast(pl.String)
