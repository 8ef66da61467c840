"""The broker's resting orders indexed by the price that reaches them.

A bar only touches what its range can reach (issue 11): limit and stop orders are kept per data
feed in two sorted lists of ``(level, ref)`` keys, ``rising`` (reached when the high gets to the
level) and ``falling`` (when the low does); market, close and trailing orders are checked on
every bar. The index follows backtrader's ``pending`` list by difference, and the margin the
resting orders reserve (margin-model §6, :func:`liqbt.core.orders.order_margin`) is kept from it,
recomputed only when the orders, their activation or the positions change.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import backtrader as bt

from liqbt import acceptance as acc
from liqbt.core import orders as core_orders
from liqbt.core.account import Account

# the statuses in which ``bt.Order.alive()`` is true
_ALIVE = frozenset((bt.Order.Created, bt.Order.Submitted, bt.Order.Partial, bt.Order.Accepted))


@dataclass
class Book:
    """One data's resting orders (see the module docstring). ``reserve`` holds what each
    order's reserved margin depends on besides its remaining size, its activation and the
    position: ``ref -> (order, symbol, leg, reduces, order price, leverage)``."""

    always: dict[int, Any] = field(default_factory=dict)
    rising: list[tuple[float, int]] = field(default_factory=list)
    falling: list[tuple[float, int]] = field(default_factory=list)
    orders: dict[int, Any] = field(default_factory=dict)
    reserve: dict[int, tuple[Any, str, str, bool, float, float]] = field(default_factory=dict)
    # ref -> ((activation, remaining size, leg size), reserved margin) last computed
    values: dict[int, tuple[tuple[bool, float, float], float]] = field(default_factory=dict)


def order_level(order: bt.Order) -> tuple[float, bool] | None:
    """``(level, rising)`` a bar must reach for ``order`` to act (``rising``: the high must
    reach it, else the low), or ``None`` for orders checked on every bar (market, close,
    trailing stops)."""
    exectype = order.exectype
    if exectype in acc.TRAILING:
        return None  # its stop moves after every bar: checked on every bar
    if exectype == bt.Order.StopLimit and order.triggered:
        return order.created.pricelimit, not order.isbuy()
    if exectype in (bt.Order.Stop, bt.Order.StopLimit):
        return order.created.price, order.isbuy()
    if exectype == bt.Order.Limit:
        return order.created.price, not order.isbuy()
    return None


class OrderBook:
    """Price index of the resting orders of one broker (see the module docstring).

    Parameters
    ----------
    account
        The broker's account (legs, leverage, positions for the reserved margin).
    symbol_of
        The broker's data feed → symbol mapping.
    """

    def __init__(self, account: Account, symbol_of: Callable[[Any], str]) -> None:
        self.account = account
        self.symbol_of = symbol_of
        self.books: dict[Any, Book] = {}
        self.index: dict[int, bt.Order] = {}
        self.signature: tuple[Any, ...] = ()
        self.changes = 0  # bumped when an order's level or activation changes
        self.valid_orders: list[bt.Order] = []
        # ref -> whether the order carries an expiry (``order.valid``, read once: backtrader
        # resolves it through the order's params on every access)
        self._valid: dict[int, bool] = {}
        self._reserve_key: tuple[Any, ...] | None = None
        self._reserve_total = 0.0

    def changed(self) -> None:
        """Note that an order's level moved (a stop-limit triggered) or bracket children
        activated: the index is rebuilt and the reserved margin recomputed."""
        self.changes += 1

    def refresh_signature(self, pending: Sequence[Any]) -> tuple[Any, ...]:
        """:meth:`refresh`, then the signature of the books (it changes with them)."""
        self.refresh(pending)
        return self.signature

    def refresh(self, pending: Sequence[Any]) -> dict[Any, Book]:
        """The books for ``pending``. Updated by difference (orders that left or joined
        ``pending``) when the pending list changed (its length or newest reference), rebuilt
        after :meth:`changed`."""
        last = pending[-1] if pending else None
        signature = (len(pending), getattr(last, "ref", 0), self.changes)
        if signature == self.signature:
            return self.books
        previous = self.signature
        self.signature = signature
        reserve_valid = self._reserve_key == (previous, self.account.version)
        self._reserve_key = None
        if previous and signature[2] != previous[2]:
            self.books, self.index, self._valid = {}, {}, {}
        elif previous and signature[0] > previous[0] > 0 and (
            getattr(pending[previous[0] - 1], "ref", None) == previous[1]
        ):
            # only appended since (the usual case: orders accepted): index the tail alone
            total = self._reserve_total
            for i in range(previous[0], signature[0]):
                order = pending[i]
                if order is not None and order.alive() and order.ref not in self.index:
                    # the running sum stays the loop's sum (same terms, same order) only when
                    # the order joins the last book, at its end
                    reserve_valid = reserve_valid and (
                        not self.books or order.data is next(reversed(self.books))
                    )
                    self.index[order.ref] = order
                    self._add(order)
                    if self._valid[order.ref]:
                        self.valid_orders.append(order)
                    if reserve_valid:
                        book = self.books[order.data]
                        total += self._reserve_cached(book, order.ref, book.reserve[order.ref])
            if reserve_valid:
                self._reserve_key = (signature, self.account.version)
                self._reserve_total = total
            return self.books
        # o.alive(), without a method call and a list per order
        alive = {o.ref: o for o in pending if o is not None and o.status in _ALIVE}
        index = self.index
        for ref in [r for r in index if r not in alive]:
            self._remove(index.pop(ref))
        for ref, order in alive.items():
            if ref not in index:
                index[ref] = order
                self._add(order)
        valid = self._valid
        self.valid_orders = [o for o in alive.values() if valid[o.ref]]
        return self.books

    def _add(self, order: bt.Order) -> None:
        book = self.books.get(order.data)
        if book is None:
            book = self.books[order.data] = Book()
        ref = order.ref
        book.orders[ref] = order
        self._valid[ref] = bool(order.valid)
        level = order_level(order)
        if level is None:
            book.always[ref] = order
        else:
            bisect.insort(book.rising if level[1] else book.falling, (level[0], ref))
        symbol = self.symbol_of(order.data)
        leg, reduces = acc.order_leg(self.account, symbol, order)
        book.reserve[ref] = (
            order, symbol, leg, reduces, acc.order_price(order),
            self.account.market(symbol).leverage,
        )

    def _remove(self, order: bt.Order) -> None:
        book = self.books[order.data]
        ref = order.ref
        del book.orders[ref]
        del book.reserve[ref]
        del self._valid[ref]
        book.values.pop(ref, None)
        if book.always.pop(ref, None) is not None:
            return
        level = order_level(order)
        keys = book.rising if level[1] else book.falling
        del keys[bisect.bisect_left(keys, (level[0], ref))]

    def reachable(self, data: Any, pending: Sequence[Any], low: float | None = None,
                  high: float | None = None) -> list[bt.Order]:
        """Pending orders of ``data`` that the bar's price range (its ``low`` and ``high``,
        read from the feed when not given) can act on, in reference order: a bisection in the
        price index."""
        if not pending:
            return []
        book = self.refresh(pending).get(data)
        if book is None or not book.orders:
            return []
        if low is None or high is None:
            low, high = data.low[0], data.high[0]
        rising, falling = book.rising, book.falling
        up = bisect.bisect_right(rising, (high, math.inf)) if rising else 0
        down = bisect.bisect_left(falling, (low, -1)) if falling else 0
        if not up and down == len(falling) and not book.always:
            return []  # the usual quiet bar: nothing in reach
        now = data.datetime[0]
        refs = list(book.always)
        refs += [k[1] for k in rising[:up]]
        refs += [k[1] for k in falling[down:]]
        orders = book.orders
        # backtrader semantics: an order acts from the bar after the one it was created in;
        # a bracket child only once its parent has filled (it is activated the bar after)
        return [o for o in (orders[r] for r in sorted(refs))
                if o.alive() and o.active() and now > o.created.dt]

    def reserved_margin(self, pending: Sequence[Any]) -> float:
        """Margin reserved by the resting orders (USDT): Σ opening size × price / leverage
        (margin-model §6), cached until the orders or the account change."""
        books = self.refresh(pending)
        key = (self.signature, self.account.version)
        if self._reserve_key != key:
            total = 0.0
            for book in books.values():
                for ref, entry in book.reserve.items():
                    total += self._reserve_cached(book, ref, entry)
            self._reserve_key, self._reserve_total = key, total
        return self._reserve_total

    def _reserve_cached(self, book: Book, ref: int,
                        entry: tuple[Any, str, str, bool, float, float]) -> float:
        """:meth:`_reserve_of`, recomputed only when what it reads changed: the order's
        activation and remaining size and the part of its leg's size it can net against
        (:func:`liqbt.core.orders.opening_held`; a fill of another leg or symbol, or on the
        order's own side, leaves the figure as it was; the sum is still taken over every
        order, in order)."""
        order, symbol, leg, reduces = entry[0], entry[1], entry[2], entry[3]
        pos = self.account.positions.get((symbol, leg))
        size = order.executed.remsize
        inputs = (order.active(), size, core_orders.opening_held(
            size, pos.size if pos is not None else 0.0, reduces, leg == "net"))
        cached = book.values.get(ref)
        if cached is not None and cached[0] == inputs:
            return cached[1]
        value = self._reserve_of(entry)
        book.values[ref] = (inputs, value)
        return value

    def _reserve_of(self, entry: tuple[Any, str, str, bool, float, float]) -> float:
        """One resting order's reserved margin (USDT; 0 for what only reduces)."""
        order, symbol, leg, reduces, price, leverage = entry
        if not order.active():
            return 0.0  # a bracket child reserves nothing until its parent fills
        pos = self.account.positions.get((symbol, leg))
        opening = core_orders.opening_part(
            order.executed.remsize, pos.size if pos is not None else 0.0, reduces, leg == "net",
        )
        return core_orders.order_margin(opening, price, leverage) if opening else 0.0
