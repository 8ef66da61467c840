"""The one way to run many configs: engines, batching, local pool or Dask, and a result cache.

Every multi-run command (``sweep``, ``max-leverage``, ``survival``, ``optimize``) goes through
:func:`execute`. It picks an :class:`Engine`, reads what it can from the cache, loads the
market data the configs need once, splits the rest into batches and runs them in this
process, on a local process pool, or on a Dask cluster. Runs are deterministic, so every path
gives identical results (a test checks local == Dask).

Contract for an engine (how the fast engine plugs in)
-----------------------------------------------------
An engine is an :class:`Engine` registered with :func:`register_engine` at import time of
the module that provides it (``liqbt`` imports the optional engine modules listed in
:data:`ENGINE_MODULES`, ignoring ones that are absent):

``name``
    Short id (``"backtrader"``, ``"fast"``); it becomes :attr:`RunResult.engine` and part of
    the cache key, so two engines never share cached results.
``supports(config) -> str | None``
    ``None`` when the engine runs this config exactly as the backtrader reference would;
    otherwise a one-line reason shown to the user (``"strategy 'dca' has no fast kernel"``).
    Must be cheap and must not raise.
``run_batch(configs, data) -> list[RunResult]``
    Run every config (in order, one result each). ``data`` is a :class:`MarketData` holding
    every candle/mark/funding window the batch needs (already loaded and validated), or
    ``None``, in which case the engine loads what it needs itself. Each result's ``engine``
    names the engine that produced it (a fast engine may hand a config it finds it cannot
    run to backtrader; the executor keeps what the result says). It must be a module-level
    function (it is pickled by reference to reach process-pool and Dask workers) and must not
    print. Results need not carry report-only fields (``timeline``, ``fills``).

:func:`plan_engines` chooses per config: ``"auto"`` runs on ``fast`` every config it supports
(when it is registered) and the others on ``backtrader``, and says which and why; ``"fast"`` /
``"backtrader"`` force one and fail with every reason when it cannot run some config
(:func:`resolve_engine`). Parity of the two engines is the contract (``tests/test_fast_*``), so
a split changes no row; each result names the engine that produced it
(:attr:`RunResult.engine`).

Dask: a task is a batch of configs of one engine; the :class:`MarketData` is scattered once
with ``broadcast=True`` so every worker receives it once, not once per task. Local pool: the
data reaches each worker process once, through the pool initializer.

Cache: ``cache_dir/<config hash>-<engine>.json`` holds :meth:`RunResult.to_dict`; an entry
that is missing or half-written is recomputed, so an interrupted study resumes.
"""

from __future__ import annotations

import gc
import importlib
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liqbt.config import RunConfig
from liqbt.core.errors import ValidationError
from liqbt.outputs import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

    from liqbt.runner import RunResult

#: modules that register optional engines when imported (absent ones are skipped)
ENGINE_MODULES: tuple[str, ...] = ("liqbt.fast",)

#: ``(index, result)`` callback, called once per config as its result becomes available
Progress = Callable[[int, "RunResult"], None]


@dataclass
class MarketData:
    """Loaded, validated market data windows, keyed by what the runner asks for.

    Keys are ``(kind, path, start, end)`` with ``kind`` in ``candles | mark | funding`` and
    ``start``/``end`` the config's backtest window (``None`` = open). Values are the frames
    :func:`liqbt.data.load_candles` / :func:`liqbt.data.load_funding` return for exactly those
    arguments, so a run on preloaded data is identical to a run that loads its own.
    """

    frames: dict[tuple[str, str, str | None, str | None], pd.DataFrame] = field(
        default_factory=dict)
    #: what an engine derives from the frames (the fast engine's arrays), memoized here so
    #: a worker converts each window once for all the configs it runs, not once per config
    derived: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def get(self, kind: str, path: str | Path, start: str | None,
            end: str | None) -> pd.DataFrame:
        """The frame for ``kind`` of ``path`` in ``[start, end)``, loading it on a miss."""
        key = (kind, str(path), _text(start), _text(end))
        frame = self.frames.get(key)
        if frame is None:
            from liqbt.data import load_candles, load_funding

            frame = (load_funding(path, start=start, end=end) if kind == "funding"
                     else load_candles(path, kind=kind, start=start, end=end))
            self.frames[key] = frame
        return frame


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def load_market_data(configs: Sequence[RunConfig]) -> MarketData:
    """Load every window the configs read, each distinct ``(file, window)`` once."""
    data = MarketData()
    for cfg in configs:
        start, end = cfg.backtest.start, cfg.backtest.end
        for m in cfg.markets:
            data.get("candles", m.candles, start, end)
            if m.mark is not None:
                data.get("mark", m.mark, start, end)
            if m.funding is not None:
                data.get("funding", m.funding, start, end)
    return data


@dataclass(frozen=True)
class Engine:
    """A backtest engine (see the module docstring for the contract)."""

    name: str
    supports: Callable[[RunConfig], str | None]
    run_batch: Callable[[Sequence[RunConfig], MarketData | None], list[RunResult]]


_ENGINES: dict[str, Engine] = {}


def register_engine(engine: Engine) -> None:
    """Make ``engine`` available to :func:`resolve_engine` (replaces one of the same name)."""
    _ENGINES[engine.name] = engine


def engines() -> dict[str, Engine]:
    """Registered engines by name (optional engine modules imported first)."""
    for module in ENGINE_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # optional engine not installed / not built
    return dict(_ENGINES)


def resolve_engine(choice: str, configs: Sequence[RunConfig]) -> tuple[Engine, str]:
    """Pick the engine for ``configs``.

    Parameters
    ----------
    choice
        ``"auto"``, ``"fast"`` or ``"backtrader"``.
    configs
        Every config that will run.

    Returns
    -------
    (Engine, reason)
        ``reason`` says which engine was chosen and why (shown to the user).

    Raises
    ------
    ValidationError
        Unknown choice, or a forced engine that cannot run some config (every reason listed).
    """
    known = engines()
    if choice not in ("auto", *known):
        names = ", ".join(["auto", *known])
        raise ValidationError([f"--engine {choice!r}: unknown (known: {names}; the fast "
                               "engine is listed once it is installed)"])
    if choice == "auto":
        fast = known.get("fast")
        if fast is None:
            return known["backtrader"], "backtrader engine (fast engine not available)"
        reasons = _unsupported(fast, configs)
        if not reasons:
            return fast, "fast engine (supports every config)"
        return known["backtrader"], f"backtrader engine (fast engine: {reasons[0]})"
    engine = known[choice]
    reasons = _unsupported(engine, configs)
    if reasons:
        raise ValidationError([f"--engine {choice}: {r}" for r in reasons])
    return engine, f"{choice} engine (requested)"


def plan_engines(choice: str, configs: Sequence[RunConfig]) -> tuple[list[Engine], str]:
    """The engine of each config, and a sentence saying which ran what and why.

    ``"auto"``: the fast engine for every config it supports, backtrader for the rest (a
    bundled bot on a covered account runs fast, a user's strategy file on backtrader);
    ``"fast"`` / ``"backtrader"``: that engine for all (:func:`resolve_engine`'s errors).
    """
    if choice != "auto":
        engine, reason = resolve_engine(choice, configs)
        return [engine] * len(configs), reason
    known = engines()
    fast, reference = known.get("fast"), known["backtrader"]
    if fast is None:
        return [reference] * len(configs), "backtrader engine (fast engine not available)"
    why = [fast.supports(c) for c in configs]
    slow = list(dict.fromkeys(r for r in why if r is not None))
    if not slow:
        return [fast] * len(configs), "fast engine (supports every config)"
    if all(r is not None for r in why):
        return [reference] * len(configs), f"backtrader engine (fast engine: {slow[0]})"
    n_slow = sum(r is not None for r in why)
    return ([fast if r is None else reference for r in why],
            f"fast engine for {len(configs) - n_slow} runs, backtrader engine for {n_slow} "
            f"(fast engine: {'; '.join(slow)})")


def _unsupported(engine: Engine, configs: Sequence[RunConfig]) -> list[str]:
    return list(dict.fromkeys(r for c in configs if (r := engine.supports(c)) is not None))


# --------------------------------------------------------------------------------------------
# the reference engine: backtrader
# --------------------------------------------------------------------------------------------

def _bt_supports(config: RunConfig) -> str | None:
    return None


def _bt_run_batch(configs: Sequence[RunConfig], data: MarketData | None) -> list[RunResult]:
    from liqbt.runner import run_config

    out = []
    for cfg in configs:
        result = run_config(cfg, timeline=False, progress=False, data=data)
        # per-bar equity is only needed inside the run (drawdown); don't ship it back
        result.timeline = {}
        result.fills = []
        out.append(result)
        # a finished backtest is a web of reference cycles (cerebro, feeds, broker, strategy,
        # analyzers): free it now, so a worker holds one run at a time instead of several
        gc.collect()
    return out


BACKTRADER = Engine("backtrader", _bt_supports, _bt_run_batch)
register_engine(BACKTRADER)


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------

def _cache_path(cache_dir: Path, config: RunConfig, engine: str) -> Path:
    return cache_dir / f"{config.config_hash()}-{engine}.json"


def _read_cache(path: Path) -> RunResult | None:
    from liqbt.runner import RunResult

    try:
        return RunResult.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # missing, half-written (interrupted) or from an older version: recompute


def _write_cache(path: Path, result: RunResult) -> None:
    # write-then-rename: an interrupted write never leaves a truncated cache entry
    atomic_write_text(path, json.dumps(result.to_dict(), sort_keys=True))


# --------------------------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------------------------

@dataclass
class Execution:
    """What :func:`execute_detailed` did: results in config order and how they were obtained.

    ``engine`` is the engine's name, or ``"fast+backtrader"`` when ``auto`` split the runs
    (each result's :attr:`RunResult.engine` says which produced it)."""

    results: list[RunResult]
    engine: str
    reason: str
    computed: int = 0
    cached: int = 0


def execute(
    configs: Sequence[RunConfig],
    engine: str = "auto",
    scheduler: str | Any | None = None,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
) -> list[RunResult]:
    """Run every config and return one :class:`RunResult` per config, in order.

    Parameters
    ----------
    configs
        Validated configs.
    engine
        ``"auto"`` (the fast engine for each config it supports, backtrader for the
        others: :func:`plan_engines`), ``"fast"`` or ``"backtrader"``.
    scheduler
        ``None`` (this machine), a Dask scheduler address ``tcp://HOST:PORT``, a
        ``distributed.Client`` or a ``distributed.LocalCluster``.
    progress
        ``progress(index, result)`` once per config when its result is available (cached
        results first).
    cache_dir
        Per-run result cache keyed by config hash + engine; ``None`` disables it.
    workers
        Local processes (default: CPU count; 1 runs in this process). Ignored with Dask.
    batch_size
        Configs per task (default: enough batches to keep every worker busy 4 times over).
    """
    return execute_detailed(configs, engine, scheduler, progress, cache_dir, workers,
                            batch_size).results


def execute_detailed(
    configs: Sequence[RunConfig],
    engine: str = "auto",
    scheduler: str | Any | None = None,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
) -> Execution:
    """:func:`execute`, also reporting the engine used and how many results were cached."""
    plan, reason = plan_engines(engine, configs)
    cache = Path(cache_dir) if cache_dir is not None else None
    results: list[RunResult | None] = [None] * len(configs)
    todo: list[int] = []
    for i, cfg in enumerate(configs):
        hit = _read_cache(_cache_path(cache, cfg, plan[i].name)) if cache is not None else None
        if hit is not None:
            results[i] = hit
            if progress:
                progress(i, hit)
        else:
            todo.append(i)
    cached = len(configs) - len(todo)

    def done(i: int, result: RunResult) -> None:
        # the result names the engine that produced it (the fast engine hands a config it
        # cannot walk after all, e.g. markets on different clocks, to backtrader)
        results[i] = result
        if cache is not None:
            _write_cache(_cache_path(cache, configs[i], plan[i].name), result)
        if progress:
            progress(i, result)

    if todo:
        data = load_market_data([configs[i] for i in todo])
        groups: dict[str, list[int]] = {}
        for i in todo:
            groups.setdefault(plan[i].name, []).append(i)
        if scheduler is not None:
            _run_dask(groups, plan, scheduler, configs, data, done, batch_size)
        else:
            n = min(workers or os.cpu_count() or 1, len(todo))
            tasks = [(plan[b[0]], b) for g in groups.values() for b in _batches(g, n, batch_size)]
            if n <= 1:
                for chosen, batch in tasks:
                    # one config at a time here: progress is reported per run
                    for i in batch:
                        done(i, chosen.run_batch([configs[i]], data)[0])
            else:
                with ProcessPoolExecutor(max_workers=n, initializer=_set_worker_data,
                                         initargs=(data,)) as pool:
                    futures = {pool.submit(_pool_batch, chosen, [configs[i] for i in b]): b
                               for chosen, b in tasks}
                    for fut in as_completed(futures):
                        for i, res in zip(futures[fut], fut.result(), strict=True):
                            done(i, res)
    done_results = [r for r in results if r is not None]
    names = {r.engine for r in done_results} or {e.name for e in plan} or {"backtrader"}
    return Execution(done_results, "+".join(sorted(names)), reason, computed=len(todo),
                     cached=cached)


def _batches(todo: list[int], workers: int, batch_size: int | None) -> list[list[int]]:
    size = batch_size or max(1, math.ceil(len(todo) / (max(workers, 1) * 4)))
    return [todo[k:k + size] for k in range(0, len(todo), size)]


_WORKER_DATA: MarketData | None = None


def _set_worker_data(data: MarketData) -> None:
    global _WORKER_DATA
    _WORKER_DATA = data


def _pool_batch(engine: Engine, configs: list[RunConfig]) -> list[RunResult]:
    return engine.run_batch(configs, _WORKER_DATA)


def _dask_batch(engine: Engine, configs: list[RunConfig],
                data: MarketData | None) -> list[RunResult]:
    return engine.run_batch(configs, data)


def _run_dask(
    groups: dict[str, list[int]], plan: Sequence[Engine], scheduler: str | Any,
    configs: Sequence[RunConfig], data: MarketData, done: Callable[[int, RunResult], None],
    batch_size: int | None,
) -> None:
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    own = isinstance(scheduler, str | LocalCluster)
    client = Client(scheduler) if own else scheduler
    try:
        nworkers = max(1, len(client.scheduler_info().get("workers", {})))
        tasks = [(plan[b[0]], b) for g in groups.values()
                 for b in _batches(g, nworkers, batch_size)]
        # the market data travels to every worker once, not once per task
        shared = client.scatter(data, broadcast=True)
        # pure=False: identical batches still each get their own task (and cache writes)
        futures = [client.submit(_dask_batch, engine, [configs[i] for i in b], shared,
                                 pure=False) for engine, b in tasks]
        index = {f.key: b for f, (_, b) in zip(futures, tasks, strict=True)}
        for fut in dask_completed(futures):
            for i, res in zip(index[fut.key], fut.result(), strict=True):
                done(i, res)
    finally:
        if own:
            client.close()


__all__ = [
    "BACKTRADER",
    "ENGINE_MODULES",
    "Engine",
    "Execution",
    "MarketData",
    "engines",
    "execute",
    "execute_detailed",
    "load_market_data",
    "plan_engines",
    "register_engine",
    "resolve_engine",
]
