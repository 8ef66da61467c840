"""What the data feeds say in a broker step: which feeds move, their marks and funding.

The broker's step follows the finest clock (margin-model §8, mixed timeframes). A feed moves in
the step where it produced a new bar, except a liqbt feed stamped with bar open times
(``bar_timeframe``) that is coarser than the finest one: its bar is complete only at the last
fine step inside it, so it is walked there and until then the symbol stays at its last mark (no
look-ahead).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from backtrader.utils.dateintern import num2date


def now(data: Any) -> datetime | None:
    """The datetime of ``data``'s current bar (``None`` before its first)."""
    try:
        return data.datetime.datetime(0)
    except (IndexError, ValueError):
        return None


def mark_ohlc(data: Any) -> tuple[float, float, float, float]:
    """The bar's mark prices (O, H, L, C): the feed's mark lines, else its trade prices."""
    lines = getattr(data.lines, "mark_close", None)
    if lines is not None:
        values = (
            data.lines.mark_open[0], data.lines.mark_high[0],
            data.lines.mark_low[0], data.lines.mark_close[0],
        )
        if not any(math.isnan(v) for v in values):
            return values
    return data.open[0], data.high[0], data.low[0], data.close[0]


class FeedLines:
    """A data feed's lines resolved once (backtrader's attribute lookup on every bar was a
    measurable share of a run, issue 11); each read is the same value as the plain functions
    :func:`now`, :func:`mark_ohlc` and :func:`funding_rate` give."""

    __slots__ = ("close", "data", "datetime", "funding", "high", "low", "marks", "open")

    def __init__(self, data: Any) -> None:
        lines = data.lines
        self.data = data
        self.open, self.high, self.low, self.close = lines.open, lines.high, lines.low, lines.close
        marks = getattr(lines, "mark_close", None)
        self.marks = None if marks is None else (
            lines.mark_open, lines.mark_high, lines.mark_low, lines.mark_close
        )
        self.funding = getattr(lines, "funding_rate", None)
        self.datetime = lines.datetime

    def mark_ohlc(self) -> tuple[float, float, float, float]:
        """:func:`mark_ohlc` of the feed."""
        if self.marks is not None:
            o, h, lo, c = self.marks
            values = (o[0], h[0], lo[0], c[0])
            # x == x is false for NaN only: no mark value is missing
            if values[0] == values[0] and values[1] == values[1] and (
                values[2] == values[2] and values[3] == values[3]
            ):
                return values
        return self.open[0], self.high[0], self.low[0], self.close[0]

    def funding_rate(self) -> float | None:
        """:func:`funding_rate` of the feed."""
        line = self.funding
        if line is None:
            return None
        rate = line[0]
        return None if rate is None or math.isnan(rate) else float(rate)

    def stamp(self) -> float | None:
        """The current bar's time as backtrader's float date, ``None`` before the first bar:
        :func:`to_datetime` with :meth:`tz` turns it into :func:`now`'s datetime when needed."""
        line = self.datetime
        try:
            return line.array[line.idx]
        except IndexError:
            return None

    def tz(self) -> Any:
        """The time zone backtrader converts the feed's dates with."""
        return self.datetime._tz


def to_datetime(stamp: float, tz: Any) -> datetime | None:
    """:meth:`FeedLines.stamp` as the datetime :func:`now` returns (``None`` where it would)."""
    try:
        return num2date(stamp, tz=tz, naive=True)
    except ValueError:
        return None


def funding_rate(data: Any) -> float | None:
    """The funding rate settled at this bar (the feed's ``funding_rate`` line), or ``None``."""
    line = getattr(data.lines, "funding_rate", None)
    if line is None:
        return None
    rate = line[0]
    return None if rate is None or math.isnan(rate) else float(rate)


class FeedClock:
    """Which of a broker's feeds are walked in each step (see the module docstring)."""

    def __init__(self) -> None:
        self._seen_len: dict[Any, int] = {}
        self._deferred: dict[Any, datetime] = {}
        self._finest: Any = None
        self._walked_at_once: set[Any] = set()  # feeds no coarser than the finest one

    def active(self, datas: list[Any]) -> list[Any]:
        """The feeds among ``datas`` whose bar is walked in this step."""
        moving = []
        for data in datas:
            n = len(data)
            if n and self._seen_len.get(data) != n:
                self._seen_len[data] = n
                if data in self._walked_at_once:
                    moving.append(data)
                    continue
                due = self._completion_time(data, datas)
                if due is None:
                    moving.append(data)
                else:
                    self._deferred[data] = due
        if self._deferred:
            times = [t for t in (now(d) for d in moving) if t is not None]
            current = max(times) if times else None
            for data, due in list(self._deferred.items()):
                if current is not None and current >= due:
                    del self._deferred[data]
                    moving.append(data)
        return moving

    def _completion_time(self, data: Any, datas: list[Any]) -> datetime | None:
        """Open time of the last finest bar inside ``data``'s new bar, when ``data`` is a
        coarser open-time-stamped liqbt feed; ``None`` when its bar is walked at once."""
        length = getattr(data, "bar_timeframe", None)
        if length is None:
            self._walked_at_once.add(data)
            return None
        if self._finest is None:
            lengths = [getattr(d, "bar_timeframe", None) for d in datas]
            self._finest = min((x for x in lengths if x is not None), default=length)
        if length <= self._finest:
            self._walked_at_once.add(data)
            return None
        opened = now(data)
        if opened is None:
            return None
        return opened + (length - self._finest).to_pytimedelta()
