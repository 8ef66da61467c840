"""Margin-ratio warnings: a :class:`~liqbt.core.events.MarginWarning` when a position's margin
ratio reaches the threshold, at most once per ``interval`` per position leg.

The ratio ``trigger margin / margin balance`` (``Account.margin_figures``) is only evaluated
when the marks have moved far enough since the last evaluation to possibly reach the threshold.
The bound needs no margin formula: with ``D = Σ |size| × |mark − mark at the evaluation|`` over
the legs concerned (USDT), the margin balance has fallen by at most ``D`` and the trigger margin
(MM + closing fee: slope ``mmr + fee rate <= 1`` per unit of notional, or constant for the
``simple`` profile) has risen by at most ``D``. So while ``balance − D > (trigger + D) / θ``
the ratio is still below ``θ``. Any other change (fill, funding, margin moved, orders counted in
the trigger) changes the account's ``version`` or its order margin and forces an evaluation.
MM tables may jump at a tier boundary, so the bound is only used while every leg's mark stays
inside the price band it may reach without crossing a tier (checked at the evaluation).
"""

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
        # state of the last evaluation: (version, order margin, legs with their marks) and,
        # per account part (None = cross, else an isolated leg), its margin balance and trigger
        self._state: tuple[object, ...] | None = None
        self._marks: list[tuple[Position, float, float]] = []
        self._headroom = 0.0

    def _safe(self, account: Account) -> bool:
        """Whether no ratio can have reached the threshold since the last evaluation (see the
        module docstring); remembers the state when it cannot tell."""
        state = (account.version, account.trigger_order_margin(), len(account.positions))
        if state == self._state:
            if not self._marks:
                return True  # flat at the last evaluation and unchanged since: nothing to warn
            moved = 0.0
            for pos, size, mark in self._marks:
                moved += size * abs(pos.mark_price - mark)
            if moved < self._headroom:
                return True
        return False

    def _remember(self, account: Account, parts: list[tuple[float, float]]) -> None:
        """Note the marks and the smallest headroom ``D`` may reach over every part
        ``(balance, trigger)``: ``balance − D > (trigger + D) / θ`` ⇔
        ``D < (θ balance − trigger) / (θ + 1)``."""
        theta = self.threshold
        self._state = (account.version, account.trigger_order_margin(), len(account.positions))
        self._marks = [(p, abs(p.size), p.mark_price) for p in account.open_positions()]
        headroom = min(
            ((theta * balance - trigger) / (theta + 1) for balance, trigger in parts),
            default=0.0,
        )
        for pos, size, mark in self._marks:
            if headroom <= 0:
                break
            # the farthest this leg's mark can move while D < headroom: no tier crossed there
            reach = headroom / size
            tier = account.tier_index(pos)
            if (account.tier_index(pos, max(mark - reach, 0.0)) != tier
                    or account.tier_index(pos, mark + reach) != tier):
                headroom = 0.0
        self._headroom = headroom

    def check(self, account: Account) -> None:
        """Append a warning for every leg at or above the threshold (cross legs share the
        account's ratio), in symbol and leg order, never in the order positions were first
        created in (feed order)."""
        # the cheap test first: reading the clock may make a datetime (Account.defer_clock)
        if self._safe(account):
            return
        now = account.clock
        if now is None:
            return
        checks: list[tuple[Position, float]] = []
        parts: list[tuple[float, float]] = []
        cross = account.cross_positions()
        if cross:
            figures = account.margin_figures()
            parts.append((figures.margin_balance, figures.trigger_margin))
            checks.extend((p, figures.margin_ratio) for p in cross)
        for pos in account.open_positions():
            if pos.margin_mode == "isolated":
                figures = account.margin_figures(pos)
                parts.append((figures.margin_balance, figures.trigger_margin))
                checks.append((pos, figures.margin_ratio))
        self._remember(account, parts)
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
