"""Fills of resting and market orders through a backtrader broker and its account.

:func:`fill` applies the margin rules at fill time (a reducing order only shrinks its leg; an
opening one is re-checked with :func:`liqbt.acceptance.fill_rejection`), books the fill in the
core :class:`~liqbt.core.account.Account` (fees, margin, PnL) and :func:`execute` mirrors it in
backtrader's position and order so trades, notifications and analyzers work as with
``BackBroker``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import backtrader as bt

from liqbt import acceptance as acc
from liqbt.core import orders as core_orders

if TYPE_CHECKING:
    from liqbt.broker import MarginBroker


def fill(broker: MarginBroker, order: bt.Order, price: float, maker: bool) -> None:
    """Execute the whole remaining size of ``order`` at ``price`` (USDT) as a maker or taker
    fill (the profile's fee rate)."""
    symbol = broker.symbol_of(order.data)
    account = broker.account
    qty = order.executed.remsize
    fee_rate = broker.profile.maker_fee if maker else broker.profile.taker_fee
    leg, reduces = acc.order_leg(account, symbol, order)
    if reduces:
        # a reducing order may only shrink its leg: cap it, or cancel it when flat
        qty = core_orders.reducing_fill(qty, acc.held(account, symbol, leg))
        if not qty:
            broker.cancel(order)
            return
    elif acc.opening_size(account, symbol, order):
        reason = acc.fill_rejection(account, symbol, order, price, broker.order_margin)
        if reason is not None:
            broker.reject_order(order, reason, price)  # status Margin
            return
    result = account.fill(symbol, qty, price, fee_rate, leg, maker, order.ref)
    execute(broker, order, qty, price, result.fee)
    if order.alive():  # a capped reducing order: the rest has nothing to reduce
        broker.cancel(order)


def execute(broker: MarginBroker, order: bt.Order, qty: float, price: float, fee: float) -> None:
    """Update backtrader's position and the order (``qty`` signed at ``price``, ``fee`` in
    USDT) so trades and notifications work, then complete the order."""
    data = order.data
    position = broker.positions[data]
    entry_before = position.price
    before = position.size
    move = qty
    if before and (before > 0) != (qty > 0) and abs(abs(qty) - abs(before)) <= 1e-9 * abs(qty):
        move = -before  # a close that differs from the position by float residue only
    psize, pprice, opened, closed = position.update(move, price, data.datetime.datetime())
    comminfo = broker.getcommissioninfo(data)
    pnl = comminfo.profitandloss(-closed, entry_before, price) if closed else 0.0
    share_closed = abs(closed) / abs(qty) if qty else 0.0
    order.execute(
        data.datetime[0], qty, price,
        closed, abs(closed) * entry_before, fee * share_closed,
        opened, abs(opened) * price, fee * (1 - share_closed),
        0.0, pnl, psize, pprice,
    )
    order.addcomminfo(comminfo)
    broker.complete(order)
