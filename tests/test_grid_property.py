"""Grid bots keep managing: after every bar the broker's live grid orders are exactly the lines
the grid's state holds (hypothesis over random price paths, directions, margin and leverage,
including accounts too small for every line, whose refused orders are retried)."""

from __future__ import annotations

from typing import Any

import backtrader as bt
from hypothesis import given, settings
from hypothesis import strategies as st
from liqbt.strategies import GridStrategy
from test_strategies import path_bars

import liqbt


class CheckedGrid(GridStrategy):
    """The grid, checking after each of its bars that the broker holds its state."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = 0
        self.problems: list[str] = []

    def next(self) -> None:
        super().next()
        if not self.launched or self.stopped_reason is not None:
            return
        close = float(self.data.close[0])
        live: dict[int, list[Any]] = {}
        for order in self.broker.orders:
            level = order.info.get("grid_level")
            if level is None or not order.alive() or order.ref in self._cancel_on_accept:
                continue
            live.setdefault(level, []).append(order)
        for level, orders in live.items():
            want = self.wanted.get(level)
            if len(orders) > 1:
                self.problems.append(f"line {level}: {len(orders)} live orders")
            if want is None:
                self.problems.append(f"line {level}: live order but no line in the state")
            elif orders[0].isbuy() != want[0] or orders[0].price != self.levels[level]:
                self.problems.append(f"line {level}: live order differs from the state")
        for level, (buy, _) in self.wanted.items():
            price = self.levels[level]
            resting = (buy and price < close) or (not buy and price > close)
            if resting and level not in live:
                self.problems.append(f"bar {len(self)}: line {level} ({price:g}) has no order")
        self.checked += 1


def _walk(start: float, steps: list[float]) -> list[float]:
    out = [start, start]
    for s in steps:
        out.append(max(1_000.0, out[-1] * (1 + s)))
    return out


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.floats(-0.03, 0.03), min_size=20, max_size=60),
    direction=st.sampled_from(["long", "short", "neutral"]),
    margin_mode=st.sampled_from(["cross", "isolated"]),
    leverage=st.sampled_from([2, 5, 10]),
    cash=st.sampled_from([120.0, 400.0, 2_000.0]),
)
def test_grid_live_orders_match_its_state(steps: list[float], direction: str,
                                          margin_mode: str, leverage: int, cash: float) -> None:
    closes = _walk(50_000.0, steps)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=cash)
    data = bt.feeds.PandasData(dataname=path_bars(closes), timeframe=bt.TimeFrame.Minutes,
                               compression=5)
    cerebro.adddata(data, name="BTCUSDT")
    cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=leverage,
                              margin_mode=margin_mode)
    # investment = the whole (small) balance on 10 lines: some lines are refused for margin
    cerebro.addstrategy(CheckedGrid, direction=direction, lower=45_000, upper=55_000,
                        grids=10, investment=cash, leverage=leverage)
    strat = cerebro.run()[0]
    assert not strat.problems, strat.problems[:5]
    if strat.stopped_reason is None and strat.quantity > 0:
        assert strat.checked >= len(closes) - 2
    # a refused grid line never stops the bot: only liquidation, wipeout or a refused launch
    if strat.stopped_kind == "order_refused":
        assert "launch" in strat.stopped_reason or strat.pairs == 0


def test_refused_line_is_retried_not_stopped() -> None:
    # a grid sized for 20x on a market at 10x: its orders need twice the margin the 150 USDT
    # provide, so some lines are refused; the bot keeps running and retries them later
    closes = [50_000, 50_000, 49_500, 48_900, 47_900, 46_900, 47_900, 48_900, 49_900, 50_900]
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=150.0)
    data = bt.feeds.PandasData(dataname=path_bars(closes), timeframe=bt.TimeFrame.Minutes,
                               compression=5)
    cerebro.adddata(data, name="BTCUSDT")
    cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=10, margin_mode="isolated")
    cerebro.addstrategy(CheckedGrid, direction="neutral", lower=45_000, upper=55_000,
                        grids=10, investment=150, leverage=20)
    strat = cerebro.run()[0]
    assert not strat.problems
    assert strat.stopped_reason is None, strat.stopped_reason
    assert strat.refused_orders > 0
    assert strat.summary()["refused_orders"] == strat.refused_orders
    assert "refused, retried on later bars" in "\n".join(strat.log_lines)


def test_dca_refused_safety_order_is_retried() -> None:
    from liqbt.strategies import DcaStrategy

    # 130 USDT at 2x: the 100 USDT base order fits, the safety orders (200, 400) cannot
    closes = [50_000, 50_000, 49_500, 48_500, 47_000, 46_000, 47_000, 48_500, 50_000]
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=130.0)
    data = bt.feeds.PandasData(dataname=path_bars(closes), timeframe=bt.TimeFrame.Minutes,
                               compression=5)
    cerebro.adddata(data, name="BTCUSDT")
    cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=2, margin_mode="isolated")
    cerebro.addstrategy(DcaStrategy, base_order=100, safety_order=200, max_safety_orders=2,
                        price_deviation=2.0, step_scale=1.0, volume_scale=2.0, take_profit=1.0)
    strat = cerebro.run()[0]
    assert strat.stopped_reason is None
    assert strat.refused_orders >= 2 and strat.summary()["refused_orders"] == strat.refused_orders
