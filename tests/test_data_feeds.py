"""backtrader feeds: mark/funding alignment (no look-ahead), timeframes, coarse-on-fine runs."""

from __future__ import annotations

import math
from datetime import datetime

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from liqbt.core.errors import ValidationError
from liqbt.data import resample
from liqbt.feeds import (
    FuturesFeed,
    add_resampled,
    align_funding,
    align_mark,
    bt_timeframe,
    make_feed,
    to_bt_datetime,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def make_candles(n: int = 48, tf: str = "5min", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(T0, periods=n, freq=tf, name="date")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998,
            "close": close,
            "volume": np.ones(n),
        },
        index=idx,
    )


class Recorder(bt.Strategy):
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def next(self) -> None:
        d = self.datas[0]
        self.rows.append(
            (
                d.datetime.datetime(0),
                d.close[0],
                d.mark_open[0],
                d.mark_high[0],
                d.mark_low[0],
                d.mark_close[0],
                d.funding_rate[0],
            )
        )


def run(feed: FuturesFeed, **kwargs: object) -> Recorder:
    cerebro = bt.Cerebro(stdstats=False, **kwargs)
    cerebro.adddata(feed)
    cerebro.addstrategy(Recorder)
    return cerebro.run()[0]


def test_bt_datetime_matches_date2num() -> None:
    idx = pd.DatetimeIndex(["2024-01-01 00:05", "2025-10-10 21:15"], tz="UTC")
    got = to_bt_datetime(idx)
    want = [bt.date2num(datetime(2024, 1, 1, 0, 5)), bt.date2num(datetime(2025, 10, 10, 21, 15))]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("tf", "want"),
    [
        ("5min", (bt.TimeFrame.Minutes, 5)),
        ("1h", (bt.TimeFrame.Minutes, 60)),
        ("1D", (bt.TimeFrame.Days, 1)),
        ("7D", (bt.TimeFrame.Weeks, 1)),
        ("30s", (bt.TimeFrame.Seconds, 30)),
    ],
)
def test_bt_timeframe(tf: str, want: tuple[int, int]) -> None:
    assert bt_timeframe(pd.Timedelta(tf)) == want


def test_feed_lines_without_mark_or_funding() -> None:
    candles = make_candles()
    feed = make_feed(candles)
    assert feed.p.timeframe == bt.TimeFrame.Minutes and feed.p.compression == 5
    assert feed._name == "BTCUSDT"
    rec = run(feed)
    assert len(rec.rows) == len(candles)
    first = rec.rows[0]
    assert first[0] == datetime(2024, 1, 1, 0, 0)  # naive UTC, candle open time
    assert first[1] == candles["close"].iloc[0]
    # no mark: mark lines are the trade OHLC
    assert first[2:6] == tuple(candles.iloc[0][["open", "high", "low", "close"]])
    assert all(math.isnan(r[6]) for r in rec.rows)


def test_daily_feed_timeframe() -> None:
    feed = make_feed(make_candles(10, tf="1D"))
    assert (feed.p.timeframe, feed.p.compression) == (bt.TimeFrame.Days, 1)


def test_same_timeframe_mark_is_used_directly() -> None:
    candles = make_candles()
    mark = candles * 1.001
    mark["volume"] = 0.0
    mark = mark.iloc[5:]  # mark starts later: first 5 bars fall back to trade OHLC
    frame, fallback = align_mark(candles, mark, pd.Timedelta("5min"))
    assert fallback == 5
    np.testing.assert_allclose(frame["mark_close"].iloc[5:], candles["close"].iloc[5:] * 1.001)
    np.testing.assert_allclose(frame["mark_low"].iloc[:5], candles["low"].iloc[:5])


def test_finer_mark_is_aggregated() -> None:
    candles = make_candles(12, tf="5min")
    mark_1m = make_candles(60, tf="1min", seed=3)
    frame, fallback = align_mark(candles, mark_1m, pd.Timedelta("5min"))
    want = resample(mark_1m, "5m")
    assert fallback == 0
    np.testing.assert_allclose(frame["mark_low"], want["low"])
    np.testing.assert_allclose(frame["mark_high"], want["high"])


def test_coarse_mark_has_no_lookahead() -> None:
    """A 1h mark bar with a deep low must not show on the 5m bars of that hour.

    Rule: fine mark OHLC = fine trade OHLC x (mark close of the last completed hour / trade
    close at that hour's end).
    """
    candles = make_candles(36, tf="5min")  # 3 hours
    hourly = resample(candles, "1h")
    mark = hourly.copy()
    mark["close"] = hourly["close"] * 1.01  # +1 % premium at each hour's close
    mark.loc[mark.index[1], "low"] = 1.0  # a wick at 01:xx, known only after 02:00
    mark.attrs = {}
    frame, fallback = align_mark(candles, mark, pd.Timedelta("5min"))
    # first hour: no completed mark hour yet -> trade price (counted as fallback)
    assert fallback == 12
    np.testing.assert_allclose(frame["mark_close"].iloc[:12], candles["close"].iloc[:12])
    # second hour: basis from hour 0's close; the future wick (low = 1.0) is nowhere
    ratio = mark["close"].iloc[0] / candles["close"].iloc[11]
    np.testing.assert_allclose(frame["mark_low"].iloc[12:24], candles["low"].iloc[12:24] * ratio)
    assert frame["mark_low"].min() > 50
    # third hour uses hour 1's close
    ratio2 = mark["close"].iloc[1] / candles["close"].iloc[23]
    np.testing.assert_allclose(frame["mark_open"].iloc[24:], candles["open"].iloc[24:] * ratio2)


def test_stale_coarse_mark_falls_back() -> None:
    candles = make_candles(36, tf="5min")
    mark = resample(candles, "1h").iloc[:1]  # mark data stops after the first hour
    _, fallback = align_mark(candles, mark, pd.Timedelta("5min"))
    assert fallback == 12 + 12  # first hour (unknown) + third hour (stale)


def test_funding_aligned_to_containing_bar() -> None:
    idx = pd.date_range(T0, periods=6, freq="1h", name="date")
    events = pd.DataFrame(
        {"funding_rate": [0.5, 0.1, 0.2, -0.3, 0.9]},
        index=pd.DatetimeIndex(
            [
                T0 - pd.Timedelta("1h"),  # before the data: dropped
                T0 + pd.Timedelta("1h"),  # exactly on a bar open
                T0 + pd.Timedelta("2h30min"),  # inside bar 2
                T0 + pd.Timedelta("2h45min"),  # also bar 2: summed
                T0 + pd.Timedelta("6h"),  # after the last bar's end: dropped
            ],
            name="date",
        ),
    )
    got = align_funding(idx, pd.Timedelta("1h"), events)
    np.testing.assert_allclose(got[[1, 2]], [0.1, -0.1])
    assert np.isnan(got[[0, 3, 4, 5]]).all()


def test_feed_funding_line() -> None:
    candles = make_candles(24, tf="1h")
    funding = pd.DataFrame(
        {"funding_rate": [0.0001, -0.0002, 0.0003]},
        index=pd.DatetimeIndex(
            [T0, T0 + pd.Timedelta("8h"), T0 + pd.Timedelta("16h")], name="date"
        ),
    )
    rec = run(make_feed(candles, funding=funding))
    rates = {r[0].hour: r[6] for r in rec.rows if not math.isnan(r[6])}
    assert rates == {0: 0.0001, 8: -0.0002, 16: 0.0003}


def test_empty_candles_refused() -> None:
    with pytest.raises(ValidationError):
        make_feed(make_candles().iloc[:0])


def test_strategy_on_1h_bars_broker_on_5m() -> None:
    """datas[0] = 5m (the broker's bars), datas[1] = the same data resampled to 1h."""
    candles = make_candles(36, tf="5min")  # 00:00 .. 02:55
    fine = make_feed(candles)

    class Coarse(bt.Strategy):
        def __init__(self) -> None:
            self.seen: list[tuple[datetime, int, float, float]] = []

        def prenext(self) -> None:
            # before the first hour has closed the strategy is in prenext (datas[1] is empty)
            self.seen.append((self.datas[0].datetime.datetime(0), 0, math.nan, math.nan))

        def next(self) -> None:
            c = self.datas[1]
            self.seen.append((self.datas[0].datetime.datetime(0), len(c), c.open[0], c.close[0]))

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(fine)
    coarse = add_resampled(cerebro, fine, "1h")
    assert coarse._compression == 60
    cerebro.addstrategy(Coarse)
    strat = cerebro.run()[0]
    fine_bars = {s[0] for s in strat.seen}
    assert len(fine_bars) == 36  # prenext()/next() ran on every 5m bar
    hourly = resample(candles, "1h")
    # the first hourly bar appears on the 00:55 bar (when the hour has closed), not earlier
    firsts = {}
    for dt, n, o, c in strat.seen:
        firsts.setdefault(n, (dt, o, c))
    assert firsts[1][0] == datetime(2024, 1, 1, 0, 55)
    assert firsts[2][0] == datetime(2024, 1, 1, 1, 55)
    assert max(firsts) == 3
    assert firsts[0][0] == datetime(2024, 1, 1, 0, 0)
    for n in (1, 2, 3):
        assert firsts[n][1:] == pytest.approx(tuple(hourly.iloc[n - 1][["open", "close"]]))


def test_add_resampled_refuses_finer() -> None:
    cerebro = bt.Cerebro()
    fine = make_feed(make_candles(12, tf="1h"))
    cerebro.adddata(fine)
    with pytest.raises(ValidationError):
        add_resampled(cerebro, fine, "5m")


class _LoopPreload(FuturesFeed):
    """The same feed loaded bar by bar (backtrader's own ``preload`` loop)."""

    def preload(self) -> None:
        bt.feed.DataBase.preload(self)


def _twin(feed: FuturesFeed) -> FuturesFeed:
    kwargs = {k: v for k, v in feed.p._getkwargs().items() if k != "arrays"}
    return _LoopPreload(arrays=feed.p.arrays, **kwargs)


def _same(x: object, y: object) -> bool:
    return x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))


def test_bulk_preload_fills_the_same_buffers_as_the_bar_loop() -> None:
    """The bulk preload is an optimisation only: every line (values, NaN funding included),
    its index and length equal backtrader's bar-by-bar load, and a run sees the same bars."""
    candles = make_candles(60)
    funding = pd.DataFrame({"funding_rate": [0.0001]}, index=pd.DatetimeIndex([T0], name="date"))
    fast = make_feed(candles, funding=funding)
    slow = _twin(fast)
    for feed in (fast, slow):
        bt.Cerebro().adddata(feed)
        feed._start()
        feed.preload()
    assert fast.lines.size() == slow.lines.size() == 12
    for i in range(fast.lines.size()):
        a, b = fast.lines[i], slow.lines[i]
        assert (a.idx, a.lencount, len(a.array)) == (b.idx, b.lencount, len(b.array)) == (-1, 0, 60)
        assert np.array_equal(np.asarray(a.array), np.asarray(b.array), equal_nan=True)
    fresh = make_feed(candles, funding=funding)
    rows, loop_rows = run(fresh).rows, run(_twin(fresh)).rows
    assert len(rows) == len(loop_rows) == 60
    assert all(_same(x, y) for r, q in zip(rows, loop_rows, strict=True)
               for x, y in zip(r, q, strict=True))


class TickRecorder(bt.Strategy):
    def __init__(self) -> None:
        self.ticks: list[dict[str, float | None]] = []

    def next(self) -> None:
        d = self.datas[0]
        self.ticks.append({k: v for k, v in vars(d).items() if k.startswith("tick_")})


def test_tick_attributes_equal_backtraders_own_methods() -> None:
    """FuturesFeed's tick methods resolve the line names once; every ``tick_*`` attribute
    after every bar (mark and NaN funding lines included) equals what backtrader's own
    ``_tick_nullify``/``_tick_fill`` give on the same feed."""
    candles = make_candles(30)
    funding = pd.DataFrame({"funding_rate": [0.0001]}, index=pd.DatetimeIndex([T0], name="date"))
    runs = []
    for own in (True, False):
        feed = make_feed(candles, funding=funding)
        if not own:
            feed._tick_fill = lambda force=False, f=feed: bt.feed.AbstractDataBase._tick_fill(
                f, force)
            feed._tick_nullify = lambda f=feed: bt.feed.AbstractDataBase._tick_nullify(f)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(feed)
        cerebro.addstrategy(TickRecorder)
        runs.append(cerebro.run()[0].ticks)
    ours, theirs = runs
    assert len(ours) == len(theirs) == 30
    assert ours[0]["tick_close"] == candles["close"].iloc[0]
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys() and len(a) == 12  # 11 price/volume/funding lines + last
        assert all(_same(a[k], b[k]) for k in a)
