"""The DCA bot (:mod:`strategies.dca`) for the fast engine's bar loop, compiled.

:func:`bar` is step 4 of :func:`liqbt.fast.kernel.run` for a DCA config: what the bot is told
about the bar (its ``notify_margin`` refusals first, then ``notify_order`` fills and cancels in
fill order), then its ``next()`` on the close. The bot's state lives in one float array
(:func:`new_state`), its finished cycles in a record array, both allocated by the Python side
(:mod:`liqbt.fast.engine`) and read back after the run.

Order refs are backtrader's: the bot matches notifications to its base order, safety orders,
take profit and stop loss by ref exactly as :class:`strategies.dca.DcaStrategy` does, so a
take profit replaced while still submitted (cancelled once accepted, after the walk it took
part in) behaves as in backtrader: any take-profit fill of the bot (its fill's tag) that
leaves the position flat ends the cycle, one that only reduces it banks its PnL
(``D_PART_PNL``) and re-places the take profit for the rest.

Layouts
-------
``bi`` (int): ``[bot, side (1 long, -1 short), max_safety_orders, cooldown, max_cycles,
has_stop_loss, has_entry_filter]``.
``bp`` (float): ``[base_order, take_profit, stop_loss, size_step, min_notional]`` then the
ladder's cumulative deviations (percent) and notionals (USDT) of safety orders ``1..m``
(:func:`liqbt.core.ladders.dca_ladder`, computed once in Python: they do not depend on the
entry).
State (float): the scalars ``D_*`` then three blocks of ``m + 1`` (index 0 unused): the ref of
the live safety order of each rung (``DcaStrategy._safety``), the rungs to retry
(``_retry_safety``) and the rung prices of the current cycle (``ladder[i].price``).
Cycle records (float, one row per finished cycle): ``C_*``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, objmode

from liqbt.fast import kernel as kn
from liqbt.fast.jit import hot

# bi / bp indices
I_SIDE, I_MAXSO, I_COOLDOWN, I_MAXCYC, I_HAS_SL, I_FILTER = 1, 2, 3, 4, 5, 6
P_BASE, P_TP, P_SL, P_STEP, P_MINNOT, P_LADDER = 0, 1, 2, 3, 4, 5

# state scalars
(D_IN_CYCLE, D_FINISHED, D_BASE_REF, D_TP_REF, D_SL_REF, D_NEXT_START, D_CYCLES, D_PNL,
 D_REFUSED, D_RETRY_TP, D_HAS_CYCLE, D_START, D_ENTRY, D_SAFETY_FILLED, D_HAS_AVG, D_AVG,
 D_SIZE, D_FIRST_ENTRY, D_PART_PNL) = range(19)
N_D = 19

# cycle record columns; reasons
C_START, C_END, C_ENTRY, C_AVG, C_EXIT, C_SAFETY, C_SIZE, C_PNL, C_REASON = range(9)
N_C = 9
REASON_TP, REASON_SL = 0, 1


def new_state(max_safety_orders: int) -> np.ndarray:
    """A fresh bot state for a ladder of ``max_safety_orders`` safety orders."""
    state = np.zeros(N_D + 3 * (max_safety_orders + 1))
    state[D_FIRST_ENTRY] = math.nan
    return state


@njit(cache=True)
def round12(x: float) -> float:
    """Python's ``round(x, 12)`` (:meth:`strategies.base.MarginAwareStrategy.round_size`).

    numba's ``round`` scales by 10¹² in floating point, which is exact for a whole number of
    size steps below ~2,000 (it then rounds to the same 12-decimal value CPython picks); above
    that CPython's correctly rounded algorithm is asked (rare: sizes in base units)."""
    if abs(x) < 512.0:
        return round(x, 12)
    with objmode(y="float64"):
        y = round(x, 12)
    return y


@njit(cache=True)
def order_size(notional: float, price: float, step: float, min_notional: float) -> float:
    """:meth:`strategies.base.MarginAwareStrategy.order_size`: base quantity of a
    ``notional`` (USDT) order at ``price``, rounded to the nearest size ``step``, up one step
    when that falls below ``min_notional`` (USDT) while the notional does not."""
    size = notional / price
    if step:
        steps = math.floor(size / step + 0.5 + 1e-9)
        size = round12(steps * step)
        if size * price < min_notional <= notional:
            size = round12(size + step)
    return size


@hot
def retried(state, bi, ref) -> bool:
    """:meth:`strategies.dca.DcaStrategy.on_refused`'s test: a refused safety order or take
    profit of the bot is retried later (``True``); any other refusal stops the bot."""
    m = bi[I_MAXSO]
    for i in range(1, m + 1):
        if state[N_D + i] == ref:
            return True
    return state[D_TP_REF] == ref and ref != 0


@hot
def _cancel(oi, n_orders, ref):
    """:meth:`strategies.base.MarginAwareStrategy.cancel_order` by ref: an accepted order
    dies now, a submitted one once accepted; a dead (filled, refused) one is left alone."""
    if ref == 0:
        return
    for k in range(n_orders):
        if oi[k, kn.OREF] == ref:
            if oi[k, kn.OSTAT] == kn.SUBMITTED:
                oi[k, kn.OCANCEL] = 1
            elif oi[k, kn.OSTAT] == kn.PENDING:
                oi[k, kn.OSTAT] = kn.DEAD
            return


@hot
def _fill_price(fills, nf, t, ref) -> float:
    """``order.executed.price`` of this bar's fill of order ``ref``: backtrader's
    ``OrderData.addbit`` averages the execution bits, ``(0 + qty × price) / qty`` for one bit,
    which may differ from ``price`` in the last digit (and the bot builds on it)."""
    for j in range(nf - 1, -1, -1):
        if fills[j, kn.F_BAR] != t:
            break
        if fills[j, kn.F_REF] == ref and fills[j, kn.F_LIQ] == 0:
            qty = fills[j, kn.F_QTY]
            return (0.0 + qty * fills[j, kn.F_PRICE]) / qty
    return math.nan


@njit(cache=True)
def _fill_row(fills, nf, t, ref) -> int:
    """The row of this bar's (non-liquidation) fill of order ``ref``, or -1."""
    for j in range(nf - 1, -1, -1):
        if fills[j, kn.F_BAR] != t:
            break
        if fills[j, kn.F_REF] == ref and fills[j, kn.F_LIQ] == 0:
            return j
    return -1


@njit(cache=True)
def _take_profit_fill(st, ob, oi, n_orders, next_ref, t, stopped, bi, bp, state, rec, fills,
                      nf, ref):
    """:meth:`strategies.dca.DcaStrategy._on_take_profit_fill`: a fill of one of the bot's
    take profits (current or replaced while submitted)."""
    if not state[D_IN_CYCLE]:
        return n_orders, next_ref
    price = _fill_price(fills, nf, t, ref)
    if ref == state[D_TP_REF] or st[kn.SZ] == 0.0:
        _end_cycle(oi, n_orders, t, bi, state, rec, price, REASON_TP)
        return n_orders, next_ref
    j = _fill_row(fills, nf, t, ref)
    state[D_PART_PNL] += bi[I_SIDE] * abs(fills[j, kn.F_QTY]) * (price - st[kn.EN])
    tp = int(state[D_TP_REF])
    right = False
    for k in range(n_orders):
        if tp != 0 and oi[k, kn.OREF] == tp and oi[k, kn.OSTAT] != kn.DEAD:
            right = abs(ob[k, kn.OQ]) == abs(st[kn.SZ])
            break
    if not right:
        n_orders, next_ref = _place_take_profit(st, ob, oi, n_orders, next_ref, t, stopped, bi,
                                                bp, state)
    return n_orders, next_ref


@hot
def _place_take_profit(st, ob, oi, n_orders, next_ref, t, stopped, bi, bp, state):
    """:meth:`strategies.dca.DcaStrategy._place_take_profit`."""
    _cancel(oi, n_orders, int(state[D_TP_REF]))
    state[D_TP_REF] = 0
    size = st[kn.SZ]
    if size == 0.0 or stopped:
        return n_orders, next_ref
    average = st[kn.EN]
    state[D_HAS_AVG] = 1
    state[D_AVG] = average
    state[D_SIZE] = abs(size)
    price = average * (1 + bi[I_SIDE] * bp[P_TP] / 100)
    state[D_TP_REF] = next_ref
    return kn._add_order(ob, oi, n_orders, next_ref, t, -size, price, kn.LIMIT, True, kn.T_TP,
                         0, 0)


@njit(cache=True)
def _place_safety(ob, oi, n_orders, next_ref, t, bi, bp, state, index, price):
    m = bi[I_MAXSO]
    size = order_size(bp[P_LADDER + m + index - 1], price, bp[P_STEP], bp[P_MINNOT])
    if size <= 0:
        return n_orders, next_ref, False
    state[N_D + index] = next_ref
    n_orders, next_ref = kn._add_order(ob, oi, n_orders, next_ref, t, bi[I_SIDE] * size, price,
                                       kn.LIMIT, False, kn.T_SAFETY, index, 1)
    return n_orders, next_ref, True


@hot
def _cancel_cycle_orders(oi, n_orders, bi, state):
    """:meth:`strategies.dca.DcaStrategy._cancel_cycle_orders`."""
    m = bi[I_MAXSO]
    for i in range(1, m + 1):
        _cancel(oi, n_orders, int(state[N_D + i]))
        state[N_D + i] = 0
        state[N_D + m + 1 + i] = 0
    state[D_RETRY_TP] = 0
    _cancel(oi, n_orders, int(state[D_TP_REF]))
    state[D_TP_REF] = 0


@hot
def _end_cycle(oi, n_orders, t, bi, state, rec, exit_price, reason):
    """:meth:`strategies.dca.DcaStrategy._end_cycle`: the cycle record and the cooldown."""
    _cancel_cycle_orders(oi, n_orders, bi, state)
    state[D_SL_REF] = 0
    state[D_IN_CYCLE] = 0
    average = state[D_AVG] if state[D_HAS_AVG] else exit_price
    size = state[D_SIZE] if state[D_HAS_AVG] else 0.0
    pnl = state[D_PART_PNL] + bi[I_SIDE] * size * (exit_price - average)
    state[D_PART_PNL] = 0.0
    row = int(state[D_CYCLES])
    if row < rec.shape[0]:
        rec[row, C_START] = state[D_START] if state[D_HAS_CYCLE] else math.nan
        rec[row, C_END] = t
        rec[row, C_ENTRY] = state[D_ENTRY] if state[D_HAS_CYCLE] else math.nan
        rec[row, C_AVG] = state[D_AVG] if state[D_HAS_AVG] else math.nan
        rec[row, C_EXIT] = exit_price
        rec[row, C_SAFETY] = state[D_SAFETY_FILLED]
        rec[row, C_SIZE] = state[D_SIZE] if state[D_HAS_AVG] else math.nan
        rec[row, C_PNL] = pnl
        rec[row, C_REASON] = reason
    state[D_CYCLES] += 1
    state[D_PNL] += pnl
    state[D_HAS_CYCLE] = 0
    state[D_HAS_AVG] = 0
    state[D_SAFETY_FILLED] = 0
    state[D_NEXT_START] = t + bi[I_COOLDOWN]


@njit(cache=True)
def bar(t, close, st, ob, oi, n_orders, next_ref, fills, nf, note_kind, note_ref, n_notes,
        stopped, bi, bp, state, rec, signal):
    """Step 4 of the bar for the DCA bot; returns ``(n_orders, next_ref, stop, low, high)``:
    ``stop`` is ``S_SMALL`` when the base order rounds to no size (the bot stops), else
    ``S_NONE``; ``low``/``high`` say when the bot's ``next()`` has something to do again
    (:func:`wake`). The bar loop calls again on a bar with notifications or whose close is
    ``<= low`` or ``>= high``: the other bars would change nothing (and a call per bar costs
    more than the rest of a quiet bar)."""
    n_orders, next_ref, stop = _bar(t, close, st, ob, oi, n_orders, next_ref, fills, nf,
                                    note_kind, note_ref, n_notes, stopped, bi, bp, state, rec,
                                    signal)
    low, high = wake(st, bi, bp, state, stopped or stop != kn.S_NONE)
    return n_orders, next_ref, stop, low, high


@hot
def wake(st, bi, bp, state, stopped):
    """The closes ``(low, high)`` at which the bot's ``next()`` acts again without being
    notified of anything: every bar (``(inf, -inf)``) while it may open a cycle or retries a
    refused order, at the stop-loss level (a small margin early: waking is always safe) while
    a cycle with a stop loss runs, never (``(-inf, inf)``) otherwise (waiting for a fill,
    stopped, finished). The position only changes by fills, which are notified."""
    if stopped or state[D_FINISHED]:
        return -math.inf, math.inf
    if not state[D_IN_CYCLE]:
        if state[D_BASE_REF] != 0:
            return -math.inf, math.inf
        return math.inf, -math.inf
    if state[D_SL_REF] != 0:
        return -math.inf, math.inf
    m = bi[I_MAXSO]
    retry = state[D_RETRY_TP] != 0
    for i in range(1, m + 1):
        if state[N_D + m + 1 + i]:
            retry = True
    if retry:
        return math.inf, -math.inf
    if bi[I_HAS_SL] and st[kn.SZ] != 0.0:
        side = bi[I_SIDE]
        level = st[kn.EN] * (1 - side * bp[P_SL] / 100)
        if side > 0:
            return level * (1 + 1e-9), math.inf
        return -math.inf, level * (1 - 1e-9)
    return -math.inf, math.inf


@njit(cache=True)
def _bar(t, close, st, ob, oi, n_orders, next_ref, fills, nf, note_kind, note_ref, n_notes,
         stopped, bi, bp, state, rec, signal):
    """:func:`bar` without the wake-up band.

    ``stopped``: the bot has stopped for good (a liquidation, wipeout or unretried refusal,
    now or earlier): notifications still update its cycle bookkeeping, it places nothing."""
    side = bi[I_SIDE]
    m = bi[I_MAXSO]
    # notify_margin: refusals of the bot's safety orders and take profit (retried later)
    for j in range(n_notes):
        if note_kind[j] != kn.N_REFUSE:
            continue
        ref = note_ref[j]
        found = False
        for i in range(1, m + 1):
            if state[N_D + i] == ref:
                state[N_D + i] = 0
                state[N_D + m + 1 + i] = 1
                found = True
                break
        if not found and state[D_TP_REF] == ref:
            state[D_TP_REF] = 0
            state[D_RETRY_TP] = 1
            found = True
        if found:
            state[D_REFUSED] += 1
    # notify_order: fills (and cancels) in fill order
    for j in range(n_notes):
        ref = note_ref[j]
        if note_kind[j] == kn.N_CANCEL:
            for i in range(1, m + 1):
                if state[N_D + i] == ref:
                    state[N_D + i] = 0
            # a take profit capped at a smaller position: filled for the rest, then cancelled
            j = _fill_row(fills, nf, t, ref)
            if j >= 0 and fills[j, kn.F_TAG] == kn.T_TP:
                n_orders, next_ref = _take_profit_fill(st, ob, oi, n_orders, next_ref, t,
                                                       stopped, bi, bp, state, rec, fills, nf,
                                                       ref)
            continue
        if note_kind[j] != kn.N_FILL:
            continue
        if ref == state[D_BASE_REF]:
            # _on_base_fill: the ladder from the entry, every safety order, the take profit
            entry = _fill_price(fills, nf, t, ref)
            state[D_BASE_REF] = 0
            state[D_IN_CYCLE] = 1
            state[D_HAS_CYCLE] = 1
            state[D_START] = t
            state[D_ENTRY] = entry
            state[D_SAFETY_FILLED] = 0
            state[D_HAS_AVG] = 0
            state[D_PART_PNL] = 0.0
            if math.isnan(state[D_FIRST_ENTRY]):
                state[D_FIRST_ENTRY] = entry
            for i in range(1, m + 1):
                price = entry * (1 - side * bp[P_LADDER + i - 1] / 100)
                state[N_D + 2 * (m + 1) + i] = price
                if stopped:
                    continue
                n_orders, next_ref, _ok = _place_safety(ob, oi, n_orders, next_ref, t, bi, bp,
                                                        state, i, price)
            n_orders, next_ref = _place_take_profit(st, ob, oi, n_orders, next_ref, t, stopped,
                                                    bi, bp, state)
            continue
        index = -1
        for i in range(1, m + 1):
            if state[N_D + i] == ref:
                index = i
                break
        if index > 0:
            state[N_D + index] = 0
            state[D_SAFETY_FILLED] += 1
            n_orders, next_ref = _place_take_profit(st, ob, oi, n_orders, next_ref, t, stopped,
                                                    bi, bp, state)
        elif ref == state[D_SL_REF] and ref != 0:
            _end_cycle(oi, n_orders, t, bi, state, rec, _fill_price(fills, nf, t, ref),
                       REASON_SL)
        else:
            j = _fill_row(fills, nf, t, ref)
            if j >= 0 and fills[j, kn.F_TAG] == kn.T_TP:
                n_orders, next_ref = _take_profit_fill(st, ob, oi, n_orders, next_ref, t,
                                                       stopped, bi, bp, state, rec, fills, nf,
                                                       ref)
    # next()
    if stopped or state[D_FINISHED]:
        return n_orders, next_ref, kn.S_NONE
    if state[D_IN_CYCLE]:
        # _check_stop_loss
        size = st[kn.SZ]
        if bi[I_HAS_SL] and state[D_SL_REF] == 0 and size != 0.0:
            level = st[kn.EN] * (1 - side * bp[P_SL] / 100)
            if (close - level) * side <= 0:
                _cancel_cycle_orders(oi, n_orders, bi, state)
                state[D_SL_REF] = next_ref
                n_orders, next_ref = kn._add_order(ob, oi, n_orders, next_ref, t, -size, close,
                                                   kn.MARKET, True, kn.T_SL, 0, 0)
        if state[D_SL_REF] == 0:
            # _retry_refused: rungs still beyond the close, in rung order, then the TP
            for i in range(1, m + 1):
                if not state[N_D + m + 1 + i]:
                    continue
                price = state[N_D + 2 * (m + 1) + i]
                if (price - close) * side < 0:
                    state[N_D + m + 1 + i] = 0
                    n_orders, next_ref, _ok = _place_safety(ob, oi, n_orders, next_ref, t, bi,
                                                            bp, state, i, price)
            if state[D_RETRY_TP]:
                state[D_RETRY_TP] = 0
                n_orders, next_ref = _place_take_profit(st, ob, oi, n_orders, next_ref, t,
                                                        stopped, bi, bp, state)
        return n_orders, next_ref, kn.S_NONE
    if state[D_BASE_REF] != 0 or t < state[D_NEXT_START]:
        return n_orders, next_ref, kn.S_NONE
    if bi[I_MAXCYC] and state[D_CYCLES] >= bi[I_MAXCYC]:
        state[D_FINISHED] = 1
        return n_orders, next_ref, kn.S_NONE
    if bi[I_FILTER] and not signal[t]:
        return n_orders, next_ref, kn.S_NONE
    size = order_size(bp[P_BASE], close, bp[P_STEP], bp[P_MINNOT])
    if size <= 0:  # rounds to no size step: the bot stops (strategies.dca.base_order_too_small)
        return n_orders, next_ref, kn.S_SMALL
    state[D_BASE_REF] = next_ref
    n_orders, next_ref = kn._add_order(ob, oi, n_orders, next_ref, t, side * size, close,
                                       kn.MARKET, False, kn.T_BASE, 0, 1)
    return n_orders, next_ref, kn.S_NONE
