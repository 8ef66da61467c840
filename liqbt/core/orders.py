"""Order acceptance rules: what an exchange checks before it takes an order.

Pure functions over floats and core types (no backtrader): the broker asks them when it accepts
an order and when a resting order fills, so each rule and each refusal reason lives here once.

Rules (docs/margin-model.md §6; Binance "Order types and rules", OKX "Position tiers"):

* Only the part of an order that opens or increases a position needs margin; a close or a
  reduce-only order is always accepted.
* The whole order's value ``|size| × price`` must reach the symbol's minimum notional.
* The resulting position may not exceed the largest tier that still allows the leverage. The
  tier table is keyed on notional (USDT) or on size (base units, OKX): the comparison is made in
  the table's own units.
* The opening part needs ``opening × price × (1 / leverage + taker fee)`` of available balance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from liqbt.core.tiers import TierTable

# tolerance for float residue in money comparisons (USDT)
_MONEY_EPS = 1e-9


@dataclass(frozen=True)
class OrderCheck:
    """What the acceptance check needs to know about one order (plain floats).

    Attributes
    ----------
    symbol
        Normalised symbol, e.g. ``ETHUSDT`` (names the refusal and the base unit).
    size
        Whole order size in base units, signed (+ buy, − sell).
    opening
        Unsigned part of ``size`` that opens or increases a position (see :func:`opening_part`).
    price
        Price the order is valued at (USDT): its limit/stop price, or for a market order the
        last close known when it was created.
    held
        Signed size of the position leg the opening part adds to (0 when flat).
    leverage
        The market's leverage.
    taker_fee
        Taker fee rate (fraction) charged on the opening notional.
    min_notional
        The symbol's minimum order value (USDT).
    available
        Available balance (USDT) without this order's own reserved margin.
    """

    symbol: str
    size: float
    opening: float
    price: float
    held: float
    leverage: float
    taker_fee: float
    min_notional: float
    available: float


def opening_part(size: float, held: float, reduces: bool, netted: bool) -> float:
    """The unsigned part of an order of signed ``size`` that opens or increases a position.

    ``held`` is the signed size of the leg the order acts on; ``reduces`` is true for a
    reduce-only order (or, in hedge mode, an order that closes its leg); ``netted`` is true in
    one-way mode, where an order against the position first closes it and only the excess
    opens the other side. A float residue of a close (``≤ 1e-9`` of the order) is not an
    opening part. Units: base units.
    """
    if reduces:
        return 0.0
    if not netted:
        return abs(size)
    if held and (held > 0) != (size > 0):
        extra = abs(size) - abs(held)
        return extra if extra > 1e-9 * abs(size) else 0.0
    return abs(size)


def opening_held(size: float, held: float, reduces: bool, netted: bool) -> float:
    """The part of ``held`` that :func:`opening_part` depends on: ``held`` itself when the
    order nets against it (one-way mode, not reduce-only, the leg held on the other side),
    else 0.0, so that ``opening_part(size, held, reduces, netted) ==
    opening_part(size, opening_held(size, held, reduces, netted), reduces, netted)``. A
    cache of order figures keyed on it keeps an order's figure while only a position on its
    own side (or none) changes. Units: base units."""
    if reduces or not netted or not held or (held > 0) == (size > 0):
        return 0.0
    return held


def reducing_fill(size: float, held: float) -> float:
    """The signed quantity a reducing (reduce-only) order of signed ``size`` may fill against a
    leg holding signed ``held``: the order capped at the position, or 0 when the leg is flat or
    on the order's side (the order is then cancelled: it would open). Units: base units.

    An order that exceeds the leg by float residue only (≤ 1e-9 of its size, e.g. a grid's
    0.008 close against 0.0079999999999999 accumulated from several fills) fills whole: the
    account treats that residue as a close, and capping it would leave the order Partial and
    then Canceled although the trader closed exactly what was filled."""
    if not held or (held > 0) == (size > 0):
        return 0.0
    if abs(size) - abs(held) <= 1e-9 * abs(size):
        return size
    return -held


def order_margin(opening: float, price: float, leverage: float) -> float:
    """Margin a resting order reserves: ``opening × price / leverage`` (USDT, ≥ 0).

    Exchanges freeze this initial margin when they accept an order (margin-model §6; Binance
    "Order cost")."""
    return opening * price / leverage


def margin_required(opening: float, price: float, leverage: float, taker_fee: float) -> float:
    """Balance needed to open ``opening`` base units at ``price``: initial margin plus the taker
    fee, ``opening × price × (1 / leverage + taker_fee)`` (USDT)."""
    return opening * price * (1.0 / leverage + taker_fee)


def base_unit(symbol: str) -> str:
    """The base asset of a USDT-margined symbol (``ETHUSDT`` → ``ETH``)."""
    return symbol[:-4] if symbol.endswith("USDT") and len(symbol) > 4 else symbol


def resulting_size(size: float, opening: float, held: float) -> float:
    """Unsigned size of the position after the opening part is added: the held size when the
    opening part adds to it, else the opening part alone (a flip or a new leg)."""
    same_side = held != 0 and (held > 0) == (size > 0)
    return opening + (abs(held) if same_side else 0.0)


def tier_cap_refusal(
    symbol: str, tiers: TierTable, leverage: float, position_size: float, price: float
) -> str | None:
    """Why a position of ``position_size`` base units at ``price`` exceeds the largest tier that
    allows ``leverage``, or ``None``. The cap is read in the tier table's own units (USDT
    notional, or base units when the table is keyed on size)."""
    cap = tiers.cap_for_leverage(leverage)
    value = tiers.lookup_value(position_size, price)
    if value <= cap * (1 + 1e-12):
        return None
    if tiers.basis == "size":
        unit = base_unit(symbol)
        return (
            f"{symbol}: position size {value:,.6g} {unit} would exceed {cap:,.6g} {unit}, the "
            f"largest tier allowing {leverage:g}x"
        )
    return (
        f"{symbol}: position value {value:,.2f} USDT would exceed {cap:,.0f} USDT, the largest "
        f"tier allowing {leverage:g}x"
    )


def acceptance_refusal(check: OrderCheck, tiers: TierTable) -> str | None:
    """Why an order cannot be accepted, or ``None`` (rules in the module docstring).

    Checks in the exchange's order: minimum order value, tier cap, margin. Closing and
    reduce-only orders (``opening == 0``) are always accepted.
    """
    if not check.opening:
        return None
    symbol = check.symbol
    order_value = abs(check.size) * check.price  # exchanges check the whole order
    if order_value < check.min_notional:
        return (
            f"{symbol}: order value {order_value:.2f} USDT is below the exchange minimum "
            f"{check.min_notional:g} USDT"
        )
    resulting = resulting_size(check.size, check.opening, check.held)
    refusal = tier_cap_refusal(symbol, tiers, check.leverage, resulting, check.price)
    if refusal is not None:
        return refusal
    required = margin_required(check.opening, check.price, check.leverage, check.taker_fee)
    if required > check.available + _MONEY_EPS:
        return (
            f"{symbol}: order needs {required:,.2f} USDT margin (incl. fee) but only "
            f"{check.available:,.2f} USDT is available"
        )
    return None


def fill_refusal(
    symbol: str,
    opening: float,
    reserved: float,
    price: float,
    leverage: float,
    taker_fee: float,
    available: Callable[[], float],
    isolated: bool,
    wallet: float,
) -> str | None:
    """Why a resting order cannot fill at ``price``, or ``None``.

    An exchange fills an accepted order on the margin it froze at acceptance. Two cases still
    need money at fill: an isolated fill moves its margin and fee out of the wallet, which must
    hold them (realized cross losses may have eaten the frozen margin); and an opening part
    larger than the ``reserved`` one (an order accepted as a close whose position has since
    gone) needs fresh margin from the available balance, ``available()`` (USDT; asked only
    then, since it sums every resting order's margin).
    """
    if isolated:
        needed = margin_required(opening, price, leverage, taker_fee)
        if needed > wallet + _MONEY_EPS:
            return (
                f"{symbol}: at fill the isolated margin and fee {needed:,.2f} USDT exceed "
                f"the wallet balance {wallet:,.2f} USDT"
            )
    unreserved = opening - reserved
    if unreserved <= 1e-12 * max(opening, 1.0):
        return None
    required = margin_required(unreserved, price, leverage, taker_fee)
    balance = available()
    if required <= balance + _MONEY_EPS:
        return None
    return (
        f"{symbol}: at fill the order needs {required:,.2f} USDT more margin but only "
        f"{balance:,.2f} USDT is available"
    )


def unsupported_exectype_refusal(exectype_name: str) -> str:
    """The refusal reason for an execution type the broker does not simulate."""
    return (
        f"exectype {exectype_name} is not simulated by MarginBroker (supported: Market, Close, "
        "Limit, Stop, StopLimit, StopTrail, StopTrailLimit)"
    )
