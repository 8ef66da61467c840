"""Margin formulas for linear USDT-margined perpetuals: pure functions, no state.

Conventions (margin-model §1): sizes in base units (BTC), prices and money in USDT, ``side = +1``
long and ``-1`` short, ``q = |size|``. Every function states its formula and the source it
reproduces; the tests pin each one with that source's worked example.

Liquidation-price families (``lp_formula``, one per exchange rule book, margin-model §3–5):

``binance``
    MM at mark from the tier table, no closing-fee term (Binance FAQ "How to Calculate
    Liquidation Price of USDⓈ-M Futures Contracts").
``taker_at_mark``
    OKX, Bitget, Gate: the taker fee to close at mark is added to MM, i.e. the trigger is
    ``margin + upnl <= notional(mark) × (mmr + taker) − amount``.
``bybit``
    Bybit standard account: MM on the position value at entry,
    ``LP = E − side × (M − MM_entry) / q`` (Bybit help "Liquidation Price (USDT Contract)").
``bybit_unified``
    Bybit unified account, isolated, with the fee to close in IM and MM (Bybit help "Liquidation
    Price Calculation under Unified Trading Account"): long
    ``(E·q − IM − extra/(1 − taker) − amount) / (q − q·mmr)``, short
    ``(E·q + IM + extra/(1 + taker) + amount) / (q + q·mmr)``, IM = E·q/leverage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from liqbt.core.tiers import Tier, TierTable

LpFormula = Literal["binance", "taker_at_mark", "bybit", "bybit_unified"]
LP_FORMULAS: tuple[str, ...] = get_args(LpFormula)

# A tier fixed point converges in a few steps; the bound only guards against a table whose
# tiers make the iteration cycle (possible with flat tables), where we keep the safest LP.
_MAX_TIER_ITERATIONS = 64


# --- elementary quantities ----------------------------------------------------------------
def notional(size: float, price: float) -> float:
    """Position value in USDT: ``|size| × price``."""
    return abs(size) * price


def initial_margin(size: float, entry_price: float, leverage: float) -> float:
    """Initial margin in USDT: ``|size| × entry_price / leverage`` (margin-model §6)."""
    return abs(size) * entry_price / leverage


def unrealized_pnl(size: float, entry_price: float, mark_price: float) -> float:
    """Unrealized PnL in USDT at ``mark_price``: ``size × (mark − entry)`` with signed size
    (long > 0). Positive is a gain (margin-model §1)."""
    return size * (mark_price - entry_price)


def margin_ratio(maintenance_margin: float, margin_balance: float) -> float:
    """Binance margin ratio ``MM / margin balance`` (fraction; 1.0 = liquidation).

    A non-positive margin balance gives ``inf`` (already past liquidation).
    """
    if margin_balance <= 0:
        return math.inf if maintenance_margin > 0 or margin_balance < 0 else 0.0
    return maintenance_margin / margin_balance


def funding_payment(size: float, mark_price: float, rate: float) -> float:
    """Funding paid by a position in USDT: ``size × mark × rate`` with signed size.

    Positive = the position pays (a long when the rate is positive), negative = it receives
    (margin-model §7; Binance "Introduction to Binance Futures Funding Rates": 1 BTC long, mark
    60,000, rate 0.01 % pays 6 USDT).
    """
    return size * mark_price * rate


def auto_top_up_amount(
    initial_margin_amount: float, available_balance: float, effective_leverage: float
) -> float:
    """Margin moved into an isolated position when it reaches its LP (margin-model §10).

    ``min(IM, available balance)``; nothing once the position is at (or below) 1× effective
    leverage (``notional / position margin``) or when nothing is available (Bitget "automatic
    margin call"; Bybit "Auto-Margin Replenishment").
    """
    if effective_leverage <= 1.0 or available_balance <= 0 or initial_margin_amount <= 0:
        return 0.0
    return min(initial_margin_amount, available_balance)


# --- isolated margin -----------------------------------------------------------------------
def isolated_bankruptcy_price(side: int, size: float, entry_price: float, margin: float) -> float:
    """Price where ``margin + upnl = 0``: long ``E − M/q``, short ``E + M/q`` (margin-model §4).

    May be <= 0 for a long with margin >= notional (a 1× long cannot go bankrupt).
    """
    return entry_price - side * margin / abs(size)


def _solve_isolated(
    formula: str,
    side: int,
    q: float,
    entry: float,
    margin: float,
    tier: Tier,
    taker_fee: float,
    initial_margin_amount: float,
) -> float:
    """Liquidation price for one fixed tier (no tier re-selection)."""
    mmr, amount = tier.mmr, tier.maintenance_amount
    if formula == "bybit":
        mm_entry = q * entry * mmr - amount
        return entry - side * (margin - mm_entry) / q
    if formula == "bybit_unified":
        extra = margin - initial_margin_amount
        if side > 0:
            return (entry * q - initial_margin_amount - extra / (1 - taker_fee) - amount) / (
                q - q * mmr
            )
        return (entry * q + initial_margin_amount + extra / (1 + taker_fee) + amount) / (
            q + q * mmr
        )
    fee = taker_fee if formula == "taker_at_mark" else 0.0
    # margin + side·q·(P − E) = q·P·(mmr + fee) − amount, solved for P
    return (side * q * entry - margin - amount) / (q * (side - mmr - fee))


def isolated_liquidation_price(
    side: int,
    size: float,
    entry_price: float,
    margin: float,
    tiers: TierTable,
    formula: str = "binance",
    taker_fee: float = 0.0,
    initial_margin_amount: float | None = None,
) -> float | None:
    """Liquidation price (USDT) of an isolated position, or ``None`` when no positive price
    liquidates it (e.g. a fully collateralised 1× long).

    Binance (margin-model §4): long ``LP = (M + cum − q·E)/(q·mmr − q)``, short
    ``LP = (M + cum + q·E)/(q·mmr + q)``; ``taker_at_mark`` (OKX/Bitget/Gate) adds the taker fee
    to mmr; ``bybit`` and ``bybit_unified`` as in the module docstring. ``M`` is the position
    margin (IM + added margin − funding paid), ``cum`` the tier's maintenance amount.

    The tier is the tier of the position valued at the LP (Binance FAQ): start at the entry
    tier, recompute at the tier of ``q × LP`` until stable. Bybit standard keys the tier on the
    entry value, so no re-selection happens there. If the iteration cycles (possible only with
    flat tables, where MM jumps at boundaries), the LP closest to entry is returned: the
    exchange would liquidate there first.

    Parameters
    ----------
    side
        +1 long, -1 short.
    size
        Position size in base units (sign ignored).
    entry_price
        Average entry price, USDT.
    margin
        Isolated position margin ``M``, USDT.
    tiers
        The symbol's tier table.
    formula
        One of :data:`LP_FORMULAS`.
    taker_fee
        Taker fee rate (fraction) for the closing-fee terms.
    initial_margin_amount
        ``E·q/leverage``; needed by ``bybit_unified`` only (defaults to ``margin``).
    """
    q = abs(size)
    if q == 0:
        return None
    im = margin if initial_margin_amount is None else initial_margin_amount
    if formula == "bybit":
        lp = _solve_isolated(
            formula, side, q, entry_price, margin, tiers.tier_at(q, entry_price), taker_fee, im
        )
    else:
        lp = _fixed_point(
            lambda tier_list: _solve_isolated(
                formula, side, q, entry_price, margin, tier_list[0], taker_fee, im
            ),
            [(q, tiers)],
            entry_price,
            falling=side > 0,
        )
    if lp is None or not math.isfinite(lp):
        return None
    if side > 0:
        return lp if lp > 0 else None
    return max(lp, 0.0)


def _fixed_point(
    solve: Callable[[list[Tier]], float],
    legs: Sequence[tuple[float, TierTable]],
    start_price: float,
    falling: bool,
) -> float | None:
    """Iterate ``price -> tiers at price -> solve(tiers)`` to a fixed point (margin-model §2).

    ``falling`` is true when the liquidation is reached by a falling price (net long): on a
    cycle the highest candidate is kept, for a rising price the lowest, i.e. the candidate the
    market reaches first.
    """

    def tier_indices(at: float) -> tuple[int, ...]:
        return tuple(t.tier_index(t.lookup_value(q, max(at, 0.0))) for q, t in legs)

    price = start_price
    key = tier_indices(price)
    seen: dict[tuple[int, ...], float] = {}
    for _ in range(_MAX_TIER_ITERATIONS):
        if key in seen:
            candidates = list(seen.values())
            return max(candidates) if falling else min(candidates)
        price = solve([t.tiers[i] for (_, t), i in zip(legs, key, strict=True)])
        seen[key] = price
        if not math.isfinite(price):
            return None
        next_key = tier_indices(price)
        if next_key == key:
            return price
        key = next_key
    return price


# --- cross margin --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CrossLeg:
    """One cross position leg of the symbol whose LP is computed (hedge mode has two)."""

    side: int
    size: float
    entry_price: float
    tiers: TierTable


def cross_liquidation_price(
    wallet_balance: float,
    legs: Sequence[CrossLeg],
    other_unrealized_pnl: float = 0.0,
    other_maintenance_margin: float = 0.0,
    taker_fee: float = 0.0,
    formula: str = "binance",
    start_price: float | None = None,
) -> tuple[float | None, int]:
    """Cross liquidation price of one symbol, the other cross positions held at their marks.

    Binance (margin-model §5): ``LP = (WB − TMM1 + UPNL1 + cum − side·q·E) / (q·mmr − side·q)``;
    with several legs of the symbol (hedge mode) the sums run over the legs,
    ``LP = (WB − TMM1 + UPNL1 + Σcum_i − Σ side_i·q_i·E_i) / (Σ q_i·(mmr_i + fee) − Σ side_i·q_i)``,
    which is Binance's hedge-mode formula with ``cumL, cumS, MMR_L, MMR_S``. ``fee`` is the taker
    rate for ``taker_at_mark`` profiles and 0 otherwise. Tiers are re-selected at the LP.

    Returns
    -------
    (price, direction)
        ``direction = -1`` when the liquidation happens as the price falls to ``price`` (net
        long), ``+1`` when it rises to it. ``price`` is ``None`` when no positive price
        liquidates; ``0.0`` when every price does (already liquidated).
    """
    legs = [leg for leg in legs if leg.size != 0]
    if not legs:
        return None, 0
    fee = taker_fee if formula == "taker_at_mark" else 0.0
    net = sum(leg.side * abs(leg.size) for leg in legs)
    base = wallet_balance + other_unrealized_pnl - other_maintenance_margin
    base -= sum(leg.side * abs(leg.size) * leg.entry_price for leg in legs)
    den = 0.0  # the denominator of the last solve: its sign gives the direction

    def solve(tier_list: list[Tier]) -> float:
        nonlocal den
        num = base + sum(t.maintenance_amount for t in tier_list)
        den = sum(abs(leg.size) * (t.mmr + fee) for leg, t in zip(legs, tier_list, strict=True))
        den -= net
        if den == 0:
            return math.inf if num > 0 else 0.0
        return num / den

    start = start_price if start_price is not None else legs[0].entry_price
    lp = _fixed_point(solve, [(abs(leg.size), leg.tiers) for leg in legs], start, falling=net > 0)
    direction = -1 if den < 0 else 1
    if lp is None or not math.isfinite(lp):
        return None, direction
    if direction < 0:
        return (lp if lp > 0 else None), direction
    return max(lp, 0.0), direction


def cross_bankruptcy_price(
    wallet_balance: float,
    legs: Sequence[CrossLeg],
    other_unrealized_pnl: float = 0.0,
) -> float | None:
    """Price of the symbol at which the cross margin balance is 0, others at their marks:
    ``P = (Σ side_i·q_i·E_i − WB − UPNL_others) / Σ side_i·q_i``; ``None`` for a flat net
    position or a non-positive price."""
    net = sum(leg.side * abs(leg.size) for leg in legs)
    if net == 0:
        return None
    price = (
        sum(leg.side * abs(leg.size) * leg.entry_price for leg in legs)
        - wallet_balance
        - other_unrealized_pnl
    ) / net
    return price if price > 0 else None


# --- display rounding ----------------------------------------------------------------------
def round_price(price: float, rounding: str, tick: float, side: int, decimals: int = 2) -> float:
    """Round a liquidation price the way an exchange displays it (margin-model §3).

    ``decimals``: to ``decimals`` places (Binance, Bybit: 2). ``tick``: to the nearest price
    tick (OKX, Gate). ``tick_directional``: Bitget rounds a long's LP up and a short's down to
    the tick, toward the current price, so the shown LP is never beyond the real one.
    """
    if rounding == "decimals":
        return round(price, decimals)
    steps = price / tick
    if rounding == "tick_directional":
        # a tiny epsilon keeps an exact multiple from moving a whole tick through float error
        steps = math.ceil(steps - 1e-9) if side > 0 else math.floor(steps + 1e-9)
    else:
        steps = round(steps)
    digits = max(0, -math.floor(math.log10(tick)) + 1) if tick < 1 else 0
    return round(steps * tick, digits)
