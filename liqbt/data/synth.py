"""Seeded synthetic crash scenarios: trade candles, mark candles and funding events.

The price is built on a 1-minute grid in log space as

    log p(t) = log p0 + shape(t) + noise(t)

* ``shape`` is the scenario (a crash, a grind, a squeeze, an oscillation), deterministic and
  parametrised by ``depth``, ``duration`` and ``at`` (where it starts, as a fraction of the run);
* ``noise`` is a mean-reverting (Ornstein-Uhlenbeck) walk with annualised ``volatility`` and a
  ``half_life``: mean reversion keeps the run range-bound around the shape, so the scenario's
  magnitude is what the data shows (a plain random walk would add ±10 % drifts over weeks).

Bars aggregate the 1-minute points (open = first, close = last, high/low = extremes, which makes
OHLC valid by construction); trade bars get extra wick noise proportional to the bar's move.
The mark price is an exponential smoothing of the trade path (so its wicks are smaller, as on an
exchange where mark = index ± premium) times a small fast mean-reverting basis. Funding is
settled every 8 h at 00/08/16 UTC: base 0.01 % plus a premium term (mean basis) and a momentum
term (last 8 h return), clipped to ±0.3 %.

Everything is drawn from one ``numpy.random.Generator(PCG64(seed))`` in a fixed order, so the
same arguments give bit-identical frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from liqbt.core.choices import SYNTH_SCENARIOS
from liqbt.core.errors import ValidationError
from liqbt.data.loaders import (
    companion_paths,
    parse_timeframe,
    save_candles,
    save_funding,
    to_utc,
)

MINUTES_PER_YEAR = 525_600

#: scenario -> (depth, duration, at) defaults; depth is a fraction, duration a pandas offset.
SCENARIOS: dict[str, tuple[float, str, float]] = dict(zip(
    SYNTH_SCENARIOS,
    [(0.30, "4h", 0.6), (0.35, "5D", 0.3), (0.25, "2h", 0.6), (0.08, "2D", 0.0)],
    strict=True,
))


@dataclass(frozen=True)
class SynthData:
    """Generated series: each frame indexed by UTC ``date`` like the loaders' output."""

    candles: pd.DataFrame
    mark: pd.DataFrame
    funding: pd.DataFrame


def _ease_in(u: np.ndarray) -> np.ndarray:
    # accelerating (cubic): crashes and squeezes speed up towards their extreme, so the last bars
    # of the move are ~3x the average speed (the liquidation cascade)
    return np.clip(u, 0.0, 1.0) ** 3


def _ease_out(u: np.ndarray) -> np.ndarray:
    v = np.clip(u, 0.0, 1.0)
    return 1.0 - (1.0 - v) ** 2


def _smooth(u: np.ndarray) -> np.ndarray:
    v = np.clip(u, 0.0, 1.0)
    return v * v * (3.0 - 2.0 * v)


def scenario_shape(
    scenario: str,
    minutes: np.ndarray,
    *,
    depth: float,
    duration_min: float,
    start_min: float,
    rebound: float,
    rebound_min: float,
) -> np.ndarray:
    """The deterministic log-price offset of a scenario at each minute (0 before the event).

    Parameters
    ----------
    scenario
        One of :data:`SCENARIOS`.
    minutes
        Minutes since the start of the run.
    depth
        Fractional size of the move (0.30 = −30 % for a crash, +30 % for a squeeze).
    duration_min
        Minutes the move takes (the oscillation period for ``range-chop``).
    start_min
        Minute the event starts.
    rebound, rebound_min
        Fraction of the move given back afterwards, and over how many minutes.
    """
    u = (minutes - start_min) / duration_min
    after = (minutes - start_min - duration_min) / rebound_min
    if scenario == "flash-crash":
        drop = np.log1p(-depth)
        return drop * _ease_in(u) - drop * rebound * _ease_out(after)
    if scenario == "short-squeeze":
        rise = np.log1p(depth)
        return rise * _ease_in(u) - rise * rebound * _ease_out(after)
    if scenario == "slow-grind":
        return np.log1p(-depth) * _smooth(u) - np.log1p(-depth) * rebound * _ease_out(after)
    if scenario == "range-chop":
        # the full range (top to bottom) is `depth`; half of it either side of the start price
        amp = 0.5 * np.log((1 + depth / 2) / (1 - depth / 2))
        phase = np.clip(minutes - start_min, 0.0, None) / duration_min
        return amp * np.sin(2 * np.pi * phase)
    raise ValidationError([f"unknown scenario {scenario!r}; choose one of {list(SCENARIOS)}"])


def _ou(rng: np.random.Generator, n: int, sigma: float, half_life: float) -> np.ndarray:
    """Ornstein-Uhlenbeck path of ``n`` points starting at 0 (``half_life`` in steps)."""
    a = 0.5 ** (1.0 / half_life)
    shocks = rng.standard_normal(n - 1) * sigma
    out = np.empty(n)
    out[0] = 0.0
    # x_k = a x_{k-1} + e_k is a linear recursion; in blocks it is a^k * cumsum(a^-j e_j),
    # vectorised while keeping a^-j well inside float range
    block = max(1, min(n, int(200.0 * half_life / np.log(2.0)) or 1, 4096))
    x = 0.0
    for lo in range(0, n - 1, block):
        e = shocks[lo : lo + block]
        j = np.arange(1, len(e) + 1)
        seg = a**j * (x + np.cumsum(e * a ** (-j)))
        out[lo + 1 : lo + 1 + len(e)] = seg
        x = seg[-1]
    return out


def generate(
    scenario: str = "flash-crash",
    *,
    seed: int = 0,
    days: float = 28.0,
    start: str | datetime = "2024-03-01",
    timeframe: str = "5m",
    start_price: float = 60_000.0,
    depth: float | None = None,
    duration: str | None = None,
    at: float | None = None,
    rebound: float = 0.5,
    rebound_duration: str = "12h",
    volatility: float = 0.5,
    half_life: str = "12h",
    tick: float = 0.1,
    base_volume: float = 150.0,
) -> SynthData:
    """Generate one scenario.

    Parameters
    ----------
    scenario
        ``flash-crash`` (−``depth`` within ``duration``, then ``rebound``), ``slow-grind``
        (−``depth`` over ``duration``, smooth), ``short-squeeze`` (+``depth`` within
        ``duration``, then fade) or ``range-chop`` (sine range of total width ``depth`` with
        period ``duration``).
    seed
        Seed of the PCG64 generator; same arguments and seed give identical frames.
    days
        Length of the run.
    start
        First bar's open time (UTC).
    timeframe
        Bar length (a whole number of minutes, e.g. ``"5m"``, ``"1h"``).
    start_price
        Price at the first open.
    depth, duration, at
        Size, length and start (fraction of ``days``) of the event; defaults per scenario in
        :data:`SCENARIOS`.
    rebound, rebound_duration
        Share of the move given back afterwards and over how long (not used by range-chop).
    volatility
        Annualised volatility of the background noise (0.5 = 50 %).
    half_life
        Mean-reversion half-life of the background noise.
    tick
        Price tick; all prices are rounded to it (rounding keeps OHLC ordering valid).
    base_volume
        Typical volume per 5 minutes (scaled by bar length and by the bar's move).

    Returns
    -------
    SynthData
        ``candles``, ``mark`` (OHLCV, volume 0) and ``funding`` (``funding_rate``) frames.
    """
    if scenario not in SCENARIOS:
        raise ValidationError([f"unknown scenario {scenario!r}; choose one of {list(SCENARIOS)}"])
    d_depth, d_duration, d_at = SCENARIOS[scenario]
    depth = d_depth if depth is None else float(depth)
    at = d_at if at is None else float(at)
    tf = parse_timeframe(timeframe)
    bar_min = tf.total_seconds() / 60.0
    problems = []
    if bar_min != int(bar_min) or bar_min < 1:
        problems.append(f"timeframe {timeframe!r} must be a whole number of minutes")
    if not 0.0 < depth < (1.0 if scenario != "short-squeeze" else 10.0):
        problems.append(f"depth = {depth} must be in (0, 1) (a fraction: 0.3 = 30 %)")
    if not 0.0 <= at < 1.0:
        problems.append(f"at = {at} must be in [0, 1) (fraction of the run)")
    if not (np.isfinite(days) and days > 0):
        problems.append(f"days = {days} must be a positive number")
    if not 0.0 <= rebound <= 1.0:
        problems.append(f"rebound = {rebound} must be in [0, 1]")
    if not (np.isfinite(start_price) and start_price > 0):
        problems.append(f"start price = {start_price} must be a positive price")
    if not (np.isfinite(volatility) and 0.0 <= volatility <= 10.0):
        problems.append(f"volatility = {volatility} must be in [0, 10] (annualised, 0.5 = 50 %)")
    if not (np.isfinite(tick) and tick > 0):
        problems.append(f"tick = {tick} must be a positive price step")
    if not (np.isfinite(base_volume) and base_volume >= 0):
        problems.append(f"base volume = {base_volume} must be >= 0")
    if problems:
        raise ValidationError(problems)
    bar_min = int(bar_min)
    n_bars = int(days * 1440 // bar_min)
    if n_bars < 2:
        raise ValidationError([f"days = {days} gives fewer than 2 {timeframe} bars"])
    n_min = n_bars * bar_min
    duration_min = parse_timeframe(duration or d_duration).total_seconds() / 60.0
    rebound_min = parse_timeframe(rebound_duration).total_seconds() / 60.0
    start_min = at * n_min
    if scenario != "range-chop" and start_min + duration_min > n_min:
        raise ValidationError(
            [f"the event (start at {at:.0%} of {days} days + {duration}) does not fit in the run"]
        )
    rng = np.random.default_rng(np.random.PCG64(seed))
    minutes = np.arange(n_min + 1, dtype="float64")

    # --- trade path on the 1-minute grid
    sigma = volatility / np.sqrt(MINUTES_PER_YEAR)
    hl_min = parse_timeframe(half_life).total_seconds() / 60.0
    noise = _ou(rng, n_min + 1, sigma, hl_min)
    shape = scenario_shape(
        scenario,
        minutes,
        depth=depth,
        duration_min=duration_min,
        start_min=start_min,
        rebound=rebound,
        rebound_min=rebound_min,
    )
    log_p = np.log(start_price) + shape + noise

    # --- mark path: smoothed trade path (smaller wicks, lags in a crash) times a small basis
    smooth = pd.Series(log_p).ewm(alpha=0.5, adjust=False).mean().to_numpy()
    basis = _ou(rng, n_min + 1, 0.0003 * np.sqrt(2 * np.log(2) / 30.0), 30.0)
    log_m = smooth + basis

    def bars(path: np.ndarray) -> tuple[np.ndarray, ...]:
        # window b covers minutes [b*bar_min, (b+1)*bar_min] (shared endpoints: next open = close)
        o = path[:-1:bar_min][:n_bars]
        c = path[bar_min::bar_min][:n_bars]
        win = np.lib.stride_tricks.sliding_window_view(path, bar_min + 1)[::bar_min][:n_bars]
        return o, win.max(axis=1), win.min(axis=1), c

    o, h, lo, c = bars(log_p)
    move = np.abs(c - o)
    # trade-only wick overshoot: bigger on big bars (stops and liquidations), never on mark
    h = h + move * rng.uniform(0.0, 0.4, n_bars) + rng.exponential(0.0002, n_bars)
    lo = lo - move * rng.uniform(0.0, 0.4, n_bars) - rng.exponential(0.0002, n_bars)
    mo, mh, ml, mc = bars(log_m)

    decimals = max(0, int(-np.floor(np.log10(tick) + 1e-9)) + 2)

    def price(x: np.ndarray) -> np.ndarray:
        # the second round removes float noise (61722.700000000004) left by "* tick"
        return np.round(np.round(np.exp(x) / tick) * tick, decimals)

    sigma_bar = sigma * np.sqrt(bar_min)
    volume = (
        base_volume
        * (bar_min / 5.0)
        * np.exp(0.4 * rng.standard_normal(n_bars))
        * (1.0 + (h - lo) / sigma_bar / 2.0)
    )
    t0 = to_utc(start)
    assert t0 is not None
    index = pd.date_range(t0, periods=n_bars, freq=tf, name="date").as_unit("ns")
    candles = pd.DataFrame(
        {
            "open": price(o),
            "high": price(h),
            "low": price(lo),
            "close": price(c),
            "volume": np.round(volume, 3),
        },
        index=index,
    )
    mark = pd.DataFrame(
        {
            "open": price(mo),
            "high": price(mh),
            "low": price(ml),
            "close": price(mc),
            "volume": np.zeros(n_bars),
        },
        index=index.copy(),
    )

    # --- funding every 8 h at 00/08/16 UTC inside the run
    end = index[-1] + tf
    first = t0.floor("8h")
    if first < t0:
        first += pd.Timedelta("8h")
    f_index = pd.date_range(first, end, freq="8h", inclusive="left", name="date").as_unit("ns")
    f_min = ((f_index - t0) / pd.Timedelta("1min")).to_numpy().astype("int64")
    lookback = 480
    lo_min = np.maximum(f_min - lookback, 0)
    cum_basis = np.concatenate([[0.0], np.cumsum(basis)])
    span = np.maximum(f_min - lo_min, 1)
    mean_basis = (cum_basis[f_min] - cum_basis[lo_min]) / span
    ret_8h = log_p[f_min] - log_p[lo_min]
    rate = 0.0001 + 0.25 * mean_basis + 0.005 * ret_8h + rng.normal(0.0, 2e-5, len(f_index))
    rate = np.round(np.clip(rate, -0.003, 0.003), 8)
    funding = pd.DataFrame({"funding_rate": rate}, index=f_index)

    for frame, kind in ((candles, "candles"), (mark, "mark")):
        frame.attrs = {"source": f"synth:{scenario}", "kind": kind, "timeframe": tf, "gaps": []}
    funding.attrs = {"source": f"synth:{scenario}", "kind": "funding"}
    return SynthData(candles=candles, mark=mark, funding=funding)


def write(data: SynthData, path: str | Path, force: bool = False) -> tuple[Path, Path, Path]:
    """Write ``FILE``, ``FILE-mark`` and ``FILE-funding_rate`` (freqtrade naming and layout).

    The format follows the extension (``.feather`` zstd, ``.parquet``, ``.csv``); the funding file
    keeps the rate in ``open`` as freqtrade does, so :func:`liqbt.data.load_funding` reads it.
    Each file is written to a temporary name and renamed into place.

    Parameters
    ----------
    force
        Overwrite existing files. Without it, an existing file of the trio is an error and
        nothing is written (generated data never silently replaces real data).

    Returns
    -------
    The three paths written.
    """
    paths = companion_paths(path)
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise ValidationError(
            [f"{p}: already exists; refusing to overwrite it (pass --force / force=True)"
             for p in existing]
        )
    save_candles(data.candles, paths[0])
    save_candles(data.mark, paths[1])
    save_funding(data.funding, paths[2])
    return paths


def max_drawdown(candles: pd.DataFrame) -> float:
    """Deepest fall from a running high to a later low, as a fraction (0.2 = −20 %)."""
    peak = np.maximum.accumulate(candles["high"].to_numpy())
    return float(np.max(1.0 - candles["low"].to_numpy() / peak))


def max_runup(candles: pd.DataFrame) -> float:
    """Largest rise from a running low to a later high, as a fraction (0.25 = +25 %)."""
    trough = np.minimum.accumulate(candles["low"].to_numpy())
    return float(np.max(candles["high"].to_numpy() / trough - 1.0))
