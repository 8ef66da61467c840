"""Vectorised validation of candle and funding frames that reports every problem at once.

The checks run on plain numpy arrays (one pass per rule) so a 120k-row file validates in a few
milliseconds; messages are only formatted for the offending rows, and each kind of problem is
capped (first :data:`MAX_PER_KIND` plus an "and N more" line) so a badly broken file still gives a
readable :class:`~liqbt.core.errors.ValidationError`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from liqbt.core.errors import ValidationError

#: How many problems of one kind are listed before the rest is summarised as "and N more".
MAX_PER_KIND = 20

#: |funding rate| above this (5 % per funding interval) is treated as a broken file, not a market.
MAX_ABS_FUNDING = 0.05

PRICE_COLUMNS = ("open", "high", "low", "close")
CANDLE_COLUMNS = (*PRICE_COLUMNS, "volume")


class Problems:
    """Collects problem lines grouped by kind, keeping at most ``cap`` lines per kind.

    Parameters
    ----------
    cap
        Maximum number of lines listed per kind; the remainder is counted.
    """

    def __init__(self, cap: int = MAX_PER_KIND) -> None:
        self.cap = cap
        self._lines: dict[str, list[str]] = {}
        self._extra: dict[str, int] = {}

    def add(self, kind: str, line: str) -> None:
        """Record one problem of ``kind``."""
        lines = self._lines.setdefault(kind, [])
        if len(lines) < self.cap:
            lines.append(line)
        else:
            self._extra[kind] = self._extra.get(kind, 0) + 1

    def add_rows(
        self,
        kind: str,
        rows: np.ndarray,
        describe: Callable[[int], str],
    ) -> None:
        """Record one problem per row position in ``rows`` (formatted lazily, capped).

        ``describe`` is a callable ``int -> str``; it is only called for the listed rows, so
        a million bad rows cost one vectorised count, not a million f-strings.
        """
        if len(rows) == 0:
            return
        lines = self._lines.setdefault(kind, [])
        room = max(self.cap - len(lines), 0)
        lines.extend(describe(int(i)) for i in rows[:room])
        if len(rows) > room:
            self._extra[kind] = self._extra.get(kind, 0) + len(rows) - room

    def __bool__(self) -> bool:
        return bool(self._lines)

    def lines(self) -> list[str]:
        """All problem lines, each kind followed by its "and N more" summary when capped."""
        out: list[str] = []
        for kind, lines in self._lines.items():
            out.extend(lines)
            extra = self._extra.get(kind, 0)
            if extra:
                out.append(f"... and {extra} more {kind} problems")
        return out

    def raise_if_any(self, source: str | None) -> None:
        """Raise :class:`ValidationError` listing every recorded problem, if there is one."""
        if self:
            raise ValidationError(self.lines(), source=source)


def _py(value: object) -> object:
    """numpy scalars to plain Python so messages read ``0.07``, not ``np.float64(0.07)``."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _fmt_ts(ts: pd.Timestamp | None) -> str:
    if ts is None or pd.isna(ts):
        return "NaT"
    return ts.isoformat()


def _row(index: pd.DatetimeIndex, i: int) -> str:
    return f"row {i} ({_fmt_ts(index[i])})"


def check_timestamps(
    problems: Problems,
    index: pd.DatetimeIndex,
    raw: pd.Series | None = None,
) -> None:
    """Unparsable (NaT), duplicate and unsorted timestamps.

    Parameters
    ----------
    problems
        Collector to add to.
    index
        Parsed open times (NaT where parsing failed), in file row order.
    raw
        The timestamp column as read, used to quote the unparsable value.
    """
    nat = np.flatnonzero(index.isna())
    problems.add_rows(
        "timestamp",
        nat,
        lambda i: (
            f"row {i}: column 'date' = {_py(raw.iloc[i]) if raw is not None else 'NaT'!r} "
            "is not a parsable timestamp (rule: ISO-8601 string or epoch s/ms/µs)"
        ),
    )
    values = index.as_unit("ns").asi8
    valid = ~index.isna()
    # compare each valid row with the previous valid row so one NaT does not hide an unsorted pair
    pos = np.flatnonzero(valid)
    if len(pos) < 2:
        return
    v = values[pos]
    diff = np.diff(v)
    dup = pos[1:][diff == 0]
    back = pos[1:][diff < 0]
    prev = {int(b): int(a) for a, b in itertools.pairwise(pos)}
    problems.add_rows(
        "duplicate",
        dup,
        lambda i: (
            f"{_row(index, i)}: column 'date' = {_fmt_ts(index[i])} duplicates row {prev[i]} "
            "(rule: timestamps unique)"
        ),
    )
    problems.add_rows(
        "unsorted",
        back,
        lambda i: (
            f"{_row(index, i)}: column 'date' = {_fmt_ts(index[i])} is earlier than row "
            f"{prev[i]} ({_fmt_ts(index[prev[i]])}) (rule: timestamps strictly increasing)"
        ),
    )


def check_numbers(
    problems: Problems,
    index: pd.DatetimeIndex,
    columns: Mapping[str, np.ndarray],
    raw: Mapping[str, pd.Series] | None = None,
) -> None:
    """NaN / unparsable numbers in any column.

    ``raw`` (optional) holds the columns as read; a NaN whose raw value was not empty is reported
    as unparsable with the offending text.
    """
    for name, arr in columns.items():
        bad = np.flatnonzero(np.isnan(arr))
        if raw is not None and name in raw:
            col = raw[name]

            def describe(i: int, name: str = name, col: pd.Series = col) -> str:
                value = col.iloc[i]
                if pd.isna(value):
                    return f"{_row(index, i)}: column '{name}' = NaN (rule: no missing values)"
                return (
                    f"{_row(index, i)}: column '{name}' = {_py(value)!r} is not a number "
                    "(rule: numeric values)"
                )

            problems.add_rows("NaN", bad, describe)
        else:
            problems.add_rows(
                "NaN",
                bad,
                lambda i, name=name: (
                    f"{_row(index, i)}: column '{name}' = NaN (rule: no missing values)"
                ),
            )


def validate_candles(
    index: pd.DatetimeIndex,
    columns: Mapping[str, np.ndarray],
    source: str | None = None,
    raw: Mapping[str, pd.Series] | None = None,
    raw_dates: pd.Series | None = None,
) -> None:
    """Validate OHLCV arrays; raise one :class:`ValidationError` listing every problem.

    Parameters
    ----------
    index
        Open times in file order (NaT for unparsable ones).
    columns
        ``open, high, low, close, volume`` as float64 arrays (NaN where missing/unparsable).
    source
        File name for the error message.
    raw, raw_dates
        Columns as read, only used to quote unparsable values.

    Raises
    ------
    ValidationError
        Listing unparsable/duplicate/unsorted timestamps, NaN, non-positive prices,
        ``low > min(open, close)``, ``high < max(open, close)`` and negative volume.
    """
    problems = Problems()
    check_timestamps(problems, index, raw_dates)
    check_numbers(problems, index, columns, raw)
    o, h, low, c, v = (columns[k] for k in CANDLE_COLUMNS)
    with np.errstate(invalid="ignore"):
        for name in PRICE_COLUMNS:
            arr = columns[name]
            problems.add_rows(
                "non-positive price",
                np.flatnonzero(arr <= 0),
                lambda i, name=name, arr=arr: (
                    f"{_row(index, i)}: column '{name}' = {float(arr[i])!r} (rule: prices > 0)"
                ),
            )
        lo_ref = np.minimum(o, c)
        hi_ref = np.maximum(o, c)
        problems.add_rows(
            "low",
            np.flatnonzero(low > lo_ref),
            lambda i: (
                f"{_row(index, i)}: column 'low' = {float(low[i])!r} > min(open, close) = "
                f"{float(lo_ref[i])!r} (rule: low <= min(open, close))"
            ),
        )
        problems.add_rows(
            "high",
            np.flatnonzero(h < hi_ref),
            lambda i: (
                f"{_row(index, i)}: column 'high' = {float(h[i])!r} < max(open, close) = "
                f"{float(hi_ref[i])!r} (rule: high >= max(open, close))"
            ),
        )
        problems.add_rows(
            "volume",
            np.flatnonzero(v < 0),
            lambda i: f"{_row(index, i)}: column 'volume' = {float(v[i])!r} (rule: volume >= 0)",
        )
    problems.raise_if_any(source)


def validate_funding(
    index: pd.DatetimeIndex,
    rate: np.ndarray,
    source: str | None = None,
    raw: pd.Series | None = None,
    raw_dates: pd.Series | None = None,
    max_abs: float = MAX_ABS_FUNDING,
) -> None:
    """Validate funding events; raise one :class:`ValidationError` listing every problem.

    Parameters
    ----------
    index
        Funding times in file order (NaT for unparsable ones).
    rate
        Funding rate per event as float64 (0.0001 = 0.01 %).
    source
        File name for the error message.
    raw, raw_dates
        Columns as read, only used to quote unparsable values.
    max_abs
        Largest plausible |rate| per interval; the default 5 % is far above any exchange cap.
    """
    problems = Problems()
    check_timestamps(problems, index, raw_dates)
    check_numbers(
        problems,
        index,
        {"funding_rate": rate},
        None if raw is None else {"funding_rate": raw},
    )
    with np.errstate(invalid="ignore"):
        problems.add_rows(
            "funding",
            np.flatnonzero(np.abs(rate) > max_abs),
            lambda i: (
                f"{_row(index, i)}: column 'funding_rate' = {float(rate[i])!r} "
                f"(rule: |funding rate| <= {max_abs})"
            ),
        )
    problems.raise_if_any(source)
