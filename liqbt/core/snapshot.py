"""Account-level evaluation: liquidation and bankruptcy prices, MM and margin ratio of an account.

One pure function, :func:`evaluate`, takes an exchange profile, the cross wallet balance and the
open positions (each at its mark) and returns a :class:`Snapshot`. It validates the input and
then asks a scratch :class:`liqbt.core.account.Account` (the broker's evaluator, holding the
profile's :mod:`liqbt.core.margin_models` model) for every figure: it does no margin arithmetic
of its own beyond sums. So a number shown by ``liqbt calc`` is the number the backtest uses.

Conventions (margin-model §1, §4, §5)
-------------------------------------
* ``size`` is ``|size|`` in base units (> 0); ``side`` is +1 long / -1 short.
* ``upnl = side × size × (mark − entry)`` (USDT).
* Margin balance = cross wallet + Σ upnl of the cross positions (Binance). An account with only
  isolated positions reports Σ (position margin + upnl) of those positions instead.
* MM is the exchange's figure without the closing-fee term (reported apart as
  ``closing_fee``); the trigger is ``margin balance <= MM + closing fee (+ order margin)`` and
  the margin ratio is ``trigger margin / margin balance`` (1.0 = liquidation).
* ``mm_model = "used_margin"`` (the ``simple`` profile): MM = ``used_margin_mm_rate`` × the
  position's initial margin, ``entry × size / leverage``; without a leverage the given margin
  is taken as the initial margin (leverage = entry notional / margin).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from liqbt.core import margin as mg
from liqbt.core.account import Account, Position
from liqbt.core.choices import MARGIN_MODES, POSITION_MODES
from liqbt.core.errors import ValidationError
from liqbt.core.margin_models import MarginFigures
from liqbt.core.profile import ExchangeProfile, known_symbols_text, normalize_symbol
from liqbt.core.tiers import TierTable


def parse_side(side: int | str) -> int:
    """``+1``/``"long"``/``"buy"`` -> +1, ``-1``/``"short"``/``"sell"`` -> -1; ``ValueError``
    otherwise."""
    if isinstance(side, str):
        text = side.strip().lower()
        if text in ("long", "buy", "+1", "1"):
            return 1
        if text in ("short", "sell", "-1"):
            return -1
    elif not isinstance(side, bool) and side in (1, -1):
        return int(side)
    raise ValueError(f"side {side!r} must be 'long' or 'short' (+1 / -1)")


@dataclass(frozen=True)
class PositionInput:
    """One open position (or hedge-mode leg) to evaluate.

    Attributes
    ----------
    symbol
        Any common spelling (``BTCUSDT``, ``BTC/USDT:USDT``); normalised against the profile.
    side
        +1 / -1, or ``"long"`` / ``"short"``.
    size
        Position size in base units, > 0 (the direction is ``side``).
    entry_price, mark_price
        Average entry price and current mark price, USDT.
    margin_mode
        ``"isolated"`` or ``"cross"``.
    margin
        Isolated position margin ``M`` in USDT (IM + added − funding paid). Defaults to the
        initial margin ``entry × size / leverage``. Ignored for cross positions except by the
        ``used_margin`` model, where it is the used margin.
    leverage
        Chosen leverage; checked against the tier's ``max_leverage`` at the entry notional.
    tiers
        A tier table replacing the profile's (e.g. ``TierTable.flat_rate`` for ``--mmr``). With
        it the symbol need not be in the profile.
    """

    symbol: str
    side: int | str
    size: float
    entry_price: float
    mark_price: float
    margin_mode: str = "cross"
    margin: float | None = None
    leverage: float | None = None
    tiers: TierTable | None = None


@dataclass(frozen=True)
class PositionResult:
    """The evaluation of one position (USDT unless stated; floats unrounded).

    Attributes
    ----------
    liquidation_price
        Price of this symbol (others at their marks) where the trigger holds; ``None`` when no
        positive price liquidates (a 1× long). Cross positions of one symbol share one LP.
    bankruptcy_price
        Price where the position's (isolated) or the account's (cross) margin balance is 0;
        ``None`` when not positive.
    maintenance_margin
        MM at the mark (see module docstring), without the closing-fee term.
    closing_fee
        The trigger's closing-fee term of the position (``taker × q × mark`` on
        ``taker_at_mark`` profiles, else 0).
    tier, mmr, maintenance_amount
        1-based tier of the position at its mark and that tier's rate and amount (``None`` for
        the ``used_margin`` model, which has no tiers).
    liquidation_tier
        1-based tier used for the LP, i.e. the tier of the position valued at the LP.
    unrealized_pnl
        ``side × size × (mark − entry)``.
    margin
        The isolated margin ``M`` (``None`` for cross).
    display_liquidation_price
        The LP rounded as the exchange shows it (:func:`liqbt.core.margin.round_price`).
    """

    symbol: str
    side: int
    size: float
    entry_price: float
    mark_price: float
    margin_mode: str
    liquidation_price: float | None
    bankruptcy_price: float | None
    maintenance_margin: float
    tier: int | None
    mmr: float | None
    maintenance_amount: float | None
    liquidation_tier: int | None
    unrealized_pnl: float
    margin: float | None
    display_liquidation_price: float | None
    closing_fee: float = 0.0

    @property
    def past_liquidation(self) -> bool:
        """Whether the mark is already at or beyond the liquidation price (a long's mark at
        or below its LP, a short's at or above): the exchange would liquidate it now."""
        lp = self.liquidation_price
        if lp is None:
            return False
        return self.mark_price <= lp if self.side > 0 else self.mark_price >= lp


@dataclass(frozen=True)
class Snapshot:
    """Account-level result of :func:`evaluate`.

    Attributes
    ----------
    positions
        One :class:`PositionResult` per input, in input order.
    margin_balance
        Cross wallet + Σ cross upnl; for an account without cross positions, Σ (M + upnl) of the
        isolated positions.
    maintenance_margin
        Σ MM of the positions counted in ``margin_balance`` (without closing fees).
    margin_ratio
        ``trigger_margin / margin_balance`` (1.0 = liquidation,
        :class:`liqbt.core.margin_models.MarginFigures`).
    closing_fee
        Σ of the trigger's closing-fee terms (``taker × q × mark`` on ``taker_at_mark``
        profiles).
    order_margin
        Resting orders' margin counted in the cross trigger (``order_margin_in_trigger``).
    trigger_margin
        ``maintenance_margin + closing_fee + order_margin``.
    """

    positions: tuple[PositionResult, ...]
    margin_balance: float
    maintenance_margin: float
    margin_ratio: float
    closing_fee: float = 0.0
    order_margin: float = 0.0
    trigger_margin: float = 0.0

    @property
    def past_liquidation(self) -> tuple[PositionResult, ...]:
        """Positions whose mark is already beyond their liquidation price."""
        return tuple(p for p in self.positions if p.past_liquidation)


@dataclass
class _Prepared:
    """A validated position."""

    inp: PositionInput
    symbol: str
    side: int
    q: float
    table: TierTable  # the table used for tier reporting and leverage checks
    price_tick: float
    leverage: float  # given, or the effective entry notional / margin
    margin: float | None  # isolated M (default: the initial margin)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def evaluate(
    profile: ExchangeProfile,
    wallet_balance: float,
    positions: Sequence[PositionInput],
    position_mode: str = "one-way",
    order_margin: float = 0.0,
) -> Snapshot:
    """Evaluate an account: every position's LP, BP, MM and the account's margin ratio.

    The positions are placed in a scratch :class:`liqbt.core.account.Account` (no fees, no
    events) and every figure is its answer: :meth:`~liqbt.core.account.Account.liquidation_price`
    (isolated: :func:`liqbt.core.margin.isolated_liquidation_price` on ``M``; cross: the
    symbol's cross legs together, the other cross symbols held at their marks),
    :meth:`~liqbt.core.account.Account.bankruptcy_price`,
    :meth:`~liqbt.core.account.Account.maintenance_margin` and
    :meth:`~liqbt.core.account.Account.margin_figures`.

    Parameters
    ----------
    profile
        The exchange profile (fees, formula, tiers, rounding).
    wallet_balance
        Cross wallet balance in USDT (excluding isolated margins).
    positions
        Open positions at their marks.
    position_mode
        ``"one-way"`` (one position per symbol) or ``"hedge"`` (one LONG and one SHORT leg per
        symbol at most).
    order_margin
        Margin reserved by resting orders, USDT (>= 0). It lowers the cross trigger equity on
        profiles with ``order_margin_in_trigger`` (``simple``), margin-model §5.

    Raises
    ------
    ValidationError
        With every problem found (bad numbers, unknown symbols, leverage above the tier's
        maximum for the position's entry notional, duplicate positions, missing margin).
    """
    problems: list[str] = []
    if _number(wallet_balance) is None:
        problems.append(f"wallet_balance = {wallet_balance!r} must be a finite number")
    if _number(order_margin) is None or order_margin < 0:
        problems.append(f"order_margin = {order_margin!r} must be a number >= 0")
    if position_mode not in POSITION_MODES:
        problems.append(f"position_mode = {position_mode!r} is not one of {POSITION_MODES}")
    prepared: list[_Prepared] = []
    seen: dict[tuple[str, int | None], int] = {}
    symbol_modes: dict[str, set[str]] = defaultdict(set)
    symbol_leverage: dict[str, tuple[float, int]] = {}
    for n, pos in enumerate(positions, start=1):
        item = _prepare(profile, pos, n, problems)
        if item is None:
            continue
        key = (item.symbol, item.side if position_mode == "hedge" else None)
        if key in seen:
            what = "side" if position_mode == "hedge" else "symbol (one-way mode)"
            problems.append(
                f"position {n}: a second {item.symbol} position on the same {what} as position "
                f"{seen[key]}; net them or use position_mode 'hedge'"
            )
        seen.setdefault(key, n)
        symbol_modes[item.symbol].add(pos.margin_mode)
        if pos.leverage is not None:
            first = symbol_leverage.setdefault(item.symbol, (item.leverage, n))
            if first[0] != item.leverage:
                problems.append(
                    f"position {n}: leverage {item.leverage:g} differs from position {first[1]}'s "
                    f"{first[0]:g}; one leverage per symbol"
                )
        prepared.append(item)
    for symbol, modes in symbol_modes.items():
        if len(modes) > 1:
            problems.append(f"{symbol}: positions mix margin modes {sorted(modes)}; one per symbol")
    if problems:
        raise ValidationError(problems)

    account = Account(profile, 0.0, position_mode=position_mode)
    account.wallet_balance = float(wallet_balance)  # may be negative (a debit)
    account.hold_order_margin(float(order_margin))
    for p in prepared:
        if p.symbol not in account.markets:
            lev = symbol_leverage.get(p.symbol, (p.leverage, 0))[0]
            account.set_market(p.symbol, lev, p.inp.margin_mode, tiers=p.inp.tiers,
                               check_leverage=False)
        leg = "net" if position_mode == "one-way" else ("long" if p.side > 0 else "short")
        held = account.position(p.symbol, leg)
        held.size = p.side * p.q
        held.entry_price = float(p.inp.entry_price)
        held.mark_price = float(p.inp.mark_price)
        held.margin = p.margin if p.margin is not None else 0.0
    account.version += 1

    def held_of(p: _Prepared) -> Position:
        leg = "net" if position_mode == "one-way" else ("long" if p.side > 0 else "short")
        return account.positions[(p.symbol, leg)]

    results = []
    for p in prepared:
        held = held_of(p)
        lp, direction = account.liquidation_price(held)
        rounding_side = -direction if p.inp.margin_mode == "cross" and direction else p.side
        results.append(_result(profile, account, p, held, lp, rounding_side))

    cross = [held_of(p) for p in prepared if p.inp.margin_mode == "cross"]
    if cross:
        figures = account.margin_figures()
    elif prepared:
        isolated = [account.margin_figures(held_of(p)) for p in prepared]
        figures = MarginFigures.of(
            sum(f.margin_balance for f in isolated),
            sum(f.maintenance_margin for f in isolated),
            sum(f.closing_fee for f in isolated),
            0.0,
        )
    else:
        figures = MarginFigures.of(float(wallet_balance), 0.0, 0.0, 0.0)
    return Snapshot(
        positions=tuple(results),
        margin_balance=figures.margin_balance,
        maintenance_margin=figures.maintenance_margin,
        margin_ratio=figures.margin_ratio,
        closing_fee=figures.closing_fee,
        order_margin=figures.order_margin,
        trigger_margin=figures.trigger_margin,
    )


def _prepare(
    profile: ExchangeProfile, pos: PositionInput, n: int, problems: list[str]
) -> _Prepared | None:
    """Validate one position (appending to ``problems``) and compute its MM at mark."""
    where = f"position {n} ({pos.symbol})"
    start = len(problems)
    try:
        side = parse_side(pos.side)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        side = 1
    values: dict[str, float] = {}
    for name in ("size", "entry_price", "mark_price"):
        value = _number(getattr(pos, name))
        if value is None or value <= 0:
            hint = " (the direction is given by side)" if name == "size" else ""
            problems.append(f"{where}: {name} = {getattr(pos, name)!r} must be > 0{hint}")
        else:
            values[name] = value
    for name in ("margin", "leverage"):
        raw = getattr(pos, name)
        if raw is None:
            continue
        value = _number(raw)
        if value is None or value <= 0:
            problems.append(f"{where}: {name} = {raw!r} must be > 0")
    if pos.leverage is not None and _number(pos.leverage) is not None and pos.leverage < 1:
        problems.append(f"{where}: leverage = {pos.leverage!r} must be >= 1")
    if pos.margin_mode not in MARGIN_MODES:
        problems.append(f"{where}: margin_mode = {pos.margin_mode!r} is not one of {MARGIN_MODES}")
    symbol = normalize_symbol(pos.symbol)
    spec = profile.symbols.get(symbol)
    table = pos.tiers if pos.tiers is not None else (spec.tiers if spec is not None else None)
    if table is None:
        known = known_symbols_text(profile.symbols, pos.symbol)
        problems.append(
            f"{where}: symbol {pos.symbol!r} is not in profile {profile.name!r} ({known}); "
            "import its tiers (liqbt calc import-tiers) or give mmr / --mmr"
        )
    used_margin = profile.mm_model == "used_margin"
    if pos.margin_mode == "isolated" and pos.margin is None and pos.leverage is None:
        problems.append(f"{where}: an isolated position needs margin or leverage")
    if used_margin and pos.margin is None and pos.leverage is None:
        problems.append(
            f"{where}: the used_margin model needs the position's margin or leverage"
        )
    lev = _number(pos.leverage)
    if table is not None and lev is not None and "size" in values and "entry_price" in values:
        # checked even when other fields are bad, so every problem shows in one pass
        q, entry = values["size"], values["entry_price"]
        lookup = table.lookup_value(q, entry)
        unit = "size" if table.basis == "size" else "notional"
        if lookup > table.last_cap:
            problems.append(
                f"{where}: {unit} {lookup:,.2f} at entry is above the last tier's cap "
                f"{table.last_cap:,.2f}"
            )
        elif lev > table.tier_at(q, entry).max_leverage + 1e-9:
            problems.append(
                f"{where}: leverage {lev:g}× is above the maximum "
                f"{table.tier_at(q, entry).max_leverage:g}× of the tier for {unit} "
                f"{lookup:,.2f} (tier {table.tier_index(lookup) + 1})"
            )
    if len(problems) > start or table is None:
        return None

    q, entry = values["size"], values["entry_price"]
    im = mg.initial_margin(q, entry, lev) if lev is not None else None
    margin = float(pos.margin) if pos.margin is not None else im
    if lev is not None:
        leverage = lev
    elif margin is not None:
        leverage = q * entry / margin  # no leverage given: the margin is the initial margin
    else:
        leverage = 1.0  # a tiered cross position: its leverage moves no figure shown here
    return _Prepared(
        inp=pos,
        symbol=symbol,
        side=side,
        q=q,
        table=table,
        price_tick=spec.price_tick if spec is not None else 10.0 ** -profile.lp_decimals,
        leverage=leverage,
        margin=margin if pos.margin_mode == "isolated" else None,
    )


def _result(
    profile: ExchangeProfile,
    account: Account,
    p: _Prepared,
    held: Position,
    lp: float | None,
    rounding_side: int,
) -> PositionResult:
    """Assemble a :class:`PositionResult` from the account's answers; ``rounding_side`` +1
    rounds like a long's LP."""
    tier = account.tier_index(held)
    tier_row = p.table.tiers[tier] if tier is not None else None
    lp_tier = account.tier_index(held, at_mark=lp) if lp is not None else None
    display = (
        mg.round_price(lp, profile.lp_rounding, p.price_tick, rounding_side, profile.lp_decimals)
        if lp is not None
        else None
    )
    return PositionResult(
        symbol=p.symbol,
        side=p.side,
        size=p.q,
        entry_price=float(p.inp.entry_price),
        mark_price=float(p.inp.mark_price),
        margin_mode=p.inp.margin_mode,
        liquidation_price=lp,
        bankruptcy_price=account.bankruptcy_price(held),
        maintenance_margin=account.maintenance_margin(held),
        tier=None if tier is None else tier + 1,
        mmr=tier_row.mmr if tier_row is not None else None,
        maintenance_amount=float(tier_row.maintenance_amount) if tier_row is not None else None,
        liquidation_tier=None if lp_tier is None else lp_tier + 1,
        unrealized_pnl=held.unrealized_pnl,
        margin=p.margin,
        display_liquidation_price=display,
        closing_fee=account.closing_fee(held),
    )
