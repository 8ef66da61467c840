"""The fast engine's bar loop: ``MarginBroker``'s path walk and the bundled bots, compiled.

One call runs one config over one symbol's bars. The order of operations inside a bar is the
backtrader one the broker and bots produce:

1. broker: accept/reject the orders submitted during the previous bar (margin checks), settle
   funding at the open's mark, walk the bar's path (margin-model §8) filling orders at their
   limit (or the open on a gap), topping up, liquidating (partial steps, settlement, insurance
   fund), then the bar's margin events reach the bot (a liquidation, wipeout or rejection stops
   it and cancels its orders);
2. bot: fill notifications in fill order (grid counter-orders, DCA ladder/take-profit), then
   ``next()`` on the close (launch, exits, new DCA cycle). Orders placed here are submitted and
   act from the next bar.

Order book rows (float ``ob`` / int ``oi``) keep creation order, which is backtrader's pending
order: ties inside a bar resolve in that order, liquidations first.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from liqbt.core.cross_bound import SAFE_MARGIN
from liqbt.fast import dca as _dca
from liqbt.fast.jit import hot
from liqbt.fast.margin import (
    BASIS_SIZE,
    CAPNOT,
    EN,
    INIT,
    INTRABAR,
    ISO,
    LEV,
    MAKER,
    MG,
    MIND,
    MINNOT,
    MK,
    N_STATE,
    OMTRIG,
    PCROSS,
    PDROP,
    PISO,
    SZ,
    TAKER,
    TOPUP,
    VT,
    W,
    auto_top_up,
    available_balance,
    book_liquidation,
    cross_at,
    cross_excess,
    cross_first_breach,
    cross_floor,
    cross_tolerance,
    equity,
    fill,
    liquidation_price,
    lookup_value,
    margin_ratio,
    opening_size,
    path_at,
    settle_funding,
    settlement_price,
    term_min,
    tier_index,
    upnl,
)

# order book columns: float
OQ, OP, ORES = 0, 1, 2
# int columns
OTYPE, ORED, OCB, OSTAT, OTAG, OLVL, OOPEN, OREF, OCANCEL, OPAIR = range(10)
MARKET, LIMIT = 0, 1
# notes: what the bot is told about an order at the end of the bar
N_FILL, N_CANCEL, N_REFUSE = 0, 1, 2
SUBMITTED, PENDING, DEAD = 0, 1, 2
# tags
T_OTHER, T_GRID, T_BASE, T_SAFETY, T_TP, T_SL, T_CLOSE = 0, 1, 2, 3, 4, 5, 6

# bot parameter indices (float bp / int bi)
BOT_HOLD, BOT_GRID, BOT_DCA = 0, 1, 2
# grid: bi = [bot, direction(0 long 1 short 2 neutral), launch_bar, start_level,
#             out_of_range_stop, quantity_ok, has_sl, has_tp]
# grid: bp = [quantity, launch_price, stop_loss, take_profit]
# hold: bi = [bot, side, ok]; bp = [size]
# dca: bi, bp, its state and cycle records: see liqbt.fast.dca

# stop codes (reasons formatted in Python)
S_NONE, S_LIQ, S_WIPE, S_REJECT, S_SL, S_TP, S_RANGE, S_SMALL, S_FINISHED = range(9)
# reject kinds
R_WIPED, R_MIN, R_CAP, R_MARGIN, R_FILL_ISO, R_FILL_MARGIN = range(6)

# fill record columns (the several-symbol engine adds the symbol)
F_BAR, F_QTY, F_PRICE, F_FEE, F_LIQ, F_TAG, F_REF, F_PAIR, F_LVL, F_SYM = range(10)
# liquidation record columns (the several-symbol engine adds the symbol and event sequence)
(L_BAR, L_SIDE, L_SIZE, L_TRIG, L_SETTLE, L_LOSS, L_PARTIAL, L_INS, L_FEE, L_LIQFEE, L_SYM,
 L_SEQ) = range(12)
# top-up record columns (the several-symbol engine adds the symbol)
U_BAR, U_AMOUNT, U_LP, U_SYM = range(4)


_SAFE_MARGIN = SAFE_MARGIN


@njit(cache=True)
def _grow(buf: np.ndarray, n: int) -> np.ndarray:
    if n < buf.shape[0]:
        return buf
    out = np.empty((buf.shape[0] * 2 + 8, buf.shape[1]))
    out[: buf.shape[0]] = buf
    return out


@hot
def _opening_size(st, ob, oi, k) -> float:
    """:meth:`liqbt.broker.MarginBroker._opening_size` (one-way)."""
    if oi[k, ORED]:
        return 0.0
    return opening_size(ob[k, OQ], st[SZ])


@hot
def _order_margin(st, fp, ob, oi, n_orders, exclude) -> float:
    """:meth:`liqbt.broker.MarginBroker.order_margin`: Σ opening × price / leverage."""
    total = 0.0
    for k in range(n_orders):
        if oi[k, OSTAT] != PENDING or k == exclude:
            continue
        opening = _opening_size(st, ob, oi, k)
        if opening:
            total += opening * ob[k, OP] / fp[LEV]
    return total


@njit(cache=True)
def run(
    o, h, lo, c, mo, mh, ml, mc, fr,
    tiers, fp, ip, balance, bi, bp, levels, capacity, dca_state, dca_cycles, entry_signal,
):
    """Run one config. Returns ``(state, stats, fills, n_fills, liqs, n_liqs, topups,
    n_topups, equity_curve, rejects)``; see :mod:`liqbt.fast.engine` for their meaning.
    ``dca_state``, ``dca_cycles`` (written in place) and ``entry_signal`` (bool per bar) are
    the DCA bot's (:mod:`liqbt.fast.dca`); other bots ignore them."""
    n = o.shape[0]
    st = np.zeros(N_STATE)
    st[W] = balance
    st[INIT] = balance
    st[MIND] = math.inf
    ob = np.zeros((capacity, 3))
    oi = np.zeros((capacity, 10), np.int64)
    n_orders = 0
    next_ref = 1
    fills = np.empty((64, 9))
    nf = 0
    liqs = np.empty((8, 10))
    nl = 0
    topups = np.empty((8, 3))
    nt = 0
    eq = np.empty(n)
    # stats: 0 stop code, 1 stop bar, 2 wiped, 3 wipe bar, 6 rejected orders, 7 reject kind,
    # 8 reject v1, 9 reject v2, 10 stop value, 11 first liq index, 12 wipe equity,
    # 13 grid pairs, 17 grid profit, 18 grid lines refused, 19 grid lines missing at the end
    stats = np.zeros(20)
    stats[11] = -1
    stop = S_NONE
    wiped = False
    bot = bi[0]
    lev = fp[LEV]
    taker = fp[TAKER]
    # notifications of the bar: order rows completed (index into a small buffer)
    note_tag = np.empty(capacity * 4 + 16, np.int64)
    note_lvl = np.empty(capacity * 4 + 16, np.int64)
    note_open = np.empty(capacity * 4 + 16, np.int64)
    note_buy = np.empty(capacity * 4 + 16, np.int64)
    note_ref = np.empty(capacity * 4 + 16, np.int64)
    # what the bot is told: N_FILL (on_fill), N_CANCEL (on_cancel), N_REFUSE (on_refused)
    note_kind = np.empty(capacity * 4 + 16, np.int64)
    mr = np.empty(n)
    ex = np.zeros(n, np.bool_)
    # bot state
    launched = False
    grid_profit = 0.0
    pairs = 0
    # the grid's state (strategies/grid.py): per line, the side it should hold (0 none,
    # 1 buy, 2 sell) and that order's pair_ref (``wanted``), and the ref of the live order
    # holding it (``_line_order``, 0 none); in_sync as the bot's ``_in_sync``
    nlev = levels.shape[0]
    want = np.zeros(nlev, np.int64)
    want_pair = np.zeros(nlev, np.int64)
    line_ref = np.zeros(nlev, np.int64)
    in_sync = False
    refused = 0
    reach = np.zeros(capacity, np.int64)
    # last isolated liquidation price and the leg (size, entry, margin) it was solved for
    lpc = np.full(7, math.nan)
    # the cross leg's widened box and its term's minimum (liqbt.core.cross_bound.CrossBound)
    box = np.full(5, math.nan)
    # the bar's trade and mark paths (filled in place: no allocation per bar)
    tpath = np.empty(4)
    mpath = np.empty(4)
    # orders submitted by the bot last bar (else the acceptance pass has nothing to do), and
    # accepted orders the bot cancelled before acceptance (cancelled after the walk)
    submitted = False
    # bounds of the pending orders at the last compaction (see the reach scan)
    book_sell = math.inf
    book_buy = -math.inf
    book_market = False
    # the order margin in the trigger at the end of the last bar: the pending orders and the
    # position change only by an acceptance or a walk, so a bar with neither reuses it
    tom_end = 0.0
    # the bot may have changed the book in its step of the last bar (see ``dirty``)
    touched = True
    # the DCA bot acts again on a bar with notifications or a close outside (low, high)
    dca_low = math.inf
    dca_high = -math.inf
    for t in range(n):
        bar_stop = S_NONE  # first stopping event of the bar (delivered after the walk)
        bar_liq = -1
        bar_rk = -1
        bar_v1 = 0.0
        bar_v2 = 0.0
        n_notes = 0
        # --- 1. accept or reject submitted orders ------------------------------------------
        cancel_after = False
        for k in range(n_orders if submitted else 0):
            if oi[k, OSTAT] != SUBMITTED:
                continue
            reason = -1
            v1 = 0.0
            v2 = 0.0
            if wiped:
                reason = R_WIPED
            else:
                opening = _opening_size(st, ob, oi, k)
                if opening:
                    price = ob[k, OP]
                    reason, v1 = _order_limits(ob[k, OQ], price, opening, st[SZ], fp, ip)
                    if reason < 0:
                        reason, v1, v2 = _margin_refusal(
                            _opening_cost(opening, price, fp), available_balance(
                                st, fp, ip, _order_margin(st, fp, ob, oi, n_orders, k)))
            if reason < 0:
                ob[k, ORES] = _opening_size(st, ob, oi, k)
                oi[k, OSTAT] = PENDING
                if oi[k, OCANCEL]:
                    cancel_after = True
            else:
                oi[k, OSTAT] = DEAD
                stats[6] += 1
                # a refused grid line, DCA safety order or take profit is retried later
                if oi[k, OTAG] == T_GRID or (bot == BOT_DCA and _dca.retried(
                        dca_state, bi, oi[k, OREF])):
                    n_notes = _note(note_kind, note_tag, note_lvl, note_open, note_buy,
                                    note_ref, n_notes, N_REFUSE, ob, oi, k)
                elif bar_stop == S_NONE:
                    bar_stop = S_REJECT
                    bar_rk = reason
                    bar_v1 = v1
                    bar_v2 = v2
        # --- 2. the bar --------------------------------------------------------------------
        st[MK] = mo[t]
        if st[SZ] != 0.0 and not math.isnan(fr[t]):
            settle_funding(st, st, ip, mo[t], fr[t])
        n_reach = 0
        # no order can be reached when the bar stays inside the book's bounds (taken at the
        # last compaction; since then the bot only cancelled, or added orders, which sets
        # ``submitted``), so a quiet bar skips the scan of every resting order
        scan = submitted or book_market or h[t] >= book_sell or lo[t] <= book_buy
        for k in range(n_orders if scan else 0):
            if oi[k, OSTAT] != PENDING or oi[k, OCB] >= t:
                continue
            if oi[k, OTYPE] == MARKET:
                reach[n_reach] = k
                n_reach += 1
                continue
            level = ob[k, OP]
            if ob[k, OQ] < 0:  # a sell limit is reached by a rising price
                ok = h[t] >= level
            else:
                ok = lo[t] <= level
            if ok:
                reach[n_reach] = k
                n_reach += 1
        low_m, high_m = _mark_range(mo[t], mh[t], ml[t], mc[t])
        in_reach = False
        if n_reach == 0 and st[SZ] != 0.0:
            if ip[ISO]:
                fresh, lp, direction, found = _lp_cached(st, ip, lpc, 0.0)
                if not fresh:
                    lp, direction, found = _lp(st, fp, ip, tiers, lpc, 0.0)
                if found and ((low_m <= lp) if direction < 0 else (high_m >= lp)):
                    in_reach = True
            else:  # JointWalk._cross_may_breach: the cross condition over the bar's box
                in_reach = _cross_may(st, fp, ip, tiers, box, low_m, high_m,
                                      _tom(st, fp, ip, ob, oi, n_orders) if submitted
                                      else tom_end)
        walked = not (n_reach == 0 and not in_reach)
        if not walked:
            st[MK] = mc[t]
        else:
            _bar_paths(tpath, mpath, o[t], h[t], lo[t], c[t], mo[t], mh[t], ml[t], mc[t],
                       st[SZ], ip[INTRABAR])
            # MarginBroker._walk: one clock τ ∈ [0, 1], vertices at 0, 1/3, 2/3, 1
            tau = 0.0
            skip_liq = -1.0
            for seg in range(3):
                tau_end = VT[seg + 1]
                for _ in range(10_000):
                    width = tau_end - tau
                    a = path_at(tpath, seg, tau)
                    b = tpath[seg + 1]
                    best_f = math.inf
                    best_k = -1
                    best_p = 0.0
                    for r in range(n_reach):
                        k = reach[r]
                        if oi[k, OSTAT] != PENDING:
                            continue
                        if oi[k, OTYPE] == MARKET:
                            if tau != 0.0:
                                continue
                            f, p, hit = 0.0, a, True
                        else:
                            f, p, hit = cross_at(a, b, ob[k, OP], ob[k, OQ] < 0)
                        if hit:
                            at = tau + f * width
                            if at < best_f:
                                best_f, best_k, best_p = at, k, p
                    liq = False
                    if st[SZ] != 0.0 and ip[ISO]:
                        ma = path_at(mpath, seg, tau)
                        mb = mpath[seg + 1]
                        fresh, lp, direction, found = _lp_cached(st, ip, lpc, 0.0)
                        if not fresh:
                            lp, direction, found = _lp(st, fp, ip, tiers, lpc, 0.0)
                        if found:
                            f, p, hit = cross_at(ma, mb, lp, direction > 0)
                            if hit:
                                at = tau + f * width
                                if at > skip_liq and at <= best_f:
                                    best_f, best_p, liq = at, p, True
                    elif st[SZ] != 0.0:
                        # the first instant the cross condition holds (JointWalk._next_event)
                        tom = _tom(st, fp, ip, ob, oi, n_orders)
                        if _cross_may(st, fp, ip, tiers, box, low_m, high_m, tom):
                            at = cross_first_breach(st, fp, ip, tiers, mpath, seg, tau,
                                                    tau_end, tom)
                            if at >= 0.0 and at > skip_liq and at <= best_f:
                                best_f, liq = at, True
                    if best_k < 0 and not liq:
                        break
                    tau = best_f
                    st[MK] = path_at(mpath, seg, tau)
                    if not liq:
                        # --- fill an order (MarginBroker._fill_order) -----------------------
                        k = best_k
                        price = best_p
                        maker = oi[k, OTYPE] == LIMIT
                        qty = ob[k, OQ]
                        fee_rate = fp[MAKER] if maker else taker
                        capped = False
                        ok = True
                        if oi[k, ORED]:
                            # liqbt.core.orders.reducing_fill
                            held = st[SZ]
                            if held == 0.0 or (held > 0) == (qty > 0):
                                oi[k, OSTAT] = DEAD
                                ok = False
                                n_notes = _note(note_kind, note_tag, note_lvl, note_open,
                                                note_buy, note_ref, n_notes, N_CANCEL, ob,
                                                oi, k)
                            elif not abs(qty) - abs(held) <= 1e-9 * abs(qty):
                                qty = -held
                                capped = True
                        else:
                            opening = _opening_size(st, ob, oi, k)
                            if opening:
                                reject, v1, v2, check, required, own = _fill_need(
                                    opening, ob[k, ORES], price, ob[k, OP], fp, ip, st[W])
                                if check:
                                    reject, v1, v2 = _fill_margin_refusal(
                                        required, available_balance(
                                            st, fp, ip,
                                            _order_margin(st, fp, ob, oi, n_orders, -1) - own))
                                if reject >= 0:
                                    oi[k, OSTAT] = DEAD
                                    ok = False
                                    stats[6] += 1
                                    if oi[k, OTAG] == T_GRID or (
                                            bot == BOT_DCA and _dca.retried(
                                                dca_state, bi, oi[k, OREF])):
                                        n_notes = _note(note_kind, note_tag, note_lvl,
                                                        note_open, note_buy, note_ref, n_notes,
                                                        N_REFUSE, ob, oi, k)
                                    elif bar_stop == S_NONE:
                                        bar_stop = S_REJECT
                                        bar_rk = reject
                                        bar_v1 = v1
                                        bar_v2 = v2
                        if ok:
                            _closed, fee = fill(st, fp, ip, qty, price, fee_rate)
                            fills, nf = _record_fill(fills, nf, t, qty, price, fee, 0,
                                                     oi[k, OTAG], oi[k, OREF], oi[k, OPAIR],
                                                     oi[k, OLVL])
                            oi[k, OSTAT] = DEAD
                            # a capped reducing order is cancelled for the rest
                            n_notes = _note(note_kind, note_tag, note_lvl, note_open, note_buy,
                                            note_ref, n_notes, N_CANCEL if capped else N_FILL,
                                            ob, oi, k)
                    else:
                        # --- the liquidation plan (liqbt.core.liquidation) ---------------------
                        price = best_p if ip[ISO] else st[MK]
                        done = False
                        if ip[ISO] and ip[TOPUP]:
                            amount, lp_after = auto_top_up(st, st, fp, ip, tiers, available_balance(
                                st, fp, ip, _order_margin(st, fp, ob, oi, n_orders, -1)))
                            if amount > 0:
                                topups, nt = _record_top_up(topups, nt, t, amount, lp_after)
                                done = True
                        if not done:
                            # CancelOrders: the bot hears of each (a grid whose liquidation
                            # did not happen after all places its lines again)
                            cancelled = False
                            for k in range(n_orders):
                                if oi[k, OSTAT] == PENDING:
                                    oi[k, OSTAT] = DEAD
                                    cancelled = True
                                    n_notes = _note(note_kind, note_tag, note_lvl, note_open,
                                                    note_buy, note_ref, n_notes, N_CANCEL, ob,
                                                    oi, k)
                            # isolated_plan / cross_plan: re-checked after every step (the
                            # orders are all cancelled: no order margin left in the trigger)
                            if _still(st, fp, ip, tiers, price):
                                full = True
                                while True:
                                    q_red = _partial_step(st, fp, ip, tiers, price,
                                                          st[W] + (0.0 + upnl(st)))
                                    if q_red == 0.0:
                                        break
                                    nf, nl, fills, liqs = _force_close(
                                        st, fp, ip, tiers, t, q_red, price, price, price,
                                        True, taker, fills, nf, liqs, nl, stats)
                                    if bar_stop == S_NONE:
                                        bar_stop = S_LIQ
                                        bar_liq = nl - 1
                                    if not _still(st, fp, ip, tiers, price):
                                        full = False
                                        break
                                if full:
                                    settle = settlement_price(st, fp, ip, tiers, price)
                                    nf, nl, fills, liqs = _force_close(
                                        st, fp, ip, tiers, t, -st[SZ], price, price, settle,
                                        False, 0.0, fills, nf, liqs, nl, stats)
                                    if bar_stop == S_NONE:
                                        bar_stop = S_LIQ
                                        bar_liq = nl - 1
                                    if st[SZ] == 0.0 and not wiped:
                                        e = equity(st, ip)
                                        smallest = fp[MINNOT] / lev
                                        if e <= max(smallest, 1e-9):
                                            wiped = True
                                            stats[2] = 1
                                            stats[3] = t
                                            stats[12] = e
                                            if bar_stop == S_NONE:
                                                bar_stop = S_WIPE
                            elif not cancelled:
                                skip_liq = tau  # nothing changed: not again at this instant
                tau = max(tau, tau_end)
            st[MK] = mc[t]
        # --- distance to liquidation (MarginBroker._track_distance) ---------------------------
        if st[SZ] != 0.0:
            if ip[ISO]:
                tom = 0.0  # an isolated LP has no order margin in it
            else:
                # unchanged since the last bar's end when nothing was accepted or walked
                quiet = not submitted and n_reach == 0 and not in_reach
                tom = tom_end if quiet else _tom(st, fp, ip, ob, oi, n_orders)
            fresh, lp, direction, found = _lp_cached(st, ip, lpc, tom)
            if not fresh:
                lp, direction, found = _lp(st, fp, ip, tiers, lpc, tom)
            if found:
                st[MIND] = min(st[MIND], _distance(lp, direction, low_m, high_m))
        if nl and liqs[nl - 1, 0] == t:
            st[MIND] = min(st[MIND], 0.0)
        # --- 3. margin events reach the bot: stop for good -----------------------------------
        if bar_stop != S_NONE and stop == S_NONE:
            stop = bar_stop
            stats[0] = stop
            stats[1] = t
            stats[7] = bar_rk
            stats[8] = bar_v1
            stats[9] = bar_v2
            stats[11] = bar_liq
            for k in range(n_orders):
                if oi[k, OSTAT] != DEAD:
                    oi[k, OSTAT] = DEAD
        # compact the book (keeps creation order); its bounds: lowest sell and highest buy
        # limit, any market order, of the pending orders. Unchanged since the last compaction
        # (nothing to do) when nothing was accepted, walked or stopped and the bot left the
        # book alone last bar (``touched``)
        dirty = submitted or walked or bar_stop != S_NONE or touched
        m = 0
        if dirty:
            book_sell = math.inf
            book_buy = -math.inf
            book_market = False
        for k in range(n_orders if dirty else 0):
            if oi[k, OSTAT] != DEAD:
                if m != k:  # element by element: a row assignment costs a view and a copy
                    for j in range(ob.shape[1]):
                        ob[m, j] = ob[k, j]
                    for j in range(oi.shape[1]):
                        oi[m, j] = oi[k, j]
                if oi[m, OSTAT] == PENDING:
                    if oi[m, OTYPE] == MARKET:
                        book_market = True
                    elif ob[m, OQ] < 0:
                        book_sell = min(book_sell, ob[m, OP])
                    else:
                        book_buy = max(book_buy, ob[m, OP])
                m += 1
        if dirty:
            n_orders = m
        # --- 4. the bot: fill notifications, then next() -----------------------------------
        # orders cancelled while still submitted are cancelled when their acceptance is
        # notified, i.e. now, after the walk they took part in (strategies.base.cancel_order)
        for k in range(n_orders if cancel_after else 0):
            if oi[k, OCANCEL] and oi[k, OSTAT] == PENDING:
                oi[k, OSTAT] = DEAD
                n_notes = _note(note_kind, note_tag, note_lvl, note_open, note_buy, note_ref,
                                n_notes, N_CANCEL, ob, oi, k)
        close = c[t]
        n_before = n_orders
        stop_before = stop
        sync_before = in_sync
        dca_ran = False
        if bot == BOT_GRID:
            direction_g = bi[1]
            # GridStrategy.on_fill / on_cancel / on_refused; their order inside a bar does
            # not change the resulting state (each touches its own line unless a counter-order
            # replaces it, and then the newest ref wins either way)
            for j in range(n_notes):
                if note_tag[j] != T_GRID:
                    continue
                in_sync = False
                level = note_lvl[j]
                ref = note_ref[j]
                if note_kind[j] != N_FILL:
                    if line_ref[level] == ref:
                        line_ref[level] = 0
                    if note_kind[j] == N_REFUSE:
                        refused += 1
                    continue
                buy = note_buy[j] == 1
                if line_ref[level] == ref:
                    line_ref[level] = 0
                    want[level] = 0
                if not note_open[j]:
                    gap = abs(levels[level] - levels[level + (-1 if not buy else 1)])
                    pairs += 1
                    grid_profit += bp[0] * gap
                counter = level + 1 if buy else level - 1
                if 0 <= counter < nlev and stop == S_NONE:
                    want[counter] = 2 if buy else 1
                    want_pair[counter] = ref
                    line_ref[counter] = next_ref
                    n_orders, next_ref = _place_grid(
                        ob, oi, n_orders, next_ref, t, counter, not buy, direction_g, bi[3],
                        bp[0], levels, ref)
            if stop == S_NONE:
                if not launched:
                    if t == bi[2]:
                        launched = True
                        if bi[5] == 0:  # quantity below the minimum order value
                            stop = S_SMALL
                            stats[0] = stop
                            stats[1] = t
                        else:
                            n_orders, next_ref = _grid_launch(
                                ob, oi, n_orders, next_ref, t, bi, bp, levels, close)
                            for k in range(n_orders):
                                if oi[k, OTAG] == T_GRID:
                                    lvl = oi[k, OLVL]
                                    want[lvl] = 1 if ob[k, OQ] > 0 else 2
                                    line_ref[lvl] = oi[k, OREF]
                else:
                    reason = S_NONE
                    if bi[6] and _reached(bp[2], bp[1], close):
                        reason = S_SL
                    elif bi[7] and _reached(bp[3], bp[1], close):
                        reason = S_TP
                    elif bi[4] and not (levels[0] <= close <= levels[levels.shape[0] - 1]):
                        reason = S_RANGE
                    if reason != S_NONE:
                        stop = reason
                        stats[0] = stop
                        stats[1] = t
                        stats[10] = close
                        n_orders = _stop_orders(oi, n_orders)
                        if st[SZ] != 0.0 and not wiped:
                            n_orders, next_ref = _add_order(
                                ob, oi, n_orders, next_ref, t, -st[SZ], close, MARKET, True,
                                T_CLOSE, 0, 0)
                    elif not in_sync:
                        n_orders, next_ref, in_sync = _resync(
                            ob, oi, n_orders, next_ref, t, close, want, want_pair, line_ref,
                            direction_g, bi[3], bp[0], levels)
        elif bot == BOT_HOLD:
            if t == 0 and stop == S_NONE:
                if bi[2] == 0:
                    stop = S_SMALL
                    stats[0] = stop
                    stats[1] = t
                else:
                    qty = bp[0] if bi[1] > 0 else -bp[0]
                    n_orders, next_ref = _add_order(
                        ob, oi, n_orders, next_ref, t, qty, close, MARKET, False, T_OTHER, 0, 0)
        elif bot == BOT_DCA and (n_notes or close <= dca_low or close >= dca_high):
            dca_ran = True
            n_orders, next_ref, reason, dca_low, dca_high = _dca.bar(
                t, close, st, ob, oi, n_orders, next_ref, fills, nf, note_kind, note_ref,
                n_notes, stop != S_NONE, bi, bp, dca_state, dca_cycles, entry_signal)
            if reason != S_NONE:
                stop = reason
                stats[0] = stop
                stats[1] = t
                stats[10] = close
        submitted = n_orders != n_before
        # whether the bot may have cancelled (or placed) an order this bar: conservatively,
        # any bot step that did more than look at the close
        touched = (cancel_after or n_notes > 0 or stop != stop_before or submitted or dca_ran
                   or (bot == BOT_GRID and (not sync_before or t == bi[2]))
                   or (bot == BOT_HOLD and t == 0))
        eq[t] = equity(st, ip)
        if (dirty or touched) and not ip[ISO]:  # kept for the cross checks of next bar
            tom_end = _tom(st, fp, ip, ob, oi, n_orders)
        tom = 0.0 if ip[ISO] or st[SZ] == 0.0 else tom_end
        mr[t] = margin_ratio(st, fp, ip, tiers, tom)
        ex[t] = st[SZ] != 0.0
    stats[13] = pairs
    stats[17] = grid_profit
    stats[18] = refused
    missing = 0
    for i in range(nlev):
        if want[i] and not line_ref[i]:
            missing += 1
    stats[19] = missing
    return st, stats, fills[:nf], liqs[:nl], topups[:nt], eq, mr, ex


@hot
def _lp_cached(st, ip, cache, tom):
    """``(fresh, lp, direction, found)``: :func:`_lp`'s cached answer when the leg did not
    change (``fresh``), checked without a call into :func:`_lp` (which allocates, so it pays
    the reference counting of its arrays; the bar loop asks on every bar with a position)."""
    third = st[MG] if ip[ISO] else st[W]
    if cache[0] == st[SZ] and cache[1] == st[EN] and cache[2] == third and cache[6] == tom:
        return True, cache[3], int(cache[4]), cache[5] != 0.0
    return False, math.nan, 0, False


@njit(cache=True)
def _lp(st, fp, ip, tiers, cache, tom):
    """:func:`liqbt.fast.margin.liquidation_price`, solved again only when the leg changed:
    an isolated LP depends on the leg's size, entry and margin alone (not the mark), a single
    cross leg's on its size, entry, the wallet and the order margin in the trigger (and on the
    mark only as the tier iteration's start: the broker's walker keeps it until the account
    changes too), so an unchanged leg gives the identical result (the per-bar checks would
    otherwise re-solve the tier iteration on every bar). Called when :func:`_lp_cached` says
    the cache is stale; solves and stores."""
    third = st[MG] if ip[ISO] else st[W]
    lp, direction, found = liquidation_price(st, fp, ip, tiers, tom)
    cache[0] = st[SZ]
    cache[1] = st[EN]
    cache[2] = third
    cache[3] = lp
    cache[4] = direction
    cache[5] = 1.0 if found else 0.0
    cache[6] = tom
    return lp, direction, found


@njit(cache=True)
def _cross_may(st, fp, ip, tiers, box, low, high, tom) -> bool:
    """:meth:`liqbt.core.cross_bound.CrossBound.may_breach` for the one cross leg: the bound
    of its term over a box widened by ``SAFE_MARGIN`` (kept while the leg and the range stay
    inside it, so quiet bars cost no evaluation), then the exact floor over ``[low, high]``."""
    if not (box[0] == st[SZ] and box[1] == st[EN] and box[2] <= low <= high <= box[3]):
        wide_low = low * (1 - _SAFE_MARGIN)
        wide_high = high * (1 + _SAFE_MARGIN)
        box[0] = st[SZ]
        box[1] = st[EN]
        box[2] = wide_low
        box[3] = wide_high
        box[4] = term_min(st, fp, ip, tiers, wide_low, wide_high)
    bound = (st[W] - tom) + box[4]
    tol = cross_tolerance(st)
    return bound <= tol and cross_floor(st, fp, ip, tiers, low, high, tom) <= tol


@hot
def _tom(st, fp, ip, ob, oi, n_orders) -> float:
    """:meth:`liqbt.core.account.Account.trigger_order_margin`: the resting orders' margin
    where the profile counts it in the cross trigger (``order_margin_in_trigger``), else 0."""
    if not ip[OMTRIG]:
        return 0.0
    return _order_margin(st, fp, ob, oi, n_orders, -1)


@hot
def _stop_orders(oi, n_orders):
    """:meth:`strategies.base.MarginAwareStrategy.cancel_all` from ``next()``: accepted
    orders die now, submitted ones once accepted. Returns the new book length."""
    for k in range(n_orders):
        if oi[k, OSTAT] == SUBMITTED:
            oi[k, OCANCEL] = 1
        else:
            oi[k, OSTAT] = DEAD
    return n_orders


@njit(cache=True)
def _still(st, fp, ip, tiers, price) -> bool:
    """Whether the leg is still liquidated: :func:`liqbt.core.liquidation.isolated_triggered`
    at ``price`` or, cross, :func:`liqbt.core.liquidation.cross_triggered` (no resting orders:
    the plan cancelled them)."""
    if st[SZ] == 0.0:
        return False
    if not ip[ISO]:
        return cross_excess(st, fp, ip, tiers, 0.0) <= cross_tolerance(st)
    lp, direction, found = liquidation_price(st, fp, ip, tiers)
    if not found:
        return False
    if direction < 0:
        return price <= lp + 1e-9 * lp
    return price >= lp - 1e-9 * lp


@hot
def _partial_step(st, fp, ip, tiers, price, cross_balance) -> float:
    """:func:`liqbt.core.liquidation._partial_close`'s signed quantity for the leg at
    ``price`` (0: no partial step): the profile steps partially in the leg's margin mode,
    the balance behind the leg (isolated: margin + upnl; cross: ``cross_balance``, the cross
    margin balance) covers the taker fee of closing it, and it sits above the first tier."""
    if ip[ISO] and not ip[PISO]:
        return 0.0
    if not ip[ISO] and not ip[PCROSS]:
        return 0.0
    if ip[PDROP] <= 0 or st[SZ] == 0.0:
        return 0.0
    bal = st[MG] + upnl(st) if ip[ISO] else cross_balance
    if bal <= abs(st[SZ]) * price * fp[TAKER]:
        return 0.0
    return _partial_qty(st, fp, ip, tiers, price)


@hot
def _partial_qty(st, fp, ip, tiers, price) -> float:
    index = tier_index(tiers, lookup_value(ip, st[SZ], price))
    if index == 0:
        return 0.0
    cap = tiers[max(index - ip[PDROP], 0), 0]
    target = cap if ip[BASIS_SIZE] else cap / price
    reduce = abs(st[SZ]) - target
    if not reduce > 1e-9 * abs(st[SZ]):
        return 0.0
    side = 1 if st[SZ] > 0 else -1
    return -side * reduce


@njit(cache=True)
def _force_close(st, fp, ip, tiers, t, qty, trigger, execution, settle, partial, fee_rate,
                 fills, nf, liqs, nl, stats):
    """:meth:`liqbt.broker.MarginBroker._force_close` +
    :meth:`liqbt.core.account.Account.book_liquidation`."""
    side = 1 if st[SZ] > 0 else -1
    entry = st[EN]
    margin_before = st[MG]
    closed, fee = fill(st, fp, ip, qty, execution, fee_rate)
    fills, nf = _record_fill(fills, nf, t, qty, execution, fee, 1, T_OTHER, -(nf + 1), 0, 0)
    # the one leg is the whole cross account: its upnl is the cross legs'
    closed_part, clearance, liq_fee, loss = book_liquidation(
        st, fp, ip, qty, execution, settle, partial, closed, fee, entry, margin_before,
        0.0 + upnl(st), st[SZ] == 0.0)
    liqs, nl = _record_liquidation(liqs, nl, t, side, closed_part, trigger, settle, loss,
                                   partial, clearance, fee, liq_fee)
    return nf, nl, fills, liqs


@njit(cache=True)
def _record_fill(fills, nf, t, qty, price, fee, liq, tag, ref, pair, lvl):
    """Append a fill record (columns ``F_BAR`` .. ``F_LVL``; a forced close has ``liq`` 1 and
    the reference ``-(its index + 1)``); returns the (possibly grown) table and its length."""
    fills = _grow(fills, nf)
    fills[nf, F_BAR] = t
    fills[nf, F_QTY] = qty
    fills[nf, F_PRICE] = price
    fills[nf, F_FEE] = fee
    fills[nf, F_LIQ] = liq
    fills[nf, F_TAG] = tag
    fills[nf, F_REF] = ref
    fills[nf, F_PAIR] = pair
    fills[nf, F_LVL] = lvl
    return fills, nf + 1


@njit(cache=True)
def _record_top_up(topups, nt, t, amount, lp_after):
    """Append a top-up record (columns ``U_BAR`` .. ``U_LP``: the LP after it, ``nan`` for
    none); returns the (possibly grown) table and its length."""
    topups = _grow(topups, nt)
    topups[nt, U_BAR] = t
    topups[nt, U_AMOUNT] = amount
    topups[nt, U_LP] = lp_after
    return topups, nt + 1


@njit(cache=True)
def _record_liquidation(liqs, nl, t, side, closed_part, trigger, settle, loss, partial,
                        clearance, fee, liq_fee):
    """Append a liquidation record (columns ``L_BAR`` .. ``L_LIQFEE``: the loss includes the
    closing fill's fee, ``L_INS`` is the insurance fund delta); returns the (possibly grown)
    table and its length."""
    liqs = _grow(liqs, nl)
    liqs[nl, L_BAR] = t
    liqs[nl, L_SIDE] = side
    liqs[nl, L_SIZE] = abs(closed_part)
    liqs[nl, L_TRIG] = trigger
    liqs[nl, L_SETTLE] = settle
    liqs[nl, L_LOSS] = loss + fee
    liqs[nl, L_PARTIAL] = 1 if partial else 0
    liqs[nl, L_INS] = clearance
    liqs[nl, L_FEE] = fee
    liqs[nl, L_LIQFEE] = liq_fee
    return liqs, nl + 1


@hot
def _mark_range(mo, mh, ml, mc):
    """The bar's mark range ``(low, high)`` from its mark OHLC (the walk's box)."""
    return min(min(mo, mh), min(ml, mc)), max(max(mo, mh), max(ml, mc))


@hot
def _bar_paths(tpath, mpath, o, h, lo, c, mo, mh, ml, mc, net, intrabar):
    """:meth:`liqbt.broker.MarginBroker._walk`'s bar paths, written to ``tpath`` (trade) and
    ``mpath`` (mark): open, high, low, close when the bar falls (heuristic), else open, low,
    high, close; with a leg of signed size ``net`` open, ``intrabar`` 1 (pessimistic) visits
    the adverse extreme first and 2 (optimistic) the favourable one."""
    high_first = c < o
    if intrabar != 0 and net != 0.0:
        adverse_high_first = net < 0
        high_first = adverse_high_first == (intrabar == 1)
    if high_first:
        tpath[0], tpath[1], tpath[2], tpath[3] = o, h, lo, c
        mpath[0], mpath[1], mpath[2], mpath[3] = mo, mh, ml, mc
    else:
        tpath[0], tpath[1], tpath[2], tpath[3] = o, lo, h, c
        mpath[0], mpath[1], mpath[2], mpath[3] = mo, ml, mh, mc


@hot
def _opening_cost(opening, price, fp) -> float:
    """:func:`liqbt.core.orders.margin_required`: margin and taker fee of opening ``opening``
    at ``price``, ``q × P × (1/leverage + taker)`` (USDT)."""
    return opening * price * (1.0 / fp[LEV] + fp[TAKER])


@hot
def _order_limits(qty, price, opening, held, fp, ip):
    """:func:`liqbt.core.orders.acceptance_refusal`'s checks before the margin one, for an
    order of signed ``qty`` at ``price`` opening ``opening`` on a leg of signed size ``held``:
    ``(R_MIN, order value)`` below the minimum order value, ``(R_CAP, value)`` when the
    resulting leg exceeds the tier cap (:func:`liqbt.core.orders.resulting_size`,
    :func:`liqbt.core.orders.tier_cap_refusal`), else ``(-1, 0)``."""
    order_value = abs(qty) * price
    if order_value < fp[MINNOT]:
        return R_MIN, order_value
    same_side = held != 0 and (held > 0) == (qty > 0)
    resulting = opening + (abs(held) if same_side else 0.0)
    value = lookup_value(ip, resulting, price)
    if not value <= fp[CAPNOT] * (1 + 1e-12):
        return R_CAP, value
    return -1, 0.0


@hot
def _margin_refusal(required, avail):
    """:func:`liqbt.core.orders.acceptance_refusal`'s margin check: ``(R_MARGIN, required,
    available)`` when the opening's margin and fee exceed the available balance (USDT, with
    1e-9 of slack), else ``(-1, 0, 0)``."""
    if required > avail + 1e-9:
        return R_MARGIN, required, avail
    return -1, 0.0, 0.0


@hot
def _fill_margin_refusal(required, avail):
    """:func:`liqbt.core.orders.fill_refusal`'s margin check of the unreserved opening:
    ``(R_FILL_MARGIN, required, available)`` unless ``required <= available + 1e-9``, else
    ``(-1, 0, 0)``."""
    if not required <= avail + 1e-9:
        return R_FILL_MARGIN, required, avail
    return -1, 0.0, 0.0


@hot
def _fill_need(opening, reserved, price, limit, fp, ip, wallet):
    """:func:`liqbt.core.orders.fill_refusal` when an order opening ``opening`` fills at
    ``price``: ``(reject, v1, v2, check, required, own)``. An isolated fill whose margin and
    fee exceed the ``wallet`` is refused (``R_FILL_ISO``, needed, wallet); else, when part of
    the opening was not reserved at acceptance (``reserved``), ``check`` asks the caller to
    compare ``required`` (that part's margin and fee) with the available balance, the order's
    own reserved margin ``own`` (at its ``limit`` price) left out of the order margin."""
    if ip[ISO]:
        needed = _opening_cost(opening, price, fp)
        if needed > wallet + 1e-9:
            return R_FILL_ISO, needed, wallet, False, 0.0, 0.0
    unreserved = opening - reserved
    if unreserved <= 1e-12 * max(opening, 1.0):
        return -1, 0.0, 0.0, False, 0.0, 0.0
    return (-1, 0.0, 0.0, True, _opening_cost(unreserved, price, fp),
            opening * limit / fp[LEV])


@hot
def _distance(lp, direction, low, high) -> float:
    """:meth:`liqbt.walk.JointWalk._track_distance`: the relative distance from the bar's
    adverse mark extreme (``low`` for a long, ``high`` for a short) to the LP."""
    if direction < 0:
        return (low - lp) / low
    return (lp - high) / high


@hot
def _add_order(ob, oi, n_orders, next_ref, t, qty, price, otype, reduce, tag, level, opening):
    ob[n_orders, OQ] = qty
    ob[n_orders, OP] = price
    ob[n_orders, ORES] = 0.0
    oi[n_orders, OTYPE] = otype
    oi[n_orders, ORED] = 1 if reduce else 0
    oi[n_orders, OCB] = t
    oi[n_orders, OSTAT] = SUBMITTED
    oi[n_orders, OTAG] = tag
    oi[n_orders, OLVL] = level
    oi[n_orders, OOPEN] = opening
    oi[n_orders, OREF] = next_ref
    oi[n_orders, OCANCEL] = 0
    oi[n_orders, OPAIR] = 0
    return n_orders + 1, next_ref + 1


@hot
def _is_opening(direction, start_level, level, buy) -> bool:
    """:meth:`strategies.grid.GridStrategy._is_opening`."""
    if direction == 0:
        return buy
    if direction == 1:
        return not buy
    return level < start_level if buy else level > start_level


@hot
def _place_grid(ob, oi, n_orders, next_ref, t, level, buy, direction, start_level, quantity,
                levels, pair_ref):
    """:meth:`strategies.grid.GridStrategy._place_grid`."""
    opening = _is_opening(direction, start_level, level, buy)
    size = quantity if buy else -quantity
    n_orders, ref = _add_order(ob, oi, n_orders, next_ref, t, size, levels[level], LIMIT,
                               not opening, T_GRID, level, 1 if opening else 0)
    oi[n_orders - 1, OPAIR] = pair_ref
    return n_orders, ref


@hot
def _grid_launch(ob, oi, n_orders, next_ref, t, bi, bp, levels, close):
    """:func:`liqbt.core.ladders.grid_plan` orders as the grid bot places them."""
    direction = bi[1]
    k = bi[3]
    q = bp[0]
    nlev = levels.shape[0]
    n_above = nlev - (k + 1)
    if direction == 0 and n_above:
        n_orders, next_ref = _add_order(ob, oi, n_orders, next_ref, t, q * n_above, close,
                                        MARKET, False, T_OTHER, k, 1)
    if direction == 1 and k:
        n_orders, next_ref = _add_order(ob, oi, n_orders, next_ref, t, -q * k, close,
                                        MARKET, False, T_OTHER, k, 1)
    for i in range(k):
        n_orders, next_ref = _place_grid(ob, oi, n_orders, next_ref, t, i, True, direction,
                                         k, q, levels, 0)
    for i in range(k + 1, nlev):
        n_orders, next_ref = _place_grid(ob, oi, n_orders, next_ref, t, i, False, direction,
                                         k, q, levels, 0)
    return n_orders, next_ref


@hot
def _note(kind, tag, lvl, opening, buy, ref, n, what, ob, oi, k):
    """Record what the bot is told about order row ``k`` this bar; returns the new count."""
    kind[n] = what
    tag[n] = oi[k, OTAG]
    lvl[n] = oi[k, OLVL]
    opening[n] = oi[k, OOPEN]
    buy[n] = 1 if ob[k, OQ] > 0 else 0
    ref[n] = oi[k, OREF]
    return n + 1


@hot
def _resync(ob, oi, n_orders, next_ref, t, close, want, want_pair, line_ref, direction,
            start_level, quantity, levels):
    """:meth:`strategies.grid.GridStrategy.resync`: cancel live grid orders no line wants
    (accepted ones now, submitted ones once accepted), then place, in line order, the order
    of every wanted line holding none when it rests at ``close``. Returns ``(n_orders,
    next_ref, in_sync)``."""
    clean = True
    for k in range(n_orders):
        if oi[k, OTAG] != T_GRID or oi[k, OSTAT] == DEAD:
            continue
        level = oi[k, OLVL]
        if want[level] == 0 or line_ref[level] != oi[k, OREF]:
            clean = False
            if oi[k, OSTAT] == SUBMITTED:
                oi[k, OCANCEL] = 1
            else:
                oi[k, OSTAT] = DEAD
    for level in range(levels.shape[0]):
        if want[level] == 0 or line_ref[level] != 0:
            continue
        clean = False
        buy = want[level] == 1
        price = levels[level]
        if (buy and price < close) or (not buy and price > close):
            line_ref[level] = next_ref
            n_orders, next_ref = _place_grid(ob, oi, n_orders, next_ref, t, level, buy,
                                             direction, start_level, quantity, levels,
                                             want_pair[level])
    return n_orders, next_ref, clean


@hot
def _reached(level, launch_price, close) -> bool:
    """:meth:`strategies.grid.GridStrategy._reached`."""
    return close <= level if level < launch_price else close >= level
