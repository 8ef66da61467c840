"""Margin-ratio warnings: a :class:`~liqbt.core.events.MarginWarning` when a position's margin
ratio reaches the threshold, at most once per ``interval`` per position leg."""

from __future__ import annotations

from datetime import datetime, timedelta

from liqbt.core import events as ev
from liqbt.core.account import Account, Position

WARNING_INTERVAL = timedelta(minutes=30)


class MarginWarnings:
    """Checks an account after each bar and records its warnings.

    Parameters
    ----------
    threshold
        Margin ratio (trigger margin / margin balance, ``Account.margin_ratio``; 1.0 =
        liquidation) at or above which a leg is warned about.
    interval
        Shortest time between two warnings of the same leg.
    """

    def __init__(self, threshold: float, interval: timedelta = WARNING_INTERVAL) -> None:
        self.threshold = threshold
        self.interval = interval
        self._warned_at: dict[tuple[str, str], datetime] = {}

    def check(self, account: Account) -> None:
        """Append a warning for every leg at or above the threshold (cross legs share the
        account's ratio), in symbol and leg order, never in the order positions were first
        created in (feed order)."""
        now = account.clock
        if now is None:
            return
        checks: list[tuple[Position, float]] = []
        cross = account.cross_positions()
        if cross:
            ratio = account.margin_ratio()
            checks.extend((p, ratio) for p in cross)
        for pos in account.open_positions():
            if pos.margin_mode == "isolated":
                checks.append((pos, account.margin_ratio(pos)))
        threshold = self.threshold
        for pos, ratio in sorted(checks, key=lambda c: (c[0].symbol, c[0].leg)):
            if ratio < threshold:
                continue
            key = (pos.symbol, pos.leg)
            last = self._warned_at.get(key)
            if last is not None and now - last < self.interval:
                continue
            self._warned_at[key] = now
            account.events.append(ev.MarginWarning(now, pos.symbol, pos.leg, ratio, threshold))
