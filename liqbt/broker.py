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
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import backtrader as bt

from liqbt.comminfo import LeveragedCommInfo, floor_to_step
from liqbt.core import events as ev
from liqbt.core import orders as core_orders
from liqbt.core import path as pth
from liqbt.core.account import Account, Position
from liqbt.core.choices import INTRABAR_PATHS
from liqbt.core.errors import ValidationError
from liqbt.core.liquidation import LegState, cross_order, partial_reduction
from liqbt.core.profile import ExchangeProfile, load_profile, normalize_symbol

# execution types simulated exactly as BackBroker does; any other is refused at acceptance
SUPPORTED_EXECTYPES: tuple[int, ...] = (
    bt.Order.Market, bt.Order.Close, bt.Order.Limit, bt.Order.Stop, bt.Order.StopLimit,
    bt.Order.StopTrail, bt.Order.StopTrailLimit,
)
_STOPS = (bt.Order.Stop, bt.Order.StopTrail)
_STOP_LIMITS = (bt.Order.StopLimit, bt.Order.StopTrailLimit)
_TRAILING = (bt.Order.StopTrail, bt.Order.StopTrailLimit)
# BackBroker fill options MarginBroker does not simulate: refused when set
_UNSIMULATED_PARAMS = ("coc", "coo", "slip_perc", "slip_fixed", "filler")
_WARNING_INTERVAL = timedelta(minutes=30)
# A symbol's mark range is widened by this fraction before its cross term is bounded and
# remembered, so that the following quiet bars need no evaluation (see _cross_may_breach).
_SAFE_MARGIN = 0.01


def _plain(value: Any) -> Any:
    """A numpy number as a Python float (numpy booleans break the position arithmetic)."""
    if value is None or type(value) in (float, int):
        return value
    return float(value)


def _plain_prices(kwargs: dict[str, Any]) -> dict[str, Any]:
    for key in ("price", "plimit", "trailamount", "trailpercent"):
        if kwargs.get(key) is not None:
            kwargs[key] = _plain(kwargs[key])
    return kwargs


@dataclass(frozen=True)
class MarketSpec:
    """What a data feed trades: symbol (for tiers), leverage, margin mode, top-up switch."""

    symbol: str
    leverage: float = 1.0
    margin_mode: str = "cross"
    auto_top_up: bool = False


@dataclass
class _Bar:
    """One symbol's bar inside a joint step: marks (O, H, L, C), then its paths and the
    orders its range can reach."""

    symbol: str
    data: Any
    marks: tuple[float, float, float, float]
    trade: pth.Path = (0.0, 0.0, 0.0, 0.0)
    mark: pth.Path = (0.0, 0.0, 0.0, 0.0)
    orders: list[Any] = field(default_factory=list)


@dataclass
class _Book:
    """One data's resting orders, indexed by the price that reaches them (``_order_book``).

    ``rising``/``falling`` are sorted ``(level, ref)`` keys: a bar reaches the rising ones whose
    level is at or below its high, the falling ones at or above its low. ``reserve`` holds what
    each order's reserved margin depends on (margin-model §6), so the total is a short loop.
    """

    always: dict[int, Any] = field(default_factory=dict)
    rising: list[tuple[float, int]] = field(default_factory=list)
    falling: list[tuple[float, int]] = field(default_factory=list)
    orders: dict[int, Any] = field(default_factory=dict)
    # ref -> (order, symbol, leg, reduces, order price, leverage): what its reserved margin
    # depends on besides its remaining size, its activation and the position
    reserve: dict[int, tuple[Any, str, str, bool, float, float]] = field(default_factory=dict)


def _at(path: pth.Path, k: int, t: float) -> float:
    """Price of ``path`` at clock ``t`` inside segment ``k`` (exact at the segment ends)."""
    a, b = path[k], path[k + 1]
    t0 = pth.VERTEX_TIMES[k]
    if a == b or t <= t0:
        return a
    if t >= pth.VERTEX_TIMES[k + 1]:
        return b
    return a + (b - a) * (t - t0) * 3.0


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
        self._market_specs: dict[Any, MarketSpec] = {}
        super().__init__(**kwargs)
        problems = []
        if self.p.intrabar not in INTRABAR_PATHS:
            problems.append(f"intrabar = {self.p.intrabar!r} is not one of {INTRABAR_PATHS}")
        if not 0 < float(self.p.warning_threshold) <= 1:
            problems.append(f"warning_threshold = {self.p.warning_threshold!r} must be in (0, 1]")
        for name in _UNSIMULATED_PARAMS:
            if getattr(self.p, name):
                # silently ignoring them would fill orders differently than the user asked
                problems.append(
                    f"{name} = {getattr(self.p, name)!r}: BackBroker's {name} is not simulated "
                    "by MarginBroker (fills are exchange fills on the bar path)"
                )
        if problems:
            raise ValidationError(problems)
        profile = self.p.exchange
        if not isinstance(profile, ExchangeProfile):
            profile = load_profile(profile)
        if self.p.profile_overrides:
            profile = profile.with_overrides(self.p.profile_overrides)
        self.profile: ExchangeProfile = profile
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
            order_margin_source=self._order_margin,  # the trigger's order margin (simple)
        )
        self._data_symbol: dict[Any, str] = {}
        self._symbol_data: dict[str, Any] = {}
        self._seen_len: dict[Any, int] = {}
        self._owners: dict[Any, Any] = {}
        self._delivered = 0
        self._warned_at: dict[tuple[str, str], datetime] = {}
        self.wiped_out = False
        self.min_liquidation_distance = math.inf
        self._lp_cache: dict[tuple[str, str], tuple[float | None, int]] = {}
        self._lp_version = -1
        self._lp_bar = -1
        self._lp_multi = False
        self._bar_no = 0
        self._books: dict[Any, _Book] = {}
        self._book_index: dict[int, bt.Order] = {}
        self._book_signature: tuple[Any, ...] = ()
        self._book_changes = 0
        self._valid_orders: list[bt.Order] = []
        self._reserve_key: tuple[Any, ...] | None = None
        self._reserve_total = 0.0
        self._legs_key: tuple[int, int] | None = None
        self._legs: dict[str, list[Position]] = {}
        self._breach_key: tuple[int, int] | None = None
        self._breach_possible = False
        # symbol -> (legs state, low, high, minimum of its cross term over [low, high])
        self._term_boxes: dict[str, tuple[tuple[Any, ...], float, float, float]] = {}
        self._cash_key: tuple[Any, ...] | None = None
        self._cash = 0.0
        self._stepping = False
        self._event_t: float | None = None
        self._deferred: dict[Any, datetime] = {}
        self._finest: Any = None
        self._configured = False
        self._trailing = False  # a trailing stop was accepted: trail stops after each bar
        self._sizers_levered = False

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
        name = symbol or getattr(data, "_name", None) or str(data)
        spec = MarketSpec(normalize_symbol(name), float(leverage), margin_mode, auto_top_up)
        # validate now, against a scratch account, so mistakes surface before the run
        config = Account(self.profile, 1.0).set_market(
            spec.symbol, spec.leverage, spec.margin_mode, spec.auto_top_up
        )
        self._market_specs[data] = spec
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

    def _configure(self) -> None:
        """Bind every data feed that has orders or positions to its market settings."""
        self._configured = True
        for data, spec in self._market_specs.items():
            self._bind(data, spec)

    def _lever_sizer(self, strategy: Any) -> None:
        """Make backtrader's stock ``PercentSizer`` / ``AllInSizer`` (and subclasses) size by
        margin × leverage: they compute ``cash / close × percents``, so they are handed the
        buying power ``available × leverage`` of the data's market, and the size is rounded
        down to the size step. Other sizers are left alone (a risk-based sizer must see the
        real cash)."""
        sizer = strategy.getsizer()
        if not isinstance(sizer, bt.sizers.PercentSizer) or getattr(sizer, "_liqbt", False):
            return
        broker = self

        def getsizing(data: Any, isbuy: bool) -> float:
            comminfo = broker.getcommissioninfo(data)
            leverage = comminfo.p.leverage if isinstance(comminfo, LeveragedCommInfo) else 1.0
            size = sizer._getsizing(comminfo, broker.getcash() * leverage, data, isbuy)
            if broker.getposition(data).size:
                return size  # PercentSizer closes the position it sees: keep its size
            step = comminfo.p.size_step if isinstance(comminfo, LeveragedCommInfo) else 0.0
            return floor_to_step(size, step)

        sizer.getsizing = getsizing
        sizer._liqbt = True

    def _bind(self, data: Any, spec: MarketSpec) -> None:
        if isinstance(data, str):
            return  # bound lazily by name in _symbol_of
        self.account.set_market(spec.symbol, spec.leverage, spec.margin_mode, spec.auto_top_up)
        self._data_symbol[data] = spec.symbol
        self._symbol_data[spec.symbol] = data

    def symbol_of(self, data: Any) -> str:
        """The normalised symbol a data feed trades (binding its market settings on first use);
        a clear error when ``set_market`` was never called for it."""
        symbol = self._data_symbol.get(data)
        if symbol is not None:
            return symbol
        if not self._configured:
            self._configure()
            symbol = self._data_symbol.get(data)
            if symbol is not None:
                return symbol
        spec = self._market_specs.get(getattr(data, "_name", None))
        if spec is None:
            raise ValidationError(
                [f"data {getattr(data, '_name', data)!r} has no market settings: call "
                 "broker.set_market(data, symbol=..., leverage=..., margin_mode=...) before run"]
            )
        self._market_specs[data] = spec
        self._bind(data, spec)
        return spec.symbol

    # --- queries for strategies ----------------------------------------------------------
    def get_cash(self) -> float:
        """Available balance (USDT): what new orders can still use (margin-model §6)."""
        if self._stepping:
            return self.account.available_balance(self._order_margin())
        # between steps the marks stand still: one evaluation per state serves every caller
        self._order_book()
        key = (self._bar_no, self.account.version, self._book_signature)
        if self._cash_key != key:
            self._cash_key = key
            self._cash = self.account.available_balance(self._order_margin())
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
            return self.account.equity()
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
        symbol = self.symbol_of(data)
        account = self.account
        key = (account.version, len(account.positions))
        if self._legs_key != key:
            legs: dict[str, list[Position]] = {}
            for (s, _), p in account.positions.items():
                if p.size:
                    legs.setdefault(s, []).append(p)
            self._legs_key, self._legs = key, legs
        return list(self._legs.get(symbol, ()))

    def _leg(self, data: Any, leg: str | None) -> Position | None:
        legs = self.positions_of(data)
        if leg is not None:
            legs = [p for p in legs if p.leg == leg]
        return legs[0] if legs else None

    def liquidation_price(self, data: Any, leg: str | None = None) -> float | None:
        """Liquidation price (USDT, at mark) of the data's position, ``None`` when flat or
        when no price liquidates it."""
        pos = self._leg(data, leg)
        return None if pos is None else self._liquidation_price(pos)[0]

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
    def _order_price(self, order: bt.Order) -> float:
        """Limit/stop price, or for market orders the close known when the order was created
        (never the close of the bar that fills it: that would look ahead)."""
        price = order.created.price
        if price is None or order.exectype == bt.Order.Market:
            price = order.created.pclose
        return float(price)

    def _order_leg(self, order: bt.Order) -> tuple[str, bool]:
        """``(leg, reduces)``: the position leg an order acts on and whether it may only shrink
        it. One-way: the ``net`` leg, reducing when ``reduce_only=True``. Hedge: ``leg="long"``
        or ``"short"`` when given, a bracket child on its parent's leg, else a buy acts on LONG
        and a sell on SHORT (the other way round with ``reduce_only=True``); a sell on LONG or a
        buy on SHORT reduces."""
        qty = order.executed.remsize
        reduce_only = bool(order.info.get("reduce_only"))
        if self.account.position_mode == "one-way":
            return "net", reduce_only
        symbol = self.symbol_of(order.data)
        leg = order.info.get("leg")
        parent = order.parent
        if not leg and parent is not None:
            # a bracket child closes its parent's position: it acts on the parent's leg
            leg = parent.info.get("leg") or self.account.leg_for(
                symbol, parent.size, bool(parent.info.get("reduce_only"))
            )
        leg = leg or self.account.leg_for(symbol, qty, reduce_only)
        return leg, reduce_only or (leg == "long") != (qty > 0)

    def _opening_size(self, order: bt.Order) -> float:
        """The part of an order that opens or increases a position (unsigned)."""
        if not order.active():
            # a bracket child waits for its parent: it closes what the parent opens, so it
            # reserves nothing now (if it ever opens, the fill asks for fresh margin)
            return 0.0
        qty = order.executed.remsize
        leg, reduces = self._order_leg(order)
        return core_orders.opening_part(qty, self._held(order, leg), reduces, leg == "net")

    def _held(self, order: bt.Order, leg: str) -> float:
        """Signed size of the position leg ``order`` acts on (0 when flat)."""
        pos = self.account.positions.get((self.symbol_of(order.data), leg))
        return pos.size if pos is not None else 0.0

    def _order_margin(self, exclude: bt.Order | None = None) -> float:
        """Margin reserved by resting orders: opening size × price / leverage (margin-model §6,
        :func:`liqbt.core.orders.order_margin`).

        Kept from the price index: recomputed only when the resting orders, their activation
        or the positions change, by one short loop over the resting orders."""
        books = self._order_book()
        key = (self._book_signature, self.account.version)
        if self._reserve_key != key:
            positions = self.account.positions
            total = 0.0
            for book in books.values():
                for order, symbol, leg, reduces, price, leverage in book.reserve.values():
                    if not order.active():
                        continue  # a bracket child reserves nothing until its parent fills
                    pos = positions.get((symbol, leg))
                    opening = core_orders.opening_part(
                        order.executed.remsize, pos.size if pos is not None else 0.0, reduces,
                        leg == "net",
                    )
                    if opening:
                        total += core_orders.order_margin(opening, price, leverage)
            self._reserve_key, self._reserve_total = key, total
        total = self._reserve_total
        if exclude is not None and exclude.ref in self._book_index and exclude.alive():
            leverage = self.account.market(self.symbol_of(exclude.data)).leverage
            total -= core_orders.order_margin(
                self._opening_size(exclude), self._order_price(exclude), leverage
            )
        return total

    def _rejection(self, order: bt.Order) -> str | None:
        """Why an order cannot be accepted, or ``None`` (rules: :mod:`liqbt.core.orders`)."""
        if order.exectype not in SUPPORTED_EXECTYPES:
            return core_orders.unsupported_exectype_refusal(
                bt.Order.ExecTypes[order.exectype]
            )
        opening = self._opening_size(order)
        if not opening:
            return None  # closes and reduce-only orders never need margin
        symbol = self.symbol_of(order.data)
        config = self.account.market(symbol)
        check = core_orders.OrderCheck(
            symbol=symbol,
            size=order.executed.remsize,
            opening=opening,
            price=self._order_price(order),
            held=self._held(order, self._order_leg(order)[0]),
            leverage=config.leverage,
            taker_fee=self.profile.taker_fee,
            min_notional=config.spec.min_notional,
            available=self.account.available_balance(self._order_margin(exclude=order)),
        )
        return core_orders.acceptance_refusal(check, config.tiers)

    def check_submitted(self) -> None:
        """Accept or reject (status ``Margin``, ``order.info.reject_reason``) new orders."""
        while self.submitted:
            order = self.submitted.popleft()
            if self._take_children(order) is None:
                continue
            self._owners[order.data] = order.owner
            reason = "account wiped out" if self.wiped_out else self._rejection(order)
            if reason is None:
                order.addinfo(reserved_opening=self._opening_size(order))
                self.submit_accept(order)
                if order.exectype in _TRAILING:
                    self._trailing = True
            else:
                self._reject(order, reason, order.created.price,
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
        return super().buy(owner, data, _plain(size), *args, **_plain_prices(kwargs))

    def sell(self, owner: Any, data: Any, size: Any, *args: Any, **kwargs: Any) -> bt.Order:
        """``BackBroker.sell`` with numbers made plain floats (numpy sizes and prices)."""
        return super().sell(owner, data, _plain(size), *args, **_plain_prices(kwargs))

    def submit(self, order: bt.Order, check: bool = True) -> bt.Order:
        self._owners.setdefault(order.data, order.owner)
        return super().submit(order, check)

    # --- the bar ------------------------------------------------------------------------
    def _now(self, data: Any) -> datetime | None:
        try:
            return data.datetime.datetime(0)
        except (IndexError, ValueError):
            return None

    def next(self) -> None:
        """One step of the finest clock: activate, check new orders, then walk the bars of
        every feed that has a new bar together on one intrabar clock (margin-model §8)."""
        if self._toactivate:
            self._book_changes += 1  # activated bracket children reserve margin and can fill
        while self._toactivate:
            self._toactivate.popleft().activate()
            # an active bracket child may now reserve margin: recompute the order margin
            self._order_margin_cache = (None, 0.0)
        if not self._configured:
            self._configure()
        if not self._sizers_levered:
            # on the first bar, before any strategy's next(): the strategies exist by now
            self._sizers_levered = True
            for strategy in self._strategies():
                self._lever_sizer(strategy)
        self.check_submitted()
        self._expire_orders()
        self.account.sync_orders()  # new/cancelled orders may move the trigger (simple)
        self._bar_no += 1
        self._stepping = True
        try:
            self._joint_step(self._active_datas())
        finally:
            self._stepping = False
        self._after_bar()

    def _active_datas(self) -> list[Any]:
        """Feeds whose bar is walked in this step (margin-model §8, mixed timeframes).

        A feed moves in the step where it produced a new bar, except a liqbt feed (stamped with
        bar open times, ``bar_timeframe``) that is coarser than the finest one: its bar is
        complete only at the last fine step inside it, so it is walked there and until then
        the symbol stays at its last mark (no look-ahead)."""
        datas = []
        for data in self._data_symbol:
            n = len(data)
            if n and self._seen_len.get(data) != n:
                self._seen_len[data] = n
                due = self._completion_time(data)
                if due is None:
                    datas.append(data)
                else:
                    self._deferred[data] = due
        if self._deferred:
            times = [t for t in (self._now(d) for d in datas) if t is not None]
            now = max(times) if times else None
            for data, due in list(self._deferred.items()):
                if now is not None and now >= due:
                    del self._deferred[data]
                    datas.append(data)
        return datas

    def _completion_time(self, data: Any) -> datetime | None:
        """Open time of the last finest bar inside ``data``'s new bar, when ``data`` is a
        coarser open-time-stamped liqbt feed; ``None`` when its bar is walked at once."""
        length = getattr(data, "bar_timeframe", None)
        if length is None:
            return None
        if self._finest is None:
            lengths = [getattr(d, "bar_timeframe", None) for d in self._data_symbol]
            self._finest = min((x for x in lengths if x is not None), default=length)
        if length <= self._finest:
            return None
        opened = self._now(data)
        if opened is None:
            return None
        return opened + (length - self._finest).to_pytimedelta()

    def _expire_orders(self) -> None:
        self._order_book()  # refreshes the list of orders that carry an expiry
        for order in [o for o in self._valid_orders if o.alive() and o in self.pending]:
            if order.expire():
                self.pending.remove(order)
                self.notify(order)
                self._ococheck(order)
                self._bracketize(order, cancel=True)

    def _mark_ohlc(self, data: Any) -> tuple[float, float, float, float]:
        lines = getattr(data.lines, "mark_close", None)
        if lines is not None:
            values = (
                data.lines.mark_open[0], data.lines.mark_high[0],
                data.lines.mark_low[0], data.lines.mark_close[0],
            )
            if not any(math.isnan(v) for v in values):
                return values
        return data.open[0], data.high[0], data.low[0], data.close[0]

    def _joint_step(self, datas: list[Any]) -> None:
        """Walk the new bars of ``datas`` on one clock ``t ∈ [0, 1]`` (margin-model §8).

        Symbols are visited in name order, never in feed order, so the outcome does not depend
        on the order markets were declared in. A symbol without a new bar in this step (a
        coarser timeframe) stays at its last mark: it is part of the account condition but
        does not move.
        """
        if not datas:
            return
        account = self.account
        bars = sorted(
            (_Bar(self.symbol_of(d), d, self._mark_ohlc(d)) for d in datas),
            key=lambda b: b.symbol,
        )
        times = [t for t in (self._now(b.data) for b in bars) if t is not None]
        account.clock = max(times) if times else None
        for bar in bars:
            account.set_mark(bar.symbol, bar.marks[0])
        for bar in bars:
            rate = self._funding_rate(bar.data)
            if rate is not None and self.positions_of(bar.data):
                account.apply_funding(bar.symbol, rate, bar.marks[0])
        for bar in bars:
            bar.orders = self._reachable_orders(bar.data)
        trailing = self._trailing_orders([b.data for b in bars]) if self._trailing else []
        if not any(bar.orders for bar in bars) and not self._trigger_possible(bars):
            # nothing can happen inside this step: skip the path walk (the hot path)
            for bar in bars:
                account.set_mark(bar.symbol, bar.marks[3])
            for bar in bars:
                legs = self.positions_of(bar.data)
                if legs:
                    self._track_distance(legs, list(bar.marks))
            self._trail(trailing)
            return
        mode = self.p.intrabar
        for bar in bars:
            d = bar.data
            net = sum(p.size for p in self.positions_of(d))
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
            legs = self.positions_of(bar.data)
            if legs:
                self._track_distance(legs, list(bar.mark))

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
            self._fill_order(order, price, maker=False)
            return
        order.pannotated = data.close[0]

    def _trailing_orders(self, datas: list[Any]) -> list[bt.Order]:
        """Trailing stops that ``BackBroker`` would try this step through their stop: active,
        past their creation bar, on a feed with a new bar (a triggered ``StopTrailLimit`` rests
        as a plain limit and no longer trails)."""
        return [
            o for o in self.pending
            if o is not None and o.exectype in _TRAILING and o.active() and not o.triggered
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

    def _trigger_possible(self, bars: list[_Bar]) -> bool:
        """Whether a liquidation or top-up can happen in this step: an isolated LP inside its
        bar's mark range, or the cross condition failing at the worst combination of marks."""
        for bar in bars:
            low, high = min(bar.marks), max(bar.marks)
            for pos in self.positions_of(bar.data):
                if pos.margin_mode != "isolated":
                    continue
                lp, direction = self._liquidation_price(pos)
                if lp is not None and ((low <= lp) if direction < 0 else (high >= lp)):
                    return True
        return self._cross_may_breach(bars)

    def _cross_legs(self) -> Iterator[Position]:
        return (p for p in self.account.positions.values() if p.size and p.margin_mode == "cross")

    def _cross_excess(self) -> float:
        """Cross margin balance − cross maintenance margin (with the profile's closing-fee
        terms), both from the core Account: the cross trigger is ``<= 0`` (margin-model §5)."""
        return self.account.cross_excess()

    def _cross_tolerance(self) -> float:
        # money noise of a sum of notionals: a mark exactly at the LP must count as reached
        notional = sum(abs(p.size) * p.mark_price for p in self._cross_legs())
        return 1e-9 * max(notional, 1.0)

    def _cross_floor(self, ranges: dict[str, tuple[float, float]]) -> float:
        """Lowest cross margin balance − MM over the box of marks: each symbol with a range
        anywhere in it, the others at their marks. The condition is a sum of one term per
        symbol, so the minimum is the wallet plus the per-symbol minima (:meth:`_term_min`)."""
        # resting orders' margin counts against the wallet where the profile says so (simple)
        total = self.account.wallet_balance - self.account.trigger_order_margin()
        for symbol, legs in self._cross_by_symbol().items():
            mark = legs[0].mark_price
            low, high = ranges.get(symbol, (mark, mark))
            total += self._term_min(legs, low, high)
        return total

    def _cross_by_symbol(self) -> dict[str, list[Position]]:
        by_symbol: dict[str, list[Position]] = {}
        for pos in self._cross_legs():
            by_symbol.setdefault(pos.symbol, []).append(pos)
        return by_symbol

    def _term_min(self, legs: list[Position], low: float, high: float) -> float:
        """Minimum of one symbol's term ``Σ (upnl − MM − closing fee)`` of its cross legs for
        marks in ``[low, high]`` (core Account figures): at an end of the range or at a tier
        breakpoint (both sides of it, for tables that jump)."""
        account = self.account
        current = legs[0].mark_price
        prices = [low, high] if low != high else [low]
        if low != high:
            tiers = account.market(legs[0].symbol).tiers
            if any(
                tiers.tier_index(tiers.lookup_value(p.size, low))
                != tiers.tier_index(tiers.lookup_value(p.size, high)) for p in legs
            ):
                caps = [t.cap for t in tiers.tiers]
                for f in pth.tier_breakpoints(low, high, [p.size for p in legs], caps):
                    level = low + (high - low) * f
                    prices += [level * (1 - 1e-12), level * (1 + 1e-12)]
        best = math.inf
        for price in prices:
            for p in legs:
                p.mark_price = price
            best = min(best, sum(p.unrealized_pnl - account.trigger_margin(p) for p in legs))
        for p in legs:
            p.mark_price = current
        return best

    def _walk(self, bars: list[_Bar]) -> None:
        """Resolve fills, top-ups and liquidations of every symbol in time order on the clock.

        On each segment ``[t_k, t_k+1]`` (every path is linear there) the next event is the
        earliest of: a resting order's price crossed on its symbol's trade path, an isolated
        leg's mark reaching its LP, and the first instant the cross condition holds on the
        joint mark path (exact root, tier breakpoints included). Ties: liquidations before
        fills, then symbol name, then order reference.
        """
        account = self.account
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
                    account.set_mark(bar.symbol, _at(bar.mark, k, t))
                before = (account.version, len(self.pending))
                self._event_t = t
                if kind == 1:
                    if math.isnan(price):  # a stop-limit's stop was hit: now a resting limit
                        target.triggered = True
                        self._book_changes += 1
                    else:
                        self._fill_order(target, price, maker=target.exectype == bt.Order.Limit)
                elif target is None:
                    self._on_cross_trigger()
                else:
                    bar = next(b for b in bars if b.symbol == target.symbol)
                    self._on_trigger(bar.data, bar.symbol, target, price)
                stop_triggered = kind == 1 and math.isnan(price)
                if (account.version, len(self.pending)) == before and not stop_triggered:
                    skip[key] = t  # nothing changed: do not fire again at this instant
            t = max(t, t_end)
        self._event_t = None

    def _next_event(
        self, bars: list[_Bar], k: int, t: float, t_end: float, skip: dict[tuple[Any, ...], float]
    ) -> tuple[float, int, str, tuple[Any, ...], Any, float] | None:
        """The earliest event in ``[t, t_end]`` of segment ``k`` (see :meth:`_walk`)."""
        width = t_end - t
        best: tuple[float, int, str, tuple[Any, ...], Any, float] | None = None

        def offer(cand: tuple[float, int, str, tuple[Any, ...], Any, float]) -> None:
            nonlocal best
            if cand[0] <= skip.get(cand[3], -1.0):
                return
            if best is None or (cand[0], cand[1], cand[2], cand[3][-1]) < (
                best[0], best[1], best[2], best[3][-1]
            ):
                best = cand

        for bar in bars:
            a, b = _at(bar.trade, k, t), bar.trade[k + 1]
            for order in bar.orders:
                if not order.alive():
                    continue
                hit = self._order_trigger(order, a, b, t == 0.0)
                if hit is not None:
                    offer((t + hit[0] * width, 1, bar.symbol, ("order", order.ref), order,
                           hit[1]))
            ma, mb = _at(bar.mark, k, t), bar.mark[k + 1]
            for pos in self.positions_of(bar.data):
                if pos.margin_mode != "isolated":
                    continue
                lp, direction = self._liquidation_price(pos)
                if lp is None:
                    continue
                hit = pth.crossing(ma, mb, lp, rising=direction > 0)
                if hit is not None:
                    offer((t + hit[0] * width, 0, bar.symbol, ("leg", pos.symbol, pos.leg),
                           pos, hit[1]))
        if self._cross_may_breach(bars):
            hit_t = self._cross_first_breach(bars, k, t, t_end)
            if hit_t is not None:
                offer((hit_t, 0, "", ("cross", 0), None, math.nan))
        return best

    def _cross_may_breach(self, bars: list[_Bar]) -> bool:
        """Whether the cross condition can hold anywhere in this step with the account as it is
        now (the box bound of ``_cross_floor``); cached until the account changes.

        Each symbol's term is bounded over a box widened by ``_SAFE_MARGIN`` around its range
        and remembered while its legs are unchanged, so quiet steps and fills of other symbols
        cost no evaluation (the minimum over a box is never above the minimum over a box it
        contains); only when that bound is not safe is the exact box evaluated."""
        key = (self.account.version, self._bar_no)
        if self._breach_key == key:
            return self._breach_possible
        possible = False
        by_symbol = self._cross_by_symbol()
        if by_symbol:
            ranges = {bar.symbol: (min(bar.marks), max(bar.marks)) for bar in bars}
            bound = self.account.wallet_balance - self.account.trigger_order_margin()
            for symbol, legs in by_symbol.items():
                mark = legs[0].mark_price
                low, high = ranges.get(symbol, (mark, mark))
                state = tuple((p.leg, p.size, p.entry_price) for p in legs)
                box = self._term_boxes.get(symbol)
                if box is None or box[0] != state or not box[1] <= low <= high <= box[2]:
                    wide_low, wide_high = low * (1 - _SAFE_MARGIN), high * (1 + _SAFE_MARGIN)
                    box = (state, wide_low, wide_high,
                           self._term_min(legs, wide_low, wide_high))
                    self._term_boxes[symbol] = box
                bound += box[3]
            tol = self._cross_tolerance()
            if bound <= tol:
                possible = self._cross_floor(ranges) <= tol
        self._breach_key, self._breach_possible = key, possible
        return possible

    def _cross_first_breach(
        self, bars: list[_Bar], k: int, t: float, t_end: float
    ) -> float | None:
        """First clock value in ``[t, t_end]`` where the cross condition holds on the joint
        mark path (margin-model §8), or ``None``."""
        account = self.account
        cross_symbols = {p.symbol: p for p in self._cross_legs()}
        moving = [b for b in bars if b.symbol in cross_symbols]
        breakpoints: list[float] = []
        for bar in moving:
            ma, mb = _at(bar.mark, k, t), bar.mark[k + 1]
            sizes = [p.size for p in self.positions_of(bar.data) if p.margin_mode == "cross"]
            caps = [tier.cap for tier in account.market(bar.symbol).tiers.tiers]
            breakpoints += [t + f * (t_end - t) for f in pth.tier_breakpoints(ma, mb, sizes, caps)]

        def excess(at: float) -> float:
            for bar in moving:
                account.set_mark(bar.symbol, _at(bar.mark, k, at))
            return self._cross_excess()

        tol = self._cross_tolerance()
        if not moving:
            return t if excess(t) <= tol else None
        return pth.first_nonpositive(t, t_end, excess, breakpoints, tol)

    @staticmethod
    def _order_level(order: bt.Order) -> tuple[float, bool] | None:
        """``(level, rising)`` a bar must reach for ``order`` to act (``rising``: the high must
        reach it, else the low), or ``None`` for orders checked on every bar (market, close,
        trailing stops)."""
        exectype = order.exectype
        if exectype in _TRAILING:
            return None  # its stop moves after every bar: checked on every bar
        if exectype == bt.Order.StopLimit and order.triggered:
            return order.created.pricelimit, not order.isbuy()
        if exectype in (bt.Order.Stop, bt.Order.StopLimit):
            return order.created.price, order.isbuy()
        if exectype == bt.Order.Limit:
            return order.created.price, not order.isbuy()
        return None

    def _order_book(self) -> dict[Any, _Book]:
        """Resting orders per data, indexed by price. Updated by difference (orders that left
        or joined ``pending``) when the pending list changed (its length or newest reference),
        rebuilt when a stop-limit triggered (its level moved)."""
        pending = self.pending
        last = pending[-1] if pending else None
        signature = (len(pending), getattr(last, "ref", 0), self._book_changes)
        if signature == self._book_signature:
            return self._books
        previous = self._book_signature
        self._book_signature = signature
        self._reserve_key = None
        if previous and signature[2] != previous[2]:
            self._books, self._book_index = {}, {}
        elif previous and signature[0] > previous[0] > 0 and (
            getattr(pending[previous[0] - 1], "ref", None) == previous[1]
        ):
            # only appended since (the usual case: orders accepted): index the tail alone
            for i in range(previous[0], signature[0]):
                order = pending[i]
                if order is not None and order.alive() and order.ref not in self._book_index:
                    self._book_index[order.ref] = order
                    self._book_add(order)
                    if order.valid:
                        self._valid_orders.append(order)
            return self._books
        alive = {o.ref: o for o in pending if o is not None and o.alive()}
        index = self._book_index
        for ref in [r for r in index if r not in alive]:
            self._book_remove(index.pop(ref))
        for ref, order in alive.items():
            if ref not in index:
                index[ref] = order
                self._book_add(order)
        self._valid_orders = [o for o in alive.values() if o.valid]
        return self._books

    def _book_add(self, order: bt.Order) -> None:
        book = self._books.get(order.data)
        if book is None:
            book = self._books[order.data] = _Book()
        ref = order.ref
        book.orders[ref] = order
        level = self._order_level(order)
        if level is None:
            book.always[ref] = order
        else:
            bisect.insort(book.rising if level[1] else book.falling, (level[0], ref))
        symbol = self.symbol_of(order.data)
        leg, reduces = self._order_leg(order)
        book.reserve[ref] = (
            order, symbol, leg, reduces, self._order_price(order),
            self.account.market(symbol).leverage,
        )

    def _book_remove(self, order: bt.Order) -> None:
        book = self._books[order.data]
        ref = order.ref
        del book.orders[ref]
        del book.reserve[ref]
        if book.always.pop(ref, None) is not None:
            return
        level = self._order_level(order)
        keys = book.rising if level[1] else book.falling
        pos = bisect.bisect_left(keys, (level[0], ref))
        del keys[pos]

    def _reachable_orders(self, data: Any) -> list[bt.Order]:
        """Pending orders of ``data`` that the bar's price range can act on: a bisection in the
        price index, so a bar touches only what its range can reach (reference order)."""
        if not self.pending:
            return []
        book = self._order_book().get(data)
        if book is None or not book.orders:
            return []
        now = data.datetime[0]
        low, high = data.low[0], data.high[0]
        refs = list(book.always)
        refs += [k[1] for k in book.rising[: bisect.bisect_right(book.rising, (high, math.inf))]]
        refs += [k[1] for k in book.falling[bisect.bisect_left(book.falling, (low, -1)):]]
        orders = book.orders
        # backtrader semantics: an order acts from the bar after the one it was created in;
        # a bracket child only once its parent has filled (it is activated the bar after)
        reachable = [o for o in (orders[r] for r in sorted(refs))
                     if o.alive() and o.active() and now > o.created.dt]
        return reachable

    def _funding_rate(self, data: Any) -> float | None:
        line = getattr(data.lines, "funding_rate", None)
        if line is None:
            return None
        rate = line[0]
        return None if rate is None or math.isnan(rate) else float(rate)

    def _order_trigger(
        self, order: bt.Order, a: float, b: float, first: bool
    ) -> tuple[float, float] | None:
        """(fraction along a→b, fill price) where ``order`` acts in the segment, or None."""
        exectype = order.exectype
        is_buy = order.isbuy()
        if exectype == bt.Order.Market:
            return (0.0, a) if first else None
        if exectype == bt.Order.Close:
            return None
        if exectype in _STOPS:
            return self._cross(a, b, order.created.price, rising=is_buy)
        if exectype in _STOP_LIMITS and not order.triggered:
            crossed = self._cross(a, b, order.created.price, rising=is_buy)
            if crossed is None:
                return None
            return (crossed[0], math.nan)  # trigger only: becomes a limit order
        level = order.created.pricelimit if exectype in _STOP_LIMITS else order.created.price
        return self._cross(a, b, level, rising=not is_buy)

    @staticmethod
    def _cross(a: float, b: float, level: float, rising: bool) -> tuple[float, float] | None:
        """Where a price moving a→b reaches ``level`` (:func:`liqbt.core.path.crossing`)."""
        return pth.crossing(a, b, level, rising)

    def _liquidation_price(self, pos: Position) -> tuple[float | None, int]:
        """LP of a leg, cached until the account changes. A cross leg's LP also depends on the
        other cross symbols' marks: with several cross symbols it is cached for the step only
        (it serves the distance statistic; the cross trigger itself is the joint walk)."""
        account = self.account
        if account.version != self._lp_version or (
            self._lp_bar != self._bar_no and self._lp_multi
        ):
            self._lp_cache.clear()
            self._lp_version = account.version
            self._lp_multi = False
        self._lp_bar = self._bar_no
        key = (pos.symbol, pos.leg)
        cached = self._lp_cache.get(key)
        if cached is None:
            cached = self._lp_cache[key] = account.liquidation_price(pos)
            if pos.margin_mode == "cross" and any(
                p.symbol != pos.symbol for p in self._cross_legs()
            ):
                self._lp_multi = True
        return cached

    # --- fills --------------------------------------------------------------------------
    def _fill_order(self, order: bt.Order, price: float, maker: bool) -> None:
        """Execute the whole remaining size of ``order`` at ``price`` through backtrader's
        order/position machinery and the account (fees, margin, PnL)."""
        data = order.data
        symbol = self.symbol_of(data)
        qty = order.executed.remsize
        fee_rate = self.profile.maker_fee if maker else self.profile.taker_fee
        leg, reduces = self._order_leg(order)
        if reduces:
            # a reducing order may only shrink its leg: cap it, or cancel it when flat
            qty = core_orders.reducing_fill(qty, self._held(order, leg))
            if not qty:
                self.cancel(order)
                return
        elif self._opening_size(order) and self._rejection_at_fill(order, price):
            return
        result = self.account.fill(symbol, qty, price, fee_rate, leg, maker, order.ref)
        self._bt_execute(order, qty, price, result.fee)
        if order.alive():  # a capped reducing order: the rest has nothing to reduce
            self.cancel(order)

    def _rejection_at_fill(self, order: bt.Order, price: float) -> bool:
        """Margin check at fill (:func:`liqbt.core.orders.fill_refusal`); a refused order gets
        status ``Margin``. Returns whether it was refused."""
        symbol = self.symbol_of(order.data)
        config = self.account.market(symbol)
        opening = self._opening_size(order)
        own = core_orders.order_margin(opening, self._order_price(order), config.leverage)
        reason = core_orders.fill_refusal(
            symbol, opening, order.info.get("reserved_opening", 0.0), price, config.leverage,
            self.profile.taker_fee, self.account.available_balance(self._order_margin() - own),
            config.margin_mode == "isolated", self.account.wallet_balance,
        )
        if reason is None:
            return False
        self._reject(order, reason, price)
        return True

    def _reject(
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
                self._now(order.data), self.symbol_of(order.data), order.ref,
                order.created.size, price, reason,
            )
        )

    def _bt_execute(self, order: bt.Order, qty: float, price: float, fee: float) -> None:
        """Update backtrader's position and the order so trades and notifications work."""
        data = order.data
        position = self.positions[data]
        entry_before = position.price
        before = position.size
        move = qty
        if before and (before > 0) != (qty > 0) and abs(abs(qty) - abs(before)) <= 1e-9 * abs(qty):
            move = -before  # a close that differs from the position by float residue only
        psize, pprice, opened, closed = position.update(move, price, data.datetime.datetime())
        comminfo = self.getcommissioninfo(data)
        pnl = comminfo.profitandloss(-closed, entry_before, price) if closed else 0.0
        share_closed = abs(closed) / abs(qty) if qty else 0.0
        order.execute(
            data.datetime[0], qty, price,
            closed, abs(closed) * entry_before, fee * share_closed,
            opened, abs(opened) * price, fee * (1 - share_closed),
            0.0, pnl, psize, pprice,
        )
        order.addcomminfo(comminfo)
        self._complete(order)

    def _complete(self, order: bt.Order) -> None:
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
    def _on_trigger(self, data: Any, symbol: str, pos: Position, price: float) -> None:
        """margin-model §9 for an isolated leg at its LP: top up, cancel its orders, re-check,
        reduce, close at bankruptcy."""
        account = self.account
        if account.auto_top_up(pos, self._order_margin()):
            return  # the walk continues with the new, lower LP
        self._cancel_for_liquidation(data)
        if not self._still_triggered(pos, price):
            return
        while self._partial_step(pos, price):
            if not self._still_triggered(pos, price):
                return
        execution = {(pos.symbol, pos.leg): price}
        settle = account.settlement_prices([pos], execution)
        self._force_close(pos, price, price, settle[(pos.symbol, pos.leg)], partial=False)
        if not any(True for _ in account.open_positions()):
            self._check_wipeout()

    def _on_cross_trigger(self) -> None:
        """margin-model §9 for the cross account at the instant its condition holds, every
        symbol at its mark of that instant: cancel every order, net hedged legs, partial steps
        in the profile's ``cross_liquidation_order``, then close every cross leg at the
        bankruptcy price (:mod:`liqbt.core.liquidation`)."""
        account = self.account
        self._cancel_for_liquidation(None)
        if not self._cross_triggered():
            return
        ranked = self._cross_ranking()
        if account.position_mode == "hedge":
            for symbol in dict.fromkeys(s for s, _ in ranked):
                mark = next(p.mark_price for p in self._cross_legs() if p.symbol == symbol)
                if self._net_hedge(symbol, mark) and not self._cross_triggered():
                    return
            ranked = self._cross_ranking()
        for key in ranked:
            pos = account.positions[key]
            while pos.size and self._partial_step(pos, pos.mark_price):
                if not self._cross_triggered():
                    return
        legs = [account.positions[key] for key in self._cross_ranking()]
        if not legs:
            return
        execution = {(p.symbol, p.leg): p.mark_price for p in legs}
        settle = account.settlement_prices(legs, execution)
        for pos in legs:
            key = (pos.symbol, pos.leg)
            self._force_close(pos, execution[key], execution[key], settle[key], partial=False)
        if not any(True for _ in account.open_positions()):
            self._check_wipeout()

    def _cross_ranking(self) -> list[tuple[str, str]]:
        account = self.account
        states = [
            LegState(p.symbol, p.leg, p.unrealized_pnl, account.maintenance_margin(p))
            for p in self._cross_legs()
        ]
        return cross_order(states, self.profile.cross_liquidation_order)

    def _cross_triggered(self) -> bool:
        return self._cross_excess() <= self._cross_tolerance()

    def _still_triggered(self, pos: Position, price: float) -> bool:
        if not pos.size:
            return False
        lp, direction = self.account.liquidation_price(pos)
        if lp is None:
            return False
        return price <= lp + 1e-9 * lp if direction < 0 else price >= lp - 1e-9 * lp

    def _cancel_for_liquidation(self, data: Any | None) -> None:
        """margin-model §9 step 1: cancel the orders of the isolated position's feed (``data``) or,
        for a cross liquidation (``None``), every order of the account: their frozen margin
        sits in the cross wallet that the liquidation takes. Symbol by symbol (then by
        reference), so the events never depend on the order feeds were added in."""
        orders = [o for o in self.pending if o is not None]
        orders.sort(key=lambda o: (self.symbol_of(o.data), o.ref))
        for order in orders:
            if not order.alive():
                continue
            if data is not None and order.data is not data:
                continue
            self.cancel(order)
            self.account.events.append(
                ev.OrderCancelled(
                    self.account.clock, self.symbol_of(order.data), order.ref,
                    order.created.size, order.created.price,
                )
            )

    def _net_hedge(self, symbol: str, price: float) -> bool:
        """Hedge mode, cross: close the overlapping LONG and SHORT quantity (margin-model §9.2)."""
        long_pos = self.account.positions.get((symbol, "long"))
        short_pos = self.account.positions.get((symbol, "short"))
        if not long_pos or not short_pos or not long_pos.size or not short_pos.size:
            return False
        overlap = min(long_pos.size, -short_pos.size)
        for pos, qty in ((long_pos, -overlap), (short_pos, overlap)):
            self._force_close(pos, price, price, price, partial=True, qty=qty,
                              fee_rate=self.profile.taker_fee)
        return True

    def _partial_step(self, pos: Position, price: float) -> bool:
        """Reduce a large position one partial-liquidation step (margin-model §9 step 3,
        :func:`liqbt.core.liquidation.partial_reduction`). Returns whether a step was taken.

        No step is taken once the margin balance cannot pay the fee to close the position
        (a gap at or past bankruptcy): a partial close there would take the loss out of the
        wallet, which an isolated liquidation never touches; the full close settles at the
        bankruptcy price instead.
        """
        if pos.margin_mode not in self.profile.partial_liquidation_modes:
            return False
        if pos.margin_mode == "isolated":
            balance = pos.margin + pos.unrealized_pnl
        else:
            balance = self.account.cross_margin_balance()
        reduce = partial_reduction(
            pos.size, price, self.account.market(pos.symbol).tiers,
            self.profile.partial_liquidation_tiers, balance, self.profile.taker_fee,
        )
        if reduce <= 0:
            return False
        qty = -pos.side * reduce
        self._force_close(pos, price, price, price, partial=True, qty=qty,
                          fee_rate=self.profile.taker_fee)
        return True

    def _force_close(
        self, pos: Position, trigger: float, execution: float, settlement: float,
        partial: bool, qty: float | None = None, fee_rate: float = 0.0,
    ) -> None:
        """Close (part of) a leg with a real market order tagged as a liquidation."""
        data = self._symbol_data[pos.symbol]
        size = -pos.size if qty is None else qty
        owner = self._owners.get(data)
        maker = self.sell if size < 0 else self.buy
        order = maker(
            owner, data, abs(size), price=execution, exectype=bt.Order.Market,
            _checksubmit=False, liquidation=True, partial_liquidation=partial, leg=pos.leg,
        )
        if order in self.pending:
            self.pending.remove(order)
        event = self.account.book_liquidation(
            pos, size, trigger, execution, settlement, fee_rate, partial, order.ref
        )
        order.addinfo(liquidation_event=event, intrabar_time=self._event_t)
        self._bt_execute(order, size, settlement, event.fee + event.liquidation_fee)
        self.min_liquidation_distance = min(self.min_liquidation_distance, 0.0)  # LP reached

    def _check_wipeout(self) -> None:
        if self.wiped_out:
            return
        equity = self.account.equity()
        smallest = min(
            (m.spec.min_notional / m.leverage for m in self.account.markets.values()),
            default=0.0,
        )
        if equity <= max(smallest, 1e-9):
            self.wiped_out = True
            self.account.events.append(
                ev.Wipeout(self.account.clock, equity,
                           f"equity {equity:.2f} USDT cannot open the smallest order")
            )

    # --- after the bar --------------------------------------------------------------------
    def _track_distance(self, legs: list[Position], mark: list[float]) -> None:
        """Smallest distance (fraction of price) between the mark's adverse extreme and LP."""
        low, high = min(mark), max(mark)
        for pos in legs:
            lp, direction = self._liquidation_price(pos)
            if lp is None:
                continue
            extreme = low if direction < 0 else high
            distance = (extreme - lp) / extreme if direction < 0 else (lp - extreme) / extreme
            self.min_liquidation_distance = min(self.min_liquidation_distance, distance)

    def _after_bar(self) -> None:
        self._warn()
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
        for data in self._data_symbol:
            env = getattr(data, "_env", None)
            if env is not None and getattr(env, "runningstrats", None):
                return list(env.runningstrats)
        return list({id(o): o for o in self._owners.values() if o is not None}.values())

    def _warn(self) -> None:
        threshold = float(self.p.warning_threshold)
        account = self.account
        now = account.clock
        if now is None:
            return
        checks: list[tuple[Position, float]] = []
        cross = account.cross_positions()
        if cross:
            ratio = account.margin_ratio()
            checks.extend((p, ratio) for p in cross)
        for pos in account.open_positions():
            if pos.margin_mode == "isolated":
                checks.append((pos, account.margin_ratio(pos)))
        # by name, never by the order positions were first created in (feed order)
        for pos, ratio in sorted(checks, key=lambda c: (c[0].symbol, c[0].leg)):
            if ratio < threshold:
                continue
            key = (pos.symbol, pos.leg)
            last = self._warned_at.get(key)
            if last is not None and now - last < _WARNING_INTERVAL:
                continue
            self._warned_at[key] = now
            account.events.append(ev.MarginWarning(now, pos.symbol, pos.leg, ratio, threshold))
