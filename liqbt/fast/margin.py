"""Compiled margin maths of the fast engine (one symbol, one-way position, isolated or cross).

Each function mirrors one evaluator of :mod:`liqbt.core` operation for operation, so that the
floating-point results are identical (the parity suite in ``tests/test_fast_parity.py`` holds
them together). Nothing here is a new rule: when the core changes, change the mirror.

State vector ``st`` (float64, indices below): wallet, signed size, entry price, isolated margin,
mark price, totals. Parameters ``fp``/``ip`` (float64/int64) carry the profile and market.
Tier table ``tiers``: rows ``(cap, mmr, maintenance_amount, max_leverage)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from liqbt.fast.jit import hot

# --- state indices (float64 vector) --------------------------------------------------------
W, SZ, EN, MG, MK, FEES, FUND, REAL, INS, MIND, INIT = range(11)
N_STATE = 11
# --- float parameters ----------------------------------------------------------------------
LEV, TAKER, MAKER, LIQFEE, UMRATE, MINNOT, CAPNOT = range(7)
N_FP = 7
# --- int parameters ------------------------------------------------------------------------
ISO, LPF, USED, PDROP, PISO, PCROSS, TOPUP, SETTLE_LP, DEBIT, BASIS_SIZE, INTRABAR, OMTRIG = (
    range(12))
N_IP = 12
# lp_formula codes
F_BINANCE, F_TAKER, F_BYBIT = 0, 1, 2

_MAX_TIER_ITERATIONS = 64


@hot
def tier_index(tiers: np.ndarray, value: float) -> int:
    """:meth:`liqbt.core.tiers.TierTable.tier_index`: first tier whose cap >= value."""
    n = tiers.shape[0]
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if tiers[mid, 0] < value:
            lo = mid + 1
        else:
            hi = mid
    return min(lo, n - 1)


@hot
def lookup_value(ip: np.ndarray, size: float, price: float) -> float:
    """:meth:`liqbt.core.tiers.TierTable.lookup_value`."""
    if ip[BASIS_SIZE]:
        return abs(size)
    return abs(size) * price


@hot
def initial_margin(st: np.ndarray, fp: np.ndarray) -> float:
    """:meth:`liqbt.core.account.Account.initial_margin`: ``|size| × entry / leverage``."""
    return abs(st[SZ]) * st[EN] / fp[LEV]


@hot
def upnl(st: np.ndarray) -> float:
    """:attr:`liqbt.core.account.Position.unrealized_pnl`: ``size × (mark − entry)``."""
    if st[SZ] != 0.0:
        return st[SZ] * (st[MK] - st[EN])
    return 0.0


@hot
def maintenance_margin(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray) -> float:
    """:meth:`liqbt.core.account.Account.maintenance_margin` of the leg:
    :class:`liqbt.core.margin_models.TieredMM` (``q × P × mmr − amount``, P the mark, the entry
    on Bybit standard isolated) or :class:`liqbt.core.margin_models.UsedMarginMM` (``rate × q × E /
    leverage``). No closing fee (see :func:`closing_fee`)."""
    size = st[SZ]
    if size == 0.0:
        return 0.0
    if ip[USED]:
        return fp[UMRATE] * abs(size) * st[EN] / fp[LEV]
    price = st[EN] if ip[LPF] == F_BYBIT and ip[ISO] else st[MK]
    k = tier_index(tiers, lookup_value(ip, size, price))
    return abs(size) * price * tiers[k, 1] - tiers[k, 2]


@hot
def closing_fee(st: np.ndarray, fp: np.ndarray, ip: np.ndarray) -> float:
    """:meth:`liqbt.core.margin_models.MarginModel.closing_fee`: ``taker × q × mark`` on
    ``taker_at_mark`` profiles, else 0."""
    if st[SZ] == 0.0:
        return 0.0
    rate = fp[TAKER] if ip[LPF] == F_TAKER else 0.0
    return rate * abs(st[SZ]) * st[MK]


@hot
def equity(st: np.ndarray, ip: np.ndarray) -> float:
    """:meth:`liqbt.core.account.Account.equity`."""
    total = st[W]
    if st[SZ] != 0.0:
        total += upnl(st)
        if ip[ISO]:
            total += st[MG]
    return total


@hot
def available_balance(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, order_margin: float) -> float:
    """:meth:`liqbt.core.account.Account.available_balance` (cross balance − cross IM − orders,
    floored at 0)."""
    if st[SZ] != 0.0 and not ip[ISO]:
        value = st[W] + (0.0 + upnl(st))
        value -= (0.0 + initial_margin(st, fp)) + order_margin
    else:
        value = st[W] + 0
        value -= 0 + order_margin
    return max(value, 0.0)


@hot
def _solve_isolated(formula: int, side: int, q: float, entry: float, margin: float,
                    mmr: float, amount: float, taker: float) -> float:
    """:func:`liqbt.core.margin._solve_isolated` (binance, taker_at_mark, bybit)."""
    if formula == F_BYBIT:
        mm_entry = q * entry * mmr - amount
        return entry - side * (margin - mm_entry) / q
    fee = taker if formula == F_TAKER else 0.0
    return (side * q * entry - margin - amount) / (q * (side - mmr - fee))


#: outcomes of one tier fixed-point step
_TIER_NEXT, _TIER_DONE, _TIER_BAD = 0, 1, 2


@hot
def _record_tier(seen_k: np.ndarray, seen_p: np.ndarray, nseen: int, key: int, price: float,
                 used: bool, tiers: np.ndarray, ip: np.ndarray, q: float):
    """Record the candidate ``price`` solved in tier ``key`` and pick the tier at that price:
    ``(nseen, next key, _TIER_NEXT)`` to iterate again, ``_TIER_DONE`` when the tier at the
    price is the one used (the fixed point of ``liqbt.core.margin``), ``_TIER_BAD`` for a
    non-finite candidate."""
    seen_k[nseen] = key
    seen_p[nseen] = price
    nseen += 1
    if not math.isfinite(price):
        return nseen, key, _TIER_BAD
    nk = 0 if used else tier_index(tiers, lookup_value(ip, q, max(price, 0.0)))
    if nk == key:
        return nseen, key, _TIER_DONE
    return nseen, nk, _TIER_NEXT


@hot
def _tier_seen(seen_k: np.ndarray, nseen: int, key: int) -> bool:
    """Whether the tier fixed-point iteration already visited tier ``key`` (a cycle)."""
    for j in range(nseen):
        if seen_k[j] == key:
            return True
    return False


@hot
def _cycle_price(seen_p: np.ndarray, nseen: int, falling: bool) -> float:
    """The price a tier cycle settles on, as ``liqbt.core.margin`` does: the candidate the
    price meets first (the highest when the price falls toward it, else the lowest)."""
    best = seen_p[0]
    for m in range(1, nseen):
        best = max(best, seen_p[m]) if falling else min(best, seen_p[m])
    return best


@njit(cache=True)
def liquidation_price(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray,
                      trigger_om: float = 0.0, other_upnl: float = 0.0,
                      other_trigger: float = 0.0):
    """:meth:`liqbt.core.account.Account.liquidation_price` for the one leg:
    ``(lp, direction, found)``; ``found`` False means ``None``.

    Isolated: :func:`liqbt.core.margin.isolated_liquidation_price`; cross:
    :func:`liqbt.core.margin.cross_liquidation_price` on ``wallet − trigger_om`` (the order
    margin counted in the trigger), the other cross symbols' upnl and trigger margin held.
    """
    size = st[SZ]
    if size == 0.0:
        return 0.0, 0, False
    side = 1 if size > 0 else -1
    q = abs(size)
    entry = st[EN]
    formula = ip[LPF]
    used = ip[USED] != 0
    u_amount = 0.0
    if used:
        # UsedMarginMM.solver_tiers: one zero-rate tier with amount −MM
        u_amount = -(fp[UMRATE] * abs(size) * entry / fp[LEV])
    taker = fp[TAKER]
    seen_k = np.empty(_MAX_TIER_ITERATIONS, np.int64)
    seen_p = np.empty(_MAX_TIER_ITERATIONS)
    if ip[ISO]:
        margin = st[MG]
        lp = 0.0
        ok = True
        if formula == F_BYBIT and not used:
            k = tier_index(tiers, lookup_value(ip, q, entry))
            lp = _solve_isolated(formula, side, q, entry, margin, tiers[k, 1], tiers[k, 2], taker)
        else:
            falling = side > 0
            price = entry
            key = 0 if used else tier_index(tiers, lookup_value(ip, q, max(price, 0.0)))
            nseen = 0
            for _ in range(_MAX_TIER_ITERATIONS):
                if _tier_seen(seen_k, nseen, key):
                    price = _cycle_price(seen_p, nseen, falling)
                    break
                if used:
                    price = _solve_isolated(formula, side, q, entry, margin, 0.0, u_amount, taker)
                else:
                    price = _solve_isolated(formula, side, q, entry, margin, tiers[key, 1],
                                            tiers[key, 2], taker)
                nseen, key, state = _record_tier(seen_k, seen_p, nseen, key, price, used,
                                                 tiers, ip, q)
                if state == _TIER_BAD:
                    ok = False
                if state != _TIER_NEXT:
                    break
            lp = price
        if not ok or not math.isfinite(lp):
            return 0.0, -side, False
        if side > 0:
            if lp > 0:
                return lp, -side, True
            return 0.0, -side, False
        return max(lp, 0.0), -side, True
    # cross, one symbol
    if formula == F_BYBIT:
        formula = F_BINANCE
    fee = taker if formula == F_TAKER else 0.0
    net = 0 + side * q
    base = (st[W] - trigger_om) + other_upnl - other_trigger
    base -= 0 + side * q * entry
    den = 0.0
    start = st[MK] if st[MK] != 0.0 else entry
    falling = net > 0
    price = start
    key = 0 if used else tier_index(tiers, lookup_value(ip, q, max(price, 0.0)))
    nseen = 0
    ok = True
    for _ in range(_MAX_TIER_ITERATIONS):
        if _tier_seen(seen_k, nseen, key):
            price = _cycle_price(seen_p, nseen, falling)
            break
        if used:
            mmr, amount = 0.0, u_amount
        else:
            mmr, amount = tiers[key, 1], tiers[key, 2]
        num = base + (0 + amount)
        den = (0 + q * (mmr + fee)) - net
        if den == 0:
            price = math.inf if num > 0 else 0.0
        else:
            price = num / den
        nseen, key, state = _record_tier(seen_k, seen_p, nseen, key, price, used, tiers, ip, q)
        if state == _TIER_BAD:
            ok = False
        if state != _TIER_NEXT:
            break
    direction = -1 if den < 0 else 1
    if not ok or not math.isfinite(price):
        return 0.0, direction, False
    if direction < 0:
        if price > 0:
            return price, direction, True
        return 0.0, direction, False
    return max(price, 0.0), direction, True


@hot
def cross_at(a: float, b: float, level: float, rising: bool):
    """:meth:`liqbt.broker.MarginBroker._cross`: ``(fraction, price, hit)``."""
    if rising:
        if a >= level:
            return 0.0, a, True
        if b >= level:
            return (level - a) / (b - a), level, True
        return 0.0, 0.0, False
    if a <= level:
        return 0.0, a, True
    if b <= level:
        return (a - level) / (a - b), level, True
    return 0.0, 0.0, False


@hot
def fill(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, qty: float, price: float,
         fee_rate: float):
    """:meth:`liqbt.core.account.Account.fill`; returns ``(closed, fee)``."""
    old = st[SZ]
    closed = 0.0
    if old != 0.0 and (old > 0) != (qty > 0):
        closed = -old if abs(qty) >= abs(old) else qty
    opened = qty - closed
    if abs(opened) <= abs(qty) * 1e-9:
        opened = 0.0
    fee = abs(qty) * price * fee_rate
    if closed != 0.0:
        pnl = -closed * (price - st[EN])
        if ip[ISO]:
            released = st[MG] * (abs(closed) / abs(old))
            st[MG] -= released
            st[W] += released
        st[SZ] = old + closed
        if abs(st[SZ]) <= abs(old) * 1e-12:
            st[SZ] = 0.0
            if ip[ISO]:
                st[W] += st[MG]
                st[MG] = 0.0
            st[EN] = 0.0
        st[W] += pnl
        st[REAL] += pnl
    if opened != 0.0:
        new_size = st[SZ] + opened
        if st[SZ] != 0.0:
            st[EN] = (st[SZ] * st[EN] + opened * price) / new_size
        else:
            st[EN] = price
        st[SZ] = new_size
        if ip[ISO]:
            im = abs(opened) * price / fp[LEV]
            st[MG] += im
            st[W] -= im
    st[W] -= fee
    st[FEES] += fee
    if st[MK] == 0.0:
        st[MK] = price
    return closed, fee


@hot
def settlement_price(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray,
                     execution: float) -> float:
    """:meth:`liqbt.core.account.Account.settlement_prices` for the one leg (isolated, or the
    only cross leg)."""
    saved = st[MK]
    st[MK] = execution
    if ip[ISO]:
        balance = 0 + (st[MG] + upnl(st))
    else:  # the cross margin balance
        balance = st[W] + (0.0 + upnl(st))
    if (balance < 0 and ip[DEBIT]) or (ip[SETTLE_LP] and balance >= 0):
        st[MK] = saved
        return execution
    weight = maintenance_margin(st, fp, ip, tiers)
    total = 0 + weight
    if total <= 0:
        weight = abs(st[SZ]) * st[MK]
        total = 0 + weight
    side = 1 if st[SZ] > 0 else -1
    share = balance * weight / total
    result = execution - side * share / abs(st[SZ])
    st[MK] = saved
    return result


@hot
def margin_ratio(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray,
                 trigger_om: float = 0.0) -> float:
    """:meth:`liqbt.core.account.Account.margin_ratio` of the isolated leg
    (:class:`liqbt.core.margin_models.MarginFigures`: (MM + closing fee) / (M + upnl)) or of the
    cross account ((Σ MM + Σ closing fee + order margin in the trigger) / (wallet + Σ upnl));
    0 when flat (the timeline's convention)."""
    if st[SZ] == 0.0:
        return 0.0
    if ip[ISO]:
        balance = st[MG] + upnl(st)
        trigger = maintenance_margin(st, fp, ip, tiers) + closing_fee(st, fp, ip) + 0.0
    else:
        balance = st[W] + (0.0 + upnl(st))
        trigger = ((0 + maintenance_margin(st, fp, ip, tiers)) + (0 + closing_fee(st, fp, ip))
                   + trigger_om)
    if balance <= 0:
        return math.inf if trigger > 0 or balance < 0 else 0.0
    return trigger / balance


# --- cross margin, one symbol (liqbt.core.cross_bound, liqbt.walk, liqbt.core.path) ---------
@hot
def trigger_margin(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray) -> float:
    """:meth:`liqbt.core.account.Account.trigger_margin`: ``MM + closing fee`` of the leg."""
    return maintenance_margin(st, fp, ip, tiers) + closing_fee(st, fp, ip)


@hot
def cross_excess(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray,
                 trigger_om: float) -> float:
    """:meth:`liqbt.core.account.Account.cross_excess` with the one cross leg: ``wallet +
    upnl − (MM + closing fee) − order margin in the trigger`` (USDT; liquidation at <= 0)."""
    balance = st[W] + (0.0 + upnl(st))
    return balance - ((0.0 + trigger_margin(st, fp, ip, tiers)) + trigger_om)


@hot
def cross_tolerance(st: np.ndarray) -> float:
    """:func:`liqbt.core.liquidation.cross_tolerance`: ``1e-9 × max(Σ q × mark, 1)``."""
    return 1e-9 * max(0.0 + abs(st[SZ]) * st[MK], 1.0)


@njit(cache=True)
def tier_breakpoints(m0: float, m1: float, q: float, tiers: np.ndarray, out: np.ndarray) -> int:
    """:func:`liqbt.core.path.tier_breakpoints` for one leg of ``|size| = q``: the fractions of
    the move ``m0 → m1`` where ``q × mark`` equals a finite tier cap, sorted and distinct,
    written to ``out``; returns their count."""
    if m0 == m1 or q == 0.0:
        return 0
    low = min(m0, m1)
    high = max(m0, m1)
    n = 0
    for i in range(tiers.shape[0]):
        cap = tiers[i, 0]
        if not math.isfinite(cap):
            continue
        price = cap / q
        if low < price < high:
            f = (price - m0) / (m1 - m0)
            dup = False
            for j in range(n):
                if out[j] == f:
                    dup = True
            if not dup:
                out[n] = f
                n += 1
    out[:n] = np.sort(out[:n])
    return n


@njit(cache=True)
def term_min(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray, low: float,
             high: float) -> float:
    """:func:`liqbt.core.cross_bound.term_min` of the one leg: the least ``upnl − (MM +
    closing fee)`` for marks in ``[low, high]`` (the ends, and both sides of a tier
    breakpoint when the range spans tiers). The mark is restored."""
    current = st[MK]
    # the same prices as the core's list, evaluated as they come (no list: this runs on
    # every bar of an open cross position)
    st[MK] = low
    best = 0 + (upnl(st) - trigger_margin(st, fp, ip, tiers))
    if low != high:
        st[MK] = high
        best = min(best, 0 + (upnl(st) - trigger_margin(st, fp, ip, tiers)))
        q = st[SZ]
        if tier_index(tiers, lookup_value(ip, q, low)) != tier_index(
                tiers, lookup_value(ip, q, high)):
            fr = np.empty(tiers.shape[0])
            nb = tier_breakpoints(low, high, abs(q), tiers, fr)
            for j in range(nb):
                level = low + (high - low) * fr[j]
                for price in (level * (1 - 1e-12), level * (1 + 1e-12)):
                    st[MK] = price
                    best = min(best, 0 + (upnl(st) - trigger_margin(st, fp, ip, tiers)))
    st[MK] = current
    return best


@njit(cache=True)
def cross_floor(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray, low: float,
                high: float, trigger_om: float) -> float:
    """:func:`liqbt.core.cross_bound.cross_floor`: the least cross excess for the mark
    anywhere in ``[low, high]``."""
    return (st[W] - trigger_om) + term_min(st, fp, ip, tiers, low, high)


#: clocks of a bar path's vertices (open, first extreme, second extreme, close) on ``τ ∈ [0, 1]``
VT = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)


@hot
def path_at(path: np.ndarray, k: int, t: float) -> float:
    """:func:`liqbt.walk.at` (``liqbt.broker._at``): the bar path's price at clock ``t`` inside
    segment ``k`` (linear between the vertices at :data:`VT`). Both bar loops and the cross
    breach searches read their paths through it."""
    a = path[k]
    b = path[k + 1]
    t0 = VT[k]
    if a == b or t <= t0:
        return a
    if t >= VT[k + 1]:
        return b
    return a + (b - a) * (t - t0) * 3.0


@hot
def piece_root(lo: float, hi: float, gu: float, gv: float, tol: float) -> float:
    """First instant of ``[lo, hi]`` where a linear piece of the cross excess is ``<= tol``,
    or ``-1.0`` when it stays above (``liqbt.core.path``'s exact-crossing step).

    The piece is known by its values ``gu``, ``gv`` (USDT) at the thirds ``u = lo + w/3``,
    ``v = lo + 2w/3``; its end values are extrapolated along ``slope = (gv − gu)/(v − u)``
    (between tier breakpoints the excess is linear in τ, so this is exact). The root is the
    zero of the line, not of ``tol`` (a root of ``tol`` would sit on the edge of the
    condition), clamped to the piece against float drift.
    """
    width = hi - lo
    u = lo + width / 3.0
    v = lo + 2.0 * width / 3.0
    slope = (gv - gu) / (v - u)
    g_lo = gu - slope * (u - lo)
    g_hi = gv + slope * (hi - v)
    if g_lo <= tol:
        return lo
    if g_hi <= tol:
        root = lo + g_lo / (g_lo - g_hi) * width if g_lo != g_hi else lo
        return min(max(root, lo), hi)
    return -1.0


@njit(cache=True)
def cross_first_breach(st: np.ndarray, fp: np.ndarray, ip: np.ndarray, tiers: np.ndarray,
                       mpath: np.ndarray, k: int, t: float, t_end: float,
                       trigger_om: float) -> float:
    """:meth:`liqbt.walk.JointWalk._cross_first_breach` with one cross symbol: the first clock
    in ``[t, t_end]`` of segment ``k`` where the cross condition holds on the mark path
    (:func:`liqbt.core.path.first_nonpositive` with the tier breakpoints), ``-1`` for none.
    Leaves the mark where the last evaluation put it, as the Python walk does."""
    ma = path_at(mpath, k, t)
    mb = mpath[k + 1]
    fr = np.empty(tiers.shape[0] + 2)
    nb = tier_breakpoints(ma, mb, abs(st[SZ]), tiers, fr)
    cuts = np.empty(nb + 2)
    cuts[0] = t
    nc = 1
    for j in range(nb):
        b = t + fr[j] * (t_end - t)
        if t < b < t_end:
            cuts[nc] = b
            nc += 1
    cuts[1:nc] = np.sort(cuts[1:nc])
    cuts[nc] = t_end
    nc += 1
    tol = cross_tolerance(st)
    st[MK] = path_at(mpath, k, t)
    if cross_excess(st, fp, ip, tiers, trigger_om) <= tol:
        return t
    if t_end == t:
        return -1.0
    for j in range(nc - 1):
        lo = cuts[j]
        hi = cuts[j + 1]
        width = hi - lo
        if width <= 0:
            continue
        u = lo + width / 3.0
        v = lo + 2.0 * width / 3.0
        st[MK] = path_at(mpath, k, u)
        gu = cross_excess(st, fp, ip, tiers, trigger_om)
        st[MK] = path_at(mpath, k, v)
        gv = cross_excess(st, fp, ip, tiers, trigger_om)
        root = piece_root(lo, hi, gu, gv, tol)
        if root >= 0.0:
            return root
    return -1.0
