"""MarginBroker per-bar cost (issues 3 and 11): flat in grid levels and cross symbols.

Seeded, mean-reverting random walks (so grids keep filling all year) drive four measurements:

1. ``year``: a whole ``liqbt run`` job (runner with its analyzers), 10x cross, one year of
   5-minute bars (105,120 bars), twice: with the project's grid bot (40 lines), and with this
   file's ``GridN40`` (40 resting orders 0.5 % apart, each fill replaced one step away) as a
   fixed workload. Issue 11 target: at least 2x faster than before the price-indexed order
   book (commit 8619bd2). The grid bot has changed since (it now re-places the lines a
   refusal left empty: 17,318 fills where it made 1,816), so the comparison uses the fixed
   workload, which makes the same fills on every commit: this script runs unchanged on
   8619bd2 (copy it there and run ``--only year``).
2. ``levels``: the grid bot with 10 / 50 / 200 grid levels 0.4 % apart on the same bars (more
   levels reach further out, the fills per bar stay comparable); microseconds per bar should
   stay flat (within ±25 % of the 10-level figure): a bar must only touch the orders its range
   can reach.
3. ``symbols``: a 10-order grid on each of 1 and 3 cross symbols of one account (the same
   market shape scaled to each symbol's price); microseconds per symbol-bar should stay flat
   (±25 %).
4. ``back``: a busy 20-order grid under plain ``BackBroker`` and under ``MarginBroker``
   (10x cross); target ratio <= 1.0x.

    python benchmarks/broker_overhead.py [--bars 105120] [--short 20000] [--only year,levels]
                                         [--repeat 3] [--cpu]

``--cpu`` times each run by this process's CPU time instead of the wall clock: on a machine
shared with other jobs it is far less sensitive to their load.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

import liqbt
from liqbt.config import load_strategy_class
from liqbt.feeds import make_feed

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
START = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 150.0}


def random_walk(bars: int, start: float = 60_000.0, seed: int = 7, freq: str = "5min",
                step_sd: float = 0.002) -> pd.DataFrame:
    """OHLC of a mean-reverting log price (AR(1), 0.999 per bar: stationary sd ≈ 22 ×
    ``step_sd``, 4.5 % by default) with random wicks."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, step_sd, bars)
    x = np.empty(bars)
    level = 0.0
    for i in range(bars):  # AR(1) in log price
        level = 0.999 * level + noise[i]
        x[i] = level
    close = start * np.exp(x)
    open_ = np.concatenate([[start], close[:-1]])
    wick = np.abs(rng.normal(0, 0.001, (2, bars)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    index = pd.date_range("2024-01-01", periods=bars, freq=freq)
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index
    )


class GridN(bt.Strategy):
    """``levels`` resting limit orders per data around its first close; each fill is replaced
    one step away (the same on every data)."""

    params = (("step", 0.002), ("notional", 200.0), ("levels", 10))

    def start(self) -> None:
        self.fills = 0

    def nextstart(self) -> None:
        for data in self.datas:
            price = data.close[0]
            size = self.p.notional / price
            for k in range(1, self.p.levels // 2 + 1):
                self.buy(data=data, size=size, price=price * (1 - k * self.p.step),
                         exectype=bt.Order.Limit)
                self.sell(data=data, size=size, price=price * (1 + k * self.p.step),
                          exectype=bt.Order.Limit)

    def notify_order(self, order: bt.Order) -> None:
        if order.status != order.Completed or order.info.get("liquidation"):
            return
        self.fills += 1
        price, size = order.executed.price, abs(order.executed.size)
        if order.isbuy():
            self.sell(data=order.data, size=size, price=price * (1 + self.p.step),
                      exectype=bt.Order.Limit)
        else:
            self.buy(data=order.data, size=size, price=price * (1 - self.p.step),
                     exectype=bt.Order.Limit)


def _feed(frame: pd.DataFrame, name: str) -> bt.feed.DataBase:
    """The lean futures feed the runner uses (trade OHLC doubles as the mark)."""
    return make_feed(frame, name=name)


REPEAT = 1  # set by --repeat: each figure is the best of that many runs (shared machines)
CLOCK = time.perf_counter  # --cpu: time.process_time


def best_of(run: Any) -> tuple[float, int]:
    """The fastest of ``REPEAT`` calls of ``run() -> (seconds, fills)``."""
    results = [run() for _ in range(REPEAT)]
    return min(results)


def _timed(cerebro: bt.Cerebro) -> tuple[float, Any]:
    gc.collect()
    start = CLOCK()
    strategy = cerebro.run()[0]
    return CLOCK() - start, strategy


def run_grid_bot(frame: pd.DataFrame, grids: int, cash: float = 10_000.0,
                 gap: float | None = None) -> tuple[float, int]:
    """The project's grid bot (neutral, 10x cross): ±10 % around the start, or with ``gap``
    a fixed line spacing (fraction of the start price), so more levels reach further out."""
    cerebro = bt.Cerebro(stdstats=False)
    data = cerebro.adddata(_feed(frame, "BTCUSDT"), name="BTCUSDT")
    broker = liqbt.MarginBroker(exchange="binance", cash=cash)
    cerebro.broker = broker
    broker.set_market(data, symbol="BTCUSDT", leverage=10, margin_mode="cross")
    first = float(frame["close"].iloc[0])
    half = 0.1 if gap is None else grids * gap / 2
    cerebro.addstrategy(load_strategy_class("grid"), direction="neutral",
                        lower=first * (1 - half), upper=first * (1 + half), grids=grids,
                        investment=cash * 0.5)
    seconds, _ = _timed(cerebro)
    fills = sum(1 for e in broker.events if e.kind == "fill")
    return seconds, fills


class GridN40(GridN):
    """:class:`GridN` with 40 orders 0.5 % apart: the ``year`` job's fixed workload."""

    params = (("levels", 40), ("step", 0.005))


def write_grid_job(folder: Path, frame: pd.DataFrame, grids: int = 40,
                   strategy: str | None = None) -> Path:
    """The grid job's config (40 lines ±10 % around the start, 10x cross, balance 10,000
    with 5,000 invested) and its candles written into ``folder``; returns the config path.
    ``strategy``: the name of another strategy to run instead (without parameters)."""
    first = float(frame["close"].iloc[0])
    candles = folder / "btcusdt-5m.feather"
    frame.rename_axis("date").reset_index().to_feather(candles)
    config = folder / "grid.toml"
    bot = (f'name = "{strategy}"' if strategy else f"""name = "grid"
direction = "neutral"
lower = {first * 0.9}
upper = {first * 1.1}
grids = {grids}
investment = 5000""")
    config.write_text(
        f"""[account]
exchange = "binance"
balance = 10000

[[market]]
symbol = "BTCUSDT"
candles = "{candles.name}"
leverage = 10
margin_mode = "cross"

[strategy]
{bot}
"""
    )
    return config


def run_grid_job(frame: pd.DataFrame, grids: int = 40,
                 strategy: str | None = None) -> tuple[float, int]:
    """The whole ``liqbt run`` job (runner, analyzers, report data) of the grid bot: 40 lines
    ±10 % around the start, 10x cross, balance 10,000 with 5,000 invested (or of
    ``strategy``, see :func:`write_grid_job`)."""
    from liqbt.config import load_config
    from liqbt.runner import run_config

    with tempfile.TemporaryDirectory() as tmp:
        run = load_config(write_grid_job(Path(tmp), frame, grids, strategy))
        gc.collect()
        start = CLOCK()
        result = run_config(run)
        seconds = CLOCK() - start
    return seconds, len(result.fills)


def run_multi(frames: dict[str, pd.DataFrame], margin: bool, levels: int = 10,
              step: float = 0.002) -> tuple[float, int]:
    cerebro = bt.Cerebro(stdstats=False)
    if margin:
        cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=100_000)
    else:
        cerebro.broker.setcash(100_000)
    for symbol, frame in frames.items():
        data = cerebro.adddata(_feed(frame, symbol), name=symbol)
        if margin:
            cerebro.broker.set_market(data, symbol=symbol, leverage=10, margin_mode="cross")
    cerebro.addstrategy(GridN, levels=levels, step=step)
    seconds, strategy = _timed(cerebro)
    return seconds, strategy.fills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=105_120, help="bars of the one-year run")
    parser.add_argument("--short", type=int, default=20_000, help="bars of the scaling runs")
    parser.add_argument("--only", default="year,levels,symbols,back")
    parser.add_argument("--repeat", type=int, default=1, help="report the best of N runs")
    parser.add_argument("--cpu", action="store_true",
                        help="time runs by process CPU time (shared machines)")
    args = parser.parse_args()
    global REPEAT, CLOCK
    REPEAT = max(args.repeat, 1)
    if args.cpu:
        CLOCK = time.process_time
    only = set(args.only.split(","))

    if "year" in only:
        frame = random_walk(args.bars)
        seconds, fills = best_of(lambda: run_grid_job(frame, 40))
        print(f"[year] liqbt run job, grid bot 40 lines, 10x cross, {args.bars:,} 5m bars: "
              f"{seconds:.1f} s ({fills} fills, {1e6 * seconds / args.bars:.0f} µs/bar)")
        fixed = f"{Path(__file__).resolve().as_posix()}:GridN40"
        seconds, fills = best_of(lambda: run_grid_job(frame, strategy=fixed))
        print(f"[year] liqbt run job, fixed workload (GridN40), 10x cross: {seconds:.1f} s "
              f"({fills} fills, {1e6 * seconds / args.bars:.0f} µs/bar)")

    if "levels" in only:
        # sd ≈ 0.7 %: even the 10-level grid (±2 %) holds the price, so every run fills alike
        frame = random_walk(args.short, step_sd=0.0003)
        base = None
        for grids in (10, 50, 200):
            seconds, fills = best_of(
                lambda g=grids: run_grid_bot(frame, g, cash=100_000.0, gap=0.004)
            )
            per_bar = 1e6 * seconds / args.short
            base = base or per_bar
            print(f"[levels] {grids:4d} grid levels: {per_bar:7.1f} µs/bar ({fills} fills, "
                  f"{per_bar / base:.2f}x the 10-level figure)")

    if "symbols" in only:
        # the same market shape on every symbol, so each symbol fills alike
        frames = {s: random_walk(args.short, START[s]) for s in SYMBOLS}
        base = None
        for count in (1, 3):
            chosen = {s: frames[s] for s in SYMBOLS[:count]}
            seconds, fills = best_of(lambda c=chosen: run_multi(c, margin=True))
            per_bar = 1e6 * seconds / (args.short * count)
            base = base or per_bar
            print(f"[symbols] {count} cross symbol(s): {per_bar:7.1f} µs per symbol-bar "
                  f"({fills} fills, {per_bar / base:.2f}x the 1-symbol figure)")

    if "back" in only:
        frame = {"BTCUSDT": random_walk(args.short)}
        # alternated, so that a noisy neighbour on a shared machine hits both alike
        plains, margins = [], []
        for _ in range(REPEAT):
            plains.append(run_multi(frame, margin=False, levels=20, step=0.001))
            margins.append(run_multi(frame, margin=True, levels=20, step=0.001))
        (plain, plain_fills), (margin, margin_fills) = min(plains), min(margins)
        print(f"[back] busy 20-order grid, {args.short:,} bars: BackBroker {plain:.2f} s "
              f"({plain_fills} fills), MarginBroker {margin:.2f} s ({margin_fills} fills): "
              f"{margin / plain:.2f}x (target <= 1.0x)")


if __name__ == "__main__":
    main()
