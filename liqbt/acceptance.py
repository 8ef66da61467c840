"""Order acceptance glue: what a backtrader order means for the margin rules.

Reads a ``bt.Order`` (its price, the position leg it acts on, the part that opens exposure) and
asks the pure rules in :mod:`liqbt.core.orders` whether it can be accepted or filled. No state
of its own: the broker passes its :class:`~liqbt.core.account.Account` and the order's symbol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import backtrader as bt

from liqbt.core import orders as core_orders
from liqbt.core.account import Account

# execution types simulated exactly as BackBroker does; any other is refused at acceptance
SUPPORTED_EXECTYPES: tuple[int, ...] = (
    bt.Order.Market, bt.Order.Close, bt.Order.Limit, bt.Order.Stop, bt.Order.StopLimit,
    bt.Order.StopTrail, bt.Order.StopTrailLimit,
)
STOPS = (bt.Order.Stop, bt.Order.StopTrail)
STOP_LIMITS = (bt.Order.StopLimit, bt.Order.StopTrailLimit)
TRAILING = (bt.Order.StopTrail, bt.Order.StopTrailLimit)


def plain(value: Any) -> Any:
    """A numpy number as a Python float (numpy booleans break the position arithmetic)."""
    if value is None or type(value) in (float, int):
        return value
    return float(value)


def plain_prices(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with its price arguments made plain floats (:func:`plain`)."""
    for key in ("price", "plimit", "trailamount", "trailpercent"):
        if kwargs.get(key) is not None:
            kwargs[key] = plain(kwargs[key])
    return kwargs


def order_price(order: bt.Order) -> float:
    """Limit/stop price, or for market orders the close known when the order was created
    (never the close of the bar that fills it: that would look ahead)."""
    price = order.created.price
    if price is None or order.exectype == bt.Order.Market:
        price = order.created.pclose
    return float(price)


def order_leg(account: Account, symbol: str, order: bt.Order) -> tuple[str, bool]:
    """``(leg, reduces)``: the position leg an order acts on and whether it may only shrink it.

    One-way: the ``net`` leg, reducing when ``reduce_only=True``. Hedge: ``leg="long"`` or
    ``"short"`` when given, a bracket child on its parent's leg, else a buy acts on LONG and a
    sell on SHORT (the other way round with ``reduce_only=True``); a sell on LONG or a buy on
    SHORT reduces."""
    qty = order.executed.remsize
    reduce_only = bool(order.info.get("reduce_only"))
    if account.position_mode == "one-way":
        return "net", reduce_only
    leg = order.info.get("leg")
    parent = order.parent
    if not leg and parent is not None:
        # a bracket child closes its parent's position: it acts on the parent's leg
        leg = parent.info.get("leg") or account.leg_for(
            symbol, parent.size, bool(parent.info.get("reduce_only"))
        )
    leg = leg or account.leg_for(symbol, qty, reduce_only)
    return leg, reduce_only or (leg == "long") != (qty > 0)


def held(account: Account, symbol: str, leg: str) -> float:
    """Signed size of a position leg (0 when flat)."""
    pos = account.positions.get((symbol, leg))
    return pos.size if pos is not None else 0.0


def opening_size(account: Account, symbol: str, order: bt.Order) -> float:
    """The part of an order that opens or increases a position (unsigned)."""
    if not order.active():
        # a bracket child waits for its parent: it closes what the parent opens, so it
        # reserves nothing now (if it ever opens, the fill asks for fresh margin)
        return 0.0
    leg, reduces = order_leg(account, symbol, order)
    return core_orders.opening_part(
        order.executed.remsize, held(account, symbol, leg), reduces, leg == "net"
    )


def rejection(
    account: Account, symbol: str, order: bt.Order, order_margin: Callable[[], float]
) -> str | None:
    """Why an order cannot be accepted, or ``None`` (rules: :mod:`liqbt.core.orders`);
    ``order_margin()`` is the margin reserved by the other resting orders (USDT), asked only
    for an order that opens (it sums every resting order)."""
    if order.exectype not in SUPPORTED_EXECTYPES:
        return core_orders.unsupported_exectype_refusal(bt.Order.ExecTypes[order.exectype])
    opening = opening_size(account, symbol, order)
    if not opening:
        return None  # closes and reduce-only orders never need margin
    config = account.market(symbol)
    check = core_orders.OrderCheck(
        symbol=symbol,
        size=order.executed.remsize,
        opening=opening,
        price=order_price(order),
        held=held(account, symbol, order_leg(account, symbol, order)[0]),
        leverage=config.leverage,
        taker_fee=account.profile.taker_fee,
        min_notional=config.spec.min_notional,
        available=account.available_balance(order_margin()),
    )
    return core_orders.acceptance_refusal(check, config.tiers)


def fill_rejection(
    account: Account, symbol: str, order: bt.Order, price: float,
    order_margin: Callable[[], float],
) -> str | None:
    """Margin check at fill (:func:`liqbt.core.orders.fill_refusal`); ``order_margin()`` is the
    margin reserved by all resting orders, this one included (USDT), asked only when the fill
    needs more margin than the order reserved."""
    config = account.market(symbol)
    opening = opening_size(account, symbol, order)

    def available() -> float:
        own = core_orders.order_margin(opening, order_price(order), config.leverage)
        return account.available_balance(order_margin() - own)

    return core_orders.fill_refusal(
        symbol, opening, order.info.get("reserved_opening", 0.0), price, config.leverage,
        account.profile.taker_fee, available,
        config.margin_mode == "isolated", account.wallet_balance,
    )
