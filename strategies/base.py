"""Shared base for liqbt's bots: margin-event handling, stop bookkeeping, market lookups.

Every bot stops for good (``self.stopped_reason`` says why) after a liquidation of its market,
a wipeout of the account, or an order the broker rejected (margin, minimum notional, tier cap):
a real exchange bot is terminated in those cases too, and carrying on would place orders the
account cannot back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import backtrader as bt

from liqbt.core import events as ev
from liqbt.core import params as pm
from liqbt.core.account import MarketConfig
from liqbt.core.profile import SymbolSpec

#: Kinds of bot stop (``stopped_kind``): why the bot stopped managing its position.
STOP_KINDS: tuple[str, ...] = (
    "liquidated", "wiped_out", "order_refused", "below_minimum", "stop_loss", "take_profit",
    "out_of_range", "stop",
)

VERBOSE = pm.Param("verbose", "bool", False, doc="print the bot's log lines while running")


@dataclass(frozen=True)
class MarketContext:
    """What a config says about one market, for :meth:`MarginAwareStrategy.account_checks`."""

    symbol: str
    leverage: float
    margin_mode: str
    spec: SymbolSpec


class MarginAwareStrategy(bt.Strategy):
    """Base class: reacts to :mod:`liqbt.core.events` delivered by ``MarginBroker``.

    Attributes
    ----------
    stopped_reason
        ``None`` while the bot runs; a readable reason once it stopped.
    margin_events
        Every margin event the broker delivered, oldest first.
    launch_report
        Filled by the concrete bot at launch (levels, sizes, estimated LP...).
    log_lines
        What :meth:`log` printed (kept for tests and reports).
    """

    #: Declared parameters (:class:`liqbt.core.params.Param`); ``params`` is built from it.
    parameters: ClassVar[tuple[pm.Param, ...]] = (VERBOSE,)
    params: Any = pm.bt_params(parameters)

    def __init__(self) -> None:
        problems = self.parameter_problems(
            {p.name: getattr(self.p, p.name) for p in self.parameters}
        )
        if problems:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(problems))
        self.stopped_reason: str | None = None
        # what kind of stop (STOP_KINDS) and when (ISO bar time), for summaries/JSON/reports
        self.stopped_kind: str | None = None
        self.stopped_time: str | None = None
        self.margin_events: list[ev.Event] = []
        self.launch_report: dict[str, Any] = {}
        self.log_lines: list[str] = []
        # our resting/submitted orders by ref; orders cancelled before the broker accepted them
        # (BackBroker.cancel ignores orders still in its submitted queue) are cancelled on accept
        self.live_orders: dict[int, bt.Order] = {}
        self._cancel_on_accept: set[int] = set()

    # --- helpers -------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Record (and with ``verbose`` print) a line stamped with the bar time."""
        try:
            stamp = self.data.datetime.datetime(0).isoformat(sep=" ")
        except (IndexError, ValueError):
            stamp = "-"
        line = f"{stamp} {type(self).__name__}: {message}"
        self.log_lines.append(line)
        if self.p.verbose:
            print(line)

    @property
    def symbol(self) -> str:
        """The exchange symbol of ``self.data`` as the broker knows it."""
        return self.broker.symbol_of(self.data)

    @property
    def market(self) -> MarketConfig:
        """The broker's market settings of ``self.data`` (leverage, margin mode, tiers)."""
        return self.broker.account.market(self.symbol)

    # --- parameter declaration ---------------------------------------------------------
    @classmethod
    def relations(cls, values: Mapping[str, Any], prefix: str = "") -> list[str]:
        """Checks between parameters; ``values`` holds the individually valid ones only."""
        return []

    @classmethod
    def parameter_problems(cls, values: Mapping[str, Any], prefix: str = "") -> list[str]:
        """Every problem with ``values`` (unknown names, types, bounds, relations)."""
        return pm.validate(cls.parameters, values, prefix=prefix, owner=cls.__name__,
                           relations=cls.relations)

    @classmethod
    def account_checks(
        cls, values: Mapping[str, Any], balance: float, markets: Sequence[MarketContext],
        prefix: str = "",
    ) -> list[str]:
        """Cross-checks against the account and exchange rules (run at config load, once the
        parameters themselves are valid): a ``leverage`` parameter above a market's top
        tier. Bots extend this with their own rules."""
        full = pm.resolved(cls.parameters, values)
        problems = []
        leverage = full.get("leverage")
        for m in markets:
            top = m.spec.tiers.tiers[0].max_leverage
            if leverage is not None and leverage > top:
                problems.append(f"{prefix}leverage = {leverage:g} is above {top:g}, the tier "
                                f"maximum of {m.symbol}")
        return problems

    @staticmethod
    def notional_cap_problem(
        what: str, notional: float, leverage: float, market: MarketContext
    ) -> list[str]:
        """A position of ``notional`` USDT at ``leverage`` that the exchange's tier table
        (:meth:`liqbt.core.tiers.TierTable.max_notional`) does not allow."""
        cap = market.spec.tiers.max_notional(leverage)
        # cap 0: the leverage is above every tier, which the market check reports already
        if cap == 0 or notional <= cap * (1 + 1e-9):
            return []
        return [f"{what} is a position of {notional:,.0f} USDT at {leverage:g}x; "
                f"{market.symbol}'s tiers allow at most {cap:,.0f} USDT at that leverage "
                "(lower the leverage or the amount)"]

    def lp_settings(self) -> dict[str, Any]:
        """The margin keywords of :func:`liqbt.core.ladders.ladder_liquidation_price` (and
        friends) for ``self.data``: the broker's market (leverage, tiers, margin mode), its
        profile and the account's wallet balance, so the estimate is asked of the same margin
        model the broker liquidates by."""
        return {
            "market": self.market,
            "profile": self.broker.profile,
            "wallet_balance": self.broker.account.wallet_balance,
        }

    def broker_leverage(self, leverage: float | None) -> float:
        """``leverage`` or, when ``None``, the leverage set on the broker's market."""
        return float(self.market.leverage if leverage is None else leverage)

    def round_size(self, size: float) -> float:
        """Round a base quantity to the symbol's size step (nearest step; exchanges reject
        other sizes). Returns 0 when it rounds to nothing."""
        step = self.market.spec.size_step
        if not step:
            return size
        steps = math.floor(size / step + 0.5 + 1e-9)
        return round(steps * step, 12)

    def order_size(self, notional: float, price: float) -> float:
        """Base quantity for a ``notional`` (USDT) order at ``price``: rounded to the nearest
        size step, or up by one step when the nearest step would fall below the exchange's
        minimum order value (3Commas sends the smallest valid order in that case)."""
        size = self.round_size(notional / price)
        step = self.market.spec.size_step
        if step and size * price < self.market.spec.min_notional <= notional:
            size = round(size + step, 12)
        return size

    @property
    def position_size(self) -> float:
        """Signed position of ``self.data`` (base units)."""
        return float(self.getposition(self.data).size)

    @property
    def unrealized_pnl(self) -> float:
        """Unrealized PnL of the data's position at the broker's mark (USDT): the sum of its
        open legs (the ``net`` leg, or in hedge mode LONG and SHORT; reading ``net`` alone
        gave 0 in hedge mode)."""
        return float(sum(p.unrealized_pnl for p in self.broker.positions_of(self.data)))

    def equity_text(self) -> str:
        """``unrealized … USDT, equity … USDT``: the tail of a bot's end-of-run log line."""
        return (
            f"unrealized {self.unrealized_pnl:,.2f} USDT, equity "
            f"{self.broker.getvalue():,.2f} USDT"
        )

    def account_summary(self) -> dict[str, Any]:
        """The account part of a bot's ``summary()``: realized PnL, fees, unrealized PnL,
        position, equity and stop reason."""
        account = self.broker.account
        return {
            "realized_pnl": account.realized_pnl,
            "fees": account.fees_paid,
            "unrealized_pnl": self.unrealized_pnl,
            "position": self.position_size,
            "equity": self.broker.getvalue(),
            "stopped_reason": self.stopped_reason,
        }

    def stop_bot(self, reason: str, close_position: bool = False,
                 exit_reason: str = "stop", kind: str | None = None) -> None:
        """Stop for good: cancel our resting orders, optionally close the position with a
        reduce-only market order tagged ``info.reason = exit_reason`` (the trade list's exit
        reason: ``stop_loss``, ``take_profit``, ``stop``...), and remember ``reason``, the stop
        ``kind`` (one of :data:`STOP_KINDS`; default: ``exit_reason`` when closing, else
        ``"stop"``) and the bar time (the first stop wins)."""
        if self.stopped_reason is not None:
            return
        self.stopped_reason = reason
        self.stopped_kind = kind or (exit_reason if close_position else "stop")
        try:
            self.stopped_time = self.data.datetime.datetime(0).isoformat() + "Z"
        except (IndexError, ValueError):
            self.stopped_time = None
        self.log(f"stopped: {reason}")
        self.cancel_all()
        if close_position and self.position_size and not self.broker.wiped_out:
            self.close(data=self.data, reduce_only=True, reason=exit_reason)

    def place(
        self, size: float, price: float | None = None, reduce_only: bool = False, **info: Any
    ) -> bt.Order:
        """Submit a buy (``size > 0``) or sell on ``self.data``: a limit at ``price`` or a
        market order when ``price`` is ``None``; ``info`` lands in ``order.info``."""
        kwargs: dict[str, Any] = dict(info)
        if reduce_only:
            kwargs["reduce_only"] = True
        if price is None:
            kwargs["exectype"] = bt.Order.Market
        else:
            kwargs["exectype"] = bt.Order.Limit
            kwargs["price"] = price
        maker = self.buy if size > 0 else self.sell
        order = maker(data=self.data, size=abs(size), **kwargs)
        self.live_orders[order.ref] = order
        return order

    def cancel_order(self, order: bt.Order) -> None:
        """Cancel ``order`` now, or as soon as the broker accepts it."""
        if not order.alive():
            return
        if order.status in (bt.Order.Created, bt.Order.Submitted):
            self._cancel_on_accept.add(order.ref)
        else:
            self.cancel(order)

    def cancel_all(self) -> None:
        """Cancel every live order this bot placed."""
        for order in list(self.live_orders.values()):
            self.cancel_order(order)

    # --- broker callbacks ----------------------------------------------------------------
    def notify_margin(self, event: ev.Event) -> None:
        """Called by ``MarginBroker`` for every margin event, before ``next()`` of its bar."""
        self.margin_events.append(event)
        mine = getattr(event, "symbol", None) in (None, self.symbol)
        if isinstance(event, ev.Liquidation) and mine:
            self.stop_bot(
                f"liquidated: {event.side} {event.size:g} at {event.trigger_price:,.2f} "
                f"(loss {event.loss:,.2f} USDT)", kind="liquidated"
            )
        elif isinstance(event, ev.Wipeout):
            self.stop_bot(f"account wiped out: {event.reason}", kind="wiped_out")
        elif isinstance(event, ev.Rejected) and mine:
            if not self.on_refused(event.order_ref, event.reason):
                self.stop_bot(f"order rejected: {event.reason}", kind="order_refused")

    def notify_order(self, order: bt.Order) -> None:
        """Route our fills to :meth:`on_fill`; rejections stop the bot (the Rejected margin
        event usually did already)."""
        if order.info.get("liquidation"):
            return
        if order.status == bt.Order.Accepted and order.ref in self._cancel_on_accept:
            self._cancel_on_accept.discard(order.ref)
            self.cancel(order)
            return
        if not order.alive():
            # notifications carry clones: keep live_orders keyed by ref, drop dead ones
            self.live_orders.pop(order.ref, None)
        if order.status == bt.Order.Completed:
            self.on_fill(order)
        elif order.status in (bt.Order.Margin, bt.Order.Rejected):
            reason = order.info.get("reject_reason") or order.getstatusname()
            if not self.on_refused(order.ref, reason):
                self.stop_bot(f"order rejected: {reason}", kind="order_refused")
        elif order.status in (bt.Order.Canceled, bt.Order.Expired):
            self.on_cancel(order)

    def on_refused(self, order_ref: int | None, reason: str) -> bool:
        """Hook: the broker refused order ``order_ref`` (margin, minimum, tier cap). Return
        ``True`` when the bot handles it (e.g. retries on a later bar, as exchange grid bots
        do); the default returns ``False`` and the bot stops (kind ``order_refused``). May be
        called twice for one order (margin event and order notification)."""
        return False

    def on_fill(self, order: bt.Order) -> None:
        """Hook: ``order`` filled completely."""

    def on_cancel(self, order: bt.Order) -> None:
        """Hook: ``order`` was cancelled or expired."""
