"""Lean backtrader feeds carrying trade OHLCV, mark-price OHLC and funding events.

:class:`FuturesFeed` reads pre-computed numpy arrays (no per-bar pandas access, unlike
``PandasData``) and exposes, besides the standard ``open high low close volume openinterest``:

``mark_open, mark_high, mark_low, mark_close``
    Mark-price OHLC of the bar (used by the broker for liquidation checks).
``funding_rate``
    The funding rate settled during the bar, NaN on bars without a funding event.

Build it with :func:`make_feed`, which aligns mark candles and funding events onto the trade bars.

Strategy on coarse bars, broker on fine bars
--------------------------------------------
Add the fine feed first, then a resampled view of it; the broker (which processes orders and
liquidation checks against ``datas[0]``) sees every 5-minute bar, while the strategy reads its
signals from the coarse view::

    fine = make_feed(candles_5m, mark=mark_1h, funding=funding)
    cerebro.adddata(fine)
    add_resampled(cerebro, fine, "1h")
    # same as: cerebro.resampledata(fine, timeframe=bt.TimeFrame.Minutes, compression=60,
    #                               boundoff=5)
    # in the strategy: self.datas[1] is the 1h series, self.datas[0] the 5m series

``boundoff`` matters: liqbt stamps bars with their **open** time while backtrader's resampler
assumes close times. Without it an "hour" would hold the bars opening 00:05 … 01:00; with
``boundoff`` = one fine bar it holds 00:00 … 00:55 (the real hour) and is delivered on the 00:55
fine bar, i.e. as soon as the hour has closed, never earlier. The coarse bar is stamped with
its last fine bar's open time (00:55). Only the standard lines are resampled: read
``mark_*``/``funding_rate`` from ``datas[0]``.
"""

from __future__ import annotations

from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from liqbt.core.errors import ValidationError
from liqbt.data.loaders import infer_timeframe, parse_timeframe, resample, timeframe_label

#: backtrader's date number of 1970-01-01 (days since 0001-01-01, plus one).
_EPOCH_ORDINAL = 719163.0
_NS_PER_DAY = 86_400_000_000_000

MARK_LINES = ("mark_open", "mark_high", "mark_low", "mark_close")


class FuturesFeed(bt.feed.DataBase):
    """A backtrader data feed over numpy arrays with mark-price and funding lines.

    Parameters
    ----------
    arrays
        Dict of equal-length float64 arrays: ``datetime`` (backtrader date numbers, naive UTC),
        ``open high low close volume`` and ``mark_open mark_high mark_low mark_close
        funding_rate``. :func:`make_feed` builds it; use that instead of constructing directly.

    Notes
    -----
    ``_load`` copies one row of plain Python floats per bar; with ``preload`` (the default)
    backtrader calls it once per bar up front, which is about twice as fast as ``PandasData``.
    """

    lines = (*MARK_LINES, "funding_rate")
    params = (("arrays", None),)

    def start(self) -> None:
        super().start()
        arrays: dict[str, np.ndarray] = self.p.arrays or {}
        # lists of Python floats: indexing a list is much cheaper than a numpy scalar per bar
        self._cols = [
            (getattr(self.lines, name), arrays[name].tolist())
            for name in (
                "datetime",
                "open",
                "high",
                "low",
                "close",
                "volume",
                *MARK_LINES,
                "funding_rate",
            )
        ]
        self._oi = self.lines.openinterest
        self._n = len(arrays.get("datetime", ()))
        self._i = 0

    def _ticks(self) -> tuple[Any, list[tuple[str, Any]], str, Any]:
        """``(lines, [(tick attribute, line)...], first tick attribute, first line)``: what
        backtrader's tick methods look up by name on every bar, resolved once per lines object
        (a shallow copy of the feed, as ``replaydata`` makes, gets its own)."""
        cache = self.__dict__.get("_tick_cache")
        lines = self.lines
        if cache is None or cache[0] is not lines:
            first = self._getlinealias(0)
            ticks = [("tick_" + a, getattr(lines, a)) for a in self.getlinealiases()
                     if a != "datetime"]
            cache = (lines, ticks, "tick_" + first, getattr(lines, first))
            self._tick_cache = cache
        return cache

    def _tick_nullify(self) -> None:
        """``AbstractDataBase._tick_nullify`` (every ``tick_*`` attribute to ``None``) with the
        names resolved once: it runs on every bar."""
        for name, _ in self._ticks()[1]:
            setattr(self, name, None)
        self.tick_last = None

    def _tick_fill(self, force: bool = False) -> None:
        """``AbstractDataBase._tick_fill``: when nothing filled the ``tick_*`` attributes, the
        bar is the tick (the same attributes and values, names resolved once)."""
        _, ticks, first_tick, first_line = self._ticks()
        if force or getattr(self, first_tick, None) is None:
            for name, line in ticks:
                setattr(self, name, line[0])
            self.tick_last = first_line[0]

    def preload(self) -> None:
        """Fill the line buffers with every bar at once (``array.extend`` per line) instead of
        backtrader's bar-by-bar ``load`` loop: the same buffers, several times faster. Falls
        back to the loop whenever a bar could be dropped, delayed or changed on its way in
        (date filters, filters, a time zone to apply, bounded buffers)."""
        lines = [self.lines[i] for i in range(self.lines.size())]
        bulk = (
            not self._i and not self._tzinput and not self._filters and not self._barstack
            and not self._barstash and self.fromdate == float("-inf")
            and self.todate == float("inf") and len(lines) == len(self._cols) + 1
            and all(line.mode == bt.linebuffer.LineBuffer.UnBounded and line.idx == -1
                    and not len(line.array) for line in lines)
        )
        if not bulk:
            super().preload()
            return
        n = self._n
        for line, values in [*self._cols, (self._oi, [0.0] * n)]:
            line.array.extend(values)
            line.idx += n
            line.lencount += n
        self._i = n
        self._last()
        self.home()

    def _load(self) -> bool:
        i = self._i
        if i >= self._n:
            return False
        for line, values in self._cols:
            line[0] = values[i]
        self._oi[0] = 0.0
        self._i = i + 1
        return True


def to_bt_datetime(index: pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps to backtrader date numbers (naive UTC), vectorised ``bt.date2num``."""
    utc = index.tz_convert("UTC") if index.tz is not None else index
    ns = utc.as_unit("ns").asi8
    return ns / _NS_PER_DAY + _EPOCH_ORDINAL


def bt_timeframe(td: pd.Timedelta) -> tuple[int, int]:
    """Map a bar length to backtrader's ``(timeframe, compression)``.

    5 min -> (Minutes, 5), 1 h -> (Minutes, 60), 1 d -> (Days, 1), 1 w -> (Weeks, 1),
    30 s -> (Seconds, 30).
    """
    seconds = td.total_seconds()
    if seconds % 604800 == 0:
        return bt.TimeFrame.Weeks, int(seconds // 604800)
    if seconds % 86400 == 0:
        return bt.TimeFrame.Days, int(seconds // 86400)
    if seconds % 60 == 0:
        return bt.TimeFrame.Minutes, int(seconds // 60)
    if seconds == int(seconds):
        return bt.TimeFrame.Seconds, int(seconds)
    raise ValidationError([f"timeframe {td} is not a whole number of seconds"])


def align_mark(
    candles: pd.DataFrame,
    mark: pd.DataFrame | None,
    timeframe: pd.Timedelta,
    mark_timeframe: pd.Timedelta | None = None,
) -> tuple[pd.DataFrame, int]:
    """Mark-price OHLC for every trade bar, never using information from the future.

    Rules
    -----
    * ``mark is None``: the trade OHLC is used as mark (the conservative choice: trade wicks are
      at least as deep as mark wicks).
    * Same timeframe: mark bars are matched by open time.
    * Finer mark (1m mark, 5m trades): mark is first resampled to the trade timeframe.
    * Coarser mark (1h mark, 5m trades): a coarse bar's OHLC is only known when it closes, so
      using it on the fine bars inside it would leak the future (e.g. a liquidation at the
      hour's low triggered at 10:05 for a wick at 10:50). Instead the fine bar's mark OHLC is the
      fine bar's **trade** OHLC times the last *known* basis ratio
      ``mark_close(last completed coarse bar) / trade_close(at that coarse bar's close)``.
      The mark therefore follows the trade price inside the hour, offset by the premium that was
      observable at the start of the hour. (The trade price at the coarse close is the close of
      the fine bar ending then, or the open of the fine bar starting then if the trade data
      begins there.)

    Trade bars without a usable mark value (mark series starts later / ends earlier, or the last
    completed coarse bar is more than one coarse bar old) fall back to the trade OHLC; their
    count is returned.

    Returns
    -------
    (frame, fallback_bars)
        Frame on ``candles.index`` with ``mark_open, mark_high, mark_low, mark_close``.
    """
    trade = candles[["open", "high", "low", "close"]].to_numpy(dtype="float64")
    if mark is None or mark.empty:
        return pd.DataFrame(trade, index=candles.index, columns=list(MARK_LINES)), len(candles)
    mtf = mark_timeframe or mark.attrs.get("timeframe") or infer_timeframe(mark)
    if mtf < timeframe:
        mark = resample(mark, timeframe, source_timeframe=mtf)
        mtf = timeframe
    if mtf == timeframe:
        got = mark[["open", "high", "low", "close"]].reindex(candles.index).to_numpy(copy=True)
        missing = np.isnan(got).any(axis=1)
        got[missing] = trade[missing]
        return pd.DataFrame(got, index=candles.index, columns=list(MARK_LINES)), int(missing.sum())

    t = candles.index.as_unit("ns").asi8
    fine_end = t + timeframe.value
    coarse_end = mark.index.as_unit("ns").asi8 + mtf.value
    mclose = mark["close"].to_numpy(dtype="float64")
    tclose = trade[:, 3]
    # last coarse bar that has closed at (or before) the fine bar's open
    k = np.searchsorted(coarse_end, t, side="right") - 1
    ok = k >= 0
    kk = np.where(ok, k, 0)
    known_at = coarse_end[kk]
    # stale: the completed coarse bar is older than the previous one (hole or end of mark data)
    ok &= (t - known_at) < mtf.value
    # trade price at the moment the coarse bar closed: close of the last fine bar ending by
    # then; when the trade data starts exactly there (a sliced frame), the open of that bar
    j = np.searchsorted(fine_end, known_at, side="right") - 1
    jj = np.where(j >= 0, j, 0)
    o = np.searchsorted(t, known_at, side="left")
    oo = np.minimum(o, len(t) - 1)
    opens_there = t[oo] == known_at
    use_open = opens_there & ((j < 0) | (fine_end[jj] != known_at))
    ok &= (j >= 0) | opens_there
    trade_at = np.where(use_open, trade[oo, 0], tclose[jj])
    ratio = np.where(ok, mclose[kk] / trade_at, 1.0)
    out = trade * ratio[:, None]
    return pd.DataFrame(out, index=candles.index, columns=list(MARK_LINES)), int((~ok).sum())


def align_funding(
    index: pd.DatetimeIndex, timeframe: pd.Timedelta, funding: pd.DataFrame | None
) -> np.ndarray:
    """Funding rate per bar: NaN without an event, else the rate of the event it contains.

    An event at time ``τ`` belongs to the bar with ``open <= τ < next open`` (for the last bar:
    ``τ < open + timeframe``). Events before the first bar or after the last are dropped. When a
    bar holds several events (daily bars, 8-hourly funding), their rates are summed: the bar's
    total funding per unit notional.
    """
    out = np.full(len(index), np.nan)
    if funding is None or funding.empty or len(index) == 0:
        return out
    t = index.as_unit("ns").asi8
    ev = funding.index.tz_convert("UTC").as_unit("ns").asi8
    rate = funding["funding_rate"].to_numpy(dtype="float64")
    pos = np.searchsorted(t, ev, side="right") - 1
    keep = (pos >= 0) & (ev < t[-1] + timeframe.value)
    pos, rate = pos[keep], rate[keep]
    if len(pos) == 0:
        return out
    sums = np.bincount(pos, weights=rate, minlength=len(index))
    has = np.bincount(pos, minlength=len(index)) > 0
    out[has] = sums[has]
    return out


def make_feed(
    candles: pd.DataFrame,
    mark: pd.DataFrame | None = None,
    funding: pd.DataFrame | None = None,
    name: str = "BTCUSDT",
    timeframe: str | pd.Timedelta | None = None,
    **kwargs: Any,
) -> FuturesFeed:
    """Build a :class:`FuturesFeed` from loaded frames.

    Parameters
    ----------
    candles
        Trade OHLCV (index ``date`` = UTC open time), e.g. from :func:`liqbt.data.load_candles`.
    mark
        Mark-price candles of the same, finer or coarser timeframe; see :func:`align_mark` for
        the no-look-ahead rule used for coarser marks. ``None``: mark lines = trade OHLC.
    funding
        Funding events (``funding_rate`` column); see :func:`align_funding`.
    name
        Feed name (``data._name``).
    timeframe
        Trade bar length; inferred when omitted. Sets backtrader's ``timeframe``/``compression``
        (5m -> Minutes/5, 1h -> Minutes/60, 1d -> Days/1).
    **kwargs
        Passed to the feed (e.g. ``fromdate``, ``todate``).

    Returns
    -------
    FuturesFeed
        Lines ``open high low close volume openinterest mark_open mark_high mark_low
        mark_close funding_rate``; datetimes are naive UTC. ``feed.mark_fallback_bars`` counts
        bars whose mark fell back to the trade price.
    """
    if candles.empty:
        raise ValidationError(["cannot build a feed from an empty candle frame"])
    tf = (
        parse_timeframe(timeframe)
        if timeframe is not None
        else candles.attrs.get("timeframe") or infer_timeframe(candles)
    )
    index = candles.index
    if index.tz is None:
        index = index.tz_localize("UTC")
    frame = candles.set_axis(index)
    mark_frame, fallback = align_mark(frame, mark, tf)
    arrays = {
        "datetime": to_bt_datetime(index),
        **{c: frame[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close")},
        "volume": frame["volume"].to_numpy(dtype="float64"),
        **{c: mark_frame[c].to_numpy(dtype="float64") for c in MARK_LINES},
        "funding_rate": align_funding(index, tf, funding),
    }
    bt_tf, compression = bt_timeframe(tf)
    feed = FuturesFeed(arrays=arrays, name=name, timeframe=bt_tf, compression=compression, **kwargs)
    feed.mark_fallback_bars = fallback
    feed.bar_timeframe = tf
    feed.bar_label = timeframe_label(tf)
    return feed


def add_resampled(
    cerebro: bt.Cerebro, fine: FuturesFeed, timeframe: str | pd.Timedelta, **kwargs: Any
) -> bt.feed.DataBase:
    """Add a coarser view of ``fine`` (already added to ``cerebro``) for the strategy's signals.

    Sets ``timeframe``/``compression`` for the target and ``boundoff`` = one fine bar so coarse
    bars span the real clock interval of open-time-stamped bars (see the module docstring).

    Parameters
    ----------
    cerebro
        The cerebro holding ``fine``.
    fine
        A feed from :func:`make_feed`.
    timeframe
        Coarse bar length, e.g. ``"1h"``; a whole multiple of the fine one.
    **kwargs
        Extra resample-filter arguments (``name=`` ...).

    Returns
    -------
    The resampled data feed (``cerebro.datas[-1]``).
    """
    target = parse_timeframe(timeframe)
    fine_tf: pd.Timedelta = fine.bar_timeframe
    if target < fine_tf or target.value % fine_tf.value:
        raise ValidationError(
            [
                f"cannot resample {timeframe_label(fine_tf)} bars to "
                f"{timeframe_label(target)}: needs a whole multiple of the fine timeframe"
            ]
        )
    bt_tf, compression = bt_timeframe(target)
    # boundoff is counted in the target's base unit (minutes for intraday targets)
    unit_ns = {
        bt.TimeFrame.Seconds: 10**9,
        bt.TimeFrame.Minutes: 60 * 10**9,
        bt.TimeFrame.Days: _NS_PER_DAY,
        bt.TimeFrame.Weeks: 7 * _NS_PER_DAY,
    }[bt_tf]
    boundoff = max(fine_tf.value // unit_ns, 0)
    kwargs.setdefault("boundoff", boundoff)
    return cerebro.resampledata(fine, timeframe=bt_tf, compression=compression, **kwargs)
