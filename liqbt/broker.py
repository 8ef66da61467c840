"""``MarginBroker``: a backtrader broker that enforces maintenance margin and liquidation.

It replaces ``BackBroker``'s cash and value bookkeeping (backtrader 1.9.78 values leveraged
futures wrongly and reserves no margin for resting orders) with
:class:`liqbt.core.account.Account`, and walks every bar as a price path (margin-model §8) so that
order fills, automatic top-ups and liquidations happen in the order the market would have produced
them. Forced closes are real backtrader orders tagged ``order.info.liquidation = True``:
``notify_order``, ``notify_trade`` and analyzers see them.

Usage::

    cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=1000)
    data = cerebro.adddata(feed, name="BTCUSDT")
    cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=20, margin_mode="isolated")

Strategies may define ``notify_margin(self, event)``; it is called during the broker's step of
the bar in which the event happened, before the strategy's ``next()`` of that bar.

The rules live elsewhere; this class is the backtrader glue that ties them together:

* :mod:`liqbt.markets` — which market each feed trades;
* :mod:`liqbt.acceptance` — what an order means for margin, acceptance and fill checks;
* :mod:`liqbt.orderbook` — resting orders indexed by price, their reserved margin;
* :mod:`liqbt.feedclock` — which feeds move in a step, their marks and funding;
* :mod:`liqbt.walk` — the joint intrabar walk of every symbol on one clock;
* :mod:`liqbt.core.liquidation` — the liquidation procedure as a plan of steps, executed as
  tagged orders by :mod:`liqbt.forced`;
* :mod:`liqbt.core.margin_warnings` — margin-ratio warnings.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import backtrader as bt

from liqbt import acceptance as acc
from liqbt import feedclock, forced
from liqbt.comminfo import LeveragedCommInfo, lever_sizer
from liqbt.core import events as ev
from liqbt.core import liquidation as liq
from liqbt.core import orders as core_orders
from liqbt.core.account import Account, Position
from liqbt.core.choices import INTRABAR_PATHS
from liqbt.core.errors import ValidationError
from liqbt.core.margin_warnings import MarginWarnings
from liqbt.core.profile import ExchangeProfile, load_profile
from liqbt.markets import Markets, MarketSpec
from liqbt.orderbook import OrderBook
from liqbt.walk import JointWalk

# re-exported: the execution types the broker simulates exactly as BackBroker does
SUPPORTED_EXECTYPES = acc.SUPPORTED_EXECTYPES
# BackBroker fill options MarginBroker does not simulate: refused when set
_UNSIMULATED_PARAMS = ("coc", "coo", "slip_perc", "slip_fixed", "filler")


def _profile_of(p: Any) -> ExchangeProfile:
    """The broker's exchange profile from its params, after checking them (all problems at
    once, :class:`ValidationError`)."""
    problems = []
    if p.intrabar not in INTRABAR_PATHS:
        problems.append(f"intrabar = {p.intrabar!r} is not one of {INTRABAR_PATHS}")
    if not 0 < float(p.warning_threshold) <= 1:
        problems.append(f"warning_threshold = {p.warning_threshold!r} must be in (0, 1]")
    for name in _UNSIMULATED_PARAMS:
        if getattr(p, name):
            # silently ignoring them would fill orders differently than the user asked
            problems.append(
                f"{name} = {getattr(p, name)!r}: BackBroker's {name} is not simulated "
                "by MarginBroker (fills are exchange fills on the bar path)"
            )
    if problems:
        raise ValidationError(problems)
    profile = p.exchange
    if not isinstance(profile, ExchangeProfile):
        profile = load_profile(profile)
    if p.profile_overrides:
        profile = profile.with_overrides(p.profile_overrides)
    return profile


class MarginBroker(bt.brokers.BackBroker):
    """Backtrader broker with exchange margin rules (see the module docstring).

    Params
    ------
    exchange
        Profile name (``binance``, ``bybit``, ``okx``, ``bitget``, ``gate``, ``simple``), a path
        to a profile file, or a loaded :class:`ExchangeProfile`.
    profile_overrides
        Dict of profile fields to replace (``maker_fee``, ``taker_fee``, switches).
    intrabar
        Path through each bar, all symbols on one clock (margin-model §8): ``heuristic``
        (open→high→low→close when the bar closes down, else open→low→high→close, per symbol),
        ``pessimistic`` (every symbol's extreme adverse to the account at the same instant) or
        ``optimistic`` (the mirror).
    settlement
        ``bankruptcy`` (default) or ``liquidation_price`` (with the profile's liquidation fee).
    debit
        Keep a negative balance after a gap past bankruptcy (default: cleared to 0).
    position_mode
        ``one-way`` (default) or ``hedge``.
    warning_threshold
        Margin ratio that raises a :class:`liqbt.core.events.MarginWarning` (default 0.8).
    """

    params = (
        ("exchange", "binance"),
        ("profile_overrides", None),
        ("intrabar", "heuristic"),
        ("settlement", "bankruptcy"),
        ("debit", False),
        ("position_mode", "one-way"),
        ("warning_threshold", 0.8),
    )

    def __init__(self, **kwargs: Any) -> None:
        self.markets = Markets()
        super().__init__(**kwargs)
        self.profile: ExchangeProfile = _profile_of(self.p)
        self.init()

    # --- backtrader life cycle -----------------------------------------------------------
    def init(self) -> None:
        """Per-run state (backtrader calls this from ``__init__`` and ``start``)."""
        super().init()
        if not hasattr(self, "profile"):
            return  # BackBroker.__init__ calls init() before our profile exists
        self.account = Account(
            self.profile,
            float(self.p.cash),
            position_mode=self.p.position_mode,
            settlement=self.p.settlement,
            debit=bool(self.p.debit),
            order_margin_source=self.order_margin,  # the trigger's order margin (simple)
        )
        self.book = OrderBook(self.account, self.symbol_of)
        self.walker = JointWalk(self)
        self.warnings = MarginWarnings(float(self.p.warning_threshold))
        self.markets.reset(self.account)
        self.clock = feedclock.FeedClock()
        self._owners: dict[Any, Any] = {}
        self._delivered = 0
        self.wiped_out = False
        self._legs_key: tuple[int, int] | None = None
        self._legs: dict[str, tuple[Position, ...]] = {}
        self._cash_key: tuple[Any, ...] | None = None
        self._cash = 0.0
        self._committed_key: tuple[Any, ...] | None = None
        self._value_key: tuple[int, int] | None = None
        self._value = 0.0
        self._committed = 0.0
        self._stepping = False
        self.trailing = False  # a trailing stop was accepted: trail stops after each bar
        self._sizers_levered = False

    @property
    def min_liquidation_distance(self) -> float:
        """Smallest distance (fraction of price) seen between a mark and its LP (0 once a
        liquidation happened; ``inf`` when no position was ever open)."""
        return self.walker.min_liquidation_distance

    def start(self) -> None:
        super().start()

    def set_market(
        self,
        data: Any,
        symbol: str | None = None,
        leverage: float = 1.0,
        margin_mode: str = "cross",
        auto_top_up: bool = False,
    ) -> MarketSpec:
        """Declare the market a data feed trades (before ``cerebro.run()``).

        ``data`` is the feed object or its name. Leverage above the tier maximum, an unknown
        symbol or a top-up the exchange does not offer are errors naming the values.
        """
        spec, config = self.markets.declare(
            self.profile, data, symbol, leverage, margin_mode, auto_top_up
        )
        # backtrader sizes orders through the feed's commission info (order_target_value,
        # order_target_percent, sizers): one that knows the leverage and the size step
        feed_name = data if isinstance(data, str) else getattr(data, "_name", None)
        if feed_name:
            self.addcommissioninfo(
                LeveragedCommInfo(
                    leverage=spec.leverage, size_step=config.spec.size_step,
                    commission=self.profile.taker_fee,
                ),
                name=feed_name,
            )
        return spec

    def symbol_of(self, data: Any) -> str:
        """The normalised symbol a data feed trades (:meth:`liqbt.markets.Markets.symbol_of`)."""
        return self.markets.symbol_of(data)

    def data_of(self, symbol: str) -> Any:
        """The data feed that trades ``symbol``."""
        return self.markets.symbol_data[symbol]

    def owner_of(self, data: Any) -> Any:
        """The strategy that last sent an order for ``data`` (the owner of forced orders)."""
        return self._owners.get(data)

    # --- queries for strategies ----------------------------------------------------------
    def get_cash(self) -> float:
        """Available balance (USDT): what new orders can still use (margin-model §6)."""
        if self._stepping:
            return self.account.available_balance(self.order_margin())
        # between steps the marks stand still: one evaluation per state serves every caller
        state = (self.account.version, self.book.refresh_signature(self.pending))
        key = (self.walker.bar_no, state)
        if self._cash_key != key:
            self._cash_key = key
            # the IM and order margin do not move with the marks: kept until the account or
            # the orders change, so a quiet bar only re-sums the unrealized PnL (issue 11)
            if self._committed_key != state:
                self._committed_key = state
                self._committed = self.account.committed_margin(self.order_margin())
            self._cash = self.account.available_balance(committed=self._committed)
        return self._cash

    getcash = get_cash

    def get_value(self, datas: Any = None, mkt: bool = False, lever: bool = False) -> float:
        """Equity at mark (wallet + isolated margins + unrealized PnL, USDT).

        With ``datas``: the value of those feeds' positions in margin terms,
        ``Σ size × mark / leverage`` (signed, negative for shorts), as the feed's
        :class:`~liqbt.comminfo.LeveragedCommInfo` values it. At 1x this is ``BackBroker``'s
        position value ``size × close`` of a long; ``order_target_value`` compares it with its
        target, so targets are margin amounts and the order is sized by margin × leverage.
        """
        if datas is None:
            if self._stepping:
                return self.account.equity()
            # between steps the marks stand still: one evaluation per bar and account state
            # serves backtrader's notify_cashvalue and the analyzers
            key = (self.walker.bar_no, self.account.version)
            if self._value_key != key:
                self._value_key = key
                self._value = self.account.equity()
            return self._value
        total = 0.0
        for data in datas:
            for pos in self.positions_of(data):
                leverage = self.account.market(pos.symbol).leverage
                total += pos.size * pos.mark_price / leverage
        return total

    getvalue = get_value

    def _get_value(self, datas: Any = None, lever: bool = False) -> float:
        return self.get_value(datas)

    def positions_of(self, data: Any) -> list[Position]:
        """Open position legs of a data feed's symbol (one in one-way mode, up to two in hedge
        mode); read-only views of the account state."""
        return list(self.legs_of(data))

    def legs_of(self, data: Any) -> tuple[Position, ...]:
        """:meth:`positions_of` as a tuple shared until the account changes (the broker's
        own per-bar reads; do not keep it across steps)."""
        account = self.account
        key = (account.version, len(account.positions))
        if self._legs_key != key:
            legs: dict[str, list[Position]] = {}
            for (s, _), p in account.positions.items():
                if p.size:
                    legs.setdefault(s, []).append(p)
            self._legs_key = key
            self._legs = {s: tuple(v) for s, v in legs.items()}
        return self._legs.get(self.symbol_of(data), ())

    def _leg(self, data: Any, leg: str | None) -> Position | None:
        legs = self.positions_of(data)
        if leg is not None:
            legs = [p for p in legs if p.leg == leg]
        return legs[0] if legs else None

    def liquidation_price(self, data: Any, leg: str | None = None) -> float | None:
        """Liquidation price (USDT, at mark) of the data's position, ``None`` when flat or
        when no price liquidates it."""
        pos = self._leg(data, leg)
        return None if pos is None else self.walker.liquidation_price(pos)[0]

    def bankruptcy_price(self, data: Any, leg: str | None = None) -> float | None:
        """Bankruptcy price of the data's position (``None`` when flat)."""
        pos = self._leg(data, leg)
        return None if pos is None else self.account.bankruptcy_price(pos)

    def margin_ratio(self, data: Any = None, leg: str | None = None) -> float:
        """MM / margin balance of the data's isolated position, or of the cross account."""
        pos = None if data is None else self._leg(data, leg)
        return self.account.margin_ratio(pos)

    def available_balance(self) -> float:
        """Same as :meth:`get_cash`."""
        return self.get_cash()

    def position_margin(self, data: Any, leg: str | None = None) -> float:
        """Isolated position margin ``M`` (USDT); for cross, the position's initial margin."""
        pos = self._leg(data, leg)
        if pos is None:
            return 0.0
        return pos.margin if pos.margin_mode == "isolated" else self.account.initial_margin(pos)

    def add_margin(self, data: Any, amount: float, leg: str | None = None) -> None:
        """Move ``amount`` USDT from the wallet into the data's isolated position."""
        pos = self._leg(data, leg)
        if pos is None:
            raise ValidationError([f"{getattr(data, '_name', data)}: no open position"])
        self.account.add_margin(pos, amount)

    def remove_margin(self, data: Any, amount: float, leg: str | None = None) -> None:
        """Move ``amount`` USDT out of the data's isolated position back to the wallet."""
        self.add_margin(data, -amount, leg)

    @property
    def events(self) -> list[ev.Event]:
        """Every margin event so far, oldest first (immutable records)."""
        return self.account.events

    # --- order margin and submission -----------------------------------------------------
    def order_margin(self, exclude: bt.Order | None = None) -> float:
        """Margin reserved by resting orders (USDT, margin-model §6, :mod:`liqbt.orderbook`),
        less ``exclude``'s own when it is resting."""
        total = self.book.reserved_margin(self.pending)
        if exclude is not None and exclude.ref in self.book.index and exclude.alive():
            symbol = self.symbol_of(exclude.data)
            total -= core_orders.order_margin(
                acc.opening_size(self.account, symbol, exclude), acc.order_price(exclude),
                self.account.market(symbol).leverage,
            )
        return total

    def check_submitted(self) -> None:
        """Accept or reject (status ``Margin``, ``order.info.reject_reason``) new orders
        (:func:`liqbt.acceptance.rejection`)."""
        while self.submitted:
            order = self.submitted.popleft()
            if self._take_children(order) is None:
                continue
            self._owners[order.data] = order.owner
            symbol = self.symbol_of(order.data)
            reason = "account wiped out" if self.wiped_out else acc.rejection(
                self.account, symbol, order, partial(self.order_margin, order)
            )
            if reason is None:
                order.addinfo(reserved_opening=acc.opening_size(self.account, symbol, order))
                self.submit_accept(order)
                if order.exectype in acc.TRAILING:
                    self.trailing = True
            else:
                self.reject_order(order, reason, order.created.price,
                             rejected=order.exectype not in SUPPORTED_EXECTYPES)

    def cancel(self, order: bt.Order, bracket: bool = False) -> None:
        """Cancel a resting order, or one submitted this bar that is not yet accepted
        (``BackBroker`` silently ignores those, so it could still fill)."""
        if order in self.submitted:
            self.submitted.remove(order)
            order.cancel()
            self.notify(order)
            self._ococheck(order)
            if not bracket:
                self._bracketize(order, cancel=True)
            return
        super().cancel(order, bracket=bracket)

    def buy(self, owner: Any, data: Any, size: Any, *args: Any, **kwargs: Any) -> bt.Order:
        """``BackBroker.buy`` with numbers made plain floats (numpy sizes and prices)."""
        return super().buy(owner, data, acc.plain(size), *args, **acc.plain_prices(kwargs))

    def sell(self, owner: Any, data: Any, size: Any, *args: Any, **kwargs: Any) -> bt.Order:
        """``BackBroker.sell`` with numbers made plain floats (numpy sizes and prices)."""
        return super().sell(owner, data, acc.plain(size), *args, **acc.plain_prices(kwargs))

    def submit(self, order: bt.Order, check: bool = True) -> bt.Order:
        self._owners.setdefault(order.data, order.owner)
        return super().submit(order, check)

    # --- the bar ------------------------------------------------------------------------
    def next(self) -> None:
        """One step of the finest clock: activate, check new orders, then walk the bars of
        every feed that has a new bar together on one intrabar clock (margin-model §8)."""
        if self._toactivate:
            self.book.changed()  # activated bracket children reserve margin and can fill
        while self._toactivate:
            self._toactivate.popleft().activate()
        if not self.markets.configured:
            self.markets.configure()
        if not self._sizers_levered:
            # on the first bar, before any strategy's next(): the strategies exist by now
            self._sizers_levered = True
            for strategy in self._strategies():
                lever_sizer(self, strategy)
        self.check_submitted()
        self._expire_orders()
        self.account.sync_orders()  # new/cancelled orders may move the trigger (simple)
        self._stepping = True
        try:
            self.walker.step(self.clock.active(self.markets.datas()))
        finally:
            self._stepping = False
        self._after_bar()

    def _expire_orders(self) -> None:
        self.book.refresh(self.pending)  # refreshes the list of orders that carry an expiry
        for order in [o for o in self.book.valid_orders if o.alive() and o in self.pending]:
            if order.expire():
                self.pending.remove(order)
                self.notify(order)
                self._ococheck(order)
                self._bracketize(order, cancel=True)

    # --- fills (executed by :mod:`liqbt.fills`) ------------------------------------------
    def reject_order(
        self, order: bt.Order, reason: str, price: float | None, rejected: bool = False
    ) -> None:
        """Refuse an order: status ``Margin`` (``Rejected`` for what the broker cannot
        simulate), ``order.info.reject_reason``, a Rejected event."""
        order.addinfo(reject_reason=reason)
        if rejected:
            order.reject()
        else:
            order.margin()
        if order in self.pending:
            self.pending.remove(order)
        self.notify(order)
        self._ococheck(order)
        self._bracketize(order, cancel=True)
        self.account.events.append(
            ev.Rejected(
                feedclock.now(order.data), self.symbol_of(order.data), order.ref,
                order.created.size, price, reason,
            )
        )

    def complete(self, order: bt.Order) -> None:
        """The one completion path of a fill, as ``BackBroker`` runs it: the order leaves
        ``pending`` (so its own OCO check cannot cancel it), is notified, its OCO group is
        cancelled, then a filled bracket parent activates its children (from the next bar)
        and a filled child cancels its siblings. A partly filled order stays pending."""
        pending = order in self.pending
        if pending:
            self.pending.remove(order)
        self.notify(order)
        self._ococheck(order)
        if order.alive():
            if pending:
                self.pending.append(order)
        elif order.status == bt.Order.Completed:
            self._bracketize(order)

    # --- liquidation --------------------------------------------------------------------
    def liquidate(self, plan: Iterator[liq.Step]) -> None:
        """Execute a liquidation plan (:mod:`liqbt.core.liquidation`) as tagged orders
        (:func:`liqbt.forced.execute`)."""
        forced.execute(self, plan)

    # --- after the bar --------------------------------------------------------------------
    def _after_bar(self) -> None:
        self.warnings.check(self.account)
        events = self.account.events
        if self._delivered < len(events):
            new = events[self._delivered:]
            self._delivered = len(events)
            for strategy in self._strategies():
                hook = getattr(strategy, "notify_margin", None)
                if hook is not None:
                    for event in new:
                        hook(event)

    def _strategies(self) -> list[Any]:
        for data in self.markets.data_symbol:
            env = getattr(data, "_env", None)
            if env is not None and getattr(env, "runningstrats", None):
                return list(env.runningstrats)
        return list({id(o): o for o in self._owners.values() if o is not None}.values())
