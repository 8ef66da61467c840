"""Account-level evaluation: liquidation and bankruptcy prices, MM and margin ratio of an account.

One pure function, :func:`evaluate`, takes an exchange profile, the cross wallet balance and the
open positions (each at its mark) and returns a :class:`Snapshot`. It does no margin arithmetic of
its own beyond sums: every liquidation/bankruptcy price comes from :mod:`liqbt.core.margin`
(isolated: :func:`~liqbt.core.margin.isolated_liquidation_price`; cross:
:func:`~liqbt.core.margin.cross_liquidation_price`) and every maintenance margin from
:meth:`liqbt.core.tiers.TierTable.maintenance_margin_at`. The calculator CLI and the broker's
reports share it, so a number shown by ``liqbt calc`` is the number the backtest uses.

Conventions (margin-model §1, §4, §5)
-----------------------------
* ``size`` is ``|size|`` in base units (> 0); ``side`` is +1 long / -1 short.
* ``upnl = side × size × (mark − entry)`` (USDT).
* Margin balance = cross wallet + Σ upnl of the cross positions (Binance). An account with only
  isolated positions reports Σ (position margin + upnl) of those positions instead.
* MM of a position is taken at its mark (``bybit`` formula: at the entry value, as Bybit's
  standard-account LP formula and :func:`liqbt.core.margin.isolated_liquidation_price` do).
* Margin ratio = MM / margin balance (1.0 = liquidation, Binance's definition).
* ``mm_model = "used_margin"`` (the ``simple`` profile): MM = ``used_margin_mm_rate`` × the
  position's initial margin (isolated margin or entry notional / leverage). It is passed to the
  core formulas as a one-tier table with rate 0 and a negative maintenance amount, i.e. a constant
  MM, so the same solvers apply.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from liqbt.core import margin as mg
from liqbt.core.choices import MARGIN_MODES, POSITION_MODES
from liqbt.core.errors import ValidationError
from liqbt.core.profile import ExchangeProfile, known_symbols_text, normalize_symbol
from liqbt.core.tiers import Tier, TierTable


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
        Σ MM of the positions counted in ``margin_balance``.
    margin_ratio
        ``maintenance_margin / margin_balance`` (:func:`liqbt.core.margin.margin_ratio`).
    """

    positions: tuple[PositionResult, ...]
    margin_balance: float
    maintenance_margin: float
    margin_ratio: float

    @property
    def past_liquidation(self) -> tuple[PositionResult, ...]:
        """Positions whose mark is already beyond their liquidation price."""
        return tuple(p for p in self.positions if p.past_liquidation)


@dataclass
class _Prepared:
    """A validated position with everything the solvers need."""

    inp: PositionInput
    symbol: str
    side: int
    q: float
    table: TierTable  # the table used for tier reporting and leverage checks
    lp_table: TierTable  # the table passed to the solvers (used_margin: constant MM)
    price_tick: float
    mm: float
    tier: int | None
    im: float | None  # entry notional / leverage when leverage is known
    margin: float | None
    upnl: float


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def evaluate(
    profile: ExchangeProfile,
    wallet_balance: float,
    positions: Sequence[PositionInput],
    position_mode: str = "one-way",
) -> Snapshot:
    """Evaluate an account: every position's LP, BP, MM and the account's margin ratio.

    Isolated position: ``LP = margin.isolated_liquidation_price(side, q, E, M, tiers,
    profile.lp_formula, profile.taker_fee, IM)``, ``BP = E − side·M/q``.

    Cross position of symbol S: the legs are S's cross positions (hedge mode: the LONG and
    SHORT legs together), the other cross symbols are held at their marks:
    ``LP = margin.cross_liquidation_price(wallet, legs, Σ upnl_others, Σ MM_others (+ taker ×
    notional_others for taker_at_mark), taker, formula)`` and
    ``BP = margin.cross_bankruptcy_price(wallet, legs, Σ upnl_others)``.

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

    Raises
    ------
    ValidationError
        With every problem found (bad numbers, unknown symbols, leverage above the tier's
        maximum for the position's entry notional, duplicate positions, missing margin).
    """
    problems: list[str] = []
    if _number(wallet_balance) is None:
        problems.append(f"wallet_balance = {wallet_balance!r} must be a finite number")
    if position_mode not in POSITION_MODES:
        problems.append(f"position_mode = {position_mode!r} is not one of {POSITION_MODES}")
    prepared: list[_Prepared] = []
    seen: dict[tuple[str, int | None], int] = {}
    symbol_modes: dict[str, set[str]] = defaultdict(set)
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
        prepared.append(item)
    for symbol, modes in symbol_modes.items():
        if len(modes) > 1:
            problems.append(f"{symbol}: positions mix margin modes {sorted(modes)}; one per symbol")
    if problems:
        raise ValidationError(problems)

    wallet = float(wallet_balance)
    fee = profile.taker_fee
    formula = profile.lp_formula
    cross = [p for p in prepared if p.inp.margin_mode == "cross"]
    results: dict[int, PositionResult] = {}

    # cross: one LP per symbol, the other symbols' upnl and MM (+ closing fee) held at marks
    by_symbol: dict[str, list[_Prepared]] = defaultdict(list)
    for p in cross:
        by_symbol[p.symbol].append(p)
    for symbol, group in by_symbol.items():
        others = [p for p in cross if p.symbol != symbol]
        other_upnl = sum(p.upnl for p in others)
        # the taker_at_mark trigger adds each position's closing fee at mark to its MM
        other_mm = sum(p.mm + _close_fee(formula, fee, p) for p in others)
        legs = [mg.CrossLeg(p.side, p.q, p.inp.entry_price, p.lp_table) for p in group]
        lp, direction = mg.cross_liquidation_price(
            wallet, legs, other_upnl, other_mm, fee, formula, start_price=group[0].inp.mark_price
        )
        bp = mg.cross_bankruptcy_price(wallet, legs, other_upnl)
        for p in group:
            results[id(p)] = _result(profile, p, lp, bp, -direction if direction else p.side)

    for p in prepared:
        if p.inp.margin_mode != "isolated":
            continue
        assert p.margin is not None
        lp = mg.isolated_liquidation_price(
            p.side, p.q, p.inp.entry_price, p.margin, p.lp_table, formula, fee, p.im
        )
        bp = mg.isolated_bankruptcy_price(p.side, p.q, p.inp.entry_price, p.margin)
        results[id(p)] = _result(profile, p, lp, bp if bp > 0 else None, p.side)

    if cross:
        balance = wallet + sum(p.upnl for p in cross)
        total_mm = sum(p.mm for p in cross)
    elif prepared:
        balance = sum((p.margin or 0.0) + p.upnl for p in prepared)
        total_mm = sum(p.mm for p in prepared)
    else:
        balance, total_mm = wallet, 0.0
    return Snapshot(
        positions=tuple(results[id(p)] for p in prepared),
        margin_balance=balance,
        maintenance_margin=total_mm,
        margin_ratio=mg.margin_ratio(total_mm, balance),
    )


def _close_fee(formula: str, fee: float, p: _Prepared) -> float:
    """Closing-fee term of the ``taker_at_mark`` trigger: ``taker × q × mark`` (else 0)."""
    return fee * p.q * p.inp.mark_price if formula == "taker_at_mark" else 0.0


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

    q, entry, mark = values["size"], values["entry_price"], values["mark_price"]
    im = mg.initial_margin(q, entry, lev) if lev is not None else None
    margin = float(pos.margin) if pos.margin is not None else im
    lp_table = table
    if used_margin:
        used = margin if margin is not None else 0.0
        mm = profile.used_margin_mm_rate * used
        # constant MM as a zero-rate tier with amount −MM: MM(P) = q·P·0 − (−MM) = MM
        lp_table = TierTable(
            (Tier(0.0, math.inf, 0.0, table.tiers[-1].max_leverage, -mm),),
            style="bracket",
            symbol=symbol,
            source="used_margin model",
        )
        tier = None
    else:
        # Bybit standard keys MM and its tier on the entry value (as margin.py's bybit LP does)
        mm_price = entry if profile.lp_formula == "bybit" else mark
        mm = table.maintenance_margin_at(q, mm_price)
        tier = table.tier_index(table.lookup_value(q, mm_price)) + 1
    return _Prepared(
        inp=pos,
        symbol=symbol,
        side=side,
        q=q,
        table=table,
        lp_table=lp_table,
        price_tick=spec.price_tick if spec is not None else 10.0 ** -profile.lp_decimals,
        mm=mm,
        tier=tier,
        im=im,
        margin=margin if pos.margin_mode == "isolated" else None,
        upnl=mg.unrealized_pnl(side * q, entry, mark),
    )


def _result(
    profile: ExchangeProfile,
    p: _Prepared,
    lp: float | None,
    bp: float | None,
    rounding_side: int,
) -> PositionResult:
    """Assemble a :class:`PositionResult`; ``rounding_side`` +1 rounds like a long's LP."""
    tier_row = p.table.tiers[p.tier - 1] if p.tier is not None else None
    lp_tier: int | None = None
    if lp is not None and p.tier is not None:
        at = p.inp.entry_price if profile.lp_formula == "bybit" else lp
        lp_tier = p.table.tier_index(p.table.lookup_value(p.q, at)) + 1
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
        bankruptcy_price=bp,
        maintenance_margin=p.mm,
        tier=p.tier,
        mmr=tier_row.mmr if tier_row is not None else None,
        maintenance_amount=float(tier_row.maintenance_amount) if tier_row is not None else None,
        liquidation_tier=lp_tier,
        unrealized_pnl=p.upnl,
        margin=p.margin,
        display_liquidation_price=display,
    )
