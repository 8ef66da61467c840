"""Sweep throughput: runs per minute with 1, 2 and N local workers on the bundled dataset.

Usage::

    python benchmarks/sweep_scaling.py [--config configs/grid.toml] [--runs 12] [--workers N]

Caching is off, so every run is computed; the same points are run for every worker count.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from liqbt.config import load_config
from liqbt.sweep import expand, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "grid.toml"))
    parser.add_argument("--runs", type=int, default=12, help="number of sweep points")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="largest worker count to try")
    args = parser.parse_args()
    base = load_config(args.config)
    levs = [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25]
    n_lev = max(1, (args.runs + 1) // 2)
    points = expand(base, {"leverage": levs[:n_lev], "margin_mode": ["cross", "isolated"]})
    counts = sorted({1, 2, args.workers})
    baseline = None
    print(f"{len(points)} runs of {args.config} on {os.cpu_count()} CPUs")
    print(f"{'workers':>7}  {'seconds':>8}  {'runs/min':>9}  {'speed-up':>8}")
    for workers in counts:
        t0 = time.perf_counter()
        run_sweep(points, workers=workers, cache_dir=None)
        elapsed = time.perf_counter() - t0
        rate = len(points) / elapsed * 60
        baseline = baseline or rate
        print(f"{workers:>7}  {elapsed:>8.1f}  {rate:>9.1f}  {rate / baseline:>7.2f}x")


if __name__ == "__main__":
    main()
