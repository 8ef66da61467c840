"""Where the cross condition can hold inside a step: bounds over boxes of marks.

The broker's joint walk (margin-model §8) only searches a bar's path for the first instant the
cross condition ``margin balance − trigger margin <= 0`` (margin-model §5) holds when it can
hold somewhere in the bar. The condition is a sum of one term per symbol,
``Σ (upnl − MM − closing fee)`` of that symbol's cross legs, plus the wallet less the order
margin counted in the trigger; so its minimum over a box of marks (each symbol anywhere in its
range) is the wallet term plus the per-symbol minima (:func:`term_min`). Every figure comes from
the core :class:`~liqbt.core.account.Account` (``unrealized_pnl``, ``trigger_margin``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from liqbt.core import path as pth
from liqbt.core.liquidation import cross_tolerance, tolerance_of

if TYPE_CHECKING:
    from liqbt.core.account import Account, Position

# A symbol's mark range is widened by this fraction before its term is bounded and remembered,
# so that the following quiet bars need no evaluation (see CrossBound.may_breach).
SAFE_MARGIN = 0.01


def cross_by_symbol(account: Account) -> dict[str, list[Position]]:
    """The account's open cross legs grouped by symbol."""
    by_symbol: dict[str, list[Position]] = {}
    for pos in account.positions.values():
        if pos.size and pos.margin_mode == "cross":
            by_symbol.setdefault(pos.symbol, []).append(pos)
    return by_symbol


def term_min(account: Account, legs: list[Position], low: float, high: float) -> float:
    """Minimum (USDT) of one symbol's term ``Σ (upnl − MM − closing fee)`` of its cross legs
    for marks in ``[low, high]``: at an end of the range or at a tier breakpoint (both sides
    of it, for tables that jump). The legs' marks are restored afterwards."""
    current = legs[0].mark_price
    prices = [low, high] if low != high else [low]
    if low != high:
        tiers = account.market(legs[0].symbol).tiers
        if any(tiers.tier_at(p.size, low) is not tiers.tier_at(p.size, high) for p in legs):
            caps = [t.cap for t in tiers.tiers]
            for f in pth.tier_breakpoints(low, high, [p.size for p in legs], caps):
                level = low + (high - low) * f
                prices += [level * (1 - 1e-12), level * (1 + 1e-12)]
    best = math.inf
    for price in prices:
        term = 0.0
        for p in legs:
            p.mark_price = price
        for p in legs:
            term += p.unrealized_pnl - account.trigger_margin(p)
        if term < best:
            best = term
    for p in legs:
        p.mark_price = current
    return best


def cross_floor(account: Account, ranges: dict[str, tuple[float, float]]) -> float:
    """Lowest cross margin balance − trigger margin (USDT) over the box of marks: each symbol
    with a range anywhere in it, the others at their marks."""
    # resting orders' margin counts against the wallet where the profile says so (simple)
    total = account.wallet_balance - account.trigger_order_margin()
    for symbol, legs in cross_by_symbol(account).items():
        mark = legs[0].mark_price
        low, high = ranges.get(symbol, (mark, mark))
        total += term_min(account, legs, low, high)
    return total


class CrossBound:
    """Remembers each symbol's term bound over a widened box while its legs are unchanged, so
    quiet bars and fills of other symbols cost no evaluation (the minimum over a box is never
    above the minimum over a box it contains); only when that bound is not safe is the exact
    box evaluated (:func:`cross_floor`)."""

    def __init__(self) -> None:
        # symbol -> (legs state, low, high, minimum of its term over [low, high])
        self._boxes: dict[str, tuple[tuple[object, ...], float, float, float]] = {}
        # the cross legs by symbol with their state, kept while the account's version (every
        # change of a leg's size or entry bumps it) and its list of legs are unchanged
        self._legs_key: tuple[int, int] | None = None
        self._legs: list[tuple[str, list[Position], tuple[object, ...]]] = []

    def _cross_legs(self, account: Account) -> list[tuple[str, list[Position], tuple[object, ...]]]:
        key = (account.version, len(account.positions))
        if self._legs_key != key:
            self._legs_key = key
            self._legs = [
                (symbol, legs, tuple((p.leg, p.size, p.entry_price) for p in legs))
                for symbol, legs in cross_by_symbol(account).items()
            ]
        return self._legs

    def may_breach(self, account: Account, ranges: dict[str, tuple[float, float]]) -> bool:
        """Whether the cross condition can hold for marks anywhere in ``ranges`` (symbol →
        ``(low, high)``; absent symbols at their marks) with the account as it is now."""
        by_symbol = self._cross_legs(account)
        if not by_symbol:
            return False
        bound = account.wallet_balance - account.trigger_order_margin()
        notional_high = 0.0
        for symbol, legs, state in by_symbol:
            mark = legs[0].mark_price
            low, high = ranges.get(symbol, (mark, mark))
            box = self._boxes.get(symbol)
            if box is None or box[0] != state or not box[1] <= low <= high <= box[2]:
                wide_low, wide_high = low * (1 - SAFE_MARGIN), high * (1 + SAFE_MARGIN)
                box = (state, wide_low, wide_high, term_min(account, legs, wide_low, wide_high))
                self._boxes[symbol] = box
            bound += box[3]
            notional_high += sum(abs(p.size) for p in legs) * box[2]
        # every mark lies inside its box, so the legs' notional is below notional_high (the
        # factor covers rounding): far above that tolerance, the bound alone answers
        if bound > tolerance_of(notional_high * (1 + 1e-6)):
            return False
        tol = cross_tolerance(account)
        return bound <= tol and cross_floor(account, ranges) <= tol
