"""Bots on real data: a long BTCUSDT grid through the 2025-10-10 crash at 20x and at 2x.

Data: ``../shared/data/harthor_marketlab/BTC_USDT_USDT-5m-futures.feather`` (5-minute futures
bars; the 21:15 UTC bar of 2025-10-10 fell 8.87 % to 102,193.6). Skipped when the file is absent.

Run: ``python benchmarks/bots_real_data.py`` (from the repository, in its virtual environment)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import backtrader as bt
import pandas as pd
from liqbt.strategies import DcaStrategy, GridStrategy

import liqbt
from liqbt.core import events as ev

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/harthor_marketlab" / (
    "BTC_USDT_USDT-5m-futures.feather"
)
START, END = "2025-10-09", "2025-10-12"


def load() -> pd.DataFrame:
    """The 5-minute bars from START to END (naive UTC index, as backtrader expects)."""
    frame = pd.read_feather(DATA)
    frame["date"] = pd.to_datetime(frame["date"], utc=True).dt.tz_localize(None)
    frame = frame[(frame["date"] >= START) & (frame["date"] < END)]
    return frame.set_index("date")[["open", "high", "low", "close", "volume"]]


def run(frame: pd.DataFrame, strategy: type[bt.Strategy], leverage: float, mode: str,
        cash: float, **params: object) -> tuple[liqbt.MarginBroker, object]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=cash)
    data = bt.feeds.PandasData(dataname=frame, timeframe=bt.TimeFrame.Minutes, compression=5)
    cerebro.adddata(data, name="BTCUSDT")
    cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=leverage, margin_mode=mode)
    cerebro.addstrategy(strategy, **params)
    return cerebro.broker, cerebro.run()[0]


def describe(label: str, broker: liqbt.MarginBroker, strat: object, seconds: float) -> None:
    liqs = [e for e in broker.events if isinstance(e, ev.Liquidation)]
    wipe = any(isinstance(e, ev.Wipeout) for e in broker.events)
    report = strat.launch_report  # type: ignore[attr-defined]
    est = report.get("estimated_liquidation_price",
                     report.get("estimated_liquidation_price_all_filled"))
    print(f"{label}: {seconds:.2f} s")
    print(f"  estimated LP at launch: {est if est is None else round(est, 2)}")
    for liq in liqs:
        print(f"  LIQUIDATED {liq.time} {liq.side} {liq.size:g} trigger {liq.trigger_price:,.2f}"
              f" settled {liq.settlement_price:,.2f} loss {liq.loss:,.2f}")
    print(f"  wiped out: {wipe or broker.wiped_out}; summary: "
          f"{strat.summary()}")  # type: ignore[attr-defined]


def main() -> int:
    if not DATA.exists():
        print(f"skipped: {DATA} not found")
        return 0
    frame = load()
    print(f"{len(frame)} bars {frame.index[0]} .. {frame.index[-1]}, "
          f"low {frame['low'].min():,.1f}")
    grid = {"lower": 115_000, "upper": 125_000, "grids": 10, "investment": 10_000}
    for mode in ("cross", "isolated"):
        for leverage in (20, 2):
            start = time.perf_counter()
            broker, strat = run(frame, GridStrategy, leverage, mode, 10_000, **grid)
            describe(f"long grid 115k..125k x10, {mode} {leverage}x", broker, strat,
                     time.perf_counter() - start)
    dca = {"base_order": 500, "safety_order": 500, "max_safety_orders": 5,
           "price_deviation": 1.5, "step_scale": 1.5, "volume_scale": 1.5, "take_profit": 1.0,
           "entry_filter": "rsi", "rsi_below": 35}
    for leverage in (20, 2):
        start = time.perf_counter()
        broker, strat = run(frame, DcaStrategy, leverage, "isolated", 10_000, **dca)
        describe(f"DCA long (RSI filter), isolated {leverage}x", broker, strat,
                 time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
