"""The per-step joint walk driver: all symbols of an account move through their bars together.

:class:`JointWalk` turns the feeds with a new bar into paths on one intrabar clock
``t ∈ [0, 1]`` (pure functions in :mod:`liqbt.core.path`, margin-model §8) and resolves, in
time order, every resting order's fill, every isolated leg reaching its LP and the first
instant the cross condition holds. It decides *when*; the broker executes (fills through
backtrader's order machinery, liquidations through :mod:`liqbt.core.liquidation` plans).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import backtrader as bt

from liqbt import acceptance as acc
from liqbt import feedclock, fills
from liqbt.core import liquidation as liq
from liqbt.core import path as pth
from liqbt.core.account import Position
from liqbt.core.cross_bound import CrossBound

if TYPE_CHECKING:
    from liqbt.broker import MarginBroker

# (clock, kind: 0 trigger / 1 order, symbol, key, target, price)
Event = tuple[float, int, str, tuple[Any, ...], Any, float]


@dataclass(slots=True)
class Bar:
    """One symbol's bar inside a joint step: marks (O, H, L, C) and their range, then its paths
    and the orders its range can reach."""

    symbol: str
    data: Any
    marks: tuple[float, float, float, float]
    low: float = 0.0
    high: float = 0.0
    trade: pth.Path = (0.0, 0.0, 0.0, 0.0)
    mark: pth.Path = (0.0, 0.0, 0.0, 0.0)
    orders: Sequence[Any] = ()


def at(path: pth.Path, k: int, t: float) -> float:
    """Price of ``path`` at clock ``t`` inside segment ``k`` (exact at the segment ends)."""
    a, b = path[k], path[k + 1]
    t0 = pth.VERTEX_TIMES[k]
    if a == b or t <= t0:
        return a
    if t >= pth.VERTEX_TIMES[k + 1]:
        return b
    return a + (b - a) * (t - t0) * 3.0


def order_trigger(order: bt.Order, a: float, b: float, first: bool) -> tuple[float, float] | None:
    """(fraction along a→b, fill price) where ``order`` acts in a segment of its trade path,
    or ``None``; a NaN price means a stop-limit's stop was hit (it becomes a resting limit)."""
    exectype = order.exectype
    is_buy = order.isbuy()
    if exectype == bt.Order.Market:
        return (0.0, a) if first else None
    if exectype == bt.Order.Close:
        return None
    if exectype in acc.STOPS:
        return pth.crossing(a, b, order.created.price, rising=is_buy)
    if exectype in acc.STOP_LIMITS and not order.triggered:
        crossed = pth.crossing(a, b, order.created.price, rising=is_buy)
        if crossed is None:
            return None
        return (crossed[0], math.nan)  # trigger only: becomes a limit order
    level = order.created.pricelimit if exectype in acc.STOP_LIMITS else order.created.price
    return pth.crossing(a, b, level, rising=not is_buy)


class JointWalk:
    """Walks one step of the finest clock for a :class:`~liqbt.broker.MarginBroker`."""

    def __init__(self, broker: MarginBroker) -> None:
        self.broker = broker
        self.account = broker.account
        self.bound = CrossBound()
        self._breach_key: tuple[int, int] | None = None
        self._breach_possible = False
        self._lp_cache: dict[tuple[str, str], tuple[float | None, int]] = {}
        self._lp_version = -1
        self._lp_bar = -1
        self._lp_multi = False
        self.bar_no = 0
        self._lines: dict[Any, feedclock.FeedLines] = {}
        self._feed_order: dict[
            tuple[Any, ...], tuple[list[tuple[str, feedclock.FeedLines]], list[Bar]]] = {}
        self._stamps: list[float | None] = []
        self._stamp_feeds: list[tuple[str, feedclock.FeedLines]] = []
        self._clock_source = self._step_time  # bound once: one object less per step
        self.event_t: float | None = None  # clock of the event being executed, else None
        self.min_liquidation_distance = math.inf

    # --- the step -------------------------------------------------------------------------
    def step(self, datas: list[Any]) -> None:
        """Walk the new bars of ``datas`` on one clock ``t ∈ [0, 1]`` (margin-model §8).

        Symbols are visited in name order, never in feed order, so the outcome does not depend
        on the order markets were declared in. A symbol without a new bar in this step (a
        coarser timeframe) stays at its last mark: it is part of the account condition but
        does not move.
        """
        self.bar_no += 1
        if not datas:
            return
        broker, account = self.broker, self.account
        feeds, bars = self._feeds(datas)
        for (_, f), bar in zip(feeds, bars, strict=True):
            # each feed's Bar is reused from step to step (fewer objects for the collector)
            bar.marks = marks = f.mark_ohlc()
            bar.low, bar.high = min(marks), max(marks)
            bar.orders = ()
        # the step's time, made a datetime only when an event needs it
        self._stamps = [f.stamp() for _, f in feeds]
        self._stamp_feeds = feeds
        account.defer_clock(self._clock_source)
        for bar in bars:
            account.set_mark(bar.symbol, bar.marks[0])
        for (_, f), bar in zip(feeds, bars, strict=True):
            rate = f.funding_rate()
            if rate is not None and broker.legs_of(bar.data):
                account.apply_funding(bar.symbol, rate, bar.marks[0])
        pending = broker.pending
        reach = False
        if pending:
            for (_, f), bar in zip(feeds, bars, strict=True):
                bar.orders = broker.book.reachable(bar.data, pending, f.low[0], f.high[0])
                reach = reach or bool(bar.orders)
        trailing = self._trailing_orders([b.data for b in bars]) if broker.trailing else []
        if not reach and not self._trigger_possible(bars):
            # nothing can happen inside this step: skip the path walk (the hot path)
            for bar in bars:
                account.set_mark(bar.symbol, bar.marks[3])
            for bar in bars:
                legs = broker.legs_of(bar.data)
                if legs:
                    self._track_distance(legs, bar.low, bar.high)
            if trailing:
                self._trail(trailing)
            return
        mode = broker.p.intrabar
        for bar in bars:
            d = bar.data
            net = sum(p.size for p in broker.legs_of(d))
            first_high = pth.high_first(mode, d.open[0], d.close[0], net)
            bar.trade = pth.bar_path(d.open[0], d.high[0], d.low[0], d.close[0], first_high)
            bar.mark = pth.bar_path(*bar.marks, first_high)
        self._walk(bars)
        for bar in bars:
            account.set_mark(bar.symbol, bar.mark[3])
        for bar in bars:
            for order in bar.orders:
                if order.exectype == bt.Order.Close and order.alive():
                    self._try_close(order, bar.data)
        self._trail(trailing)
        for bar in bars:
            legs = broker.legs_of(bar.data)
            if legs:
                # the walked path holds the same four marks: the same range
                self._track_distance(legs, bar.low, bar.high)

    def _feeds(self, datas: list[Any]) -> tuple[list[tuple[str, feedclock.FeedLines]], list[Bar]]:
        """``(symbol, lines)`` of ``datas`` in symbol order and a :class:`Bar` for each
        (resolved once per set of feeds; the bars are refilled by every step)."""
        key = tuple(datas)
        cached = self._feed_order.get(key)
        if cached is None:
            lines = self._lines
            for d in datas:
                if d not in lines:
                    lines[d] = feedclock.FeedLines(d)
            feeds = sorted(
                ((self.broker.symbol_of(d), lines[d]) for d in datas), key=lambda x: x[0]
            )
            bars = [Bar(symbol, f.data, (0.0, 0.0, 0.0, 0.0)) for symbol, f in feeds]
            cached = self._feed_order[key] = (feeds, bars)
        return cached

    def _step_time(self) -> Any:
        """The latest of the step's bar times as a datetime (``None`` without any): the
        source of the account's clock (:meth:`Account.defer_clock`)."""
        times = []
        for stamp, (_, f) in zip(self._stamps, self._stamp_feeds, strict=True):
            if stamp is not None:
                t = feedclock.to_datetime(stamp, f.tz())
                if t is not None:
                    times.append(t)
        return max(times) if times else None

    def _try_close(self, order: bt.Order, data: Any) -> None:
        """A ``Close`` order fills at the close of its session's last bar, as in
        ``BackBroker._try_exec_close``: the first bar at or past the end of the session of the
        bar that created it (or, when a later bar reveals that the session ended, at the
        close noted on the last bar before)."""
        now = data.datetime[0]
        if now > order.created.dt and now >= order.dteos:
            price = data.close[0]
            if order.pannotated and now > order.dteos:
                price = order.pannotated
            fills.fill(self.broker, order, price, maker=False)
            return
        order.pannotated = data.close[0]

    def _trailing_orders(self, datas: list[Any]) -> list[bt.Order]:
        """Trailing stops that ``BackBroker`` would try this step through their stop: active,
        past their creation bar, on a feed with a new bar (a triggered ``StopTrailLimit`` rests
        as a plain limit and no longer trails)."""
        return [
            o for o in self.broker.pending
            if o is not None and o.exectype in acc.TRAILING and o.active() and not o.triggered
            and any(o.data is d for d in datas) and o.data.datetime[0] > o.created.dt
        ]

    @staticmethod
    def _trail(orders: list[bt.Order]) -> None:
        """Move trailing stops after the bar: ``order.trailadjust(close)`` for every trailing
        order still alive (backtrader moves the stop, and a ``StopTrailLimit``'s limit with
        it, only towards the price)."""
        for order in orders:
            if order.alive():
                order.trailadjust(order.data.close[0])

    # --- what can happen ------------------------------------------------------------------
    def _trigger_possible(self, bars: list[Bar]) -> bool:
        """Whether a liquidation or top-up can happen in this step: an isolated LP inside its
        bar's mark range, or the cross condition failing at the worst combination of marks."""
        for bar in bars:
            low, high = bar.low, bar.high
            for pos in self.broker.legs_of(bar.data):
                if pos.margin_mode != "isolated":
                    continue
                lp, direction = self.liquidation_price(pos)
                if lp is not None and ((low <= lp) if direction < 0 else (high >= lp)):
                    return True
        return self._cross_may_breach(bars)

    def _cross_may_breach(self, bars: list[Bar]) -> bool:
        """Whether the cross condition can hold anywhere in this step with the account as it is
        now (:class:`~liqbt.core.cross_bound.CrossBound`); cached until the account changes."""
        key = (self.account.version, self.bar_no)
        if self._breach_key != key:
            ranges = {bar.symbol: (bar.low, bar.high) for bar in bars}
            self._breach_key = key
            self._breach_possible = self.bound.may_breach(self.account, ranges)
        return self._breach_possible

    def _walk(self, bars: list[Bar]) -> None:
        """Resolve fills, top-ups and liquidations of every symbol in time order on the clock.

        On each segment ``[t_k, t_k+1]`` (every path is linear there) the next event is the
        earliest of: a resting order's price crossed on its symbol's trade path, an isolated
        leg's mark reaching its LP, and the first instant the cross condition holds on the
        joint mark path (exact root, tier breakpoints included). Ties: liquidations before
        fills, then symbol name, then order reference.
        """
        broker, account = self.broker, self.account
        t = 0.0
        skip: dict[tuple[Any, ...], float] = {}
        for k in range(3):
            t_end = pth.VERTEX_TIMES[k + 1]
            for _ in range(10_000):  # bounded: each pass consumes an order or a trigger
                event = self._next_event(bars, k, t, t_end, skip)
                if event is None:
                    break
                t_event, kind, _, key, target, price = event
                t = t_event
                for bar in bars:
                    account.set_mark(bar.symbol, at(bar.mark, k, t))
                before = (account.version, len(broker.pending))
                self.event_t = t
                if kind == 1:
                    if math.isnan(price):  # a stop-limit's stop was hit: now a resting limit
                        target.triggered = True
                        broker.book.changed()
                    else:
                        fills.fill(broker, target, price, maker=target.exectype == bt.Order.Limit)
                elif target is None:
                    broker.liquidate(liq.cross_plan(account))
                else:
                    broker.liquidate(liq.isolated_plan(account, target, price))
                stop_triggered = kind == 1 and math.isnan(price)
                if (account.version, len(broker.pending)) == before and not stop_triggered:
                    skip[key] = t  # nothing changed: do not fire again at this instant
            t = max(t, t_end)
        self.event_t = None

    def _next_event(
        self, bars: list[Bar], k: int, t: float, t_end: float, skip: dict[tuple[Any, ...], float]
    ) -> Event | None:
        """The earliest event in ``[t, t_end]`` of segment ``k`` (see :meth:`_walk`)."""
        width = t_end - t
        best: Event | None = None
        best_rank: tuple[float, int, str, Any] | None = None
        candidates: list[Event] = []
        for bar in bars:
            a, b = at(bar.trade, k, t), bar.trade[k + 1]
            for order in bar.orders:
                if not order.alive():
                    continue
                hit = order_trigger(order, a, b, t == 0.0)
                if hit is not None:
                    candidates.append((t + hit[0] * width, 1, bar.symbol, ("order", order.ref),
                                       order, hit[1]))
            ma, mb = at(bar.mark, k, t), bar.mark[k + 1]
            for pos in self.broker.legs_of(bar.data):
                if pos.margin_mode != "isolated":
                    continue
                lp, direction = self.liquidation_price(pos)
                if lp is None:
                    continue
                hit = pth.crossing(ma, mb, lp, rising=direction > 0)
                if hit is not None:
                    candidates.append((t + hit[0] * width, 0, bar.symbol,
                                       ("leg", pos.symbol, pos.leg), pos, hit[1]))
        if self._cross_may_breach(bars):
            hit_t = self._cross_first_breach(bars, k, t, t_end)
            if hit_t is not None:
                candidates.append((hit_t, 0, "", ("cross", 0), None, math.nan))
        for cand in candidates:
            if cand[0] <= skip.get(cand[3], -1.0):
                continue  # fired at this instant without changing anything
            rank = (cand[0], cand[1], cand[2], cand[3][-1])
            if best_rank is None or rank < best_rank:
                best, best_rank = cand, rank
        return best

    def _cross_first_breach(self, bars: list[Bar], k: int, t: float, t_end: float
                            ) -> float | None:
        """First clock value in ``[t, t_end]`` where the cross condition holds on the joint
        mark path (margin-model §8), or ``None``."""
        account = self.account
        cross_symbols = {p.symbol for p in account.cross_positions()}
        moving = [b for b in bars if b.symbol in cross_symbols]
        breakpoints: list[float] = []
        for bar in moving:
            ma, mb = at(bar.mark, k, t), bar.mark[k + 1]
            sizes = [p.size for p in self.broker.legs_of(bar.data)
                     if p.margin_mode == "cross"]
            caps = [tier.cap for tier in account.market(bar.symbol).tiers.tiers]
            breakpoints += [t + f * (t_end - t) for f in pth.tier_breakpoints(ma, mb, sizes, caps)]

        def excess(when: float) -> float:
            for bar in moving:
                account.set_mark(bar.symbol, at(bar.mark, k, when))
            return account.cross_excess()

        tol = liq.cross_tolerance(account)
        if not moving:
            return t if excess(t) <= tol else None
        return pth.first_nonpositive(t, t_end, excess, breakpoints, tol)

    # --- liquidation prices and distance ----------------------------------------------------
    def liquidation_price(self, pos: Position) -> tuple[float | None, int]:
        """LP of a leg, cached until the account changes. A cross leg's LP also depends on the
        other cross symbols' marks: with several cross symbols it is cached for the step only
        (it serves the distance statistic; the cross trigger itself is the joint walk)."""
        account = self.account
        if account.version != self._lp_version or (
            self._lp_bar != self.bar_no and self._lp_multi
        ):
            self._lp_cache.clear()
            self._lp_version = account.version
            self._lp_multi = False
        self._lp_bar = self.bar_no
        key = (pos.symbol, pos.leg)
        cached = self._lp_cache.get(key)
        if cached is None:
            cached = self._lp_cache[key] = account.liquidation_price(pos)
            if pos.margin_mode == "cross" and any(
                p.symbol != pos.symbol for p in account.cross_positions()
            ):
                self._lp_multi = True
        return cached

    def _track_distance(self, legs: tuple[Position, ...], low: float, high: float) -> None:
        """Smallest distance (fraction of price) between the adverse extreme of the bar's mark
        range ``[low, high]`` and LP."""
        for pos in legs:
            lp, direction = self.liquidation_price(pos)
            if lp is None:
                continue
            extreme = low if direction < 0 else high
            distance = (extreme - lp) / extreme if direction < 0 else (lp - extreme) / extreme
            self.min_liquidation_distance = min(self.min_liquidation_distance, distance)
