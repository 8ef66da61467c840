"""Data-quality warnings: what a file can hold that is valid but probably wrong.

:mod:`liqbt.data.validate` refuses files that cannot be right (unsorted times, ``low > high``,
NaN...). This module finds what is *legal but suspicious* and says so, one line per finding,
naming the file, where and how much:

* **gaps**: runs of missing candles (``300 bars missing from ...``);
* **mark coverage**: the share of candle bars the mark series covers (the rest falls back to
  trade prices, which changes liquidation prices);
* **funding coverage**: funding events expected every ``funding_interval`` over the candles'
  span but missing (funding is then silently not charged);
* **outliers**: a price that is far from *both* neighbours' closes (a bad tick such as
  1.0 USDT inside BTC data): ``price / median(close of the k bars before and after)`` outside
  ``[1 / outlier_factor, outlier_factor]``. A real crash moves the neighbours too, so it is not
  flagged (the 2020-03-12 −29 % hour and the 2021-05-19 −40 % ETH hour stay within 2.5×);
* **funding magnitude**: a rate above ``max_funding`` per event (Binance caps BTC/ETH at
  ±0.3 % per 8 h, alts at ±2 % per 4 h or less), or a median |rate| ten times the usual 0.01 %
  base (rates stored in percent, i.e. ×100).

The runner collects these into ``RunResult.data_warnings`` (terminal, JSON, report);
``--strict`` / ``backtest.strict_data`` turns them into an error before the run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from liqbt.data.loaders import find_gaps, infer_timeframe, timeframe_label

#: A price more than this factor away from both neighbours' closes is an outlier.
OUTLIER_FACTOR = 2.5
#: Neighbour bars on each side used for the reference median.
OUTLIER_NEIGHBOURS = 3
#: |funding rate| per event above this is flagged (2 %: the largest Binance cap).
MAX_FUNDING = 0.02
#: Median |funding rate| above this suggests rates stored in percent (10 × the 0.01 % base).
MAX_MEDIAN_FUNDING = 0.001
#: Expected time between funding events.
FUNDING_INTERVAL = pd.Timedelta("8h")
#: At most this many lines per kind of finding per file.
MAX_LINES = 5


def _where(frame: pd.DataFrame, what: str) -> str:
    source = frame.attrs.get("source")
    return f"{what} ({source})" if source else what


def gap_warnings(symbol: str, candles: pd.DataFrame) -> list[str]:
    """One line per hole in the candles (capped), then a total."""
    gaps = candles.attrs.get("gaps")
    tf = candles.attrs.get("timeframe")
    if gaps is None:
        if len(candles) < 2:
            return []
        tf = tf or infer_timeframe(candles)
        gaps = find_gaps(candles.index, tf)
    if not gaps:
        return []
    where = _where(candles, f"{symbol} candles")
    lines = [f"{where}: gap: {g}" for g in gaps[:MAX_LINES]]
    if len(gaps) > MAX_LINES:
        total = sum(g.missing for g in gaps)
        lines.append(f"{where}: ... {len(gaps)} gaps in all, {total} bars missing")
    return lines


def mark_warnings(symbol: str, candles: pd.DataFrame, mark: pd.DataFrame | None,
                  fallback_bars: int) -> list[str]:
    """Mark coverage: bars whose mark fell back to the trade price (``make_feed`` counts)."""
    if mark is None or not len(candles) or fallback_bars <= 0:
        return []
    # a coarser mark (1h on 5m bars) is only known once its first bar closed: the bars of
    # that first mark bar always use the trade price, which is expected, not a coverage hole
    tf = candles.attrs.get("timeframe") or infer_timeframe(candles)
    mtf = mark.attrs.get("timeframe") or (infer_timeframe(mark) if len(mark) > 1 else tf)
    startup = max(int(mtf / tf), 1) if mtf > tf else 0
    if fallback_bars <= startup + 0.01 * len(candles):
        return []
    share = 1 - fallback_bars / len(candles)
    return [
        f"{_where(mark, f'{symbol} mark')}: covers {share:.1%} of the {len(candles):,} candle "
        f"bars; {fallback_bars:,} bars use the trade price as mark (liquidations there use "
        "trade wicks)"
    ]


def funding_warnings(symbol: str, candles: pd.DataFrame, funding: pd.DataFrame | None,
                     interval: pd.Timedelta = FUNDING_INTERVAL) -> list[str]:
    """Funding events missing over the candles' span, and implausible rates."""
    if funding is None or not len(candles):
        return []
    where = _where(funding, f"{symbol} funding")
    lines: list[str] = []
    tf = candles.attrs.get("timeframe") or (infer_timeframe(candles) if len(candles) > 1
                                            else pd.Timedelta(0))
    first, last = candles.index[0], candles.index[-1] + tf
    expected = int((last - first) / interval)
    inside = funding[(funding.index >= first) & (funding.index < last)]
    if expected >= 1 and len(inside) < expected:
        lines.append(
            f"{where}: {len(inside)} funding events over {first.isoformat()} → "
            f"{last.isoformat()}, expected ≈ {expected} (one per {timeframe_label(interval)}); "
            f"{expected - len(inside)} missing, funding is not charged there"
        )
    return lines + funding_rate_warnings(symbol, inside)


def funding_rate_warnings(symbol: str, funding: pd.DataFrame) -> list[str]:
    """Implausible funding rates: single events above :data:`MAX_FUNDING`, and a median far
    above the usual 0.01 % base (rates stored in percent)."""
    where = _where(funding, f"{symbol} funding".strip())
    rate = funding["funding_rate"].to_numpy(dtype="float64")
    if not len(rate):
        return []
    big = np.flatnonzero(np.abs(rate) > MAX_FUNDING)
    lines = [
        f"{where}: {funding.index[i].isoformat()} rate {rate[i]:.6g} is above "
        f"{MAX_FUNDING:g} per event in magnitude" for i in big[:MAX_LINES]
    ]
    median = float(np.median(np.abs(rate)))
    if median > MAX_MEDIAN_FUNDING:
        lines.append(
            f"{where}: median |rate| {median:.6g} is {median / 0.0001:.0f}× the usual "
            "0.0001 (0.01 %) base: rates stored in percent (×100)?"
        )
    return lines


def outlier_warnings(symbol: str, frame: pd.DataFrame, what: str = "candles",
                     factor: float = OUTLIER_FACTOR, k: int = OUTLIER_NEIGHBOURS) -> list[str]:
    """Prices far from both neighbours' closes (bad ticks)."""
    n = len(frame)
    if n < 3:
        return []
    close = frame["close"].to_numpy(dtype="float64")
    # median of the k closes before and the k closes after each bar (the bar itself excluded)
    padded = np.concatenate([np.full(k, np.nan), close, np.full(k, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1)
    neighbours = np.delete(windows, k, axis=1)
    with np.errstate(all="ignore"):
        ref = np.nanmedian(neighbours, axis=1)
    lines: list[str] = []
    where = _where(frame, f"{symbol} {what}")
    for column in ("low", "high", "open", "close"):
        price = frame[column].to_numpy(dtype="float64")
        with np.errstate(all="ignore"):
            ratio = price / ref
        bad = np.flatnonzero((ratio < 1 / factor) | (ratio > factor))
        for i in bad[:MAX_LINES]:
            lines.append(
                f"{where}: {frame.index[i].isoformat()} {column} {price[i]:g} is "
                f"{ratio[i]:.3g}× the neighbouring closes (median {ref[i]:g}): bad tick?"
            )
        if len(bad) > MAX_LINES:
            lines.append(f"{where}: ... {len(bad)} outlying '{column}' values in all")
    return lines


def market_warnings(
    symbol: str,
    candles: pd.DataFrame,
    mark: pd.DataFrame | None = None,
    funding: pd.DataFrame | None = None,
    mark_fallback_bars: int = 0,
) -> list[str]:
    """Every warning for one market's loaded data (see the module docstring)."""
    lines = gap_warnings(symbol, candles)
    lines += outlier_warnings(symbol, candles)
    if mark is not None:
        lines += outlier_warnings(symbol, mark, "mark")
    lines += mark_warnings(symbol, candles, mark, mark_fallback_bars)
    lines += funding_warnings(symbol, candles, funding)
    return lines


__all__ = [
    "FUNDING_INTERVAL",
    "MAX_FUNDING",
    "OUTLIER_FACTOR",
    "funding_rate_warnings",
    "funding_warnings",
    "gap_warnings",
    "mark_warnings",
    "market_warnings",
    "outlier_warnings",
]
