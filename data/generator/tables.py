"""The observable tables: noisy views of a block's latent world (:mod:`.population`).

Applications, repayments and ``_truth`` read the world itself; every other family reads
its own view of it (:func:`.population.family_view`, the family's signal knob), so what
follows describes the default world, in which every view is the world. ``bureau_snapshots``
and ``bureau_inquiries`` keep only the users the bureau has a file on (:func:`of_users`,
``bureau_coverage``).

Each builder returns a :class:`Chunk` holding a frame with exactly the contract schema and,
for partitioned tables, the local day index of every row. Rows are sorted by (local day,
user, time) before ids are numbered, so files are byte-identical for the same config.

What each table shows of the world:

- ``users``: profile (occupation, city tier, birth year correlate with income / stability /
  impulsivity / discipline; gender does not correlate with anything).
- ``applications`` / ``repayments`` / ``_truth``: users apply at a rate rising with appetite
  and current stress; from ``campaign_start`` a push-message campaign adds applications from
  users with higher latent risk (selection). ``true_pd`` is a non-linear function of
  discipline, current stress (convex), appetite, community factor, loan-to-income x
  instability, low-income impulsivity, youth, occupation and term. The lender's existing
  policy rejects on bureau delinquency and on a noisy score (about 55-75% approved).
  Defaulters (drawn from ``true_pd``) stop paying from installment k in 1..6 (early k more
  likely; a quarter catch up 90+ days late); others pay on time or 1-60 days late
  (discipline, stress at the due month); some loans default after month 6.
- ``bureau_snapshots``: monthly (report date = 1st of the month, state at the end of the
  previous month) open accounts, limits and balances (multi-lending, stress-driven card
  utilisation) and delinquency (discipline, stress).
- ``bureau_inquiries``: loan approvals at microloan / consumer-finance lenders with each new
  loan elsewhere and under stress, card applications by income, self queries under stress,
  post-loan checks on open loans, and this lender's own inquiry at every application.
- ``transactions``: salary on a pay day (jitter and amount spread from income stability;
  skipped months under heavy stress), irregular 'other' income for gig / self-employed
  (cut by the macro shock), transfers and red packets with friends, customers or outsiders
  (transfers *in* rise with stress: borrowing from friends), refunds, bills, disbursements and
  repayments of other lenders' loans (multi-lending) and of this lender's loans.
- ``consumption``: volume by income; category mix by impulsivity (luxury, gaming,
  entertainment, shopping), income (travel, luxury, dining), life stage and stress
  (groceries up, big-ticket categories and amounts down); stress and impulsivity give more
  00-06 local purchases and more ``credit`` payments.
- ``social``: friend_add when a tie forms during the period, then messages, likes, comments
  and red packets with existing friends (mostly within the community; about
  ``outsider_share`` of them outsiders, who are not customers).
- ``app_events``: sessions (login first) with loan-product views, rate comparisons and limit
  checks rising with appetite and stress, night use under stress, application sessions,
  repayment-page sessions before each repayment, push_open during the campaign; the device
  id changes more often for risky users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from data.contract import (
    APP_EVENTS,
    APPLICATION_CHANNELS,
    DECISIONS,
    DIRECTIONS,
    GENDERS,
    INQUIRY_REASONS,
    INSTITUTION_TYPES,
    INTERACTIONS,
    MERCHANT_CATEGORIES,
    OCCUPATIONS,
    PAY_METHODS,
    TABLES,
    TERMS,
    TXN_CHANNELS,
    TXN_TYPES,
)

from .config import GeneratorConfig
from .population import (
    CITIES,
    MEAN_LOG_INCOME,
    OCC,
    Population,
    id_numbers,
    phones,
    sigmoid,
)
from .timeline import DAY_US, HOUR_US, MINUTE_US, SECOND_US, Timeline

TS = pl.Datetime("us", "UTC")


def _code(values: tuple, name: str) -> int:
    return values.index(name)


@dataclass
class Chunk:
    """One table's rows of one block; ``day`` is the local day per row (partitioned only)."""

    name: str
    frame: pl.DataFrame
    day: np.ndarray | None


@dataclass
class LoanEvents:
    """What applications and repayments leave in the other tables."""

    app_u: np.ndarray
    app_day: np.ndarray
    app_us: np.ndarray
    app_push: np.ndarray
    loan_u: np.ndarray
    loan_day: np.ndarray
    loan_us: np.ndarray
    loan_amount: np.ndarray
    pay_u: np.ndarray
    pay_day: np.ndarray
    pay_us: np.ndarray
    pay_amount: np.ndarray


# ----------------------------------------------------------------------------- helpers


def _explode(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a (users, months) count matrix as (user, month) index arrays."""
    months = counts.shape[1]
    flat = counts.ravel()
    idx = np.repeat(np.arange(flat.size, dtype=np.int64), flat)
    return idx // months, idx % months


def _days(rng: np.random.Generator, pop: Population, tl: Timeline, u, m) -> np.ndarray:
    lo = pop.lo[u, m]
    hi = tl.month_start[1:][m]
    return lo + np.floor(rng.random(u.size) * np.maximum(hi - lo, 0)).astype(np.int64)


def _tod(
    rng: np.random.Generator, p_night: np.ndarray, lo_us: int = 0, hi_us: int = DAY_US
) -> np.ndarray:
    """Microseconds since local midnight: night (00-06) with ``p_night``, else a day curve.

    Draws outside the day's hours or the bounds are folded back in, not clipped: clipping
    piled them on one instant (06:00:00 exactly), where two events of one user on one day
    made an exact duplicate row, which the data gate rightly sets aside."""
    n = p_night.size
    night = rng.random(n) < p_night
    h = np.where(rng.random(n) < 0.55, rng.normal(12.5, 2.8, n), rng.normal(20.0, 1.8, n))
    h = _fold(h, 6.0, 24.0 - 1e-9)
    h = np.where(night, rng.uniform(0.0, 6.0, n), h)
    us = (h * HOUR_US).astype(np.int64)
    return _fold(us, lo_us, hi_us - 1)


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """`x` reflected at `lo` and `hi` into [lo, hi] (clipped only if still outside)."""
    x = np.where(x < lo, 2 * lo - x, x)
    x = np.where(x > hi, 2 * hi - x, x)
    return np.clip(x, lo, hi)


def _night_p(pop: Population, u, s, base: float = -3.3) -> np.ndarray:
    return sigmoid(base + 0.75 * s + 0.45 * pop.imp[u] + 0.4 * (pop.age[u] < 27))


def _ts(us: np.ndarray) -> pl.Series:
    return pl.Series(us.astype(np.int64)).cast(TS)


def _labels(values: tuple, codes: np.ndarray) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String).gather(codes)


def _ids(prefix: str, n: int) -> pl.Series:
    return pl.select(
        pl.concat_str(pl.lit(prefix), pl.int_range(0, n).cast(pl.String).str.zfill(9))
    ).to_series()


def _mask(values: pl.Series, keep: np.ndarray) -> pl.Series:
    """``values`` where ``keep``, null elsewhere."""
    return (
        pl.DataFrame({"k": keep, "v": values})
        .select(pl.when(pl.col("k")).then(pl.col("v")).otherwise(None))
        .to_series()
    )


def _money(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(x, 2), 0.01)


def _frame(name: str, cols: dict) -> pl.DataFrame:
    """A frame with exactly the contract schema of ``name`` (order and dtypes)."""
    schema = TABLES[name].schema
    series = []
    for col, dtype in schema.items():
        v = cols[col]
        s = v if isinstance(v, pl.Series) else pl.Series(v)
        series.append(s.rename(col).cast(dtype))
    df = pl.DataFrame(series)
    assert df.schema == schema, (name, df.schema)
    return df


def _sorted(tl: Timeline, day: np.ndarray, u: np.ndarray, us: np.ndarray) -> np.ndarray:
    """Row order (local day, user, time) as one int64 key sort (lexsort if it would overflow)."""
    n_users = int(u.max()) + 1 if u.size else 1
    if (tl.n_days + 1) * n_users >= np.iinfo(np.int64).max // DAY_US:
        return np.lexsort((us, u, day))
    tod = us - tl.to_utc(day, np.zeros_like(day))
    return np.argsort((day * n_users + u) * DAY_US + tod, kind="stable")


def of_users(chunk: Chunk, first_user: int, keep: np.ndarray | None) -> Chunk:
    """The rows of ``chunk`` whose user (of the block starting at ``first_user``) is in
    ``keep``, in the same order (``keep`` None: every row)."""
    if keep is None:
        return chunk
    number = chunk.frame["user_id"].str.slice(1).cast(pl.Int64).to_numpy()
    rows = keep[number - first_user]
    day = None if chunk.day is None else chunk.day[rows]
    return Chunk(chunk.name, chunk.frame.filter(pl.Series(rows)), day)


# ----------------------------------------------------------------------------- users


def users(rng: np.random.Generator, pop: Population) -> Chunk:
    df = _frame(
        "users",
        {
            "user_id": pop.uid,
            "registered_at": _ts(pop.reg_us),
            "birth_year": pop.birth_year,
            "gender": _labels(GENDERS, pop.gender),
            "city_tier": pop.tier,
            "occupation": _labels(OCCUPATIONS, pop.occ),
            "id_number": id_numbers(rng, pop),
            "phone": phones(rng, pop.n),
        },
    )
    return Chunk("users", df, None)


# ----------------------------------------------------------------------------- credit


def applications(
    rng: np.random.Generator, pop: Population, tl: Timeline, cfg: GeneratorConfig
) -> tuple[Chunk, Chunk, Chunk, LoanEvents]:
    """Applications, the lender's decision, the repayment schedule and the truth."""
    M = tl.months
    Sm = pop.Sm
    camp_m = round(cfg.campaign_start * cfg.months)
    in_campaign = (np.arange(M) >= camp_m)[None, :]
    lam_org = (
        cfg.application_rate
        * np.exp(0.65 * pop.app[:, None] + 0.45 * Sm + 0.2 * pop.imp[:, None])
        * pop.frac
    )
    risk_idx = 0.5 * pop.app[:, None] + 0.6 * Sm - 0.4 * pop.disc[:, None] + 0.3 * pop.cf[:, None]
    lam_push = np.where(in_campaign, cfg.campaign_rate * np.exp(1.0 * risk_idx), 0.0) * pop.frac
    u1, m1 = _explode(rng.poisson(lam_org))
    u2, m2 = _explode(rng.poisson(lam_push))
    u = np.concatenate([u1, u2])
    m = np.concatenate([m1, m2])
    ch_org = np.where(
        rng.random(u1.size) < 0.12,
        _code(APPLICATION_CHANNELS, "referral"),
        _code(APPLICATION_CHANNELS, "organic"),
    )
    channel = np.concatenate(
        [ch_org, np.full(u2.size, _code(APPLICATION_CHANNELS, "push_message"))]
    )
    s = Sm[u, m]
    day = _days(rng, pop, tl, u, m)
    tod = _tod(rng, _night_p(pop, u, s, -3.0), 20 * MINUTE_US, 23 * HOUR_US + 49 * MINUTE_US)
    us = tl.to_utc(day, tod)
    order = _sorted(tl, day, u, us)
    u, m, channel, s, day, us = u[order], m[order], channel[order], s[order], day[order], us[order]
    n = u.size

    # request: amount scaled by income, term by amount relative to income
    amount = np.exp(
        pop.log_inc[u] + np.log(1.1) + 0.25 * pop.app[u] + 0.2 * s + rng.normal(0, 0.55, n)
    )
    amount = np.clip(np.round(amount, -2), 500, 50_000)
    ratio = amount / pop.income[u]
    v = np.log(ratio) + rng.normal(0, 0.8, n)
    term = np.where(v < -0.3, TERMS[0], np.where(v < 0.7, TERMS[1], TERMS[2]))

    # the truth: non-linear default logit
    disc = pop.disc[u]
    occ = pop.occ[u]
    age = pop.age[u]
    push = channel == _code(APPLICATION_CHANNELS, "push_message")
    z = (
        cfg.pd_intercept
        - 0.65 * disc
        + 0.25 * pop.imp[u]
        + 0.4 * (0.6 - pop.stab[u])
        + 0.6 * s
        + 0.5 * np.clip(s - 0.4, 0, 2.5) ** 2
        + 0.4 * pop.app[u]
        + 0.4 * pop.cf[u]
        + 0.3 * (-disc) * np.maximum(s, 0)
        + 0.55 * np.log(ratio) * (1.3 - pop.stab[u])
        + 0.35 * pop.imp[u] * (pop.log_inc[u] < MEAN_LOG_INCOME)
        - 0.25 * (pop.log_inc[u] - MEAN_LOG_INCOME)
        + np.select([term == TERMS[2], term == TERMS[1]], [0.25, 0.1], 0.0)
        + 0.35 * (age < 23)
        + 0.15 * (age > 62)
        + 0.35 * (occ == OCC["unemployed"])
        + 0.15 * (occ == OCC["gig"])
        + 0.1 * push
    )
    pd_true = sigmoid(z)

    # the lender's existing policy: bureau rule + noisy score
    # latest snapshot strictly before the application day (column j = end of month j - 1)
    col = np.maximum(np.where(day > tl.month_start[m], m, m - 1), 0)
    rule_reject = (pop.dpd[u, col] > 30) | ((pop.max24[u, col] >= 90) & (rng.random(n) < 0.6))
    score = 0.55 * z + rng.normal(0, 0.9, n)
    approved = ~rule_reject & (score < cfg.approval_threshold)
    block = f"{pop.block:05d}"
    app_ids = _ids("A" + block, n)
    loan_ids_all = _ids("L" + block, n)
    loan_ids = _mask(loan_ids_all, approved)
    apps = _frame(
        "applications",
        {
            "application_id": app_ids,
            "user_id": pop.uid.gather(u),
            "applied_at": _ts(us),
            "amount_requested": amount,
            "term_months": term,
            "channel": _labels(APPLICATION_CHANNELS, channel),
            "decision": _labels(
                DECISIONS,
                np.where(approved, _code(DECISIONS, "approved"), _code(DECISIONS, "rejected")),
            ),
            "loan_id": loan_ids,
        },
    )
    truth = _frame("_truth", {"application_id": app_ids, "true_pd": pd_true})

    # repayment schedule and behaviour of approved loans
    li = np.flatnonzero(approved)
    lu, lterm, lp, lpd = u[li], term[li], amount[li], pd_true[li]
    nl = li.size
    rate = 0.015 + 0.015 * sigmoid(score[li])
    defaults = rng.random(nl) < lpd
    kmax = np.minimum(6, lterm)
    kp = np.array([0.3, 0.24, 0.18, 0.13, 0.09, 0.06])
    kcum = np.cumsum(kp)
    kdraw = rng.random(nl) * kcum[kmax - 1]
    k_def = np.searchsorted(kcum, kdraw, side="right") + 1
    cure = rng.random(nl) < 0.25
    cure_extra = 90 + np.minimum(rng.geometric(1 / 45, nl), 300)
    late_def = ~defaults & (lterm > 6) & (rng.random(nl) < 0.5 * lpd)
    k2 = 7 + np.floor(rng.random(nl) * np.maximum(lterm - 6, 1)).astype(np.int64)

    rep_loan = np.repeat(np.arange(nl), lterm)
    starts = np.concatenate([[0], np.cumsum(lterm)[:-1]]).astype(np.int64)
    inst = np.arange(rep_loan.size) - starts[rep_loan] + 1
    disb = tl.as_datetime64(day[li])
    dM = disb.astype("datetime64[M]")
    dom = (disb - dM.astype("datetime64[D]")).astype(np.int64)
    tM = dM[rep_loan] + inst
    t0 = tM.astype("datetime64[D]")
    tlen = ((tM + 1).astype("datetime64[D]") - t0).astype(np.int64)
    due = t0 + np.minimum(dom[rep_loan], tlen - 1)
    due_idx = (due - np.datetime64(tl.start, "D")).astype(np.int64)
    ru = lu[rep_loan]
    due_m = np.clip(tl.month_of_day(due_idx), 0, M - 1)
    s_due = Sm[ru, due_m]
    nr = rep_loan.size
    late = rng.random(nr) < sigmoid(-2.9 - 0.8 * pop.disc[ru] + 0.7 * s_due)
    delay = np.where(late, np.minimum(rng.geometric(0.12, nr), 60), -rng.integers(0, 4, nr))
    pay_day = due_idx + delay
    d_row = defaults[rep_loan] & (inst >= k_def[rep_loan])
    due_k = due_idx[starts + k_def - 1]
    cured = d_row & cure[rep_loan]
    pay_day = np.where(cured, np.maximum(pay_day, due_k[rep_loan] + cure_extra[rep_loan]), pay_day)
    unpaid = (d_row & ~cured) | (late_def[rep_loan] & (inst >= k2[rep_loan]))
    ptod = _tod(rng, _night_p(pop, ru, s_due), 15 * MINUTE_US)
    paid_us = tl.to_utc(pay_day, ptod)
    paid = ~unpaid & (pay_day < tl.n_days) & (paid_us < tl.end_us)
    amount_due = np.round(lp / lterm + lp * rate, 2)[rep_loan]
    rep = _frame(
        "repayments",
        {
            "loan_id": loan_ids_all.gather(li[rep_loan]),
            "installment_no": inst,
            "due_date": due,
            "amount_due": amount_due,
            "paid_at": _mask(_ts(paid_us), paid),
            "amount_paid": np.where(paid, amount_due, 0.0),
        },
    )
    ev = LoanEvents(
        app_u=u,
        app_day=day,
        app_us=us,
        app_push=push,
        loan_u=lu,
        loan_day=day[li],
        loan_us=us[li],
        loan_amount=lp,
        pay_u=ru[paid],
        pay_day=pay_day[paid],
        pay_us=paid_us[paid],
        pay_amount=amount_due[paid],
    )
    return (
        Chunk("applications", apps, day),
        Chunk("repayments", rep, None),
        Chunk("_truth", truth, None),
        ev,
    )


def bureau_snapshots(rng: np.random.Generator, pop: Population, tl: Timeline) -> Chunk:
    M = tl.months
    ms = tl.month_start[:-1]
    has = ms[None, :] > pop.reg_day[:, None]
    u, m = _explode(has.astype(np.int64))
    col = m  # snapshot on the 1st of month m shows the state at the end of month m - 1
    L = pop.L[u, col]
    S = pop.S[u, col]
    cards = pop.cards[u]
    loan_size = pop.income[u] * 0.8
    limit = cards * pop.card_limit[u] + L * loan_size * rng.uniform(0.9, 1.3, u.size)
    util = sigmoid(-1.0 + 0.9 * S + 0.4 * pop.imp[u] + rng.normal(0, 0.3, u.size))
    balance = util * cards * pop.card_limit[u] + L * loan_size * rng.uniform(0.3, 0.9, u.size)
    df = _frame(
        "bureau_snapshots",
        {
            "user_id": pop.uid.gather(u),
            "report_date": tl.as_datetime64(ms[m]),
            "open_accounts": L + cards,
            "total_limit": np.round(limit, 2),
            "total_balance": np.round(np.minimum(balance, limit), 2),
            "max_dpd_current": pop.dpd[u, col],
            "max_dpd_24m": pop.max24[u, col],
        },
    )
    del M
    return Chunk("bureau_snapshots", df, None)


def bureau_inquiries(
    rng: np.random.Generator, pop: Population, tl: Timeline, ev: LoanEvents
) -> Chunk:
    Sm = pop.Sm
    f = pop.frac
    active = f > 0
    inst = INSTITUTION_TYPES
    parts = []  # (u, m, reason, institution) per kind
    kinds = [
        (
            "loan_approval",
            rng.poisson(
                1.2 * pop.nnew[:, 1:] * active
                + 0.04 * np.exp(0.6 * pop.app[:, None] + 0.6 * Sm) * f
            ),
            [0.05, 0.35, 0.6, 0.0],
        ),
        (
            "credit_card_approval",
            rng.poisson(0.03 * np.exp(0.5 * (pop.log_inc - MEAN_LOG_INCOME))[:, None] * f),
            [1.0, 0.0, 0.0, 0.0],
        ),
        ("self_query", rng.poisson((0.02 + 0.03 * sigmoid(2 * Sm)) * f), [0.0, 0.0, 0.0, 1.0]),
        ("guarantee", rng.poisson(np.full(Sm.shape, 0.003) * f), [0.6, 0.0, 0.0, 0.4]),
        ("post_loan", rng.poisson(0.12 * pop.L[:, 1:] * f), [0.3, 0.35, 0.35, 0.0]),
    ]
    for reason, counts, probs in kinds:
        u, m = _explode(counts)
        p = np.array(
            [probs[["bank", "consumer_finance", "microloan", "other"].index(i)] for i in inst]
        )
        parts.append(
            (
                u,
                m,
                np.full(u.size, _code(INQUIRY_REASONS, reason)),
                rng.choice(len(inst), u.size, p=p),
            )
        )
    u = np.concatenate([p[0] for p in parts])
    m = np.concatenate([p[1] for p in parts])
    day = _days(rng, pop, tl, u, m)
    tod = _tod(rng, np.full(u.size, 0.02))
    us = tl.to_utc(day, tod)
    # the lender's own inquiry at each application
    own_us = ev.app_us + rng.integers(SECOND_US, 30 * SECOND_US, ev.app_u.size)
    u = np.concatenate([u, ev.app_u])
    day = np.concatenate([day, ev.app_day])
    us = np.concatenate([us, own_us])
    reason = np.concatenate(
        [*(p[2] for p in parts), np.full(ev.app_u.size, _code(INQUIRY_REASONS, "loan_approval"))]
    )
    institution = np.concatenate(
        [*(p[3] for p in parts), np.full(ev.app_u.size, _code(INSTITUTION_TYPES, "microloan"))]
    )
    o = _sorted(tl, day, u, us)
    df = _frame(
        "bureau_inquiries",
        {
            "user_id": pop.uid.gather(u[o]),
            "ts": _ts(us[o]),
            "reason": _labels(INQUIRY_REASONS, reason[o]),
            "institution_type": _labels(INSTITUTION_TYPES, institution[o]),
        },
    )
    return Chunk("bureau_inquiries", df, day[o])


# ----------------------------------------------------------------------------- behaviour


def transactions(
    rng: np.random.Generator,
    pop: Population,
    tl: Timeline,
    cfg: GeneratorConfig,
    ev: LoanEvents,
) -> Chunk:
    M = tl.months
    Sm = pop.Sm
    f = pop.frac
    act = cfg.activity
    eng = pop.eng[:, None]
    ms, me = tl.month_start[:-1], tl.month_start[1:]
    T = {t: _code(TXN_TYPES, t) for t in TXN_TYPES}
    IN, OUT = _code(DIRECTIONS, "in"), _code(DIRECTIONS, "out")
    WALLET, CARD = _code(TXN_CHANNELS, "wallet"), _code(TXN_CHANNELS, "bank_card")
    rel_inc = (pop.log_inc - MEAN_LOG_INCOME)[:, None]

    cols: dict[str, list] = {k: [] for k in ("u", "day", "us", "dir", "type", "amt", "cp", "ch")}

    def add(u, day, us, direction, ttype, amt, cp, ch):
        n = u.size
        cols["u"].append(u)
        cols["day"].append(day)
        cols["us"].append(us)
        cols["dir"].append(np.broadcast_to(direction, n))
        cols["type"].append(np.broadcast_to(ttype, n))
        cols["amt"].append(_money(amt))
        cols["cp"].append(np.broadcast_to(cp, n))
        cols["ch"].append(np.broadcast_to(ch, n))

    def stamp(u, m, day, p_base=-3.3):
        s = Sm[u, m]
        return tl.to_utc(day, _tod(rng, _night_p(pop, u, s, p_base)))

    # salary: salaried and retired (pension), regular pay day, spread by (lack of) stability
    paid_job = np.isin(pop.occ, [OCC["salaried"], OCC["retired"]])
    payday = rng.choice(np.array([0, 4, 9, 14, 24]), pop.n)
    skip = rng.random(Sm.shape) < sigmoid(-5.0 + 1.2 * Sm)
    jitter = np.round(rng.normal(0, 1, Sm.shape) * (0.3 + 6 * (1 - pop.stab))[:, None])
    sday = np.clip(ms[None, :] + payday[:, None] + jitter, ms[None, :], me[None, :] - 1)
    sal = paid_job[:, None] & ~skip & (sday >= pop.lo) & (f > 0)
    u, m = np.nonzero(sal)
    d = sday[u, m].astype(np.int64)
    tod = np.clip(
        rng.normal(10, 0.5 + 4 * (1 - pop.stab[u])) * HOUR_US, HOUR_US, DAY_US - 1
    ).astype(np.int64)
    amt = pop.income[u] * np.exp(rng.normal(0, 0.02 + 0.3 * (1 - pop.stab[u])))
    add(u, d, tl.to_utc(d, tod), IN, T["salary"], amt, -1, CARD)

    # irregular income: gig / self-employed (hit by stress and the macro shock), others small
    irregular = np.isin(pop.occ, [OCC["gig"], OCC["self_employed"]])
    lam = np.where(irregular, 2.5, 0.4)[:, None] * f
    u, m = _explode(rng.poisson(lam))
    d = _days(rng, pop, tl, u, m)
    share = np.where(irregular[u], pop.income[u] / 2.5, pop.income[u] * 0.3)
    amt = share * rng.lognormal(0, 0.7, u.size) * np.exp(-0.3 * np.maximum(Sm[u, m], 0))
    add(
        u,
        d,
        stamp(u, m, d),
        IN,
        T["other"],
        amt,
        -1,
        np.where(rng.random(u.size) < 0.6, WALLET, CARD),
    )

    # person-to-person money with friends
    p2p = [
        (OUT, "transfer", 1.2 * act * eng * f, np.log(200), 1.0),
        (IN, "transfer", 0.8 * act * eng * np.exp(0.35 * Sm) * f, np.log(250), 1.0),
        (OUT, "red_packet", 0.6 * act * eng * f, np.log(30), 0.9),
        (IN, "red_packet", 0.6 * act * eng * f, np.log(30), 0.9),
    ]
    for direction, ttype, lam, mu, sd in p2p:
        u, m = _explode(rng.poisson(lam))
        d = _days(rng, pop, tl, u, m)
        peer, ok = pop.pick_peer(rng, u, d)
        u, m, d, peer = u[ok], m[ok], d[ok], peer[ok]
        amt = np.exp(mu + 0.5 * rel_inc[u, 0] + rng.normal(0, sd, u.size))
        add(
            u,
            d,
            stamp(u, m, d),
            direction,
            T[ttype],
            amt,
            peer,
            np.where(rng.random(u.size) < 0.9, WALLET, CARD),
        )

    # refunds and bills
    u, m = _explode(rng.poisson(0.25 * act * f))
    d = _days(rng, pop, tl, u, m)
    add(u, d, stamp(u, m, d), IN, T["refund"], rng.lognormal(np.log(80), 1.0, u.size), -1, WALLET)
    u, m = _explode(rng.poisson(1.0 * act * f))
    d = _days(rng, pop, tl, u, m)
    add(
        u,
        d,
        stamp(u, m, d),
        OUT,
        T["other"],
        np.exp(np.log(150) + 0.5 * rel_inc[u, 0] + rng.normal(0, 0.8, u.size)),
        -1,
        np.where(rng.random(u.size) < 0.5, WALLET, CARD),
    )

    # other lenders: disbursements of new loans and monthly repayments of open ones
    active = f > 0
    u, m = _explode(pop.nnew[:, 1:] * active)
    d = _days(rng, pop, tl, u, m)
    add(
        u,
        d,
        stamp(u, m, d, -2.8),
        IN,
        T["loan_disbursement"],
        pop.income[u] * rng.lognormal(np.log(0.8), 0.5, u.size),
        -1,
        np.where(rng.random(u.size) < 0.7, CARD, WALLET),
    )
    u, m = _explode(rng.binomial(pop.L[:, 1:], f))
    d = _days(rng, pop, tl, u, m)
    add(
        u,
        d,
        stamp(u, m, d, -2.8),
        OUT,
        T["loan_repayment"],
        pop.income[u] * rng.lognormal(np.log(0.15), 0.4, u.size),
        -1,
        np.where(rng.random(u.size) < 0.7, CARD, WALLET),
    )

    # this lender's loans: disbursal shortly after approval, repayments when paid
    dis_us = ev.loan_us + rng.integers(60 * SECOND_US, 600 * SECOND_US, ev.loan_u.size)
    add(ev.loan_u, ev.loan_day, dis_us, IN, T["loan_disbursement"], ev.loan_amount, -1, CARD)
    add(
        ev.pay_u,
        ev.pay_day,
        ev.pay_us,
        OUT,
        T["loan_repayment"],
        ev.pay_amount,
        -1,
        np.where(rng.random(ev.pay_u.size) < 0.6, WALLET, CARD),
    )

    u = np.concatenate(cols["u"])
    day = np.concatenate(cols["day"])
    us = np.concatenate(cols["us"])
    o = _sorted(tl, day, u, us)
    cp = np.concatenate(cols["cp"])[o]
    cp_ids = pop.peer_ids.gather(np.maximum(cp, 0))
    cp_ids = _mask(cp_ids, cp >= 0)
    df = _frame(
        "transactions",
        {
            "txn_id": _ids(f"T{pop.block:05d}", o.size),
            "user_id": pop.uid.gather(u[o]),
            "ts": _ts(us[o]),
            "direction": _labels(DIRECTIONS, np.concatenate(cols["dir"])[o]),
            "txn_type": _labels(TXN_TYPES, np.concatenate(cols["type"])[o]),
            "amount": np.concatenate(cols["amt"])[o],
            "counterparty_id": cp_ids,
            "channel": _labels(TXN_CHANNELS, np.concatenate(cols["ch"])[o]),
        },
    )
    del M
    return Chunk("transactions", df, day[o])


_CAT_BASE = {
    "groceries": (0.22, 60),
    "dining": (0.20, 55),
    "transport": (0.12, 20),
    "shopping": (0.14, 180),
    "utilities": (0.04, 150),
    "telecom": (0.03, 60),
    "entertainment": (0.06, 90),
    "travel": (0.03, 900),
    "education": (0.03, 300),
    "medical": (0.03, 200),
    "gaming": (0.05, 40),
    "luxury": (0.05, 2500),
}


def consumption(
    rng: np.random.Generator, pop: Population, tl: Timeline, cfg: GeneratorConfig
) -> Chunk:
    Sm = pop.Sm
    n, M = Sm.shape
    cats = MERCHANT_CATEGORIES
    C = {c: i for i, c in enumerate(cats)}
    base = np.log(np.array([_CAT_BASE[c][0] for c in cats]))
    median = np.array([_CAT_BASE[c][1] for c in cats], dtype=float)
    imp = pop.imp[:, None]
    inc = (pop.log_inc - MEAN_LOG_INCOME)[:, None]
    student = (pop.occ == OCC["student"])[:, None]
    retired = (pop.occ == OCC["retired"])[:, None]
    sp = np.maximum(Sm, 0)
    logits = np.broadcast_to(base, (n, M, len(cats))).copy()
    for c in ("entertainment", "gaming", "luxury"):
        logits[..., C[c]] += 0.5 * imp
    logits[..., C["shopping"]] += 0.3 * imp - 0.2 * sp
    logits[..., C["groceries"]] += 0.2 * Sm
    logits[..., C["luxury"]] += 0.6 * inc - 0.5 * sp
    logits[..., C["travel"]] += 0.5 * inc - 0.4 * sp
    logits[..., C["dining"]] += 0.2 * inc
    logits[..., C["education"]] += 1.0 * student
    logits[..., C["gaming"]] += 0.6 * student - 1.5 * retired
    logits[..., C["medical"]] += 0.8 * retired
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    lam = 8.0 * cfg.activity * pop.eng[:, None] * np.exp(0.3 * inc - 0.1 * Sm) * pop.frac
    total = rng.poisson(lam)
    counts = rng.multinomial(total, p)  # (n, M, categories)
    del p, logits
    flat = counts.reshape(n * M, len(cats))
    idx = np.repeat(np.arange(flat.size, dtype=np.int64), flat.ravel())
    cat = idx % len(cats)
    um = idx // len(cats)
    u, m = um // M, um % M
    del counts, flat, idx, um
    k = u.size
    s = Sm[u, m]
    day = _days(rng, pop, tl, u, m)
    us = tl.to_utc(day, _tod(rng, _night_p(pop, u, s)))
    big = np.isin(cat, [C["shopping"], C["travel"], C["luxury"]])
    amt = (
        median[cat]
        * np.exp(0.5 * (pop.log_inc[u] - MEAN_LOG_INCOME))
        * rng.lognormal(0, 0.8, k)
        * np.where(big, np.exp(-0.3 * np.maximum(s, 0)), 1.0)
    )
    travel = cat == C["travel"]
    away = rng.random(k) < np.where(travel, 0.7, 0.06)
    city = np.where(away, rng.integers(0, len(CITIES), k), pop.home_city[u])
    p_credit = sigmoid(-2.3 + 0.8 * s + 0.45 * pop.app[u] + 0.3 * pop.imp[u])
    r = rng.random(k)
    pay = np.where(
        r < p_credit,
        _code(PAY_METHODS, "credit"),
        np.where(
            r < p_credit + 0.35 * (1 - p_credit),
            _code(PAY_METHODS, "bank_card"),
            _code(PAY_METHODS, "balance"),
        ),
    )
    o = _sorted(tl, day, u, us)
    u, day, us = u[o], day[o], us[o]
    df = _frame(
        "consumption",
        {
            "order_id": _ids(f"O{pop.block:05d}", k),
            "user_id": pop.uid.gather(u),
            "ts": _ts(us),
            "amount": _money(amt[o]),
            "merchant_category": _labels(cats, cat[o]),
            "city": _labels(CITIES, city[o]),
            "device_id": pop.device_at(rng, u, day),
            "pay_method": _labels(PAY_METHODS, pay[o]),
        },
    )
    return Chunk("consumption", df, day)


def social(rng: np.random.Generator, pop: Population, tl: Timeline, cfg: GeneratorConfig) -> Chunk:
    # ties formed during the period
    new = pop.e_formed >= 0
    fu, fp, fd = pop.e_src[new], pop.e_peer[new], pop.e_formed[new]
    fm = tl.month_of_day(fd)
    f_us = tl.to_utc(fd, _tod(rng, _night_p(pop, fu, pop.Sm[fu, fm])))
    # interactions with existing friends
    young = np.where(pop.age < 30, 1.4, 1.0)[:, None]
    lam = 4.0 * cfg.activity * pop.eng[:, None] * young * pop.frac * (pop.e_count > 0)[:, None]
    u, m = _explode(rng.poisson(lam))
    d = _days(rng, pop, tl, u, m)
    peer, ok = pop.pick_peer(rng, u, d)
    u, m, d, peer = u[ok], m[ok], d[ok], peer[ok]
    us = tl.to_utc(d, _tod(rng, _night_p(pop, u, pop.Sm[u, m])))
    kinds = np.array(
        [_code(INTERACTIONS, k) for k in ("message", "moment_like", "moment_comment", "red_packet")]
    )
    kind = kinds[rng.choice(4, u.size, p=[0.45, 0.35, 0.15, 0.05])]
    U = np.concatenate([fu, u])
    P = np.concatenate([fp, peer])
    D = np.concatenate([fd, d])
    US = np.concatenate([f_us, us])
    K = np.concatenate([np.full(fu.size, _code(INTERACTIONS, "friend_add")), kind])
    o = _sorted(tl, D, U, US)
    df = _frame(
        "social",
        {
            "user_id": pop.uid.gather(U[o]),
            "peer_id": pop.peer_ids.gather(P[o]),
            "ts": _ts(US[o]),
            "interaction": _labels(INTERACTIONS, K[o]),
        },
    )
    return Chunk("social", df, D[o])


def app_events(
    rng: np.random.Generator,
    pop: Population,
    tl: Timeline,
    cfg: GeneratorConfig,
    ev: LoanEvents,
) -> Chunk:
    Sm = pop.Sm
    M = tl.months
    E = {e: _code(APP_EVENTS, e) for e in APP_EVENTS}
    camp_m = round(cfg.campaign_start * cfg.months)
    sess_u, sess_day, sess_us = [], [], []
    ev_sess, ev_us, ev_code = [], [], []
    n_sess = 0

    def new_sessions(u, day, us):
        nonlocal n_sess
        sid = np.arange(n_sess, n_sess + u.size)
        n_sess += u.size
        sess_u.append(u)
        sess_day.append(day)
        sess_us.append(us)
        return sid

    def emit(sid, us, code):
        ev_sess.append(sid)
        ev_us.append(us)
        ev_code.append(np.broadcast_to(code, sid.size))

    # ordinary sessions: login, then loan-related browsing rising with appetite and stress
    lam = 4.0 * cfg.activity * pop.eng[:, None] * np.exp(0.1 * Sm + 0.1 * pop.app[:, None])
    u, m = _explode(rng.poisson(lam * pop.frac))
    d = _days(rng, pop, tl, u, m)
    s = Sm[u, m]
    t0 = tl.to_utc(d, _tod(rng, _night_p(pop, u, s, -3.0), 0, 23 * HOUR_US + 50 * MINUTE_US))
    sid = new_sessions(u, d, t0)
    emit(sid, t0, E["login"])
    a = pop.app[u]
    extra_lam = np.stack(
        [
            0.12 * np.exp(0.7 * a + 0.6 * s),
            0.05 * np.exp(0.8 * a + 0.7 * s),
            0.08 * np.exp(0.6 * a + 0.7 * s),
            np.full(u.size, 0.03),
        ],
        axis=1,
    )
    extra = np.minimum(rng.poisson(extra_lam), 2)
    codes = np.array(
        [E["view_loan_product"], E["view_rate_compare"], E["limit_check"], E["repayment_page"]]
    )
    flat = extra.ravel()
    idx = np.repeat(np.arange(flat.size, dtype=np.int64), flat)
    srow, kind = idx // 4, idx % 4
    per = extra.sum(axis=1)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    pos = np.arange(srow.size) - first[srow] + 1
    off = pos * 30 * SECOND_US + rng.integers(0, 25 * SECOND_US, srow.size)
    emit(sid[srow], t0[srow] + off, codes[kind])

    # campaign sessions: push_open (sometimes followed by a product view)
    camp = (np.arange(M) >= camp_m)[None, :]
    lam = np.where(camp, 0.6 * pop.eng[:, None] * np.exp(0.3 * pop.app[:, None]), 0) * pop.frac
    u, m = _explode(rng.poisson(lam))
    d = _days(rng, pop, tl, u, m)
    t0 = tl.to_utc(d, _tod(rng, _night_p(pop, u, Sm[u, m]), 0, 23 * HOUR_US + 50 * MINUTE_US))
    sid = new_sessions(u, d, t0)
    emit(sid, t0, E["login"])
    emit(sid, t0 + rng.integers(SECOND_US, 10 * SECOND_US, sid.size), E["push_open"])
    view = rng.random(sid.size) < 0.3
    emit(
        sid[view],
        t0[view] + rng.integers(20 * SECOND_US, 120 * SECOND_US, view.sum()),
        E["view_loan_product"],
    )

    # application sessions
    a_us = ev.app_us
    t0 = a_us - rng.integers(5 * MINUTE_US, 15 * MINUTE_US, a_us.size)
    sid = new_sessions(ev.app_u, ev.app_day, t0)
    emit(sid, t0, E["login"])
    pu = ev.app_push
    emit(sid[pu], a_us[pu] - rng.integers(4 * MINUTE_US, 5 * MINUTE_US, pu.sum()), E["push_open"])
    view = rng.random(sid.size) < 0.5
    emit(
        sid[view],
        a_us[view] - rng.integers(3 * MINUTE_US, 4 * MINUTE_US, view.sum()),
        E["view_loan_product"],
    )
    emit(sid, a_us - rng.integers(60 * SECOND_US, 170 * SECOND_US, sid.size), E["apply_start"])
    emit(sid, a_us - rng.integers(SECOND_US, 30 * SECOND_US, sid.size), E["apply_submit"])

    # repayment sessions (before each repayment of this lender's loans)
    p_us = ev.pay_us
    t0 = p_us - rng.integers(2 * MINUTE_US, 10 * MINUTE_US, p_us.size)
    sid = new_sessions(ev.pay_u, ev.pay_day, t0)
    emit(sid, t0, E["login"])
    emit(sid, p_us - rng.integers(5 * SECOND_US, 100 * SECOND_US, sid.size), E["repayment_page"])

    # number sessions in (day, user, start) order, then order events the same way
    su = np.concatenate(sess_u)
    sd = np.concatenate(sess_day)
    st = np.concatenate(sess_us)
    so = _sorted(tl, sd, su, st)
    rank = np.empty(so.size, dtype=np.int64)
    rank[so] = np.arange(so.size)
    sess_ids = _ids(f"S{pop.block:05d}", so.size)
    devices = pop.device_at(rng, su[so], sd[so])  # per numbered session

    es = rank[np.concatenate(ev_sess)]
    eus = np.concatenate(ev_us)
    ecode = np.concatenate(ev_code)
    eu = su[so][es]
    eday = sd[so][es]
    o = np.argsort(es * (1 << 32) + (eus - st[so][es]), kind="stable")
    es, eus, ecode, eu, eday = es[o], eus[o], ecode[o], eu[o], eday[o]
    df = _frame(
        "app_events",
        {
            "user_id": pop.uid.gather(eu),
            "ts": _ts(eus),
            "event": _labels(APP_EVENTS, ecode),
            "session_id": sess_ids.gather(es),
            "device_id": devices.gather(es),
        },
    )
    return Chunk("app_events", df, eday)
