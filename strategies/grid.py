"""Futures grid bot (Binance/OKX futures grid behaviour) for ``MarginBroker``.

At launch the bot draws ``grids + 1`` lines between ``lower`` and ``upper``, computes one equal
base quantity per grid (:func:`liqbt.core.ladders.grid_quantity`) and places the launch orders
of :func:`liqbt.core.ladders.grid_plan`:

* ``long``: market-buys the quantity of the lines above the price, buy limits below, reduce-only
  sell limits above;
* ``short``: the mirror image;
* ``neutral``: starts flat; buy limits below (opening long), sell limits above (opening short).

Each fill is replaced by its counter-order one line away (a buy at line ``i`` by a sell at
``i + 1``, a sell at ``i`` by a buy at ``i − 1``); a closing fill completes a pair and books
``quantity × (line gap)`` of grid profit (gross of fees).

The grid keeps managing (the lines it holds always match its state): the bot's state is the set
of lines that should hold an order (line → side); after every bar it re-syncs the broker to that
state, placing the order of every line that has none (an order cancelled outside the bot, or
refused) as soon as it is a resting order again (a buy line below the close, a sell line above).
A refused grid order (margin, minimum, tier cap) does **not** stop the bot: it is retried on
later bars, as exchange grid bots do; ``refused_orders`` and ``missing_lines`` (in
``summary()`` and the run's ``bot`` view) report it. A refused launch market order stops the
bot (kind ``order_refused``): the grid never opened.

Simplifications (stated, not hidden): a counter-order is placed when the fill is notified, so it
can fill from the next bar on, never inside the bar of the fill; ``stop_loss``,
``take_profit`` and ``out_of_range`` are checked on bar closes and close with a market order at
the next open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import backtrader as bt

from liqbt.core import choices, ladders
from liqbt.core.params import Param, bt_params, resolved

from .base import VERBOSE, MarginAwareStrategy, MarketContext


class GridStrategy(MarginAwareStrategy):
    """Grid bot. See the module docstring and :attr:`parameters` for the parameters.

    Attributes
    ----------
    launch_report
        ``direction, levels, quantity, reference_price, investment, leverage, margin_mode,
        estimated_liquidation_price`` (the LP if every opening order on the adverse side
        fills, :func:`liqbt.core.ladders.grid_liquidation_price`).
    grid_profit
        Realized grid profit of completed pairs, USDT, gross of fees.
    pairs
        Number of completed buy/sell pairs.
    stopped_reason
        Why the bot stopped (``None`` while running).
    """

    parameters: ClassVar[tuple[Param, ...]] = (
        Param("direction", "choice", "long", choices=choices.GRID_DIRECTIONS,
              doc="grid direction"),
        Param("lower", "number", None, (0, None), "USDT", "lowest grid line", required=True,
              low_open=True),
        Param("upper", "number", None, (0, None), "USDT", "highest grid line", required=True,
              low_open=True),
        Param("grids", "int", 10, (1, 1000), "count",
              "number of grid intervals (grids + 1 lines)"),
        Param("spacing", "choice", "arithmetic", choices=choices.SPACINGS,
              doc="equal price gaps or equal ratios"),
        Param("investment", "number", None, (0, None), "USDT", "margin committed to the grid",
              low_open=True, default_text="all available balance at launch"),
        Param("leverage", "number", None, (1, None), "x", "leverage used to size the grid",
              default_text="the broker market's leverage"),
        Param("trigger_price", "number", None, (0, None), "USDT",
              "launch only once the price crosses this level", low_open=True),
        Param("stop_loss", "number", None, (0, None), "USDT",
              "close everything and stop when the close reaches it (from the launch side)",
              low_open=True),
        Param("take_profit", "number", None, (0, None), "USDT",
              "close everything and stop when the close reaches it (from the launch side)",
              low_open=True),
        Param("out_of_range", "choice", "stay", choices=choices.OUT_OF_RANGE,
              doc="on a close outside [lower, upper]: keep the orders or close everything "
                  "and stop"),
        Param("quantity_rule", "choice", "levels", choices=choices.QUANTITY_RULES,
              doc="quantity per grid = investment × leverage / Σ order-line prices, or / "
                  "(grids × launch price)"),
        VERBOSE,
    )
    params: Any = bt_params(parameters)

    @classmethod
    def relations(cls, values: Mapping[str, Any], prefix: str = "") -> list[str]:
        """``lower < upper``."""
        lower, upper = values.get("lower"), values.get("upper")
        if lower is not None and upper is not None and lower >= upper:
            return [f"{prefix}lower = {lower!r} must be below {prefix}upper = {upper!r}"]
        return []

    @classmethod
    def account_checks(cls, values: Mapping[str, Any], balance: float,
                       markets: Sequence[MarketContext], prefix: str = "") -> list[str]:
        """Investment within the balance; the full grid's notional (investment × leverage)
        within the tier allowed at that leverage."""
        problems = super().account_checks(values, balance, markets, prefix)
        full = resolved(cls.parameters, values)
        investment = full["investment"]
        if investment is not None and investment > balance:
            problems.append(f"{prefix}investment = {investment:g} is above account.balance = "
                            f"{balance:g}")
        base = min(investment if investment is not None else balance, balance)
        for m in markets[:1]:
            leverage = full["leverage"] or m.leverage
            problems += cls.notional_cap_problem(
                f"{prefix}investment = {base:g} × leverage", base * leverage, leverage, m)
        return problems

    def __init__(self) -> None:
        super().__init__()
        p = self.p
        self.levels: tuple[float, ...] = ladders.grid_levels(
            float(p.lower), float(p.upper), int(p.grids), p.spacing
        )
        self.quantity = 0.0
        self.launched = False
        self.grid_profit = 0.0
        self.pairs = 0
        # order ref -> (line index, opening?) of the grid's limit orders
        self._grid_orders: dict[int, tuple[int, bool]] = {}
        # the grid's state: line index -> (buy?, pair_ref) of the order the line should hold
        self.wanted: dict[int, tuple[bool, int | None]] = {}
        # line index -> ref of the live order holding it
        self._line_order: dict[int, int] = {}
        self._refused_refs: set[int] = set()
        self.refused_orders = 0
        self.last_refusal: str | None = None
        self._start_level = 0
        self._launch_price = 0.0
        self._prev_close: float | None = None
        # False after any change of the grid's state; True once a resync found every wanted
        # line holding its order and no stray order: then the next bars need no resync
        self._in_sync = False

    # --- life cycle ----------------------------------------------------------------------
    def next(self) -> None:
        close = float(self.data.close[0])
        prev, self._prev_close = self._prev_close, close
        if self.stopped_reason is not None:
            return
        if not self.launched:
            if self._triggered(prev):
                self._launch(close)
            return
        self._check_exits(close)
        if self.stopped_reason is None and not self._in_sync:
            self.resync(close)

    def resync(self, close: float) -> None:
        """Place the order of every line of the grid's state that holds none (cancelled or
        refused), when it is a resting order at ``close``; cancel live grid orders no line
        wants.

        Skipped while the state is in sync (nothing changed since a resync that had nothing
        to do): the result would be the same, and the per-bar cost stays flat."""
        clean = True
        for ref, (level, _) in list(self._grid_orders.items()):
            if self.wanted.get(level) is None or self._line_order.get(level) != ref:
                clean = False
                order = self.live_orders.get(ref)
                if order is not None:
                    self.cancel_order(order)
        for level, (buy, pair_ref) in sorted(self.wanted.items()):
            if level in self._line_order:
                continue
            clean = False
            price = self.levels[level]
            if (buy and price < close) or (not buy and price > close):
                self._submit(level, buy, pair_ref)
        self._in_sync = clean

    def missing_lines(self) -> list[int]:
        """Lines of the grid's state holding no live order right now."""
        return sorted(set(self.wanted) - set(self._line_order))

    def _triggered(self, prev: float | None) -> bool:
        trigger = self.p.trigger_price
        if trigger is None:
            return True
        low, high = float(self.data.low[0]), float(self.data.high[0])
        if low <= trigger <= high:
            return True
        # a gap over the trigger between two bars also counts as crossing it
        close = float(self.data.close[0])
        return prev is not None and (prev - trigger) * (close - trigger) <= 0

    def _launch(self, price: float) -> None:
        p = self.p
        leverage = self.broker_leverage(p.leverage)
        investment = float(p.investment) if p.investment is not None else self.broker.get_cash()
        quantity = ladders.grid_quantity(
            investment, leverage, self.levels, price, p.quantity_rule,
            self.broker.profile.taker_fee,
        )
        # round down: never commit more margin than the investment
        step = self.market.spec.size_step
        if step:
            quantity = int(quantity / step + 1e-9) * step
        self.quantity = round(quantity, 12)
        plan = ladders.grid_plan(p.direction, self.levels, self.quantity, price)
        market = self.market
        lp = None
        if self.quantity > 0:
            lp = ladders.grid_liquidation_price(plan, **self.lp_settings())
        self.launch_report = {
            "direction": p.direction,
            "levels": self.levels,
            "quantity": self.quantity,
            "reference_price": price,
            "investment": investment,
            "leverage": leverage,
            "margin_mode": market.margin_mode,
            "estimated_liquidation_price": lp,
        }
        self.launched = True
        self._launch_price = price
        self._start_level = ladders.nearest_level(self.levels, price)
        lp_text = "none" if lp is None else f"{lp:,.2f}"
        self.log(
            f"launch {p.direction} grid {self.levels[0]:g}..{self.levels[-1]:g} x{p.grids} "
            f"({p.spacing}), {self.quantity:g} per grid, investment {investment:,.2f} USDT at "
            f"{leverage:g}x, estimated LP {lp_text}"
        )
        min_notional = market.spec.min_notional
        # a quantity that rounds to nothing cannot be sent (backtrader returns no order)
        if self.quantity <= 0 or self.quantity * self.levels[0] < min_notional:
            self.stop_bot(
                f"quantity per grid {self.quantity:g} × lowest line {self.levels[0]:g} is below "
                f"the minimum order value {min_notional:g} USDT: raise investment or leverage, "
                "or use fewer grids", kind="below_minimum"
            )
            return
        for order in plan.orders:
            if order.market:
                self.place(order.size, None)
            else:
                self._place_grid(order.level, order.size > 0)

    # --- orders --------------------------------------------------------------------------
    def _is_opening(self, level: int, buy: bool) -> bool:
        """Whether a grid order at ``level`` opens inventory (needs margin) or closes it."""
        direction = self.p.direction
        if direction == "long":
            return buy
        if direction == "short":
            return not buy
        # neutral: long inventory lives below the start line, short inventory above it
        return level < self._start_level if buy else level > self._start_level

    def _place_grid(self, level: int, buy: bool, pair_ref: int | None = None) -> None:
        self._in_sync = False
        if self.stopped_reason is not None:
            return
        self.wanted[level] = (buy, pair_ref)
        self._submit(level, buy, pair_ref)

    def _submit(self, level: int, buy: bool, pair_ref: int | None) -> None:
        self._in_sync = False
        opening = self._is_opening(level, buy)
        size = self.quantity if buy else -self.quantity
        # pair_ref: the fill this counter-order answers (trade lists match the pair on it)
        tags = {} if pair_ref is None else {"pair_ref": pair_ref}
        order = self.place(size, self.levels[level], reduce_only=not opening, grid_level=level,
                           **tags)
        self._grid_orders[order.ref] = (level, opening)
        self._line_order[level] = order.ref

    def on_fill(self, order: bt.Order) -> None:
        self._in_sync = False
        info = self._grid_orders.pop(order.ref, None)
        if info is None:
            return  # the launch market order or a closing order
        level, opening = info
        buy = order.isbuy()
        if self._line_order.get(level) == order.ref:
            del self._line_order[level]
            self.wanted.pop(level, None)
        if not opening:
            # closing fill: its counter-order opened one line away
            gap = abs(self.levels[level] - self.levels[level + (-1 if not buy else 1)])
            self.pairs += 1
            self.grid_profit += self.quantity * gap
        counter = level + 1 if buy else level - 1
        if 0 <= counter < len(self.levels):
            self._place_grid(counter, not buy, pair_ref=order.ref)

    def on_cancel(self, order: bt.Order) -> None:
        self._in_sync = False
        # the line stays in the grid's state: resync places it again
        info = self._grid_orders.pop(order.ref, None)
        if info is not None and self._line_order.get(info[0]) == order.ref:
            del self._line_order[info[0]]

    def on_refused(self, order_ref: int | None, reason: str) -> bool:
        """A refused grid line is retried on later bars (see the module docstring); a refused
        launch or closing market order stops the bot."""
        self._in_sync = False
        if order_ref in self._refused_refs:
            return True
        info = self._grid_orders.pop(order_ref, None) if order_ref is not None else None
        if info is None:
            return False
        self._refused_refs.add(order_ref)
        if self._line_order.get(info[0]) == order_ref:
            del self._line_order[info[0]]
        self.refused_orders += 1
        if self.last_refusal != reason:
            self.log(f"line {self.levels[info[0]]:g} refused, retried on later bars: {reason}")
        self.last_refusal = reason
        return True

    # --- exits ---------------------------------------------------------------------------
    def _reached(self, level: float | None, close: float) -> bool:
        """Whether ``close`` reached ``level`` coming from the launch price's side."""
        if level is None:
            return False
        return close <= level if level < self._launch_price else close >= level

    def _check_exits(self, close: float) -> None:
        p = self.p
        if self._reached(p.stop_loss, close):
            self.stop_bot(f"stop loss {p.stop_loss:g} reached (close {close:g})", True,
                          exit_reason="stop_loss")
        elif self._reached(p.take_profit, close):
            self.stop_bot(f"take profit {p.take_profit:g} reached (close {close:g})", True,
                          exit_reason="take_profit")
        elif p.out_of_range == "stop" and not self.levels[0] <= close <= self.levels[-1]:
            self.stop_bot(f"price {close:g} left the grid range", True,
                          exit_reason="out_of_range")

    def stop(self) -> None:
        """End of the run: log the grid's results."""
        self.log(
            f"pairs {self.pairs}, grid profit {self.grid_profit:,.2f} USDT, {self.equity_text()}"
        )

    def summary(self) -> dict[str, Any]:
        """Results: grid profit, pairs, fees, unrealized PnL, equity, stop reason."""
        return {"grid_profit": self.grid_profit, "pairs": self.pairs,
                "refused_orders": self.refused_orders, "last_refusal": self.last_refusal,
                "missing_lines": len(self.missing_lines()), **self.account_summary()}
