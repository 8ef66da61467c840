"""Executes a liquidation plan (:mod:`liqbt.core.liquidation`) through a backtrader broker.

The plan decides the steps and re-checks the trigger against the account between them; here
each close becomes a real market order tagged ``order.info.liquidation`` (with
``partial_liquidation``, the :class:`~liqbt.core.events.Liquidation` event and the intrabar
clock) that goes through the broker's fill path, so ``notify_order``, ``notify_trade`` and
analyzers see it; cancelled orders are notified and recorded as events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import backtrader as bt

from liqbt import fills
from liqbt.core import events as ev
from liqbt.core import liquidation as liq

if TYPE_CHECKING:
    from liqbt.broker import MarginBroker


def execute(broker: MarginBroker, plan: Iterator[liq.Step]) -> None:
    """Carry out every step of ``plan`` on ``broker`` (see the module docstring)."""
    for step in plan:
        if isinstance(step, liq.CancelOrders):
            cancel_all(broker, step.symbol)
        elif isinstance(step, liq.CloseStep):
            for close in step.closes:
                force_close(broker, close, step.partial)
        elif isinstance(step, liq.Wipeout):
            if not broker.wiped_out:
                broker.wiped_out = True
                broker.account.events.append(liq.wipeout_event(broker.account, step))
        else:
            liq.apply_step(broker.account, step)


def cancel_all(broker: MarginBroker, symbol: str | None) -> None:
    """margin-model §9 step 1: cancel the orders of the isolated position's symbol or, for a
    cross liquidation (``None``), every order of the account: their frozen margin sits in the
    cross wallet that the liquidation takes. Symbol by symbol (then by reference), so the
    events never depend on the order feeds were added in."""
    account = broker.account
    orders = [o for o in broker.pending if o is not None]
    orders.sort(key=lambda o: (broker.symbol_of(o.data), o.ref))
    for order in orders:
        if not order.alive():
            continue
        if symbol is not None and broker.symbol_of(order.data) != symbol:
            continue
        broker.cancel(order)
        account.events.append(
            ev.OrderCancelled(
                account.clock, broker.symbol_of(order.data), order.ref,
                order.created.size, order.created.price,
            )
        )
    # where resting orders' margin counts in the cross trigger (simple profile), the cancels
    # change the account's margin state: cached LPs and cross bounds must see it now, not at
    # the next bar's sync (a stale LP made the distance statistic negative)
    account.sync_orders()


def force_close(broker: MarginBroker, close: liq.Close, partial: bool) -> None:
    """Close (part of) a leg with a real market order tagged as a liquidation, booked by the
    account (``Account.book_liquidation``) and executed through backtrader's position."""
    account = broker.account
    pos = account.positions[(close.symbol, close.leg)]
    data = broker.data_of(close.symbol)
    size = close.qty
    maker = broker.sell if size < 0 else broker.buy
    order = maker(
        broker.owner_of(data), data, abs(size), price=close.execution,
        exectype=bt.Order.Market, _checksubmit=False, liquidation=True,
        partial_liquidation=partial, leg=close.leg,
    )
    if order in broker.pending:
        broker.pending.remove(order)
    event = account.book_liquidation(
        pos, size, close.trigger, close.execution, close.settlement, close.fee_rate, partial,
        order.ref,
    )
    order.addinfo(liquidation_event=event, intrabar_time=broker.walker.event_t)
    fills.execute(broker, order, size, close.settlement, event.fee + event.liquidation_fee)
    walker = broker.walker
    walker.min_liquidation_distance = min(walker.min_liquidation_distance, 0.0)  # LP reached
