"""DCA bot (3Commas-style safety-order ladder) for ``MarginBroker``.

A cycle: when the entry filter allows (and ``cooldown`` bars after the last cycle), a market
base order; once it fills, every safety order of :func:`liqbt.core.ladders.dca_ladder` rests as a
limit (as 3Commas places them) and a reduce-only take-profit limit sits at
``average × (1 ± take_profit / 100)``, moved after each safety fill. The take-profit fill
cancels the remaining safety orders and ends the cycle; an optional stop loss (checked on bar
closes, closed at the next open) ends it too.

A refused safety order or take profit is retried on later bars (``refused_orders`` in the
summary); the bot stops for good after a liquidation, a wipeout or a refused base order (see
:mod:`strategies.base`).

Replaced take profits: a take profit replaced in the bar it was placed (several safety orders
fill in one bar, or the stop loss fires) is only cancelled once the broker accepts it, after the
next bar's walk (:meth:`strategies.base.MarginAwareStrategy.cancel_order`), so it can still
fill. Any take-profit fill of the bot counts: one that leaves the position flat (or the
current take profit) ends the cycle at its fill price exactly as the current one would (the
cycle's PnL, the remaining orders cancelled, cooldown and ``max_cycles``); one that only
reduces the position banks its PnL in the cycle (``side × size × (fill − average)``, USDT,
average of the position at the fill) and the bot re-places its take profit for the remaining
size, unless the current one is still live for exactly that size; the cycle record's ``size``
is then what the last exit closed, its ``pnl`` includes the banked part. A take profit capped
at a smaller position (after a partial liquidation) counts the same way.

Entry filter (``ta`` library, computed once over the feed's close array in ``start`` — every
``ta`` indicator used here is causal, so the value at bar ``t`` only uses closes up to ``t``):

* ``rsi``: long when RSI(``rsi_period``) < ``rsi_below``; short when RSI > 100 − ``rsi_below``.
* ``bollinger``: long when the close is below the lower band (``bb_period``, ``bb_dev``), short
  when above the upper band.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import backtrader as bt
import pandas as pd

from liqbt.core import choices, ladders
from liqbt.core.choices import ENTRY_FILTERS
from liqbt.core.params import Param, bt_params, resolved

from .base import VERBOSE, MarginAwareStrategy, MarketContext


def entry_signal(closes: Sequence[float], entry_filter: str, side: int, rsi_period: int,
                 rsi_below: float, bb_period: int, bb_dev: float) -> list[bool]:
    """Per-bar entry permission of the DCA entry filter, from the ``ta`` library.

    ``rsi``: long (``side`` 1) when RSI(``rsi_period``) < ``rsi_below``, short (``side`` −1)
    when RSI > 100 − ``rsi_below``. ``bollinger``: long when the close is below the lower band
    (``bb_period``, ``bb_dev`` standard deviations), short when above the upper band. Both are
    causal (bar ``t`` uses closes up to ``t``); NaN (warm-up) never allows an entry. Shared by
    the bot and the fast engine (:mod:`liqbt.fast`), which precomputes it once per data window.
    """
    import ta  # imported here: only the filters need it

    close = pd.Series(list(closes), dtype=float)
    if entry_filter == "rsi":
        rsi = ta.momentum.RSIIndicator(close, window=int(rsi_period)).rsi()
        ok = rsi < rsi_below if side > 0 else rsi > 100 - rsi_below
    elif entry_filter == "bollinger":
        bands = ta.volatility.BollingerBands(close, window=int(bb_period),
                                             window_dev=float(bb_dev))
        ok = close < bands.bollinger_lband() if side > 0 else close > bands.bollinger_hband()
    else:
        return [True] * len(close)
    return [bool(v) for v in ok.fillna(False)]


def base_order_too_small(base_order: float, price: float, size_step: float) -> str:
    """The stop reason of a base order (USDT) that rounds to zero size steps at ``price``."""
    return (f"base order {base_order:g} USDT at {price:g} rounds to no size step "
            f"({size_step:g}): raise base_order")


class DcaStrategy(MarginAwareStrategy):
    """DCA bot. See the module docstring and :attr:`parameters`.

    Attributes
    ----------
    launch_report
        After the first base fill: ``ladder`` (the :class:`liqbt.core.ladders.LadderOrder`
        records), ``entry_price``, ``leverage``, ``margin_mode``, ``total_notional``,
        ``estimated_liquidation_price_all_filled``, ``liquidation_price_after_each_fill``
        and ``first_unreachable_safety_order`` (the first safety order the position is
        liquidated before reaching; ``None`` when the whole ladder can fill).
    cycles
        One dict per finished cycle: ``start``, ``end``, ``entry``, ``average``, ``exit``,
        ``safety_filled``, ``size``, ``pnl`` (gross, USDT), ``reason`` (``take_profit`` or
        ``stop_loss``).
    """

    parameters: ClassVar[tuple[Param, ...]] = (
        Param("direction", "choice", "long", choices=choices.DIRECTIONS,
              doc="side of every cycle"),
        Param("base_order", "number", 100.0, (0, None), "USDT notional",
              "market order opening a cycle", low_open=True),
        Param("safety_order", "number", 100.0, (0, None), "USDT notional",
              "first safety order (limit)", low_open=True),
        Param("max_safety_orders", "int", 5, (0, 100), "count", "safety orders per cycle"),
        Param("price_deviation", "number", 1.0, (0, 100), "%",
              "deviation of the first safety order from the entry", low_open=True,
              high_open=True),
        Param("step_scale", "number", 1.0, (0, None), "factor",
              "each next deviation step is this times the previous", low_open=True),
        Param("volume_scale", "number", 1.0, (0, None), "factor",
              "each next safety order is this times the previous", low_open=True),
        Param("take_profit", "number", 1.0, (0, None), "%",
              "take-profit distance from the average entry", low_open=True, required=True),
        Param("stop_loss", "number", None, (0, 100), "%",
              "stop-loss distance from the average entry (bar close)", low_open=True,
              high_open=True),
        Param("cooldown", "int", 0, (0, None), "bars",
              "bars from the closing fill to the next base order (0: same bar)"),
        Param("max_cycles", "int", 0, (0, None), "count", "stop after this many cycles",
              default_text="0 (unlimited)"),
        Param("entry_filter", "choice", "none", choices=ENTRY_FILTERS,
              doc="condition for a new base order (ta library)"),
        Param("rsi_period", "int", 14, (2, None), "bars", "RSI window"),
        Param("rsi_below", "number", 30.0, (0, 100), "RSI points",
              "long entry when RSI is below (short: above 100 − it)"),
        Param("bb_period", "int", 20, (2, None), "bars", "Bollinger window"),
        Param("bb_dev", "number", 2.0, (0, None), "standard deviations",
              "Bollinger band width", low_open=True),
        VERBOSE,
    )
    params: Any = bt_params(parameters)

    @classmethod
    def relations(cls, values: Mapping[str, Any], prefix: str = "") -> list[str]:
        """The ladder must be buildable (the core's dca_ladder decides: e.g. a long ladder
        whose deviations reach 100 % has safety orders at or below zero)."""
        needed = ("base_order", "safety_order", "max_safety_orders", "price_deviation",
                  "step_scale", "volume_scale", "direction")
        if any(values.get(k) is None for k in needed):
            return []
        try:
            ladders.dca_ladder(values["base_order"], values["safety_order"],
                               values["max_safety_orders"], values["price_deviation"],
                               values["step_scale"], values["volume_scale"], 1.0,
                               values["direction"])
        except ValueError as exc:
            return [f"{prefix}price_deviation = {values['price_deviation']!r}, "
                    f"step_scale = {values['step_scale']!r}: {exc}"]
        return []

    @classmethod
    def account_checks(cls, values: Mapping[str, Any], balance: float,
                       markets: Sequence[MarketContext], prefix: str = "") -> list[str]:
        """The whole ladder (base + every safety order) within the tier allowed at the
        market's leverage."""
        problems = super().account_checks(values, balance, markets, prefix)
        full = resolved(cls.parameters, values)
        ladder = ladders.dca_ladder(full["base_order"], full["safety_order"],
                                    full["max_safety_orders"], full["price_deviation"],
                                    full["step_scale"], full["volume_scale"], 1.0,
                                    full["direction"])
        for m in markets[:1]:
            problems += cls.notional_cap_problem(
                f"{prefix}base_order + {full['max_safety_orders']} safety orders",
                ladder[-1].total_notional, m.leverage, m)
        return problems

    def __init__(self) -> None:
        super().__init__()
        p = self.p
        self.side = 1 if p.direction == "long" else -1
        self.cycles: list[dict[str, Any]] = []
        self.ladder: tuple[ladders.LadderOrder, ...] = ()
        self.in_cycle = False
        self.finished = False
        self._next_start = 0  # first bar number (len(self)) allowed to open a cycle
        self._base_order: bt.Order | None = None
        self._safety: dict[int, int] = {}  # order ref -> safety index
        # refused safety orders (index) and take profit, retried on later bars
        self._retry_safety: set[int] = set()
        self._retry_tp = False
        self._refused_refs: set[int] = set()
        self.refused_orders = 0
        self._tp: bt.Order | None = None
        # PnL (USDT) of take-profit fills that only reduced the position, in this cycle
        self._partial_pnl = 0.0
        self._sl_order: bt.Order | None = None
        self._cycle: dict[str, Any] = {}
        self._signal: list[bool] | None = None

    # --- entry filter --------------------------------------------------------------------
    def start(self) -> None:
        """Precompute the entry filter on the preloaded closes (causal indicators)."""
        closes = list(self.data.close.array)
        if self.p.entry_filter != "none" and closes:
            self._signal = self._filter_signal(closes)

    def _filter_signal(self, closes: list[float]) -> list[bool]:
        """Per-bar entry permission from ``ta`` (:func:`entry_signal`)."""
        p = self.p
        return entry_signal(closes, p.entry_filter, self.side, int(p.rsi_period),
                            float(p.rsi_below), int(p.bb_period), float(p.bb_dev))

    def _entry_allowed(self) -> bool:
        if self.p.entry_filter == "none":
            return True
        index = len(self.data) - 1
        if self._signal is None or index >= len(self._signal):
            # not preloaded (live feed): recompute on the closes seen so far
            seen = [self.data.close[-i] for i in range(len(self.data) - 1, -1, -1)]
            return self._filter_signal(seen)[-1]
        return self._signal[index]

    # --- life cycle ----------------------------------------------------------------------
    def next(self) -> None:
        if self.stopped_reason is not None or self.finished:
            return
        if self.in_cycle:
            self._check_stop_loss(float(self.data.close[0]))
            if self._sl_order is None:
                self._retry_refused(float(self.data.close[0]))
            return
        if self._base_order is not None or len(self) < self._next_start:
            return
        if self.p.max_cycles and len(self.cycles) >= self.p.max_cycles:
            self.finished = True
            self.log(f"finished after {len(self.cycles)} cycles")
            return
        if not self._entry_allowed():
            return
        price = float(self.data.close[0])
        size = self.order_size(self.p.base_order, price)
        if size <= 0:
            # a base order that rounds to no size step: nothing to send (backtrader would
            # not create the order), the bot cannot trade at this price
            self.stop_bot(base_order_too_small(self.p.base_order, price,
                                               self.market.spec.size_step),
                          kind="below_minimum")
            return
        self._base_order = self.place(self.side * size, None, dca="base")
        self.log(f"base order {self.side * size:g} at market (close {price:g})")

    @staticmethod
    def _same(order: bt.Order, mine: bt.Order | None) -> bool:
        # notifications carry clones of the broker's orders: compare refs, not identity
        return mine is not None and order.ref == mine.ref

    def on_fill(self, order: bt.Order) -> None:
        if self._same(order, self._base_order):
            self._on_base_fill(order)
        elif order.ref in self._safety:
            self._on_safety_fill(order)
        elif self._same(order, self._sl_order):
            self._end_cycle(float(order.executed.price), "stop_loss")
        elif order.info.get("dca") == "take_profit":
            self._on_take_profit_fill(order)

    def on_cancel(self, order: bt.Order) -> None:
        self._safety.pop(order.ref, None)
        if order.info.get("dca") == "take_profit" and order.executed.size:
            # a take profit capped at a smaller position: filled for the rest, then cancelled
            self._on_take_profit_fill(order)

    def _on_take_profit_fill(self, order: bt.Order) -> None:
        """A fill of one of the bot's take profits, the current one or one replaced while
        still submitted (see the module docstring)."""
        if not self.in_cycle:
            return
        price = float(order.executed.price)
        if self._same(order, self._tp) or not self.position_size:
            self._end_cycle(price, "take_profit")
            return
        average = float(self.getposition(self.data).price)
        self._partial_pnl += self.side * abs(float(order.executed.size)) * (price - average)
        self.log(f"replaced take profit filled at {price:g}, position {self.position_size:g}")
        tp = self._tp
        if tp is None or not tp.alive() or abs(tp.size) != abs(self.position_size):
            self._place_take_profit()

    def on_refused(self, order_ref: int | None, reason: str) -> bool:
        """A refused safety order or take profit is retried on later bars (a refused base
        order stops the bot: the deal never opened)."""
        if order_ref is None:
            return False
        if order_ref in self._refused_refs:
            return True
        if order_ref in self._safety:
            self._retry_safety.add(self._safety.pop(order_ref))
        elif self._tp is not None and order_ref == self._tp.ref:
            self._tp = None
            self._retry_tp = True
        else:
            return False
        self._refused_refs.add(order_ref)
        self.refused_orders += 1
        self.log(f"order refused, retried on later bars: {reason}")
        return True

    def _retry_refused(self, close: float) -> None:
        """Place refused safety orders again while they still rest beyond ``close``, and a
        refused take profit."""
        for index in sorted(self._retry_safety):
            rung = self.ladder[index]
            if (rung.price - close) * self.side < 0:
                size = self.order_size(rung.notional, rung.price)
                self._retry_safety.discard(index)
                if size > 0:
                    order = self.place(self.side * size, rung.price, dca=f"safety{index}")
                    self._safety[order.ref] = index
        if self._retry_tp:
            self._retry_tp = False
            self._place_take_profit()

    def _on_base_fill(self, order: bt.Order) -> None:
        p = self.p
        entry = float(order.executed.price)
        self._base_order = None
        self.in_cycle = True
        self.ladder = ladders.dca_ladder(
            p.base_order, p.safety_order, p.max_safety_orders, p.price_deviation,
            p.step_scale, p.volume_scale, entry, p.direction,
        )
        self._cycle = {"start": self.data.datetime.datetime(0), "entry": entry,
                       "safety_filled": 0}
        self._partial_pnl = 0.0
        if not self.launch_report:
            self._report_launch(entry)
        for rung in self.ladder[1:]:
            size = self.order_size(rung.notional, rung.price)
            if size <= 0 or self.stopped_reason is not None:
                continue
            order_s = self.place(self.side * size, rung.price, dca=f"safety{rung.index}")
            self._safety[order_s.ref] = rung.index
        self._place_take_profit()

    def _report_launch(self, entry: float) -> None:
        market = self.market
        steps = ladders.ladder_liquidation_prices(
            self.ladder, self.p.direction, **self.lp_settings()
        )
        lp = steps[-1]  # after the whole ladder: the LP "if every order fills"
        unreachable = ladders.first_unreachable_order(self.ladder, steps, self.p.direction)
        last = self.ladder[-1]
        self.launch_report = {
            "direction": self.p.direction,
            "entry_price": entry,
            "ladder": self.ladder,
            "leverage": market.leverage,
            "margin_mode": market.margin_mode,
            "total_notional": last.total_notional,
            "average_price_all_filled": last.average_price,
            "estimated_liquidation_price_all_filled": lp,
            "liquidation_price_after_each_fill": steps,
            "first_unreachable_safety_order": unreachable,
            "take_profit_pct": float(self.p.take_profit),
        }
        lp_text = "none" if lp is None else f"{lp:,.2f}"
        self.log(
            f"ladder from {entry:g}: {len(self.ladder) - 1} safety orders down to "
            f"{last.price:,.2f}, {last.total_notional:,.2f} USDT if all fill, average "
            f"{last.average_price:,.2f}, estimated LP if all fill {lp_text} "
            f"({market.margin_mode}, {market.leverage:g}x)"
        )
        if unreachable is not None:
            self.log(
                f"warning: liquidated at {steps[unreachable - 1]:,.2f} before safety order "
                f"{unreachable} at {self.ladder[unreachable].price:,.2f} can fill"
            )

    def _on_safety_fill(self, order: bt.Order) -> None:
        index = self._safety.pop(order.ref)
        self._cycle["safety_filled"] += 1
        self.log(f"safety order {index} filled at {order.executed.price:g}")
        self._place_take_profit()

    def _place_take_profit(self) -> None:
        """(Re)place the reduce-only take profit for the whole position at avg × (1 ± tp)."""
        if self._tp is not None:
            self.cancel_order(self._tp)
            self._tp = None
        size = self.position_size
        if not size or self.stopped_reason is not None:
            return
        average = float(self.getposition(self.data).price)
        # remembered for the cycle record: the position is flat once the TP has filled
        self._cycle.update(average=average, size=abs(size))
        price = average * (1 + self.side * self.p.take_profit / 100)
        self._tp = self.place(-size, price, reduce_only=True, dca="take_profit")

    def _check_stop_loss(self, close: float) -> None:
        if self.p.stop_loss is None or self._sl_order is not None or not self.position_size:
            return
        average = float(self.getposition(self.data).price)
        level = average * (1 - self.side * self.p.stop_loss / 100)
        if (close - level) * self.side <= 0:
            self.log(f"stop loss: close {close:g} beyond {level:,.2f}")
            self._cancel_cycle_orders()
            self._sl_order = self.place(-self.position_size, None, reduce_only=True,
                                        dca="stop_loss")

    def _cancel_cycle_orders(self) -> None:
        for ref in list(self._safety):
            order = self.live_orders.get(ref)
            if order is not None:
                self.cancel_order(order)
        self._safety.clear()
        self._retry_safety.clear()
        self._retry_tp = False
        if self._tp is not None:
            self.cancel_order(self._tp)
            self._tp = None

    def _end_cycle(self, exit_price: float, reason: str) -> None:
        self._cancel_cycle_orders()
        self._sl_order = None
        self.in_cycle = False
        cycle = self._cycle
        average, size = cycle.get("average", exit_price), cycle.get("size", 0.0)
        cycle.update(
            end=self.data.datetime.datetime(0), exit=exit_price,
            pnl=self._partial_pnl + self.side * size * (exit_price - average), reason=reason,
        )
        self._partial_pnl = 0.0
        self.cycles.append(cycle)
        self._cycle = {}
        # cooldown counts bars from the bar of the closing fill; 0 = a new base order in
        # next() of that same bar (it fills at the next open)
        self._next_start = len(self) + int(self.p.cooldown)
        self.log(f"cycle {len(self.cycles)} closed by {reason} at {exit_price:g}")

    def open_deal(self) -> dict[str, Any] | None:
        """The cycle still open when the run ended (liquidated or cut by the data's end), as
        far as it got (``start``, ``entry``, ``safety_filled``, ``average``, ``size``)."""
        return dict(self._cycle) if self.in_cycle and self._cycle else None

    def stop(self) -> None:
        """End of the run: log the results."""
        pnl = sum(c["pnl"] for c in self.cycles)
        self.log(
            f"{len(self.cycles)} cycles, gross cycle PnL {pnl:,.2f} USDT, {self.equity_text()}"
        )

    def summary(self) -> dict[str, Any]:
        """Results: cycles, PnL, fees, position, equity and stop reason."""
        return {
            "cycles": len(self.cycles),
            "cycle_pnl": sum(c["pnl"] for c in self.cycles),
            "refused_orders": self.refused_orders,
            **self.account_summary(),
            "finished": self.finished,
        }
