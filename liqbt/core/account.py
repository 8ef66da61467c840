"""A futures account's margin state: wallet, positions, fills, funding and liquidations.

Pure Python (no backtrader): the broker adapter drives it bar by bar and turns its results into
backtrader orders and notifications. Money accounting (margin-model §4–7):

* ``wallet_balance`` is the cross wallet. Isolated margin leaves it when an isolated position
  opens or grows and comes back, with the realized PnL, when it closes.
* ``equity = wallet + Σ isolated margins + Σ unrealized PnL`` (at marks).
* Fees are paid from the wallet; funding moves the wallet (cross) or the position margin
  (isolated).
* A liquidation closes at the market (execution) price; the trader is then settled at the
  bankruptcy price and the difference goes to the insurance fund (``insurance_fund`` is the
  running total of what the fund gained). Hence, exactly:
  ``equity = initial + realized PnL (at execution) − fees − funding − insurance_fund``
  (a liquidation fee, under ``settlement = "liquidation_price"``, is one of the fees).

Margin figures (margin-model §3–5): the account is the only place that maps a profile's rules
onto the formulas of :mod:`liqbt.core.margin`, through the :class:`MarginModel` chosen once from
the profile (:func:`liqbt.core.margin_models.margin_model_for`). MM (:meth:`maintenance_margin`)
is the exchange's figure; the trigger adds the closing fee (:meth:`closing_fee`) and, where the
profile says so, resting orders' margin (:meth:`trigger_order_margin`);
:meth:`margin_figures` returns them together. The calculator (:mod:`liqbt.core.snapshot`) and
the bots' launch estimates (:mod:`liqbt.core.ladders`) ask a scratch account.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from liqbt.core import events as ev
from liqbt.core import margin as mg
from liqbt.core.choices import POSITION_MODES, SETTLEMENTS
from liqbt.core.errors import ValidationError
from liqbt.core.margin_models import MarginFigures, MarginModel, TieredMM, margin_model_for
from liqbt.core.profile import MARGIN_MODES, ExchangeProfile, SymbolSpec, normalize_symbol
from liqbt.core.tiers import TierTable

LEGS: tuple[str, ...] = ("net", "long", "short")

# Float noise below this many USDT is treated as zero when a cross wallet is cleared.
_MONEY_EPS = 1e-9


@dataclass(frozen=True)
class MarketConfig:
    """How the account trades one symbol (set once per data feed).

    Attributes
    ----------
    symbol
        Normalised symbol (``BTCUSDT``).
    leverage
        Chosen leverage; IM = notional / leverage.
    margin_mode
        ``cross`` or ``isolated``.
    auto_top_up
        Isolated only: move margin in at the LP (Bitget/Bybit), margin-model §10.
    spec
        The exchange's symbol data (tiers, tick, step, min notional).
    """

    symbol: str
    leverage: float
    margin_mode: str
    spec: SymbolSpec
    auto_top_up: bool = False

    @property
    def tiers(self) -> TierTable:
        """The symbol's tier table."""
        return self.spec.tiers


@dataclass
class Position:
    """Mutable state of one position leg (``net`` in one-way mode, ``long``/``short`` in
    hedge mode). ``size`` is signed; ``margin`` is the isolated position margin ``M``."""

    symbol: str
    leg: str
    margin_mode: str
    size: float = 0.0
    entry_price: float = 0.0
    margin: float = 0.0
    mark_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    funding: float = 0.0

    @property
    def side(self) -> int:
        """+1 long, −1 short, 0 flat."""
        return (self.size > 0) - (self.size < 0)

    @property
    def side_name(self) -> str:
        """``long`` or ``short`` (``flat`` when empty)."""
        return {1: "long", -1: "short", 0: "flat"}[self.side]

    @property
    def unrealized_pnl(self) -> float:
        """``size × (mark − entry)`` in USDT."""
        return self.size * (self.mark_price - self.entry_price) if self.size else 0.0


@dataclass(frozen=True, slots=True)
class FillResult:
    """What one fill did: ``opened``/``closed`` are signed parts of the fill size."""

    opened: float
    closed: float
    realized_pnl: float
    fee: float
    size_after: float
    entry_after: float


@dataclass
class Account:
    """The margin state of one account. See the module docstring for the accounting rules.

    Parameters
    ----------
    profile
        The exchange profile (fees, formulas, tiers).
    wallet_balance
        Initial cross wallet balance, USDT.
    position_mode
        ``one-way`` (net position per symbol) or ``hedge`` (LONG and SHORT legs).
    settlement
        ``bankruptcy`` (default: the trader loses the whole position margin, the rest goes to
        the insurance fund) or ``liquidation_price`` (settled at the trigger price, charged the
        profile's liquidation fee rate).
    debit
        Keep a negative balance after a gap past bankruptcy instead of clearing it to 0.
    """

    profile: ExchangeProfile
    wallet_balance: float
    position_mode: str = "one-way"
    settlement: str = "bankruptcy"
    debit: bool = False
    markets: dict[str, MarketConfig] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    initial_balance: float = field(init=False)
    realized_pnl: float = 0.0
    fees_paid: float = 0.0
    funding_paid: float = 0.0
    insurance_fund: float = 0.0
    version: int = 0
    events: list[ev.Event] = field(default_factory=list)
    order_margin_source: Callable[[], float] | None = field(
        default=None, repr=False, compare=False
    )
    model: MarginModel = field(init=False, repr=False)
    _seen_order_margin: float = field(default=0.0, init=False, repr=False)
    _clock: datetime | None = field(default=None, init=False, repr=False)
    _clock_source: Callable[[], datetime | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def clock(self) -> datetime | None:
        """Time of the current step (naive UTC), stamped on events; ``None`` before any."""
        if self._clock_source is not None:
            self._clock = self._clock_source()
            self._clock_source = None
        return self._clock

    @clock.setter
    def clock(self, value: datetime | None) -> None:
        self._clock = value
        self._clock_source = None

    def defer_clock(self, source: Callable[[], datetime | None]) -> None:
        """Set :attr:`clock` to ``source()``, called only when the clock is first read (most
        steps stamp no event, and making a datetime is a measurable share of a quiet step);
        ``source`` must return the same value whenever it is called."""
        self._clock_source = source

    def __post_init__(self) -> None:
        problems = []
        if not math.isfinite(self.wallet_balance) or self.wallet_balance < 0:
            problems.append(f"wallet_balance = {self.wallet_balance!r} must be a number >= 0")
        if self.position_mode not in POSITION_MODES:
            problems.append(
                f"position_mode = {self.position_mode!r} is not one of {POSITION_MODES}"
            )
        if self.settlement not in SETTLEMENTS:
            problems.append(f"settlement = {self.settlement!r} is not one of {SETTLEMENTS}")
        if problems:
            raise ValidationError(problems)
        self.initial_balance = self.wallet_balance
        self.model = margin_model_for(self.profile)

    # --- configuration ------------------------------------------------------------------
    def set_market(
        self,
        symbol: str,
        leverage: float,
        margin_mode: str = "cross",
        auto_top_up: bool = False,
        tiers: TierTable | None = None,
        check_leverage: bool = True,
    ) -> MarketConfig:
        """Declare how ``symbol`` is traded; validated against the profile.

        Leverage above the first tier's maximum is an error naming both numbers; top-up is
        refused where the profile has none or in cross mode. ``tiers`` replaces the profile's
        table (then the symbol need not be in the profile). ``check_leverage=False`` is for
        scratch accounts describing an existing position (the calculator), whose effective
        leverage ``entry notional / margin`` was checked by the caller or may lie below 1.
        """
        problems: list[str] = []
        key = normalize_symbol(symbol)
        if tiers is not None:
            known = self.profile.symbols.get(key)
            tick = known.price_tick if known is not None else 10.0 ** -self.profile.lp_decimals
            step = known.size_step if known is not None else 0.0
            minimum = known.min_notional if known is not None else 0.0
            spec = SymbolSpec(key, tiers, tick, step, minimum, tiers.source, "")
        else:
            spec = self.profile.symbol(key)
        if margin_mode not in MARGIN_MODES:
            problems.append(f"{key}: margin_mode = {margin_mode!r} is not one of {MARGIN_MODES}")
        top = spec.tiers.tiers[0].max_leverage
        if not isinstance(leverage, int | float) or not (
            leverage > 0 if not check_leverage else 1 <= leverage <= top
        ):
            problems.append(
                f"{key}: leverage = {leverage!r} is outside 1 .. {top:g} (the tier maximum of "
                f"{self.profile.name} {key})"
            )
        if auto_top_up and not self.profile.auto_top_up:
            problems.append(f"{key}: auto_top_up is not offered by {self.profile.name}")
        if auto_top_up and margin_mode != "isolated":
            problems.append(f"{key}: auto_top_up needs margin_mode = 'isolated'")
        if problems:
            raise ValidationError(problems)
        config = MarketConfig(key, float(leverage), margin_mode, spec, auto_top_up)
        self.markets[key] = config
        self.version += 1  # leverage and tiers feed cached margin figures
        return config

    def add_market(self, config: MarketConfig) -> None:
        """Declare an already validated market (e.g. a copy of another account's, for a
        scratch account asked about a hypothetical position)."""
        self.markets[config.symbol] = config
        self.version += 1  # leverage and tiers feed cached margin figures

    def market(self, symbol: str) -> MarketConfig:
        """The :class:`MarketConfig` of ``symbol``; a clear error when it was never set."""
        try:
            return self.markets[symbol]
        except KeyError:
            key = normalize_symbol(symbol)
            if key in self.markets:
                return self.markets[key]
            raise ValidationError(
                [f"symbol {symbol!r} has no market settings: call set_market first"]
            ) from None

    def position(self, symbol: str, leg: str = "net") -> Position:
        """The position leg (created flat on first use)."""
        key = (symbol, leg)
        pos = self.positions.get(key)
        if pos is None:
            config = self.market(symbol)
            pos = Position(symbol=config.symbol, leg=leg, margin_mode=config.margin_mode)
            self.positions[key] = pos
        return pos

    def open_positions(self) -> Iterator[Position]:
        """Every leg with a non-zero size."""
        return (p for p in self.positions.values() if p.size)

    def leg_for(self, symbol: str, qty: float, reduce: bool) -> str:
        """Which leg an order of signed ``qty`` acts on: ``net`` in one-way mode; in hedge mode
        a buy opens LONG or (``reduce``) closes SHORT, a sell the reverse."""
        if self.position_mode == "one-way":
            return "net"
        if reduce:
            return "short" if qty > 0 else "long"
        return "long" if qty > 0 else "short"

    # --- marks and valuation ------------------------------------------------------------
    def set_mark(self, symbol: str, price: float) -> None:
        """Value every leg of ``symbol`` at ``price`` (USDT)."""
        for leg in LEGS:
            pos = self.positions.get((symbol, leg))
            if pos is not None:
                pos.mark_price = price

    # --- margin figures (the one mapping of a profile's rules onto the formulas) ----------
    def maintenance_margin(self, pos: Position) -> float:
        """MM of a leg in USDT (>= 0), without the trigger's closing-fee term.

        ``q × P × mmr − amount`` from the tier table at the mark (Bybit standard, isolated: at
        the entry price), or ``rate × IM`` on the ``simple`` profile
        (:mod:`liqbt.core.margin_models`, margin-model §2–3).
        """
        if not pos.size:
            return 0.0
        config = self.market(pos.symbol)
        return self.model.mm.maintenance_margin(
            pos.size, pos.entry_price, pos.mark_price, config.leverage, config.tiers,
            pos.margin_mode == "cross",
        )

    def closing_fee(self, pos: Position) -> float:
        """The trigger's closing-fee term of a leg in USDT: ``taker × q × mark`` on
        ``taker_at_mark`` profiles (OKX, Bitget, Gate, simple), else 0 (margin-model §3)."""
        return self.model.closing_fee(pos.size, pos.mark_price) if pos.size else 0.0

    def trigger_margin(self, pos: Position) -> float:
        """``MM + closing fee`` of a leg (USDT): its part of the liquidation trigger."""
        return self.maintenance_margin(pos) + self.closing_fee(pos)

    def tier_index(self, pos: Position, at_mark: float | None = None) -> int | None:
        """0-based index of the tier the leg's MM is taken from, with the mark at ``at_mark``
        (default: the leg's mark); ``None`` for the used-margin model, which has no tiers."""
        mm = self.model.mm
        if not pos.size or not isinstance(mm, TieredMM):
            return None
        tiers = self.market(pos.symbol).tiers
        mark = pos.mark_price if at_mark is None else at_mark
        price = mm.basis_price(pos.entry_price, mark, pos.margin_mode == "cross")
        return tiers.tier_index(tiers.lookup_value(pos.size, price))

    def hold_order_margin(self, amount: float) -> None:
        """A scratch account's resting-order margin (USDT): a fixed amount standing for orders
        it does not hold (the calculator's ``--order-margin``). The broker instead sets
        :attr:`order_margin_source` to its own live sum."""
        self.order_margin_source = lambda: amount
        self.version += 1

    def order_margin(self) -> float:
        """Margin reserved by resting orders (USDT, margin-model §6): the broker's live sum via
        :attr:`order_margin_source`, 0 when none is set."""
        return self.order_margin_source() if self.order_margin_source is not None else 0.0

    def trigger_order_margin(self) -> float:
        """The order margin that counts against cross equity in the trigger: all of it where the
        profile says so (``order_margin_in_trigger``, the ``simple`` profile), else 0."""
        return self.order_margin() if self.model.order_margin_in_trigger else 0.0

    def sync_orders(self) -> None:
        """Note a change of the resting orders: where their margin is part of the trigger, a
        new amount changes the account's margin state (``version``), so cached liquidation
        prices are recomputed."""
        if self.model.order_margin_in_trigger:
            amount = self.order_margin()
            if amount != self._seen_order_margin:
                self._seen_order_margin = amount
                self.version += 1

    def initial_margin(self, pos: Position) -> float:
        """IM of a leg: ``|size| × entry / leverage``."""
        return abs(pos.size) * pos.entry_price / self.market(pos.symbol).leverage

    def cross_positions(self) -> list[Position]:
        """Open legs in cross margin."""
        # the same legs in the same order as open_positions(), without a generator: this is
        # called several times per bar (issue 11)
        return [p for p in self.positions.values() if p.size and p.margin_mode == "cross"]

    def cross_margin_balance(self) -> float:
        """Cross wallet + Σ upnl of cross legs (margin-model §5)."""
        # the cross legs in leg order (as cross_positions()), without building the list
        return self.wallet_balance + sum(
            p.unrealized_pnl for p in self.positions.values()
            if p.size and p.margin_mode == "cross"
        )

    def cross_maintenance_margin(self) -> float:
        """Σ MM of cross legs (without closing fees)."""
        return sum(self.maintenance_margin(p) for p in self.cross_positions())

    def cross_trigger_margin(self) -> float:
        """Σ (MM + closing fee) of cross legs + the order margin counted in the trigger."""
        return (
            sum(self.trigger_margin(p) for p in self.cross_positions())
            + self.trigger_order_margin()
        )

    def cross_excess(self) -> float:
        """Cross margin balance − cross trigger margin (USDT): the cross account is liquidated
        when it is <= 0 (margin-model §5)."""
        return self.cross_margin_balance() - self.cross_trigger_margin()

    def equity(self) -> float:
        """Wallet + isolated margins + all unrealized PnL (USDT)."""
        total = self.wallet_balance
        for pos in self.open_positions():
            total += pos.unrealized_pnl
            if pos.margin_mode == "isolated":
                total += pos.margin
        return total

    def available_balance(
        self, order_margin: float = 0.0, committed: float | None = None
    ) -> float:
        """Cross wallet + Σ cross upnl − Σ cross IM − order margin (margin-model §6), floored at
        0. ``committed``: :meth:`committed_margin` already known for this state (then
        ``order_margin`` is not used)."""
        value = self.cross_margin_balance()
        value -= self.committed_margin(order_margin) if committed is None else committed
        return max(value, 0.0)

    def committed_margin(self, order_margin: float = 0.0) -> float:
        """Σ cross IM + ``order_margin`` (USDT): what :meth:`available_balance` subtracts from
        the cross margin balance. It does not depend on the marks, so it stands while
        ``version`` and the resting orders are unchanged (the broker keeps it across bars)."""
        return sum(self.initial_margin(p) for p in self.cross_positions()) + order_margin

    def margin_figures(self, pos: Position | None = None) -> MarginFigures:
        """The trigger's figures of an isolated leg (``pos``) or of the cross account.

        Isolated: margin balance ``M + upnl``, the leg's MM and closing fee, no order margin.
        Cross (``pos`` None or a cross leg): margin balance ``wallet + Σ cross upnl``, Σ MM,
        Σ closing fees and the order margin counted in the trigger.
        """
        return MarginFigures.of(*self._trigger_terms(pos))

    def margin_ratio(self, pos: Position | None = None) -> float:
        """Trigger margin / margin balance of an isolated leg (``pos``) or of the cross account
        (1.0 = liquidation; :meth:`margin_figures`)."""
        return MarginFigures.ratio_of(*self._trigger_terms(pos))

    def ratio_and_balance(self, pos: Position | None = None) -> tuple[float, float]:
        """``(margin ratio, margin balance)`` of :meth:`margin_figures` (a per-bar query:
        without building the figures)."""
        terms = self._trigger_terms(pos)
        return MarginFigures.ratio_of(*terms), terms[0]

    def _trigger_terms(self, pos: Position | None) -> tuple[float, float, float, float]:
        """``(margin balance, Σ MM, Σ closing fee, order margin)`` of :meth:`margin_figures`."""
        if pos is not None and pos.margin_mode == "isolated":
            balance = pos.margin + pos.unrealized_pnl if pos.size else 0.0
            return balance, self.maintenance_margin(pos), self.closing_fee(pos), 0.0
        # one pass over the cross legs (in leg order, as cross_positions()): each sum takes
        # the same terms in the same order as a sum per figure (this runs on every bar)
        upnl = mm = fee = 0.0
        legs = 0
        for p in self.positions.values():
            if p.size and p.margin_mode == "cross":
                upnl += p.unrealized_pnl
                mm += self.maintenance_margin(p)
                fee += self.closing_fee(p)
                legs += 1
        return (
            self.wallet_balance + upnl, mm, fee, self.trigger_order_margin() if legs else 0.0
        )

    # --- liquidation and bankruptcy prices ----------------------------------------------
    def _solver_tiers(self, pos: Position) -> TierTable:
        config = self.market(pos.symbol)
        return self.model.mm.solver_tiers(
            pos.size, pos.entry_price, config.leverage, config.tiers
        )

    def liquidation_price(self, pos: Position) -> tuple[float | None, int]:
        """``(LP, direction)`` of a leg; direction −1 = reached by a falling mark, +1 rising.

        Isolated: :func:`liqbt.core.margin.isolated_liquidation_price` on the leg's margin.
        Cross: :func:`liqbt.core.margin.cross_liquidation_price` for the leg's symbol, all
        cross legs of that symbol moving together, the other symbols at their marks (their MM
        and closing fees held), the wallet less the order margin counted in the trigger.
        """
        if not pos.size:
            return None, 0
        model = self.model
        if pos.margin_mode == "isolated":
            lp = mg.isolated_liquidation_price(
                pos.side, pos.size, pos.entry_price, pos.margin, self._solver_tiers(pos),
                model.lp_formula, model.taker_fee, self.initial_margin(pos),
            )
            return lp, -pos.side
        legs, other_upnl, other_trigger = self._cross_split(pos.symbol)
        return mg.cross_liquidation_price(
            self.wallet_balance - self.trigger_order_margin(), legs, other_upnl, other_trigger,
            model.taker_fee, model.cross_lp_formula, start_price=pos.mark_price or pos.entry_price,
        )

    def _cross_split(self, symbol: str) -> tuple[list[mg.CrossLeg], float, float]:
        """The cross legs of ``symbol`` and the other cross legs' upnl and trigger margin."""
        legs: list[mg.CrossLeg] = []
        other_upnl = other_trigger = 0.0
        for p in self.cross_positions():
            if p.symbol == symbol:
                legs.append(
                    mg.CrossLeg(p.side, abs(p.size), p.entry_price, self._solver_tiers(p))
                )
            else:
                other_upnl += p.unrealized_pnl
                other_trigger += self.trigger_margin(p)
        return legs, other_upnl, other_trigger

    def bankruptcy_price(self, pos: Position) -> float | None:
        """Price of the leg's symbol where its margin balance is 0 (margin-model §4–5)."""
        if not pos.size:
            return None
        if pos.margin_mode == "isolated":
            bp = mg.isolated_bankruptcy_price(pos.side, pos.size, pos.entry_price, pos.margin)
            return bp if bp > 0 else None
        legs, other_upnl, _ = self._cross_split(pos.symbol)
        return mg.cross_bankruptcy_price(self.wallet_balance, legs, other_upnl)

    # --- money movements ----------------------------------------------------------------
    def fill(
        self,
        symbol: str,
        qty: float,
        price: float,
        fee_rate: float,
        leg: str = "net",
        maker: bool = False,
        order_ref: int | None = None,
        liquidation: bool = False,
    ) -> FillResult:
        """Apply a fill of signed ``qty`` at ``price`` to a leg and record a :class:`Fill`.

        The fill first closes (up to) the opposite position, then opens the rest. ``closed``
        is the closing part signed like the fill, so the realized PnL is
        ``−closed × (price − entry)`` (the closed size, signed like the position, times the
        price move). Isolated margin is released in proportion to the closed size and funded
        from the wallet for the opened part (IM = opened notional / leverage). The fee is
        ``|qty| × price × fee_rate``.
        """
        config = self.market(symbol)
        pos = self.position(config.symbol, leg)
        old = pos.size
        closed = 0.0
        if old and (old > 0) != (qty > 0):
            closed = -old if abs(qty) >= abs(old) else qty  # signed as the fill
        opened = qty - closed
        if abs(opened) <= abs(qty) * 1e-9:
            opened = 0.0  # float residue of a close, not a new position
        fee = abs(qty) * price * fee_rate
        pnl = 0.0
        if closed:
            pnl = -closed * (price - pos.entry_price)
            if pos.margin_mode == "isolated":
                released = pos.margin * (abs(closed) / abs(old))
                pos.margin -= released
                self.wallet_balance += released
            pos.size = old + closed
            if abs(pos.size) <= abs(old) * 1e-12:
                pos.size = 0.0
                if pos.margin_mode == "isolated":
                    self.wallet_balance += pos.margin
                    pos.margin = 0.0
                pos.entry_price = 0.0
            self.wallet_balance += pnl
            pos.realized_pnl += pnl
            self.realized_pnl += pnl
        if opened:
            new_size = pos.size + opened
            pos.entry_price = (
                (pos.size * pos.entry_price + opened * price) / new_size if pos.size else price
            )
            pos.size = new_size
            if pos.margin_mode == "isolated":
                im = abs(opened) * price / config.leverage
                pos.margin += im
                self.wallet_balance -= im
        self.wallet_balance -= fee
        self.version += 1
        pos.fees += fee
        self.fees_paid += fee
        if not pos.mark_price:
            pos.mark_price = price
        self.events.append(
            ev.Fill(
                self.clock, config.symbol, leg, qty, price, fee, pnl, maker, liquidation,
                order_ref, pos.size,
            )
        )
        return FillResult(opened, closed, pnl, fee, pos.size, pos.entry_price)

    def apply_funding(self, symbol: str, rate: float, mark_price: float) -> float:
        """Settle funding for every open leg of ``symbol``: each pays
        ``size × mark × rate`` (margin-model §7) from the wallet (cross) or its margin (isolated).
        Returns the total paid (negative = received)."""
        total = 0.0
        for leg in LEGS:
            pos = self.positions.get((symbol, leg))
            if pos is None or not pos.size:
                continue
            payment = mg.funding_payment(pos.size, mark_price, rate)
            self.version += 1
            if pos.margin_mode == "isolated":
                pos.margin -= payment
            else:
                self.wallet_balance -= payment
            pos.funding += payment
            self.funding_paid += payment
            total += payment
            self.events.append(
                ev.Funding(
                    self.clock, symbol, leg, rate, mark_price, pos.size, payment, pos.margin_mode
                )
            )
        return total

    def add_margin(self, pos: Position, amount: float) -> None:
        """Move ``amount`` USDT from the wallet into an isolated leg's margin (negative
        removes it; removal is limited so the leg keeps its initial margin)."""
        problems = []
        if pos.margin_mode != "isolated" or not pos.size:
            problems.append(f"{pos.symbol}: margin can only be moved on an open isolated position")
        elif amount > 0 and amount > self.available_balance() + _MONEY_EPS:
            problems.append(
                f"{pos.symbol}: add_margin {amount:g} exceeds the available balance "
                f"{self.available_balance():g}"
            )
        elif amount < 0:
            removable = max(pos.margin + min(pos.unrealized_pnl, 0.0) - self.initial_margin(pos), 0)
            if -amount > removable + _MONEY_EPS:
                problems.append(
                    f"{pos.symbol}: remove_margin {-amount:g} exceeds the removable {removable:g}"
                )
        if problems:
            raise ValidationError(problems)
        pos.margin += amount
        self.wallet_balance -= amount
        self.version += 1

    def auto_top_up(self, pos: Position, order_margin: float = 0.0) -> float:
        """At the LP: move ``min(IM, available)`` into an isolated leg with top-up on.

        Returns the amount moved (0 when none applies) and records a :class:`TopUp` event
        (margin-model §10).
        """
        if pos.margin_mode != "isolated" or not self.market(pos.symbol).auto_top_up:
            return 0.0
        effective_leverage = (
            abs(pos.size) * pos.mark_price / pos.margin if pos.margin > 0 else math.inf
        )
        amount = mg.auto_top_up_amount(
            self.initial_margin(pos), self.available_balance(order_margin), effective_leverage
        )
        if amount <= 0:
            return 0.0
        pos.margin += amount
        self.wallet_balance -= amount
        self.version += 1
        lp, _ = self.liquidation_price(pos)
        self.events.append(
            ev.TopUp(
                self.clock, pos.symbol, pos.leg, amount, pos.margin, lp,
                self.available_balance(order_margin),
            )
        )
        return amount

    # --- liquidation settlement -----------------------------------------------------------
    def settlement_prices(
        self, legs: list[Position], execution_prices: dict[tuple[str, str], float]
    ) -> dict[tuple[str, str], float]:
        """Prices at which the trader is settled when ``legs`` are force-closed at
        ``execution_prices`` (margin-model §9 step 4).

        ``bankruptcy``: what remains of the margin balance at execution (``B``) goes to the
        insurance fund, shared among the legs in proportion to their MM: each leg settles at
        ``exec − side × share / q``. Isolated: ``B = M + upnl`` so the leg settles exactly at its
        bankruptcy price. Cross: the wallet ends at 0. With ``debit`` and ``B < 0`` (a gap past
        bankruptcy) the trader keeps the deficit (settled at execution).
        ``liquidation_price``: settled at execution (the liquidation fee is charged apart, in
        :meth:`book_liquidation`), except after a gap past bankruptcy (``B < 0``, no ``debit``):
        then as ``bankruptcy``, since a liquidation never takes more than the margin backing
        the legs (isolated: ``M``; cross: the cross margin balance).
        """
        marks = {key: self.positions[key].mark_price for key in execution_prices}
        for (symbol, leg), price in execution_prices.items():
            self.positions[(symbol, leg)].mark_price = price
        try:
            if all(p.margin_mode == "isolated" for p in legs):
                balance = sum(p.margin + p.unrealized_pnl for p in legs)
            else:
                balance = self.cross_margin_balance()
            if (balance < 0 and self.debit) or (
                self.settlement == "liquidation_price" and balance >= 0
            ):
                return dict(execution_prices)
            weights = {(p.symbol, p.leg): self.maintenance_margin(p) for p in legs}
            total = sum(weights.values())
            if total <= 0:
                weights = {(p.symbol, p.leg): abs(p.size) * p.mark_price for p in legs}
                total = sum(weights.values())
            result = {}
            for p in legs:
                key = (p.symbol, p.leg)
                share = balance * weights[key] / total
                result[key] = execution_prices[key] - p.side * share / abs(p.size)
            return result
        finally:
            for key, mark in marks.items():
                self.positions[key].mark_price = mark

    def book_liquidation(
        self,
        pos: Position,
        qty: float,
        trigger_price: float,
        execution_price: float,
        settlement_price: float,
        fee_rate: float,
        partial: bool,
        order_ref: int | None = None,
    ) -> ev.Liquidation:
        """Close ``qty`` (signed, reducing) of ``pos`` at ``execution_price`` and settle the
        trader at ``settlement_price``; the difference goes to the insurance fund. Records the
        :class:`Fill` and :class:`Liquidation` events and returns the latter.

        ``settlement = "liquidation_price"`` also charges the profile's liquidation fee on a
        full liquidation: ``min(rate × q × execution price, what still backs the leg)``, where
        what backs it is, isolated, ``M + realized PnL at settlement − the fill's fee`` and,
        cross, the cross margin balance left after the close: the fee never comes out of the
        wallet beyond the position's margin (Binance "Liquidation Protocols": the clearance
        fee is what remains of the margin, at most the fee rate). The fee is a fee
        (``fees_paid``, the event's ``liquidation_fee``); ``insurance_fund_delta`` is the
        settlement gap plus any cross residue cleared, so the events sum to
        ``insurance_fund`` and no money is counted twice.
        """
        side_name = pos.side_name
        mode = pos.margin_mode
        entry = pos.entry_price
        margin_before = pos.margin
        result = self.fill(
            pos.symbol, qty, execution_price, fee_rate, pos.leg, order_ref=order_ref,
            liquidation=True,
        )
        closed_part = -result.closed  # signed like the position
        clearance = closed_part * (execution_price - settlement_price)
        self.wallet_balance -= clearance
        liquidation_fee = 0.0
        if self.settlement == "liquidation_price" and not partial:
            if mode == "isolated":
                backing = margin_before + closed_part * (settlement_price - entry) - result.fee
            else:
                backing = self.cross_margin_balance()
            liquidation_fee = min(
                abs(qty) * execution_price * self.profile.liquidation_fee, max(backing, 0.0)
            )
            self.wallet_balance -= liquidation_fee
            self.fees_paid += liquidation_fee
            pos.fees += liquidation_fee
        self.version += 1
        if mode == "cross" and not partial and not self.cross_positions():
            # the cross wallet ends at exactly 0: float noise goes to the fund, never to the
            # trader (and a deficit stays only with debit on)
            if abs(self.wallet_balance) < _MONEY_EPS * max(1.0, self.initial_balance) or (
                self.wallet_balance < 0 and not self.debit
            ):
                clearance += self.wallet_balance
                self.wallet_balance = 0.0
        self.insurance_fund += clearance
        loss = -(closed_part * (settlement_price - entry)) + liquidation_fee
        event = ev.Liquidation(
            self.clock, pos.symbol, pos.leg, side_name, abs(closed_part), trigger_price,
            settlement_price, loss + result.fee, clearance, mode, partial, result.fee,
            liquidation_fee,
        )
        self.events.append(event)
        return event
