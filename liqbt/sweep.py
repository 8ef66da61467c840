"""Parameter sweeps: the cartesian product of overrides, run through :mod:`liqbt.executor`.

The executor caches each run's result under ``cache_dir`` (keyed by config hash and engine),
so an interrupted sweep resumes where it stopped and a repeated sweep costs nothing. Runs are
deterministic, so a local pool and a Dask cluster give identical rows.
"""

from __future__ import annotations

import dataclasses
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
    """A sweep row: the run summary, its outcome (:func:`liqbt.outcome.classify`) and
    reason, the config hash and the engine that ran it."""
    from liqbt.outcome import classify

    row = result.summary()
    c = classify(result)
    row["outcome"] = c.outcome
    row["outcome_reason"] = c.reason
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
    return [*RunResult(**empty).summary(), "outcome", "outcome_reason", "config_hash",
            "engine"]


#: ``--sort`` value of the default risk-aware order (see :func:`sort_rows`)
RISK = "risk"


def check_sort_key(key: str | None, swept: Sequence[str]) -> None:
    """Raise :class:`ValidationError` when ``key`` is not ``risk`` nor a row column (before
    any run)."""
    known = [RISK, *swept, *row_columns()]
    if key and key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError([f"--sort {key!r}: no such column{hint}; columns: "
                               f"{', '.join(known)}"])


def heatmap_axes(spec: str | None, swept: Sequence[str]) -> tuple[str, str] | None:
    """The two swept keys a sweep report's heatmaps use: ``spec`` (``"X,Y"``) when given,
    else ``leverage, margin_mode`` when both are swept, else the first two swept keys
    (``None`` with fewer than two)."""
    if spec:
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if len(parts) != 2 or parts[0] == parts[1]:
            raise ValidationError([f"--heatmap {spec!r}: give two different swept keys X,Y"])
        bad = [p for p in parts if p not in swept]
        if bad:
            raise ValidationError([f"--heatmap {spec!r}: {', '.join(bad)} not swept (swept: "
                                   f"{', '.join(swept)})"])
        return parts[0], parts[1]
    if "leverage" in swept and "margin_mode" in swept:
        return "leverage", "margin_mode"
    return (swept[0], swept[1]) if len(swept) >= 2 else None


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


def sort_rows(rows: Iterable[dict[str, Any]], key: str | None = RISK,
              risk_aware: bool = True) -> list[dict[str, Any]]:
    """Rows in risk-aware order (the default of every sweep table).

    The rule: rows are grouped by outcome, best first (survived, bot stopped, not tradable,
    liquidated, wiped out; :data:`liqbt.outcome.OUTCOMES`); within a group, by ``key``
    descending (``risk``: the return), ``None`` values last. So a liquidated run never ranks
    above a survivor, however high its return. ``risk_aware=False`` sorts by ``key`` only.
    """
    from liqbt.outcome import OUTCOMES

    rows = list(rows)
    if not key:
        return rows
    col = "return_pct" if key == RISK else key
    if rows and col not in rows[0]:
        raise ValidationError([f"--sort {key!r}: no such column (known: {', '.join(rows[0])})"])

    def group(r: dict[str, Any]) -> int:
        if not risk_aware:
            return 0
        out = r.get("outcome")
        return OUTCOMES.index(out) if out in OUTCOMES else len(OUTCOMES)

    def order(r: dict[str, Any]) -> tuple[int, int, float]:
        v = r.get(col)
        missing = v is None or not isinstance(v, int | float | bool)
        return (group(r), 1 if missing else 0, 0.0 if missing else -float(v))

    if rows and any(not isinstance(r.get(col), int | float | bool | None) for r in rows):
        # a text column: plain string order within each outcome group
        return sorted(rows, key=lambda r: (group(r), str(r.get(col))))
    return sorted(rows, key=order)


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
class LadderStep:
    """One rung of the max-leverage ladder: a leverage, its outcome and its risk figures.

    ``safe`` = survived (:mod:`liqbt.outcome`) with at least the requested distance to
    liquidation (a run without any liquidation price, e.g. cross 1x, is at no distance limit).
    """

    margin_mode: str
    leverage: float
    outcome: str
    reason: str | None
    time: str | None
    min_distance_pct: float | None
    return_pct: float | None
    liquidations: int
    safe: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MaxLeverage:
    """Result of :func:`find_max_leverage` for one margin mode.

    ``leverage`` is the highest candidate such that it and every lower *tradable* candidate
    are safe (``None`` when the lowest tradable one is not); ``distance_pct`` its closest
    approach to liquidation (%); ``failed_at`` the lowest tradable candidate that is not safe;
    ``ladder`` every candidate, lowest first.
    """

    margin_mode: str
    leverage: float | None
    distance_pct: float | None
    failed_at: float | None
    runs: int
    ladder: tuple[LadderStep, ...]
    min_distance_pct: float = 5.0
    #: the engine(s) that ran the ladder (``fast``, ``backtrader`` or ``fast+backtrader``)
    #: and why (:func:`liqbt.executor.plan_engines`)
    engine: str = ""
    engine_reason: str = ""

    @property
    def tested(self) -> tuple[tuple[float, bool], ...]:
        """``(leverage, safe)`` per candidate."""
        return tuple((s.leverage, s.safe) for s in self.ladder)

    @property
    def explanation(self) -> str:
        """One line: the answer and what limits it."""
        if self.leverage is None:
            first = next((s for s in self.ladder if s.outcome != "not tradable"), None)
            if first is None:
                return f"{self.margin_mode}: no candidate is tradable"
            return (f"{self.margin_mode}: none safe; {first.leverage:g}x is {first.outcome}"
                    + (f" ({first.reason})" if first.reason else ""))
        text = f"{self.margin_mode}: {self.leverage:g}x"
        limit = next((s for s in self.ladder if s.leverage == self.failed_at), None)
        if limit is not None:
            why = (limit.outcome if limit.outcome != "survived" else
                   f"only {limit.min_distance_pct:.2f} % from liquidation "
                   f"(< {self.min_distance_pct:g} %)")
            text += f"; {limit.leverage:g}x is {why}" + (
                f" ({limit.reason})" if limit.reason else "")
        untradable = next((s for s in self.ladder if s.leverage > self.leverage
                           and s.outcome == "not tradable"), None)
        if untradable is not None and limit is None:
            text += f"; {untradable.leverage:g}x is not tradable ({untradable.reason})"
        return text


def leverage_candidates(maximum: float, step: float = 1.0) -> list[float]:
    """1, 1+step, ... up to ``maximum`` (inclusive)."""
    n = int((maximum - 1) / step + 1e-9)
    return [1 + k * step for k in range(n + 1)]


def _tier_cap(config: RunConfig) -> float:
    from liqbt.core.profile import load_profile

    profile = load_profile(config.account.exchange)
    return min(profile.symbol(m.symbol).tiers.tiers[0].max_leverage for m in config.markets)


def leverage_ladder(
    config: RunConfig,
    margin_modes: Sequence[str],
    candidates: Sequence[float] | None = None,
    maximum: float = 125,
    step: float = 1.0,
    min_distance_pct: float = 5.0,
    progress: Callable[[int, int, LadderStep], None] | None = None,
    **execute_options: Any,
) -> list[MaxLeverage]:
    """Run every candidate leverage in every margin mode and answer per mode.

    Every candidate is run (no monotonicity assumption: a bot sized by leverage need not
    survive less at a higher leverage) and classified by :func:`liqbt.outcome.classify`;
    candidates the config refuses (a position above the tier's cap at that leverage) are
    ``not tradable`` without a run. The answer per mode is the highest leverage such that it
    and every lower tradable candidate survived with at least ``min_distance_pct`` to
    liquidation.

    Parameters
    ----------
    config
        The base config.
    margin_modes
        ``cross`` / ``isolated``.
    candidates
        Leverages to test; default ``1, 1+step, ... min(maximum, tier maximum)``.
    min_distance_pct
        Required closest distance to liquidation, % of the mark.
    progress
        ``progress(done, total, step)`` once per candidate as its outcome is known.
    execute_options
        Passed to :func:`liqbt.executor.execute_detailed` (``engine``, ``scheduler``,
        ``workers``, ``cache_dir``).
    """
    from liqbt import outcome as oc
    from liqbt.executor import execute_detailed

    levs = sorted(set(candidates)) if candidates else leverage_candidates(
        min(maximum, _tier_cap(config)), step)
    steps: dict[tuple[str, float], LadderStep] = {}
    runnable: list[tuple[str, float, RunConfig]] = []
    total = len(levs) * len(margin_modes)
    for mode in margin_modes:
        for lev in levs:
            try:
                cfg = config.with_overrides({"leverage": lev, "margin_mode": mode})
            except ValidationError as exc:
                steps[(mode, lev)] = LadderStep(mode, lev, oc.NOT_TRADABLE,
                                                "; ".join(exc.problems), None, None, None, 0,
                                                False)
                if progress:
                    progress(len(steps), total, steps[(mode, lev)])
                continue
            runnable.append((mode, lev, cfg))

    def tick(i: int, result: Any) -> None:
        mode, lev, _ = runnable[i]
        c = oc.classify(result)
        dist = result.min_liquidation_distance_pct
        safe = c.survived and (dist is None or dist >= min_distance_pct)
        steps[(mode, lev)] = LadderStep(mode, lev, c.outcome, c.reason, c.time, dist,
                                        result.return_pct, result.liquidation_count, safe)
        if progress:
            progress(len(steps), total, steps[(mode, lev)])

    run = execute_detailed([cfg for _, _, cfg in runnable], progress=tick, **execute_options)
    out = []
    for mode in margin_modes:
        ladder = tuple(steps[(mode, lev)] for lev in levs)
        best: LadderStep | None = None
        failed: LadderStep | None = None
        for st in ladder:
            if st.outcome == oc.NOT_TRADABLE:
                continue
            if not st.safe:
                failed = st
                break
            best = st
        out.append(MaxLeverage(
            mode, best.leverage if best else None, best.min_distance_pct if best else None,
            failed.leverage if failed else None,
            sum(1 for m, _, _ in runnable if m == mode), ladder, min_distance_pct,
            run.engine if runnable else "", run.reason if runnable else ""))
    return out


def find_max_leverage(
    config: RunConfig, margin_mode: str, maximum: float = 125, step: float = 1.0,
    min_distance_pct: float = 5.0, **options: Any,
) -> MaxLeverage:
    """:func:`leverage_ladder` for one margin mode."""
    return leverage_ladder(config, [margin_mode], maximum=maximum, step=step,
                           min_distance_pct=min_distance_pct, **options)[0]


__all__ = [
    "LadderStep",
    "MaxLeverage",
    "SweepOutcome",
    "SweepPoint",
    "expand",
    "find_max_leverage",
    "heatmap_axes",
    "leverage_candidates",
    "leverage_ladder",
    "run_point",
    "run_sweep",
    "sort_rows",
    "write_rows",
]
