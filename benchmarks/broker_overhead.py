"""MarginBroker overhead against plain BackBroker (issue 3 target: at most 1.3x the time).

The same 20-order grid strategy runs on N one-minute bars (default 200,000) of a seeded random
walk with plain ``BackBroker`` and with ``MarginBroker`` (isolated, 2x, so nothing is liquidated).
Prints bars/s for each and the ratio.

    python benchmarks/broker_overhead.py [--bars 200000]
"""

from __future__ import annotations

import argparse
import time

import backtrader as bt
import numpy as np
import pandas as pd

import liqbt


def random_walk(bars: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, bars)))
    open_ = np.concatenate([[60_000.0], close[:-1]])
    wick = np.abs(rng.normal(0, 0.0005, (2, bars)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    index = pd.date_range("2024-01-01", periods=bars, freq="1min")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index
    )


class Grid20(bt.Strategy):
    """20 resting limit orders around the first close; each fill is replaced one step away."""

    params = (("step", 0.002), ("size", 0.01))

    def start(self) -> None:
        self.fills = 0

    def nextstart(self) -> None:
        price = self.data.close[0]
        for k in range(1, 11):
            self.buy(size=self.p.size, price=price * (1 - k * self.p.step), exectype=bt.Order.Limit)
            self.sell(size=self.p.size, price=price * (1 + k * self.p.step),
                      exectype=bt.Order.Limit)

    def notify_order(self, order: bt.Order) -> None:
        if order.status != order.Completed:
            return
        self.fills += 1
        price = order.executed.price
        if order.isbuy():
            self.sell(size=self.p.size, price=price * (1 + self.p.step), exectype=bt.Order.Limit)
        else:
            self.buy(size=self.p.size, price=price * (1 - self.p.step), exectype=bt.Order.Limit)


def run(frame: pd.DataFrame, margin: bool) -> tuple[float, int]:
    cerebro = bt.Cerebro(stdstats=False)
    data = bt.feeds.PandasData(dataname=frame, timeframe=bt.TimeFrame.Minutes, compression=1)
    cerebro.adddata(data, name="BTCUSDT")
    if margin:
        cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=100_000)
        cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=2, margin_mode="isolated")
    else:
        cerebro.broker.setcash(100_000)
    cerebro.addstrategy(Grid20)
    start = time.perf_counter()
    strategy = cerebro.run()[0]
    return time.perf_counter() - start, strategy.fills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=200_000)
    args = parser.parse_args()
    frame = random_walk(args.bars)
    plain, plain_fills = run(frame, margin=False)
    margin, margin_fills = run(frame, margin=True)
    print(f"bars: {args.bars:,}")
    print(f"BackBroker:   {args.bars / plain:10,.0f} bars/s  ({plain:.1f} s, {plain_fills} fills)")
    print(
        f"MarginBroker: {args.bars / margin:10,.0f} bars/s  ({margin:.1f} s, {margin_fills} fills)"
    )
    ratio = margin / plain
    print(f"time ratio MarginBroker / BackBroker: {ratio:.2f}x (target <= 1.30x)")


if __name__ == "__main__":
    main()
