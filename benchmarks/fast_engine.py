"""Fast engine (liqbt.fast) against MarginBroker: speed, compile time, sweep time, memory, parity.

For every case in :data:`CASES` (a hold, a busy geometric grid whose range covers the whole year
with a line every ~0.5 %, thousands of fills, and a DCA bot), on one year of 5m bars, prints:

* fast bars/s for one config (median of 3 kernel runs after compile) and the time of the whole
  :func:`liqbt.fast.run_one` (kernel + the RunResult: statistics, trades);
* MarginBroker's bars/s on the same config over a representative slice (the year's first four
  weeks, the same busy grid), the speed-up, and parity of both engines on that slice (fills,
  liquidations, top-ups, funding, final equity to 1e-9: ``assert_parity`` of the test suite);
* a 100-config sweep over the year (leverage x grid count) through ``liqbt.executor.execute``
  (the path of ``liqbt sweep``), in a fresh process with numba's cache warm: wall time of the
  whole process (imports, cached compile, data load, runs, rows) and of ``execute`` alone;

then the compile time (cold cache and cached, each in a fresh process) and the 1-minute case:
4 years of 1m bars (2,103,840) through ``run_one`` in a fresh process, its peak RSS.

Data: with ``../shared/data`` beside the repository, the year is Binance's BTCUSDT perpetual
2025 (105,120 5m bars, 1h mark, funding) and the 1m case repeats 24 days of 2021-05 1m bars;
without it, the bundled 3-week 5m window is repeated, every other copy mirrored in time (so
the series stays continuous and in range). ``--real`` also checks parity of both engines on
the full shared files (slow: MarginBroker on ~100k-bar files).

Targets (issue 12): >= 5,000,000 bars/s, >= 500x MarginBroker, 100 configs < 10 s including
the compile from cache, 1m case < 1 GiB.

Usage: ``python benchmarks/fast_engine.py [--real]``. To add a bot, add a :class:`Case`.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BUNDLED = ROOT / "datasets" / "2025-10"
YEAR_BARS = 105_120  # 365 days of 5m bars
MINUTE_BARS = 2_103_840  # 4 x 365.25 days of 1m bars
SLICE_BARS = 8_064  # four weeks of 5m bars: MarginBroker's representative slice


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Files:
    """A market's candle, mark and funding files and the window to read."""

    candles: str
    mark: str | None
    funding: str | None
    start: str | None = None
    end: str | None = None
    note: str = ""


def tile(candles: pd.DataFrame, mark: pd.DataFrame | None, funding: pd.DataFrame | None,
         bars: int) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """``candles`` (and its mark and funding) repeated to ``bars`` bars, every other copy
    mirrored in time (bars reversed, open and close swapped), so the series is continuous and
    stays in the window's price range however long it gets. Funding events repeat forward."""
    tf = candles.index[1] - candles.index[0]
    span = tf * len(candles)
    start = candles.index[0]
    copies = math.ceil(bars / len(candles))

    def copy(frame: pd.DataFrame, step: pd.Timedelta, k: int) -> pd.DataFrame:
        if k % 2 == 0:
            out = frame.copy()
            out.index = frame.index + span * k
            return out
        out = frame.iloc[::-1].copy()
        out["open"], out["close"] = frame["close"].to_numpy()[::-1], frame["open"].to_numpy()[::-1]
        out.index = start + span * k + (span - step - (frame.index[::-1] - start))
        return out

    c = pd.concat([copy(candles, tf, k) for k in range(copies)]).iloc[:bars]
    end = c.index[-1] + tf
    m = None
    if mark is not None:
        mtf = mark.index[1] - mark.index[0]
        mk = mark[(mark.index >= start) & (mark.index < start + span)]
        m = pd.concat([copy(mk, mtf, k) for k in range(copies)])
        m = m[m.index < end]
    f = None
    if funding is not None:
        fw = funding[(funding.index >= start) & (funding.index < start + span)]
        f = pd.concat([fw.set_axis(fw.index + span * k) for k in range(copies)])
        f = f[f.index < end]
    for frame in (c, m, f):
        if frame is not None:
            frame.index.name = "date"
    return c, m, f


def write(folder: Path, name: str, frames: tuple[Any, Any, Any], note: str) -> Files:
    """Write tiled frames as freqtrade feather files."""
    from liqbt.data import save_candles, save_funding

    c, m, f = frames
    paths = [folder / f"{name}.feather", folder / f"{name}-mark.feather",
             folder / f"{name}-funding_rate.feather"]
    save_candles(c, paths[0])
    if m is not None:
        save_candles(m, paths[1])
    if f is not None:
        save_funding(f, paths[2])
    return Files(str(paths[0]), str(paths[1]) if m is not None else None,
                 str(paths[2]) if f is not None else None, note=note)


def year_files(folder: Path) -> Files:
    """One year of 5m bars: Binance BTCUSDT perpetual 2025 from ../shared/data, else the
    bundled window repeated."""
    harthor = SHARED / "harthor_marketlab"
    if harthor.is_dir():
        return Files(str(harthor / "BTC_USDT_USDT-5m-futures.feather"),
                     str(harthor / "BTC_USDT_USDT-1h-mark.feather"),
                     str(harthor / "BTC_USDT_USDT-1h-funding_rate.feather"),
                     "2025-01-01", "2026-01-01",
                     "Binance BTCUSDT perpetual 2025 (../shared/data), 1h mark, funding")
    return write(folder, "year-5m", tile(*_bundled(), YEAR_BARS),
                 "bundled 2025-10 BTCUSDT 5m window repeated (mirrored), 1h mark, funding")


def _bundled() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from liqbt.data import load_candles, load_funding

    return (load_candles(BUNDLED / "BTCUSDT-5m.feather"),
            load_candles(BUNDLED / "BTCUSDT-1h-mark.feather", kind="mark"),
            load_funding(BUNDLED / "BTCUSDT-5m-funding_rate.feather"))


def minute_files(folder: Path) -> Files:
    """4 years of 1m bars: 24 contiguous days of 2021-05 BTCUSDT 1m (../shared/data, with the
    perpetual's funding) repeated, else the bundled 5m window relabelled as 1m bars."""
    from liqbt.data import load_candles, load_funding

    one_minute = SHARED / "tooyipjee_freqtrade" / "BTC_USDT-1m.json"
    if one_minute.is_file():
        c = load_candles(one_minute, start="2021-04-26", end="2021-05-20")
        f = load_funding(SHARED / "roshan7869_algotrading" /
                         "BTC_USDT_USDT-1h-funding_rate.feather",
                         start="2021-04-26", end="2021-05-20")
        note = "24 days of 2021-05 BTCUSDT 1m (../shared/data) repeated, funding, no mark"
    else:
        c, _, _ = _bundled()
        c = c.set_axis(c.index[0] + pd.Timedelta("1min") * np.arange(len(c)))
        f = None
        note = "bundled 5m window relabelled as 1m and repeated, no mark or funding"
    return write(folder, "minute-1m", tile(c, None, f, MINUTE_BARS), note)


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------

def price_range(files: Files) -> tuple[float, float]:
    """Lowest low and highest high of the window."""
    from liqbt.data import load_candles

    c = load_candles(files.candles, start=files.start, end=files.end)
    return float(c["low"].min()), float(c["high"].max())


def base_config(files: Files, strategy: dict[str, Any], leverage: float,
                balance: float) -> Any:
    """A one-market isolated Binance config on ``files``."""
    from liqbt.config import config_from_dict

    market: dict[str, Any] = {"symbol": "BTCUSDT", "candles": files.candles,
                              "leverage": leverage, "margin_mode": "isolated"}
    if files.mark is not None:
        market["mark"] = files.mark
    if files.funding is not None:
        market["funding"] = files.funding
    return config_from_dict({
        "account": {"exchange": "binance", "balance": balance},
        "market": [market], "strategy": strategy,
        "backtest": {"start": files.start, "end": files.end},
    }, source="benchmark")


def busy_grid(files: Files, leverage: float = 3.0, step_pct: float = 0.5,
              max_lines: int = 200, direction: str = "long",
              prices: tuple[float, float] | None = None) -> Any:
    """A geometric grid whose range covers the window (3 % margin each side; ``prices`` =
    its lowest low and highest high when already known) with a line every ``step_pct`` % (at
    most ``max_lines``), each line's quantity twice the exchange minimum (order value and size
    step) at the lowest line; the investment is what that takes."""
    from liqbt.core import ladders
    from liqbt.core.profile import load_profile

    low, high = prices or price_range(files)
    lower, upper = round(low * 0.97, 1), round(high * 1.03, 1)
    grids = min(max_lines, math.ceil(math.log(upper / lower) / math.log1p(step_pct / 100)))
    spec = load_profile("binance").symbol("BTCUSDT")
    levels = ladders.grid_levels(lower, upper, grids, "geometric")
    per_unit = ladders.grid_quantity(1.0, leverage, levels, None, "levels",
                                     load_profile("binance").taker_fee)
    quantity = 2 * max(spec.size_step, spec.min_notional / lower)
    investment = math.ceil(quantity / per_unit / 100) * 100
    return base_config(files, {"name": "grid", "direction": direction, "lower": lower,
                               "upper": upper, "grids": grids, "spacing": "geometric",
                               "investment": investment}, leverage, investment * 1.25)


def hold(files: Files) -> Any:
    """A 3x isolated long holding through the window (2025: survives the -21 % of April)."""
    return base_config(files, {"name": "hold", "direction": "long", "margin": 500.0}, 3,
                       1000.0)


def dca(files: Files) -> Any:
    """A 3x isolated long DCA bot: 200 USDT base order, five safety orders 1.5 % apart
    (steps x1.3, sizes x1.4), take-profit 1 %: a cycle every day or two."""
    return base_config(files, {"name": "dca", "direction": "long", "base_order": 200.0,
                               "safety_order": 200.0, "max_safety_orders": 5,
                               "price_deviation": 1.5, "step_scale": 1.3, "volume_scale": 1.4,
                               "take_profit": 1.0}, 3, 5000.0)


def lever_sweep(cfg: Any, k: int) -> Any:
    """The ``k``-th of 100 sweep configs around ``cfg``: leverage 1..10.5 (and, for a grid,
    its line count: 100 % .. 60 %; for DCA, the take-profit: 1 .. 3 %)."""
    over: dict[str, Any] = {"leverage": 1 + (k % 20) * 0.5}
    if cfg.strategy.name == "grid":
        over["strategy.grids"] = max(2, int(cfg.strategy.kwargs["grids"] * (1 - 0.1 * (k // 20))))
    if cfg.strategy.name == "dca":
        over["strategy.take_profit"] = 1.0 + 0.5 * (k // 20)
    return cfg.with_overrides(over)


@dataclass(frozen=True)
class Case:
    """A benchmarked config: ``make(files)`` builds it, ``sweep(cfg, k)`` the k-th of 100."""

    label: str
    make: Callable[[Files], Any]
    sweep: Callable[[Any, int], Any] = lever_sweep


CASES: tuple[Case, ...] = (
    Case("hold, isolated 3x", hold),
    Case("grid long, geometric ~0.5 % lines over the whole range, isolated 3x", busy_grid),
    Case("DCA long, 5 safety orders, take-profit 1 %, isolated 3x", dca),
)


# --------------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------------

def parity(cfg: Any) -> str:
    """``identical`` or what differs (the test suite's ``assert_parity``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fast_parity_support import assert_parity

    try:
        assert_parity(cfg)
    except AssertionError as exc:
        return f"DIFFERENT: {str(exc)[:300]}"
    return "identical"


def fresh(code: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``code`` in a fresh interpreter: (wall s, CPU s, last stdout line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, **(env or {})}).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, (out.strip().splitlines() or [""])[-1]


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, CPU s of this process, result) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def measure(case: Case, files: Files, case_index: int, workers: int) -> None:
    from liqbt.fast import engine, load_market, run_one
    from liqbt.runner import run_config

    cfg = case.make(files)
    data = load_market(cfg)
    engine.run_arrays(cfg, data)  # compiled (or loaded from the cache) in this process
    runs = [timed(lambda: engine.run_arrays(cfg, data)) for _ in range(3)]
    out = runs[-1][2]
    wall_rate = data.bars / statistics.median(r[0] for r in runs)
    cpu_rate = data.bars / statistics.median(r[1] for r in runs)
    whole, _, result = timed(lambda: run_one(cfg, data, detail=False))
    days = data.bars / 288
    print(f"  fast engine, {data.bars:,} bars, {len(out[3]):,} fills "
          f"({len(out[3]) / days:,.1f}/day), {result.liquidation_count} liquidations, "
          f"return {result.return_pct:+.2f} %, stopped: {result.stopped_kind or 'no'}")
    print(f"  fast: {wall_rate:,.0f} bars/s wall, {cpu_rate:,.0f} bars/s CPU (median of 3 "
          f"kernel runs; target >= 5,000,000); run_one with its RunResult {whole:.3f} s")

    part = cfg.with_overrides({"end": str(data.times[SLICE_BARS])})
    bt_wall, bt_cpu, slow = timed(lambda: run_config(part, timeline=False))
    print(f"  MarginBroker on the same config, first {slow.bars:,} bars "
          f"({len(slow.fills):,} fills): {slow.bars / bt_wall:,.0f} bars/s wall, "
          f"{slow.bars / bt_cpu:,.0f} CPU; speed-up {wall_rate * bt_wall / slow.bars:,.0f}x "
          f"wall, {cpu_rate * bt_cpu / slow.bars:,.0f}x CPU (target >= 500x)")
    print(f"  parity of both engines on that slice: {parity(part)}")

    code = (
        "import sys, time; t0 = time.perf_counter(); sys.path.insert(0, 'benchmarks');"
        "import fast_engine as fe; from fast_engine import Files;"
        "from liqbt.executor import execute_detailed;"
        f"files = {files!r}; case = fe.CASES[{case_index}]; cfg = case.make(files);"
        "configs = [case.sweep(cfg, k) for k in range(100)]; t1 = time.perf_counter();"
        f"run = execute_detailed(configs, engine='auto', workers={workers});"
        "t2 = time.perf_counter(); assert run.engine == 'fast', run.reason;"
        "print(f'{t2 - t1:.3f} {sum(r.bars for r in run.results)}')"
    )
    wall, cpu, line = fresh(code)
    run_s, bars = line.split()
    print(f"  100-config sweep over the year (execute, engine auto -> fast, {workers} "
          f"process{'es' if workers > 1 else ''}): {float(run_s):.2f} s in execute; the whole "
          f"fresh process (imports, cached compile, data, rows) {wall:.2f} s wall, {cpu:.2f} s "
          f"CPU (target < 10 s); {int(bars) / float(run_s):,.0f} bars/s overall")


def compile_times() -> None:
    call = ("from liqbt.config import load_config; from liqbt.fast import run_one; "
            f"run_one(load_config({str(ROOT / 'configs' / 'grid.toml')!r}))")
    with tempfile.TemporaryDirectory() as cache:
        cold, cold_cpu, _ = fresh(call, {"NUMBA_CACHE_DIR": cache})
        warm, warm_cpu, _ = fresh(call, {"NUMBA_CACHE_DIR": cache})
    print(f"compile + first grid run, fresh process: cold cache {cold:.1f} s wall "
          f"({cold_cpu:.1f} s CPU), cached {warm:.1f} s wall ({warm_cpu:.1f} s CPU)")


def minute_case(folder: Path) -> None:
    """4 years of 1m bars through ``run_one`` in a fresh process each: as the executor runs
    it (no per-bar timeline, no fill rows) and with them (what ``liqbt run`` would keep)."""
    files = minute_files(folder)
    prices = price_range(files)  # read here, so the measured process only runs the engine
    print(f"1-minute case: {files.note}:")
    for detail in (False, True):
        code = (
            "import resource, sys, time; sys.path.insert(0, 'benchmarks');"
            "import fast_engine as fe; from fast_engine import Files;"
            "from liqbt.fast import run_one;"
            f"cfg = fe.busy_grid({files!r}, prices={prices!r}); t0 = time.perf_counter();"
            f"r = run_one(cfg, detail={detail}); t = time.perf_counter() - t0;"
            "print(r.bars, len(r.trades), t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        _, _, line = fresh(code)
        bars, trades, secs, rss = line.split()
        what = ("with the per-bar timeline and fill rows" if detail
                else "as in a sweep (no per-bar timeline)")
        print(f"  {int(bars):,} bars, busy grid ({int(trades):,} trades), run_one {what} "
              f"(load, align, kernel, RunResult) {float(secs):.1f} s; peak RSS of the fresh "
              f"process {int(rss) / 1024:,.0f} MiB (target < 1,024 MiB)")


REAL_FILES = (
    ("harthor_marketlab/BTC_USDT_USDT-5m-futures.feather",
     "harthor_marketlab/BTC_USDT_USDT-1h-mark.feather",
     "harthor_marketlab/BTC_USDT_USDT-1h-funding_rate.feather"),
    ("trickbaker_freqtrade-repos/BTC_USDT-5m-futures.json",
     "trickbaker_freqtrade-repos/BTC_USDT-8h-mark.json",
     "trickbaker_freqtrade-repos/BTC_USDT-8h-funding_rate.json"),
    ("roshan7869_algotrading/BTC_USDT_USDT-1h-futures.feather",
     "roshan7869_algotrading/BTC_USDT_USDT-1h-mark.feather",
     "roshan7869_algotrading/BTC_USDT_USDT-1h-funding_rate.feather"),
    ("imsatoshi_genetrader/BTC_USDT-5m.feather",
     "roshan7869_algotrading/BTC_USDT_USDT-1h-mark.feather",
     "roshan7869_algotrading/BTC_USDT_USDT-1h-funding_rate.feather"),
)


def real_parity() -> None:
    """Both engines on the full shared files (hold, busy grid)."""
    if not SHARED.is_dir():
        print("--real: ../shared/data not found, skipped")
        return
    for names in REAL_FILES:
        files = Files(*(str(SHARED / n) for n in names))
        for case in CASES:
            cfg = case.make(files)
            t0 = time.perf_counter()
            verdict = parity(cfg)
            print(f"full file {names[0]}, {case.label}: {verdict} "
                  f"({time.perf_counter() - t0:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true",
                        help="also check parity on the full ../shared/data files (slow)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes of the 100-config sweep (default 1: one core)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        year = year_files(folder)
        print(f"year: {year.note}")
        for i, case in enumerate(CASES):
            print(f"{case.label}:")
            measure(case, year, i, args.workers)
        compile_times()
        minute_case(folder)
    if args.real:
        real_parity()


if __name__ == "__main__":
    main()
