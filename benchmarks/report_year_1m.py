"""Run report of a one-year 1m run: file size and time to write it.

Usage::

    python benchmarks/report_year_1m.py [--bars 525600] [--fills 20000] [--out FILE.html]

The run result is built from a seeded random walk (525,600 one-minute bars = one year, a
position that changes at every fill, ``--fills`` fills and half as many round trips), so the
figure measures the report alone: statistics over every bar, downsampling to at most 5,000
candles, Bokeh serialisation with inlined JavaScript. Prints bars, candles drawn, seconds
for the statistics and for the report, and the HTML size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from liqbt.report import TARGET_CHART_BARS, bucket_starts, write_run_report
from liqbt.runner import RunResult
from liqbt.stats import compute_statistics


def synthetic_result(bars: int, fills: int, seed: int = 7) -> RunResult:
    """A RunResult shaped like a year-long 1m grid run (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 1, 1)
    times = [t0 + timedelta(minutes=i) for i in range(bars)]
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, bars)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    spread = np.abs(rng.normal(0, 0.0005, bars)) * close
    high, low = np.maximum(open_, close) + spread, np.minimum(open_, close) - spread
    fill_at = np.sort(rng.choice(bars, fills, replace=False))
    sizes = np.where(rng.random(fills) < 0.5, 0.01, -0.01)
    position = np.zeros(bars)
    position[fill_at] = sizes
    position = np.cumsum(position)
    equity = 10_000 + np.cumsum(rng.normal(0.02, 3, bars))
    lp = np.where(position > 0, close * 0.7, np.where(position < 0, close * 1.3, np.nan))
    ratio = np.clip(np.abs(position) * 2, 0, 1.2)
    trades = []
    for k in range(0, fills - 1, 2):
        a, b = int(fill_at[k]), int(fill_at[k + 1])
        trades.append({
            "symbol": "BTCUSDT", "side": "long", "size": 0.01,
            "entry_time": times[a].isoformat() + "Z", "entry_price": float(close[a]),
            "exit_time": times[b].isoformat() + "Z", "exit_price": float(close[b]),
            "pnl": 0.01 * float(close[b] - close[a]), "fees": 0.5, "reason": "grid",
        })
    timeline = {
        "time": times, "equity": list(equity), "exposed": list(position != 0),
        "margin_ratio": list(ratio), "wallet": list(equity), "margin_balance": list(equity),
        "available": list(equity),
        "symbols": {"BTCUSDT": {
            "open": list(open_), "high": list(high), "low": list(low), "close": list(close),
            "mark": list(close), "liquidation_price": list(lp), "margin_ratio": list(ratio),
            "size": list(position),
        }},
    }
    return RunResult(
        label="isolated 10x", start=times[0].isoformat() + "Z",
        end=times[-1].isoformat() + "Z", bars=bars, initial_balance=10_000.0,
        final_equity=float(equity[-1]), return_pct=(float(equity[-1]) / 10_000 - 1) * 100,
        max_drawdown_pct=0.0, fees_paid=fills * 0.25, funding_paid=0.0,
        funding_by_symbol={"BTCUSDT": 0.0}, insurance_fund_delta=0.0, wiped_out=False,
        wipeout_time=None, liquidation_count=0, liquidations=[], top_ups=[], trades=trades,
        funding_note="", min_liquidation_distance_pct=None,
        markets=[{"symbol": "BTCUSDT", "leverage": 10, "margin_mode": "isolated",
                  "auto_top_up": False}],
        strategy="grid", timeline=timeline,
        fills=[{"time": times[int(i)], "symbol": "BTCUSDT", "size": float(s),
                "price": float(close[int(i)]), "liquidation": False}
               for i, s in zip(fill_at, sizes, strict=True)],
        launch_report={"levels": tuple(float(x) for x in np.linspace(40_000, 80_000, 41))},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=525_600, help="1m bars (525,600 = 1 year)")
    parser.add_argument("--fills", type=int, default=20_000)
    parser.add_argument("--out", default=None, help="keep the report at this path")
    args = parser.parse_args()
    t = time.perf_counter()
    result = synthetic_result(args.bars, args.fills)
    build = time.perf_counter() - t
    tl = result.timeline
    t = time.perf_counter()
    result.statistics = compute_statistics(
        tl["time"], tl["equity"], result.initial_balance, result.final_equity, result.trades,
        benchmark_close=tl["symbols"]["BTCUSDT"]["close"], exposed=tl["exposed"],
        margin_ratio=tl["margin_ratio"])
    stats_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.out) if args.out else Path(tmp) / "report.html"
        t = time.perf_counter()
        write_run_report(result, path)
        report_s = time.perf_counter() - t
        size = path.stat().st_size
    starts = bucket_starts(args.bars)
    candles = args.bars if starts is None else len(starts)
    print(f"bars {args.bars:,} (1m), fills {args.fills:,}, trades {len(result.trades):,}")
    print(f"candles drawn {candles:,} (target ≤ {TARGET_CHART_BARS:,})")
    print(f"synthetic result built in {build:.2f} s (not part of the report)")
    print(f"statistics {stats_s:.2f} s")
    print(f"report written in {report_s:.2f} s, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
