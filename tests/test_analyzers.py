"""``liqbt.analyzers.Trades``: round trips by FIFO matching of fills per symbol and leg."""

from __future__ import annotations

from typing import Any

import backtrader as bt
import pytest
from liqbt.strategies import GridStrategy, HoldStrategy
from test_strategies import path_bars

import liqbt
from liqbt.analyzers import Trades


class Script(bt.Strategy):
    """Market orders at given bars: ``{bar: (size, info)}`` (fills at the next open)."""

    params = (("script", {}),)

    def next(self) -> None:
        step = self.p.script.get(len(self))
        if step is not None:
            size, info = step
            order = (self.buy if size > 0 else self.sell)(size=abs(size))
            order.addinfo(**info)


def run(strategy: type[bt.Strategy], closes: list[float], feeds: int = 1, leverage: float = 10,
        **params: Any) -> tuple[liqbt.MarginBroker, Any]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=10_000)
    for symbol, scale in (("BTCUSDT", 1.0), ("ETHUSDT", 0.06))[:feeds]:
        data = bt.feeds.PandasData(dataname=path_bars([c * scale for c in closes]),
                                   timeframe=bt.TimeFrame.Minutes, compression=5)
        cerebro.adddata(data, name=symbol)
        cerebro.broker.set_market(data, symbol=symbol, leverage=leverage,
                                  margin_mode="cross")
    cerebro.addstrategy(strategy, **params)
    cerebro.addanalyzer(Trades, _name="trades")
    return cerebro.broker, cerebro.run()[0]


CLOSES = [50_000, 49_000, 51_000, 52_000, 53_000, 54_000, 54_000, 54_000]


def test_fifo_round_trips_partial_closes_and_reversal() -> None:
    script = {
        1: (0.01, {}),                      # fills 00:05 at 50,000
        2: (0.01, {}),                      # fills 00:10 at 49,000
        3: (-0.01, {"grid_level": 3}),      # 00:15 at 51,000: closes the oldest lot (50,000)
        4: (-0.015, {"reason": "tp"}),      # 00:20 at 52,000: closes 49,000, opens short .005
        5: (0.002, {}),                     # 00:25 at 53,000: closes .002 of the short
    }
    broker, strat = run(Script, CLOSES, script=script)
    trades = strat.analyzers.trades.get_analysis()["trades"]
    assert [(t["side"], t["size"], round(t["entry_price"], 6), t["exit_price"], t["reason"])
            for t in trades] == [
        ("long", 0.01, 50_000, 51_000, "grid"),
        ("long", 0.01, 49_000, 52_000, "tp"),
        ("short", 0.002, 52_000, 53_000, "close"),
        ("short", 0.003, 52_000, None, "open"),
    ]
    assert [t["entry_time"] for t in trades] == [
        "2024-01-01T00:05:00Z", "2024-01-01T00:10:00Z", "2024-01-01T00:20:00Z",
        "2024-01-01T00:20:00Z"]
    assert trades[0]["exit_time"] == "2024-01-01T00:15:00Z"
    assert [round(t["pnl"], 6) for t in trades] == [10.0, 30.0, -2.0, -6.0]  # open: at mark
    taker = broker.profile.taker_fee
    assert trades[0]["fees"] == pytest.approx(0.01 * (50_000 + 51_000) * taker)
    # the reversal fill's fee is split between the closed part and the new short lot
    assert trades[1]["fees"] == pytest.approx((0.01 * 49_000 + 0.01 * 52_000) * taker)
    assert sum(t["fees"] for t in trades) == pytest.approx(broker.account.fees_paid)
    # FIFO pnl of the closed trips = the broker's average-cost realized pnl over whole cycles
    assert sum(t["pnl"] for t in trades[:2]) == pytest.approx(40.0)


def test_bot_that_goes_flat_gets_one_trip_per_cycle() -> None:
    script = {1: (0.01, {}), 2: (0.02, {}), 4: (-0.03, {"reason": "take_profit"})}
    _, strat = run(Script, CLOSES, script=script)
    (trip,) = strat.analyzers.trades.get_analysis()["trades"]
    assert trip["size"] == pytest.approx(0.03)
    assert trip["entry_price"] == pytest.approx((0.01 * 50_000 + 0.02 * 49_000) / 0.03)
    assert trip["entry_time"] == "2024-01-01T00:05:00Z" and trip["reason"] == "take_profit"


def test_grid_reports_each_closing_fill() -> None:
    # oscillate through the grid lines: every sell closes one grid lot, the position never
    # goes flat, and backtrader would see a single open trade
    closes = [50_000] + [49_000, 51_000] * 6 + [50_000]
    broker, strat = run(GridStrategy, closes, lower=45_000, upper=55_000, grids=10,
                        investment=500)
    trades = strat.analyzers.trades.get_analysis()["trades"]
    closed = [t for t in trades if t["exit_time"] is not None]
    assert strat.pairs >= 5
    assert len(closed) == strat.pairs
    assert {t["reason"] for t in closed} == {"grid"}
    assert [t["reason"] for t in trades if t["exit_time"] is None] == ["open"]
    assert sum(t["fees"] for t in trades) == pytest.approx(broker.account.fees_paid)


def test_hold_opens_every_feed_at_its_own_leverage() -> None:
    _, strat = run(HoldStrategy, [50_000, 50_100, 50_200], feeds=2, leverage=5,
                        margin={"BTCUSDT": 1000, "ETHUSDT": 500})
    markets = strat.launch_report["markets"]
    assert set(markets) == {"BTCUSDT", "ETHUSDT"}
    assert markets["BTCUSDT"]["size"] == pytest.approx(0.099)  # as the single-feed test
    assert markets["ETHUSDT"]["margin"] == 500 and strat.launch_report["margin"] == 1500
    trades = strat.analyzers.trades.get_analysis()["trades"]
    assert sorted(t["symbol"] for t in trades) == ["BTCUSDT", "ETHUSDT"]
    # one number is split equally
    _, strat = run(HoldStrategy, [50_000, 50_100], feeds=2, margin=1000)
    assert [m["margin"] for m in strat.launch_report["markets"].values()] == [500, 500]


class TimelineReader(bt.Strategy):
    """Reads the timeline mid-run: every series has one value per bar so far."""

    def start(self) -> None:
        self.lengths: list[set[int]] = []

    def next(self) -> None:
        # the analyzers record a bar after the strategy's next(): the bars before this one
        tl = self.analyzers.timeline.get_analysis()
        row = tl["symbols"].get("BTCUSDT", {})
        self.lengths.append({len(tl["equity"]), *(len(row[k]) for k in row)})


@pytest.mark.parametrize("replay", [False, True])
def test_timeline_prices_are_the_bars(replay: bool) -> None:
    """The timeline's per-symbol prices are each bar's OHLC and mark (a missing mark: the
    close), whether copied from the feed's buffers at the end (a plain feed) or read bar by
    bar (a replayed feed rewrites its bars); a read during the run sees every bar so far."""
    import numpy as np

    from liqbt.feeds import make_feed

    frame = path_bars([50_000.0, 49_000.0, 51_000.0, 52_000.0, 50_500.0, 50_000.0])
    frame.index.name = "date"
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=10_000)
    feed = make_feed(frame, name="BTCUSDT")
    for key in ("open", "high", "low", "close"):
        marks = frame[key].to_numpy() * 1.001
        marks[2] = np.nan  # no mark for that bar: the timeline shows the close
        feed.p.arrays[f"mark_{key}"] = marks
    if replay:
        data = cerebro.replaydata(feed, timeframe=bt.TimeFrame.Minutes, compression=5,
                                  name="BTCUSDT")
    else:
        data = cerebro.adddata(feed, name="BTCUSDT")
    cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=10, margin_mode="cross")
    cerebro.addstrategy(TimelineReader)
    cerebro.addanalyzer(liqbt.analyzers.MarginTimeline, _name="timeline")
    strat = cerebro.run()[0]
    row = strat.analyzers.timeline.get_analysis()["symbols"]["BTCUSDT"]
    for key in ("open", "high", "low", "close"):
        assert row[key] == list(frame[key])
    feed_marks = list(feed.lines.mark_close.array)
    want_mark = [m if not np.isnan(m) else c for m, c in zip(feed_marks, frame["close"],
                                                            strict=True)]
    assert row["mark"] == want_mark
    assert sum(np.isnan(feed_marks)) == 1 and row["mark"] != list(frame["close"])
    assert strat.lengths == [{n} for n in range(len(frame))]
