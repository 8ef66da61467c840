"""Parameter sweeps: the cartesian product of overrides, run through :mod:`liqbt.executor`.

The executor caches each run's result under ``cache_dir`` (keyed by config hash and engine),
so an interrupted sweep resumes where it stopped and a repeated sweep costs nothing. Runs are
deterministic, so a local pool and a Dask cluster give identical rows.
"""

from __future__ import annotations

import difflib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liqbt.config import RunConfig
from liqbt.core.errors import ValidationError


@dataclass(frozen=True)
class SweepPoint:
    """One combination: the overrides applied and the resulting config."""

    overrides: tuple[tuple[str, Any], ...]
    config: RunConfig


@dataclass
class SweepOutcome:
    """Rows in the order of the points, plus how many were computed / read from the cache."""

    rows: list[dict[str, Any]]
    computed: int = 0
    cached: int = 0
    keys: list[str] = field(default_factory=list)
    engine: str = "backtrader"
    engine_reason: str = ""


def expand(base: RunConfig, grid: Mapping[str, Sequence[Any]]) -> list[SweepPoint]:
    """Cartesian product of ``grid`` applied to ``base`` (first key varies slowest).

    Every combination is validated; all problems are reported together.
    """
    keys = list(grid)
    points: list[SweepPoint] = []
    problems: list[str] = []
    # each value on its own first: a bad value is named once, not once per combination
    for key in keys:
        for value in grid[key]:
            try:
                base.with_overrides({key: value})
            except ValidationError as exc:
                problems.extend(f"[{key}={value}] {p}" for p in exc.problems)
    if problems:
        raise ValidationError(list(dict.fromkeys(problems)), base.source)
    for values in itertools.product(*(grid[k] for k in keys)):
        overrides = tuple(zip(keys, values, strict=True))
        try:
            points.append(SweepPoint(overrides, base.with_overrides(dict(overrides))))
        except ValidationError as exc:
            combo = ", ".join(f"{k}={v}" for k, v in overrides)
            problems.extend(f"[{combo}] {p}" for p in exc.problems)
    if problems:
        raise ValidationError(sorted(set(problems)), base.source)
    return points


def run_point(config: RunConfig) -> dict[str, Any]:
    """Run one config in this process and return its summary row (a plain, picklable dict)."""
    from liqbt.executor import execute

    return result_row(config, execute([config], engine="backtrader", workers=1)[0])


def result_row(config: RunConfig, result: Any) -> dict[str, Any]:
    """A sweep row: the run summary plus the config hash and the engine that ran it."""
    row = result.summary()
    row["config_hash"] = config.config_hash()
    row["engine"] = result.engine
    return row


def run_sweep(
    points: Sequence[SweepPoint],
    workers: int | None = None,
    scheduler: str | Any | None = None,
    cache_dir: str | Path | None = None,
    on_result: Callable[[int, dict[str, Any]], None] | None = None,
    engine: str = "auto",
) -> SweepOutcome:
    """Run every point through :func:`liqbt.executor.execute`, reusing cached results.

    Parameters
    ----------
    points
        From :func:`expand`.
    workers
        Local process count (default: CPU count). 1 runs in this process.
    scheduler
        Dask scheduler address (``tcp://host:port``), a ``distributed.Client`` or a
        ``LocalCluster``; when given, runs go to Dask instead of the local pool.
    cache_dir
        Per-run result cache (keyed by config hash and engine); ``None`` disables caching.
    on_result
        Called as ``on_result(index, row)`` when a row is available (progress display).
    engine
        ``auto``, ``fast`` or ``backtrader`` (see :func:`liqbt.executor.resolve_engine`).

    Returns
    -------
    SweepOutcome
        ``rows[i]`` belongs to ``points[i]``: the overrides (as columns) + the run summary.
    """
    from liqbt.executor import execute_detailed

    configs = [p.config for p in points]
    tick = None
    if on_result is not None:
        def tick(i: int, result: Any) -> None:
            on_result(i, result_row(configs[i], result))

    run = execute_detailed(configs, engine=engine, scheduler=scheduler, progress=tick,
                           cache_dir=cache_dir, workers=workers)
    keys = list(dict.fromkeys(k for p in points for k, _ in p.overrides))
    out = [
        {**{k: v for k, v in p.overrides}, **result_row(p.config, res)}
        for p, res in zip(points, run.results, strict=True)
    ]
    return SweepOutcome(out, computed=run.computed, cached=run.cached, keys=keys,
                        engine=run.engine, engine_reason=run.reason)


#: ``--out`` file types :func:`write_rows` writes.
ROW_SUFFIXES: tuple[str, ...] = (".csv", ".json")
def row_columns() -> list[str]:
    """Columns of every sweep row besides the swept keys: :meth:`RunResult.summary`'s keys
    (read from an empty result, so they are never listed twice) and ``config_hash``."""
    import dataclasses
    import typing

    from liqbt.runner import RunResult

    hints = typing.get_type_hints(RunResult)
    empty: dict[str, Any] = {}
    for f in dataclasses.fields(RunResult):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            hint = str(hints.get(f.name, ""))
            empty[f.name] = ([] if hint.startswith("list") else {} if hint.startswith("dict")
                             else "" if hint == "<class 'str'>" else 0)
    return [*RunResult(**empty).summary(), "config_hash", "engine"]


def check_sort_key(key: str | None, swept: Sequence[str]) -> None:
    """Raise :class:`ValidationError` when ``key`` is not a row column (before any run)."""
    known = [*swept, *row_columns()]
    if key and key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError([f"--sort {key!r}: no such column{hint}; columns: "
                               f"{', '.join(known)}"])


def check_scheduler(address: str, timeout: float = 3.0) -> None:
    """Raise :class:`ValidationError` unless ``address`` is ``tcp://HOST:PORT`` (or
    ``tls://``) and something listens there, within ``timeout`` seconds (instead of Dask's
    30 s connect timeout and a traceback)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        raise ValidationError([f"--scheduler {address!r}: expected tcp://HOST:PORT "
                               "(a Dask scheduler address, e.g. tcp://127.0.0.1:8786)"])
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValidationError([f"--scheduler {address!r}: cannot reach a scheduler there "
                               f"within {timeout:g} s ({reason})"]) from None


def sort_rows(rows: Iterable[dict[str, Any]], key: str | None) -> list[dict[str, Any]]:
    """Rows sorted by ``key`` descending (best return first); ``None`` values last."""
    rows = list(rows)
    if not key:
        return rows
    if rows and key not in rows[0]:
        raise ValidationError([f"--sort {key!r}: no such column (known: {', '.join(rows[0])})"])
    with_value = [r for r in rows if r.get(key) is not None]
    without = [r for r in rows if r.get(key) is None]
    return sorted(with_value, key=lambda r: r[key], reverse=True) + without


def write_rows(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as ``.csv`` or ``.json`` (chosen by the suffix)."""
    from liqbt.outputs import atomic_replace

    p = Path(path)
    if p.suffix.lower() not in ROW_SUFFIXES:
        raise ValidationError([f"--out {str(p)!r}: use a .csv or .json file"])
    with atomic_replace(p) as tmp:
        if p.suffix.lower() == ".json":
            tmp.write_text(json.dumps(list(rows), indent=2, sort_keys=False) + "\n")
        else:
            import csv

            columns = list(dict.fromkeys(k for r in rows for k in r))
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
    return p


@dataclass(frozen=True)
class MaxLeverage:
    """Result of :func:`find_max_leverage` for one margin mode.

    ``leverage`` is ``None`` when even the lowest candidate was liquidated;
    ``distance_pct`` is the safety margin (closest approach to liquidation, %) at that
    leverage; ``failed_at`` the lowest tested leverage that was liquidated.
    """

    margin_mode: str
    leverage: float | None
    distance_pct: float | None
    failed_at: float | None
    runs: int
    tested: tuple[tuple[float, bool], ...]


def leverage_candidates(maximum: float, step: float = 1.0) -> list[float]:
    """1, 1+step, ... up to ``maximum`` (inclusive)."""
    n = int((maximum - 1) / step + 1e-9)
    return [1 + k * step for k in range(n + 1)]


def find_max_leverage(
    config: RunConfig, margin_mode: str, maximum: float = 125, step: float = 1.0,
    run: Callable[[RunConfig], dict[str, Any]] = run_point,
) -> MaxLeverage:
    """Bisection for the highest leverage that survives the data without any liquidation.

    Assumes survival is monotone in leverage (a higher leverage never survives when a lower
    one did not), which holds for a strategy sizing by margin: more leverage means a larger
    position and a nearer liquidation price. The candidates are ``1, 1+step, ... maximum``
    capped at the tier maximum of the config's symbols.
    """
    from liqbt.core.profile import load_profile

    profile = load_profile(config.account.exchange)
    cap = min(profile.symbol(m.symbol).tiers.tiers[0].max_leverage for m in config.markets)
    candidates = leverage_candidates(min(maximum, cap), step)

    def allowed(lev: float) -> bool:
        try:
            config.with_overrides({"leverage": lev, "margin_mode": margin_mode})
        except ValidationError:
            return False
        return True

    # a position larger than the tier allows at a leverage is refused by the exchange (and by
    # the config check): only leverages the config is valid at are candidates (monotone: more
    # leverage, larger position, lower allowed notional)
    if not allowed(candidates[-1]):
        lo_ok, hi_bad = -1, len(candidates) - 1
        while hi_bad - lo_ok > 1:
            mid = (lo_ok + hi_bad) // 2
            if allowed(candidates[mid]):
                lo_ok = mid
            else:
                hi_bad = mid
        if lo_ok < 0:
            config.with_overrides({"leverage": candidates[0], "margin_mode": margin_mode})
        candidates = candidates[: lo_ok + 1]
    tested: dict[float, dict[str, Any]] = {}

    def survives(k: int) -> bool:
        lev = candidates[k]
        if lev not in tested:
            cfg = config.with_overrides({"leverage": lev, "margin_mode": margin_mode})
            tested[lev] = run(cfg)
        row = tested[lev]
        return not row["liquidations"] and not row["wiped_out"]

    lo, hi = -1, len(candidates)  # invariant: candidates[lo] survives, candidates[hi] fails
    if survives(len(candidates) - 1):
        lo = len(candidates) - 1
    elif survives(0):
        lo, hi = 0, len(candidates) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if survives(mid):
                lo = mid
            else:
                hi = mid
    else:
        hi = 0
    best = candidates[lo] if lo >= 0 else None
    return MaxLeverage(
        margin_mode,
        best,
        tested[best]["min_liquidation_distance_pct"] if best is not None else None,
        candidates[hi] if hi < len(candidates) else None,
        len(tested),
        tuple(sorted((lev, not r["liquidations"] and not r["wiped_out"])
                     for lev, r in tested.items())),
    )


__all__ = [
    "MaxLeverage",
    "SweepOutcome",
    "SweepPoint",
    "expand",
    "find_max_leverage",
    "leverage_candidates",
    "run_point",
    "run_sweep",
    "sort_rows",
    "write_rows",
]
