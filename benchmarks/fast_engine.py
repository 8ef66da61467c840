"""Fast engine (liqbt.fast) against MarginBroker: speed, compile time, sweep time, memory.

Prints, for the hold bot and the bundled grid: fast bars/s (median of 3 after compile) for one
config on one year of 5-minute bars,
the compile time (cold cache and cached, each in a fresh process), MarginBroker's bars/s on the
bundled 4-week dataset and the speed-up, a 100-config sweep's wall time over the year, the peak
memory of 4 years of 1-minute-sized input (~2.1 M bars), and a parity check of both engines on
the bundled data. The year is the bundled 4-week BTCUSDT 5m dataset repeated (each copy
continues at the previous copy's last close), so the script needs nothing outside the
repository.

Targets (issue 12): >= 5,000,000 bars/s, >= 500x MarginBroker, 100 configs < 10 s.

Usage: ``python benchmarks/fast_engine.py``. Covered configs only (see ``liqbt.fast.supports``):
the hold and grid bots on one isolated market; both are measured (the grid sweep varies
leverage and the number of lines).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOLD = ROOT / "configs" / "hold.toml"
GRID = ROOT / "configs" / "grid.toml"


def tiled(data, bars: int):
    """``data`` repeated to ``bars`` bars, each copy scaled to start at the last close."""
    from liqbt.fast import MarketArrays

    names = ("open", "high", "low", "close", "mark_open", "mark_high", "mark_low", "mark_close")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*names, "funding_rate")}
    scale = 1.0
    n = 0
    while n < bars:
        for k in names:
            parts[k].append(getattr(data, k) * scale)
        parts["funding_rate"].append(data.funding_rate)
        scale *= data.close[-1] / data.open[0]
        n += data.bars
    arrays = {k: np.ascontiguousarray(np.concatenate(v)[:bars]) for k, v in parts.items()}
    step = data.times[1] - data.times[0]
    times = data.times[0] + step * np.arange(bars)
    return MarketArrays(times, *(arrays[k] for k in names), arrays["funding_rate"])


def fresh_process_seconds(code: str, env_cache: str | None) -> float:
    import os

    env = dict(os.environ)
    if env_cache is not None:
        env["NUMBA_CACHE_DIR"] = env_cache
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def sweep(cfg, k: int):
    """The ``k``-th of 100 sweep configs around ``cfg``: leverage (and grid count)."""
    over = {"leverage": 1 + (k % 20) * 0.5}
    if cfg.strategy.name == "grid":
        over["strategy.grids"] = 8 + 4 * (k // 20)
    return cfg.with_overrides(over)


def measure(label: str, cfg, make) -> None:
    """Speed of one config over a year of 5m bars, MarginBroker's speed and parity on the
    bundled weeks, and a 100-config sweep over the year."""
    from liqbt.fast import engine, load_market, run_one
    from liqbt.runner import run_config

    base = load_market(cfg)
    year = tiled(base, 105_120)
    engine.run_arrays(cfg, base)  # compiled (or loaded) in this process
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = engine.run_arrays(cfg, year)
        times.append(time.perf_counter() - t0)
    fast_rate = year.bars / statistics.median(times)
    print(f"fast kernel, {label}, {year.bars:,} bars ({len(out[3]):,} fills): "
          f"{fast_rate:,.0f} bars/s (median of 3; target >= 5,000,000)")

    t0 = time.perf_counter()
    slow = run_config(cfg, timeline=False)
    bt_rate = slow.bars / (time.perf_counter() - t0)
    fast = run_one(cfg, base)
    print(f"MarginBroker on the bundled {slow.bars:,} bars: {bt_rate:,.0f} bars/s; "
          f"speed-up {fast_rate / bt_rate:,.0f}x (target >= 500x)")
    same = (abs(fast.final_equity - slow.final_equity) <= 1e-9 * abs(slow.final_equity)
            and len(fast.fills) == len(slow.fills)
            and all((f["time"], f["size"], f["price"]) == (s["time"], s["size"], s["price"])
                    for f, s in zip(fast.fills, slow.fills, strict=False))
            and fast.liquidation_count == slow.liquidation_count)
    print(f"parity on the bundled run ({len(slow.fills)} fills): "
          f"{'identical' if same else 'DIFFERENT'} "
          f"(final equity {fast.final_equity:,.6f} vs {slow.final_equity:,.6f})")

    configs = [make(cfg, k) for k in range(100)]
    t0 = time.perf_counter()
    for c in configs:
        engine.run_arrays(c, year)
    kernel_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in configs:
        run_one(c, year)
    full_wall = time.perf_counter() - t0
    print(f"100-config sweep over one year of 5m bars: kernels {kernel_wall:.2f} s, with "
          f"RunResult rows (statistics, trades) {full_wall:.2f} s (target < 10 s)")


def main() -> None:
    from liqbt.config import load_config

    cfg = load_config(HOLD).with_overrides({"leverage": 10, "margin_mode": "isolated"})

    # compile: cold (empty cache dir) and cached, each in a fresh process
    call = ("from liqbt.config import load_config; from liqbt.fast import run_one; "
            f"run_one(load_config({str(HOLD)!r}).with_overrides({{'margin_mode': 'isolated'}}))")
    with tempfile.TemporaryDirectory() as cache:
        cold = fresh_process_seconds(call, cache)
        warm = fresh_process_seconds(call, cache)
    print(f"compile + first run, fresh process: cold cache {cold:.1f} s, cached {warm:.1f} s")

    for label, c in (("hold isolated 10x", cfg),
                     ("grid isolated 3x (configs/grid.toml, 16 lines)",
                      load_config(GRID).with_overrides({"leverage": 3}))):
        measure(label, c, sweep)
        print()

    code = (
        "import resource, numpy as np, sys; sys.path.insert(0, 'benchmarks');"
        "from fast_engine import tiled; from liqbt.config import load_config;"
        "from liqbt.fast import engine, load_market;"
        f"cfg = load_config({str(HOLD)!r}).with_overrides({{'margin_mode': 'isolated'}});"
        "d = tiled(load_market(cfg), 2_103_840); engine.run_arrays(cfg, d);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout.strip().splitlines()[-1]
    print(f"4 years of 1m-sized input (2,103,840 bars): peak RSS {float(out):,.0f} MiB "
          "(target < 1,024 MiB)")


if __name__ == "__main__":
    main()
