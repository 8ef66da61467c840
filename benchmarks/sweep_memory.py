"""Memory of a sweep worker: does it free each finished run (issue 11)?

A sweep worker runs its batch of configs one after the other. A finished backtrader run is a web
of reference cycles (cerebro, feeds, broker, strategy, analyzers) that only a full garbage
collection frees; without one a worker keeps several runs' worth of memory. This script runs the
one-year grid job of ``broker_overhead.py`` (40 lines, 105,120 seeded 5m bars) at several
leverages in ONE worker process, through the sweep's own worker path
(``liqbt.executor.BACKTRADER.run_batch``, one config per call as a batch holds them), and prints
the worker's resident memory after each run and its peak. ``--no-free`` runs the same configs
without the per-run collection, for comparison.

    python benchmarks/sweep_memory.py [--bars 105120] [--runs 4] [--no-free]
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from broker_overhead import random_walk, write_grid_job

from liqbt.config import load_config
from liqbt.executor import BACKTRADER, MarketData, load_market_data
from liqbt.sweep import expand

_DATA: MarketData | None = None


def rss_mib() -> float:
    """Resident set size of this process now (MiB, Linux ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    """Peak resident set size of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _init(data: MarketData) -> None:
    global _DATA
    _DATA = data


def _worker(configs: list, free: bool) -> list[tuple[float, float]]:
    """Run ``configs`` one by one in this worker; ``(RSS, peak)`` in MiB after each run."""
    from liqbt.runner import run_config

    out = [(rss_mib(), peak_mib())]
    for cfg in configs:
        if free:
            BACKTRADER.run_batch([cfg], _DATA)  # the sweep worker's path (frees the run)
        else:
            result = run_config(cfg, timeline=False, progress=False, data=_DATA)
            result.timeline, result.fills = {}, []
        out.append((rss_mib(), peak_mib()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=105_120)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--no-free", action="store_true",
                        help="skip the per-run collection (what workers did before)")
    args = parser.parse_args()
    frame = random_walk(args.bars)
    with tempfile.TemporaryDirectory() as tmp:
        config = write_grid_job(Path(tmp), frame)
        base = load_config(config)
        leverages = [5, 10, 15, 20, 3, 8, 12, 2][: args.runs]
        configs = [p.config for p in expand(base, {"leverage": leverages})]
        data = load_market_data(configs)
        gc.collect()
        with ProcessPoolExecutor(max_workers=1, initializer=_init, initargs=(data,)) as pool:
            rows = pool.submit(_worker, configs, not args.no_free).result()
    mode = "without the per-run collection" if args.no_free else "freeing each run"
    print(f"one worker, {len(configs)} one-year grid runs ({args.bars:,} bars), {mode}:")
    print(f"{'after':>10}  {'RSS MiB':>8}  {'peak MiB':>8}")
    for k, (rss, peak) in enumerate(rows):
        label = "start" if k == 0 else f"run {k}"
        print(f"{label:>10}  {rss:8.0f}  {peak:8.0f}")


if __name__ == "__main__":
    main()
