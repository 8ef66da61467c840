"""The fast engine on several symbols of one account: the broker's joint walk, compiled.

One call runs the ``hold`` bot over several symbols whose bars share one clock (the same bar
times). Cross legs share the cross wallet, isolated legs keep their own margin; every step
mirrors :class:`liqbt.walk.JointWalk` (margin-model §8):

1. accept the orders submitted on the previous bar, in submission order;
2. every symbol's mark moves to its open, then funding is settled symbol by symbol (name
   order);
3. when an order can act or a trigger can happen (an isolated LP inside its bar's mark range,
   or the cross condition anywhere in the box of the bars' mark ranges), the bars are walked
   together on one clock ``τ ∈ [0, 1]`` (vertices at 0, 1/3, 2/3, 1): the next event is the
   earliest of an order reached on its trade path, an isolated leg's mark reaching its LP and
   the first instant the cross condition holds on the joint mark path (exact root with the
   tier breakpoints); ties: triggers before fills, the cross trigger first, then symbol name,
   then order reference;
4. liquidation plans as :mod:`liqbt.core.liquidation` (isolated: top-up, cancel the symbol's
   orders, partial steps, full close at bankruptcy; cross: cancel every order, partial steps
   in the profile's ``cross_liquidation_order``, every cross leg closed together, settled at
   bankruptcy with the balance shared by MM), wipeout.

State: one row per symbol (``liqbt.fast.margin`` layout; only the leg fields ``SZ, EN, MG,
MK`` are the row's own) and the account vector ``acct`` (``W, FEES, FUND, REAL, INS, MIND,
INIT``). The single-leg functions of :mod:`liqbt.fast.margin` run on a row once the account
fields are loaded into it (:func:`_load`/:func:`_store`), so every formula stays the one
mirror of the core evaluator.

Symbols are indexed in name order (the walk's order); the bot's orders carry their symbol.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from liqbt.fast import kernel as kn
from liqbt.fast.jit import hot
from liqbt.fast.margin import (
    DEBIT,
    EN,
    FEES,
    FUND,
    INIT,
    INS,
    INTRABAR,
    ISO,
    LEV,
    MG,
    MIND,
    MINNOT,
    MK,
    N_STATE,
    OMTRIG,
    REAL,
    SETTLE_LP,
    SZ,
    TAKER,
    TOPUP,
    VT,
    W,
    add_cuts,
    auto_top_up,
    book_liquidation,
    close_cuts,
    closing_fee,
    cross_at,
    fill,
    initial_margin,
    liquidation_price,
    maintenance_margin,
    margin_ratio,
    opening_size,
    path_at,
    piece_root,
    piece_thirds,
    ratio_of,
    settle_funding,
    settlement_price,
    term_min,
    tier_breakpoints,
    trigger_margin,
    upnl,
)

# account-level fields of a row: copied in before and out after a single-leg call
_ACCT = (W, FEES, FUND, REAL, INS)
# order rows: float (qty, price, reserved opening), int (symbol, status, created bar, ref)
MQ, MP, MRES = 0, 1, 2
MSYM, MSTAT, MCB, MREF = 0, 1, 2, 3
# fill, liquidation and top-up records: liqbt.fast.kernel's columns (F_*, L_*, U_*) with the
# symbol (F_SYM, L_SYM, U_SYM) and, for a liquidation, the event sequence (L_SEQ)
# rejections: bar, symbol, kind, v1, v2, seq, ref
# top-ups: bar, symbol, amount, lp after
# cross liquidation order codes
LARGEST_LOSS, LARGEST_MM = 0, 1


@hot
def _load(row, acct):
    for f in _ACCT:
        row[f] = acct[f]


@hot
def _store(row, acct):
    for f in _ACCT:
        acct[f] = row[f]


@hot
def _is_cross(sv, ips, i) -> bool:
    return sv[i, SZ] != 0.0 and ips[i, ISO] == 0


@hot
def _cross_upnl(sv, ips, porder, npos) -> float:
    """Σ upnl of the cross legs (leg order)."""
    total = 0.0
    for j in range(npos):
        i = porder[j]
        if _is_cross(sv, ips, i):
            total += upnl(sv[i])
    return total


@hot
def _cmb(sv, ips, acct, porder, npos) -> float:
    """:meth:`Account.cross_margin_balance`: wallet + Σ upnl of cross legs (leg order)."""
    return acct[W] + _cross_upnl(sv, ips, porder, npos)


@hot
def _ctrig(sv, fps, ips, tt, ntt, porder, npos, tom) -> float:
    """:meth:`Account.cross_trigger_margin`: Σ (MM + closing fee) of cross legs + ``tom``."""
    total = 0.0
    for j in range(npos):
        i = porder[j]
        if _is_cross(sv, ips, i):
            total += trigger_margin(sv[i], fps[i], ips[i], tt[i, :ntt[i]])
    return total + tom


@hot
def _cexcess(sv, fps, ips, tt, ntt, acct, porder, npos, tom) -> float:
    """:meth:`Account.cross_excess`."""
    return _cmb(sv, ips, acct, porder, npos) - _ctrig(sv, fps, ips, tt, ntt, porder, npos, tom)


@hot
def _ctol(sv, ips, porder, npos) -> float:
    """:func:`liqbt.core.liquidation.cross_tolerance`."""
    total = 0.0
    for j in range(npos):
        i = porder[j]
        if _is_cross(sv, ips, i):
            total += abs(sv[i, SZ]) * sv[i, MK]
    return 1e-9 * max(total, 1.0)


@hot
def _any_cross(sv, ips) -> bool:
    for i in range(sv.shape[0]):
        if _is_cross(sv, ips, i):
            return True
    return False


@njit(cache=True)
def _cross_floor(sv, fps, ips, tt, ntt, acct, porder, npos, lows, highs, tom) -> float:
    """:func:`liqbt.core.cross_bound.cross_floor`: the least cross excess with every symbol's
    mark anywhere in its bar's range."""
    total = acct[W] - tom
    for j in range(npos):
        i = porder[j]
        if _is_cross(sv, ips, i):
            total += term_min(sv[i], fps[i], ips[i], tt[i, :ntt[i]], lows[i], highs[i])
    return total


@hot
def _set_marks(sv, mpaths, k, t):
    for i in range(sv.shape[0]):
        sv[i, MK] = path_at(mpaths[i], k, t)


@hot
def _set_cross_marks(sv, ips, mpaths, k, t):
    """The cross legs' marks at clock ``t`` of segment ``k`` (the others stay)."""
    for i in range(sv.shape[0]):
        if _is_cross(sv, ips, i):
            sv[i, MK] = path_at(mpaths[i], k, t)


@njit(cache=True)
def _first_breach(sv, fps, ips, tt, ntt, acct, porder, npos, mpaths, k, t, t_end, tom) -> float:
    """:meth:`JointWalk._cross_first_breach`: the first clock in ``[t, t_end]`` of segment
    ``k`` where the cross condition holds on the joint mark path, ``-1`` for none (marks left
    where the last evaluation put them, as the Python walk leaves them)."""
    ns = sv.shape[0]
    buf = np.empty(tt.shape[1] + 2)
    cuts = np.empty(ns * (tt.shape[1] + 2) + 2)
    cuts[0] = t
    nc = 1
    for i in range(ns):  # name order, the cross symbols
        if not _is_cross(sv, ips, i):
            continue
        ma = path_at(mpaths[i], k, t)
        nb = tier_breakpoints(ma, mpaths[i, k + 1], abs(sv[i, SZ]), tt[i, :ntt[i]], buf)
        nc = add_cuts(buf, nb, t, t_end, cuts, nc)
    nc = close_cuts(cuts, nc, t_end)
    tol = _ctol(sv, ips, porder, npos)
    _set_cross_marks(sv, ips, mpaths, k, t)
    if _cexcess(sv, fps, ips, tt, ntt, acct, porder, npos, tom) <= tol:
        return t
    if t_end == t:
        return -1.0
    for j in range(nc - 1):
        lo = cuts[j]
        hi = cuts[j + 1]
        if hi - lo <= 0:
            continue
        u, v = piece_thirds(lo, hi)
        _set_cross_marks(sv, ips, mpaths, k, u)
        gu = _cexcess(sv, fps, ips, tt, ntt, acct, porder, npos, tom)
        _set_cross_marks(sv, ips, mpaths, k, v)
        gv = _cexcess(sv, fps, ips, tt, ntt, acct, porder, npos, tom)
        root = piece_root(lo, hi, gu, gv, tol)
        if root >= 0.0:
            return root
    return -1.0


@njit(cache=True)
def _lp_of(sv, fps, ips, tt, ntt, acct, porder, npos, i, tom):
    """:meth:`Account.liquidation_price` of symbol ``i``'s leg: isolated on its margin, cross
    on ``wallet − tom`` with the other cross legs' upnl and trigger margin held."""
    row = sv[i]
    if ips[i, ISO]:
        return liquidation_price(row, fps[i], ips[i], tt[i, :ntt[i]])
    other_upnl = 0.0
    other_trigger = 0.0
    for j in range(npos):
        m = porder[j]
        if m != i and _is_cross(sv, ips, m):
            other_upnl += upnl(sv[m])
            other_trigger += trigger_margin(sv[m], fps[m], ips[m], tt[m, :ntt[m]])
    _load(row, acct)
    return liquidation_price(row, fps[i], ips[i], tt[i, :ntt[i]], tom, other_upnl, other_trigger)


@hot
def _order_margin(sv, fps, ob, oi, n_orders, exclude) -> float:
    """:meth:`MarginBroker.order_margin` (one-way legs): Σ opening × price / leverage of the
    accepted orders."""
    total = 0.0
    for k in range(n_orders):
        if oi[k, MSTAT] != kn.PENDING or k == exclude:
            continue
        opening = _opening(sv, ob, oi, k)
        if opening:
            total += opening * ob[k, MP] / fps[oi[k, MSYM], LEV]
    return total


@hot
def _opening(sv, ob, oi, k) -> float:
    """The opening part of order row ``k`` on its symbol's leg."""
    return opening_size(ob[k, MQ], sv[oi[k, MSYM], SZ])


@hot
def _avail(sv, fps, ips, acct, porder, npos, om) -> float:
    """:meth:`Account.available_balance`: cross balance − (Σ cross IM + order margin), >= 0."""
    value = _cmb(sv, ips, acct, porder, npos)
    im = 0.0
    for j in range(npos):
        i = porder[j]
        if _is_cross(sv, ips, i):
            im += initial_margin(sv[i], fps[i])
    value -= im + om
    return max(value, 0.0)


@hot
def _tom(sv, fps, ips, ob, oi, n_orders) -> float:
    if not ips[0, OMTRIG]:
        return 0.0
    return _order_margin(sv, fps, ob, oi, n_orders, -1)


@hot
def _cancel(oi, n_orders, sym) -> bool:
    """CancelOrders: the symbol's accepted orders (``sym`` >= 0) or every one (``-1``)."""
    any_ = False
    for k in range(n_orders):
        if oi[k, MSTAT] == kn.PENDING and (sym < 0 or oi[k, MSYM] == sym):
            oi[k, MSTAT] = kn.DEAD
            any_ = True
    return any_


@hot
def _note_position(porder, npos, i):
    """The account creates a leg on its first fill: legs are summed in that order."""
    for j in range(npos):
        if porder[j] == i:
            return npos
    porder[npos] = i
    return npos + 1


@njit(cache=True)
def _force_close(sv, fps, ips, tt, ntt, acct, porder, npos, i, t, qty, trigger, execution,
                 settle, partial, fee_rate, fills, nf, liqs, nl, seq):
    """:func:`liqbt.forced.force_close` + :meth:`Account.book_liquidation` on symbol ``i``."""
    row = sv[i]
    fp = fps[i]
    ip = ips[i]
    side = 1 if row[SZ] > 0 else -1
    entry = row[EN]
    margin_before = row[MG]
    _load(row, acct)
    closed, fee = fill(row, fp, ip, qty, execution, fee_rate)
    _store(row, acct)
    fills, nf = kn._record_fill(fills, nf, t, qty, execution, fee, 1, kn.T_OTHER, -(nf + 1), 0,
                                0)
    fills[nf - 1, kn.F_SYM] = i
    closed_part, clearance, liq_fee, loss = book_liquidation(
        acct, fp, ip, qty, execution, settle, partial, closed, fee, entry, margin_before,
        _cross_upnl(sv, ips, porder, npos), not _any_cross(sv, ips))
    liqs, nl = kn._record_liquidation(liqs, nl, t, side, closed_part, trigger, settle, loss,
                                      partial, clearance, fee, liq_fee)
    liqs[nl - 1, kn.L_SYM] = i
    liqs[nl - 1, kn.L_SEQ] = seq
    return nf, nl, fills, liqs


@njit(cache=True)
def _record_reject(rejects, nr, seq, t, i, kind, v1, v2, ref):
    """Append a refused order (bar, symbol, kind, v1, v2, event sequence, order ref); returns
    the (possibly grown) table, its new length and the next event sequence number."""
    rejects = kn._grow(rejects, nr)
    rejects[nr, 0] = t
    rejects[nr, 1] = i
    rejects[nr, 2] = kind
    rejects[nr, 3] = v1
    rejects[nr, 4] = v2
    rejects[nr, 5] = seq
    rejects[nr, 6] = ref
    return rejects, nr + 1, seq + 1


@hot
def _partial_qty(sv, fps, ips, tt, ntt, acct, porder, npos, i, price) -> float:
    """:func:`liqbt.core.liquidation._partial_close`'s signed quantity for symbol ``i``'s leg
    (0: no step; :func:`liqbt.fast.kernel._partial_step` with the cross margin balance)."""
    return kn._partial_step(sv[i], fps[i], ips[i], tt[i, :ntt[i]], price,
                            _cmb(sv, ips, acct, porder, npos))


@hot
def _wipeout(sv, fps, acct) -> bool:
    """:func:`liqbt.core.liquidation._wipeout`: no leg left and the equity cannot open the
    smallest order of any market."""
    smallest = math.inf
    for i in range(sv.shape[0]):
        if sv[i, SZ] != 0.0:
            return False
        smallest = min(smallest, fps[i, MINNOT] / fps[i, LEV])
    return acct[W] <= max(smallest, 1e-9)


@hot
def _record_wipeout(sv, fps, ips, acct, porder, npos, wipe, t, seq):
    """After a full liquidation: when the account is wiped out (:func:`_wipeout`), note the
    bar, event sequence and equity in ``wipe``; returns (wiped, next event sequence)."""
    if not _wipeout(sv, fps, acct):
        return False, seq
    wipe[0] = t
    wipe[1] = seq
    wipe[2] = _equity(sv, ips, acct, porder, npos)
    return True, seq + 1


@njit(cache=True)
def _ranking(sv, fps, ips, tt, ntt, rule, out) -> int:
    """:func:`liqbt.core.liquidation.cross_ranking`: cross legs by largest loss (or largest
    MM), ties by symbol name (the index)."""
    n = 0
    keys = np.empty(sv.shape[0])
    for i in range(sv.shape[0]):
        if _is_cross(sv, ips, i):
            if rule == LARGEST_LOSS:
                keys[n] = upnl(sv[i])
            else:
                keys[n] = -maintenance_margin(sv[i], fps[i], ips[i], tt[i, :ntt[i]])
            out[n] = i
            n += 1
    # insertion sort: stable, so equal keys keep name order
    for a in range(1, n):
        kv = keys[a]
        iv = out[a]
        b = a - 1
        while b >= 0 and keys[b] > kv:
            keys[b + 1] = keys[b]
            out[b + 1] = out[b]
            b -= 1
        keys[b + 1] = kv
        out[b + 1] = iv
    return n


@hot
def _equity(sv, ips, acct, porder, npos) -> float:
    total = acct[W]
    for j in range(npos):
        i = porder[j]
        if sv[i, SZ] != 0.0:
            total += upnl(sv[i])
            if ips[i, ISO]:
                total += sv[i, MG]
    return total


@hot
def _ratio(sv, fps, ips, tt, ntt, acct, porder, npos, tom) -> float:
    """The timeline's margin ratio: the worst of the cross account's and each isolated
    leg's (:meth:`Account.margin_ratio`); 0 when flat."""
    worst = 0.0
    cross_done = False
    for j in range(npos):
        i = porder[j]
        if sv[i, SZ] == 0.0:
            continue
        if ips[i, ISO]:
            r = margin_ratio(sv[i], fps[i], ips[i], tt[i, :ntt[i]])
        else:
            if cross_done:
                continue
            cross_done = True
            balance = _cmb(sv, ips, acct, porder, npos)
            mm = 0.0
            cf = 0.0
            for jj in range(npos):
                m = porder[jj]
                if _is_cross(sv, ips, m):
                    mm += maintenance_margin(sv[m], fps[m], ips[m], tt[m, :ntt[m]])
                    cf += closing_fee(sv[m], fps[m], ips[m])
            r = ratio_of(mm + cf + tom, balance)
        worst = max(worst, r)
    return worst


@njit(cache=True)
def run(o, h, lo, c, mo, mh, ml, mc, fr, tt, ntt, fps, ips, balance, cross_rule, order_sym,
        order_qty, order_price):
    """Run the multi-symbol hold: ``order_*`` are the bot's first-bar market orders in
    submission order (symbol index, signed size, created price). Arrays are ``(symbols,
    bars)``. Returns ``(acct, fills, liqs, topups, rejects, wipe, eq, mr, ex, funding per
    symbol)``."""
    ns, n = o.shape
    sv = np.zeros((ns, N_STATE))
    acct = np.zeros(N_STATE)
    acct[W] = balance
    acct[INIT] = balance
    acct[MIND] = math.inf
    porder = np.zeros(ns, np.int64)
    npos = 0
    cap = order_sym.shape[0] + 1
    ob = np.zeros((cap, 3))
    oi = np.zeros((cap, 4), np.int64)
    n_orders = 0
    fills = np.empty((16, 10))
    nf = 0
    liqs = np.empty((8, 12))
    nl = 0
    topups = np.empty((8, 4))
    nt = 0
    rejects = np.empty((8, 7))
    nr = 0
    wipe = np.full(3, -1.0)  # bar, seq, equity
    seq = 0
    wiped = False
    eq = np.empty(n)
    mr = np.empty(n)
    ex = np.zeros(n, np.bool_)
    tpaths = np.empty((ns, 4))
    mpaths = np.empty((ns, 4))
    lows = np.empty(ns)
    highs = np.empty(ns)
    rank = np.empty(ns, np.int64)
    skip_leg = np.empty(ns)
    skip_order = np.empty(cap)
    intrabar = ips[0, INTRABAR]
    fund_sym = np.zeros(ns)
    for t in range(n):
        # --- 1. accept the submitted orders ---------------------------------------------
        for k in range(n_orders):
            if oi[k, MSTAT] != kn.SUBMITTED:
                continue
            i = oi[k, MSYM]
            reason = -1
            v1 = 0.0
            v2 = 0.0
            if wiped:
                reason = kn.R_WIPED
            else:
                opening = _opening(sv, ob, oi, k)
                if opening:
                    price = ob[k, MP]
                    reason, v1 = kn._order_limits(ob[k, MQ], price, opening, sv[i, SZ], fps[i],
                                                  ips[i])
                    if reason < 0:
                        reason, v1, v2 = kn._margin_refusal(
                            kn._opening_cost(opening, price, fps[i]),
                            _avail(sv, fps, ips, acct, porder, npos,
                                   _order_margin(sv, fps, ob, oi, n_orders, k)))
            if reason < 0:
                ob[k, MRES] = _opening(sv, ob, oi, k)
                oi[k, MSTAT] = kn.PENDING
            else:
                oi[k, MSTAT] = kn.DEAD
                rejects, nr, seq = _record_reject(rejects, nr, seq, t, i, reason, v1, v2,
                                                  oi[k, MREF])
        # --- 2. marks at the open, funding ------------------------------------------------
        for i in range(ns):
            sv[i, MK] = mo[i, t]
        for i in range(ns):
            if sv[i, SZ] != 0.0 and not math.isnan(fr[i, t]):
                fund_sym[i] += settle_funding(sv[i], acct, ips[i], mo[i, t], fr[i, t])
        for i in range(ns):
            lows[i], highs[i] = kn._mark_range(mo[i, t], mh[i, t], ml[i, t], mc[i, t])
        reach = False
        for k in range(n_orders):
            if oi[k, MSTAT] == kn.PENDING and oi[k, MCB] < t:
                reach = True
        possible = reach
        if not possible:
            for i in range(ns):
                if sv[i, SZ] != 0.0 and ips[i, ISO]:
                    lp, d, found = liquidation_price(sv[i], fps[i], ips[i], tt[i, :ntt[i]])
                    if found and ((lows[i] <= lp) if d < 0 else (highs[i] >= lp)):
                        possible = True
            if not possible and _any_cross(sv, ips):
                tom = _tom(sv, fps, ips, ob, oi, n_orders)
                floor = _cross_floor(sv, fps, ips, tt, ntt, acct, porder, npos, lows, highs, tom)
                possible = floor <= _ctol(sv, ips, porder, npos)
        if possible:
            for i in range(ns):
                kn._bar_paths(tpaths[i], mpaths[i], o[i, t], h[i, t], lo[i, t], c[i, t],
                              mo[i, t], mh[i, t], ml[i, t], mc[i, t], sv[i, SZ], intrabar)
            # the orders this step can reach (market orders only: the hold bot's)
            n_reach = n_orders
            tau = 0.0
            skip_cross = -1.0
            for i in range(ns):
                skip_leg[i] = -1.0
            for k in range(cap):
                skip_order[k] = -1.0
            for seg in range(3):
                tau_end = VT[seg + 1]
                for _ in range(10_000):
                    width = tau_end - tau
                    best_t = math.inf
                    best_kind = 2
                    best_rank = ns + 1
                    best_key = 0
                    best_p = 0.0
                    # orders (kind 1): symbol name order, then reference
                    for k in range(n_reach):
                        if oi[k, MSTAT] != kn.PENDING or oi[k, MCB] >= t:
                            continue
                        if tau != 0.0:
                            continue
                        i = oi[k, MSYM]
                        at = tau
                        if at <= skip_order[k]:
                            continue
                        if (at, 1, i, oi[k, MREF]) < (best_t, best_kind, best_rank, best_key):
                            best_t, best_kind, best_rank, best_key = at, 1, i, oi[k, MREF]
                            best_p = path_at(tpaths[i], seg, tau)
                    # isolated legs reaching their LP (kind 0)
                    for i in range(ns):
                        if sv[i, SZ] == 0.0 or not ips[i, ISO]:
                            continue
                        lp, d, found = liquidation_price(sv[i], fps[i], ips[i], tt[i, :ntt[i]])
                        if not found:
                            continue
                        ma = path_at(mpaths[i], seg, tau)
                        f, p, hit = cross_at(ma, mpaths[i, seg + 1], lp, d > 0)
                        if hit:
                            at = tau + f * width
                            if at > skip_leg[i] and (at, 0, i, 0) < (
                                    best_t, best_kind, best_rank, best_key):
                                best_t, best_kind, best_rank, best_key = at, 0, i, 0
                                best_p = p
                    # the cross condition (kind 0, before every symbol)
                    if _any_cross(sv, ips):
                        tom = _tom(sv, fps, ips, ob, oi, n_orders)
                        floor = _cross_floor(sv, fps, ips, tt, ntt, acct, porder, npos, lows,
                                             highs, tom)
                        if floor <= _ctol(sv, ips, porder, npos):
                            at = _first_breach(sv, fps, ips, tt, ntt, acct, porder, npos, mpaths,
                                               seg, tau, tau_end, tom)
                            if at >= 0.0 and at > skip_cross and (at, 0, -1, 0) < (
                                    best_t, best_kind, best_rank, best_key):
                                best_t, best_kind, best_rank, best_key = at, 0, -1, 0
                    if best_kind == 2:
                        break
                    tau = best_t
                    _set_marks(sv, mpaths, seg, tau)
                    changed = False
                    if best_kind == 1:
                        # --- a market order fills (liqbt.fills.fill) -------------------------
                        k = -1
                        for kk in range(n_orders):
                            if oi[kk, MREF] == best_key:
                                k = kk
                        i = oi[k, MSYM]
                        price = best_p
                        changed = True
                        opening = _opening(sv, ob, oi, k)
                        reject = -1
                        v1 = 0.0
                        v2 = 0.0
                        if opening:
                            reject, v1, v2, check, required, own = kn._fill_need(
                                opening, ob[k, MRES], price, ob[k, MP], fps[i], ips[i], acct[W])
                            if check:
                                reject, v1, v2 = kn._fill_margin_refusal(
                                    required, _avail(sv, fps, ips, acct, porder, npos,
                                                     _order_margin(sv, fps, ob, oi, n_orders, -1)
                                                     - own))
                        oi[k, MSTAT] = kn.DEAD
                        if reject >= 0:
                            rejects, nr, seq = _record_reject(
                                rejects, nr, seq, t, i, reject, v1, v2, oi[k, MREF])
                        else:
                            npos = _note_position(porder, npos, i)
                            row = sv[i]
                            _load(row, acct)
                            _c, fee = fill(row, fps[i], ips[i], ob[k, MQ], price, fps[i, TAKER])
                            _store(row, acct)
                            fills, nf = kn._record_fill(fills, nf, t, ob[k, MQ], price, fee, 0,
                                                        kn.T_OTHER, oi[k, MREF], 0, 0)
                            fills[nf - 1, kn.F_SYM] = i
                    elif best_rank >= 0:
                        # --- isolated_plan ---------------------------------------------------
                        i = best_rank
                        price = best_p
                        done = False
                        if ips[i, TOPUP]:
                            amount, lp_after = auto_top_up(
                                sv[i], acct, fps[i], ips[i], tt[i, :ntt[i]],
                                _avail(sv, fps, ips, acct, porder, npos,
                                       _order_margin(sv, fps, ob, oi, n_orders, -1)))
                            if amount > 0:
                                topups, nt = kn._record_top_up(topups, nt, t, amount, lp_after)
                                topups[nt - 1, kn.U_SYM] = i
                                done = True
                                changed = True
                        if not done:
                            if _cancel(oi, n_orders, i):
                                changed = True
                            if kn._still(sv[i], fps[i], ips[i], tt[i, :ntt[i]], price):
                                changed = True
                                full = True
                                while True:
                                    q_red = _partial_qty(sv, fps, ips, tt, ntt, acct, porder, npos,
                                                         i, price)
                                    if q_red == 0.0:
                                        break
                                    nf, nl, fills, liqs = _force_close(
                                        sv, fps, ips, tt, ntt, acct, porder, npos, i, t, q_red,
                                        price, price, price, True, fps[i, TAKER], fills, nf,
                                        liqs, nl, seq)
                                    seq += 1
                                    if not kn._still(sv[i], fps[i], ips[i], tt[i, :ntt[i]], price):
                                        full = False
                                        break
                                if full:
                                    settle = settlement_price(sv[i], fps[i], ips[i], tt[i, :ntt[i]],
                                                              price)
                                    nf, nl, fills, liqs = _force_close(
                                        sv, fps, ips, tt, ntt, acct, porder, npos, i, t, -sv[i, SZ],
                                        price, price, settle, False, 0.0, fills, nf, liqs, nl,
                                        seq)
                                    seq += 1
                                    if not wiped:
                                        wiped, seq = _record_wipeout(
                                            sv, fps, ips, acct, porder, npos, wipe, t, seq)
                        if not changed:
                            skip_leg[i] = tau
                    else:
                        # --- cross_plan ------------------------------------------------------
                        if _cancel(oi, n_orders, -1):
                            changed = True
                        if _cexcess(sv, fps, ips, tt, ntt, acct, porder, npos, 0.0) <= _ctol(
                                sv, ips, porder, npos):
                            changed = True
                            full = True
                            nrk = _ranking(sv, fps, ips, tt, ntt, cross_rule, rank)
                            for r in range(nrk):
                                i = rank[r]
                                while sv[i, SZ] != 0.0:
                                    q_red = _partial_qty(sv, fps, ips, tt, ntt, acct, porder, npos,
                                                         i, sv[i, MK])
                                    if q_red == 0.0:
                                        break
                                    pr = sv[i, MK]
                                    nf, nl, fills, liqs = _force_close(
                                        sv, fps, ips, tt, ntt, acct, porder, npos, i, t, q_red, pr,
                                        pr, pr, True, fps[i, TAKER], fills, nf, liqs, nl, seq)
                                    seq += 1
                                    if not _cexcess(sv, fps, ips, tt, ntt, acct, porder, npos,
                                                    0.0) <= _ctol(sv, ips, porder, npos):
                                        full = False
                                        break
                                if not full:
                                    break
                            if full:
                                nrk = _ranking(sv, fps, ips, tt, ntt, cross_rule, rank)
                                if nrk:
                                    nf, nl, fills, liqs, seq = _cross_full(
                                        sv, fps, ips, tt, ntt, acct, porder, npos, rank, nrk, t,
                                        fills, nf, liqs, nl, seq)
                                    if not wiped:
                                        wiped, seq = _record_wipeout(
                                            sv, fps, ips, acct, porder, npos, wipe, t, seq)
                        if not changed:
                            skip_cross = tau
                tau = max(tau, tau_end)
        for i in range(ns):
            sv[i, MK] = mc[i, t]
        # --- distance to liquidation (JointWalk._track_distance) --------------------------
        tom = _tom(sv, fps, ips, ob, oi, n_orders)
        for i in range(ns):
            if sv[i, SZ] == 0.0:
                continue
            lp, d, found = _lp_of(sv, fps, ips, tt, ntt, acct, porder, npos, i, tom)
            if found:
                acct[MIND] = min(acct[MIND], kn._distance(lp, d, lows[i], highs[i]))
        if nl and liqs[nl - 1, 0] == t:
            acct[MIND] = min(acct[MIND], 0.0)
        # --- the bot: its first-bar market orders ----------------------------------------
        if t == 0:
            for m in range(order_sym.shape[0]):
                ob[n_orders, MQ] = order_qty[m]
                ob[n_orders, MP] = order_price[m]
                oi[n_orders, MSYM] = order_sym[m]
                oi[n_orders, MSTAT] = kn.SUBMITTED
                oi[n_orders, MCB] = 0
                oi[n_orders, MREF] = m + 1
                n_orders += 1
        eq[t] = _equity(sv, ips, acct, porder, npos)
        tom = _tom(sv, fps, ips, ob, oi, n_orders)
        mr[t] = _ratio(sv, fps, ips, tt, ntt, acct, porder, npos, tom)
        for i in range(ns):
            if sv[i, SZ] != 0.0:
                ex[t] = True
    return (acct, fills[:nf], liqs[:nl], topups[:nt], rejects[:nr], wipe, eq, mr, ex,
            fund_sym)


@njit(cache=True)
def _cross_full(sv, fps, ips, tt, ntt, acct, porder, npos, rank, nrk, t, fills, nf, liqs, nl, seq):
    """The cross plan's full close: every cross leg at its mark, settled by
    :meth:`Account.settlement_prices` (the cross balance shared by MM), in ranking order."""
    settle = np.empty(nrk)
    balance = _cmb(sv, ips, acct, porder, npos)
    ip0 = ips[rank[0]]
    if (balance < 0 and ip0[DEBIT]) or (ip0[SETTLE_LP] and balance >= 0):
        for r in range(nrk):
            settle[r] = sv[rank[r], MK]
    else:
        weights = np.empty(nrk)
        total = 0.0
        for r in range(nrk):
            i = rank[r]
            weights[r] = maintenance_margin(sv[i], fps[i], ips[i], tt[i, :ntt[i]])
            total += weights[r]
        if total <= 0:
            total = 0.0
            for r in range(nrk):
                i = rank[r]
                weights[r] = abs(sv[i, SZ]) * sv[i, MK]
                total += weights[r]
        for r in range(nrk):
            i = rank[r]
            side = 1 if sv[i, SZ] > 0 else -1
            share = balance * weights[r] / total
            settle[r] = sv[i, MK] - side * share / abs(sv[i, SZ])
    for r in range(nrk):
        i = rank[r]
        pr = sv[i, MK]
        nf, nl, fills, liqs = _force_close(sv, fps, ips, tt, ntt, acct, porder, npos, i, t,
                                           -sv[i, SZ], pr, pr, settle[r], False, 0.0, fills,
                                           nf, liqs, nl, seq)
        seq += 1
    return nf, nl, fills, liqs, seq
