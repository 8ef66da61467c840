"""Leverage studies over many runs: the survival map and the risk-aware optimizer.

Both build configs from a base config, run them through :func:`liqbt.executor.execute`
(fast engine when it supports them, locally or on Dask) and classify every run with
:func:`liqbt.outcome.classify`.

Survival map (:func:`survival_study`)
    The bot starts at every ``every`` step across the data and runs for ``horizon``, at each
    leverage and margin mode. Per run: outcome, hours to liquidation, closest distance to
    liquidation, return. Per leverage and mode: the survival probability = survived runs /
    tradable runs (a start where the position could not be opened is not counted as survived
    nor as failed).

Optimizer (:func:`optimize`)
    optuna's TPE sampler with a seed proposes parameter sets in fixed-size rounds (so a
    local run and a Dask run see the same proposals and give identical trials). A trial is
    *feasible* only when every window survived (:data:`liqbt.outcome.SURVIVED`) and every
    ``--constraint`` holds; infeasible trials are told to optuna as constraint violations
    (``constraints_func``), never merely as low scores, and the best trial is the best
    feasible one.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from liqbt import outcome as oc
from liqbt.config import RunConfig
from liqbt.core.errors import ValidationError

# --------------------------------------------------------------------------------------------
# survival map
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurvivalRun:
    """One start date × leverage × margin mode of a survival study."""

    start: str
    end: str
    leverage: float
    margin_mode: str
    outcome: str
    reason: str | None
    hours_to_liquidation: float | None
    min_distance_pct: float | None
    return_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (a CSV/JSON row)."""
        return asdict(self)


@dataclass(frozen=True)
class SurvivalCell:
    """Aggregate of one leverage × margin mode over every start date."""

    leverage: float
    margin_mode: str
    runs: int
    tradable: int
    survived: int
    liquidated: int
    wiped_out: int
    stopped: int
    survival_pct: float | None
    median_hours_to_liquidation: float | None
    worst_distance_pct: float | None
    mean_return_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (a CSV/JSON row)."""
        return asdict(self)


@dataclass
class SurvivalStudy:
    """Every run, the per-cell aggregates and the worst start dates."""

    runs: list[SurvivalRun]
    cells: list[SurvivalCell]
    worst_starts: list[dict[str, Any]]
    engine: str = ""
    engine_reason: str = ""


def parse_duration(text: str, option: str) -> Any:
    """``"1D"``, ``"12h"``, ``"30D"`` as a positive ``pandas.Timedelta``."""
    import pandas as pd

    try:
        value = pd.Timedelta(str(text).strip())
    except (ValueError, TypeError):
        value = None
    if value is None or value <= pd.Timedelta(0):
        raise ValidationError([f"{option} {text!r}: expected a positive duration such as "
                               "1D, 12h or 30D"])
    return value


def _iso(ts: Any) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def survival_windows(config: RunConfig, every: str, horizon: str) -> list[tuple[str, str]]:
    """``(start, end)`` windows of length ``horizon`` every ``every`` across the config's data
    (its first market's candles inside the config's backtest window), the last one ending at
    the end of the data at the latest."""
    from liqbt.data import load_candles

    step = parse_duration(every, "--every")
    span = parse_duration(horizon, "--horizon")
    market = config.markets[0]
    frame = load_candles(market.candles, kind="candles", start=config.backtest.start,
                         end=config.backtest.end)
    if len(frame) < 2:
        raise ValidationError([f"{market.candles}: fewer than two bars in the backtest window"])
    bar = frame.index[1] - frame.index[0]
    first, stop = frame.index[0], frame.index[-1] + bar
    windows = []
    t = first
    while t + span <= stop:
        windows.append((_iso(t), _iso(t + span)))
        t += step
    if not windows:
        raise ValidationError([f"--horizon {horizon}: longer than the data "
                               f"({_iso(first)} → {_iso(stop)})"])
    return windows


def survival_study(
    config: RunConfig,
    leverages: Sequence[float],
    margin_modes: Sequence[str],
    every: str = "1D",
    horizon: str = "30D",
    progress: Callable[[int, int, SurvivalRun], None] | None = None,
    **execute_options: Any,
) -> SurvivalStudy:
    """Run the bot from every start date for ``horizon`` at each leverage and margin mode.

    Parameters
    ----------
    config
        Base config (its window bounds the start dates).
    leverages, margin_modes
        The grid of the map.
    every, horizon
        Start-date step and run length (pandas durations: ``1D``, ``12h``...).
    progress
        ``progress(done, total, run)`` per run.
    execute_options
        Passed to :func:`liqbt.executor.execute_detailed` (``engine``, ``scheduler``,
        ``workers``, ``cache_dir``).
    """
    import pandas as pd

    from liqbt.executor import execute_detailed

    windows = survival_windows(config, every, horizon)
    keys: list[tuple[str, str, float, str]] = []
    configs: list[RunConfig] = []
    done: dict[tuple[str, str, float, str], SurvivalRun] = {}
    total = len(windows) * len(leverages) * len(margin_modes)
    for start, end in windows:
        for mode in margin_modes:
            for lev in leverages:
                key = (start, end, float(lev), mode)
                try:
                    cfg = config.with_overrides({"start": start, "end": end, "leverage": lev,
                                                 "margin_mode": mode})
                except ValidationError as exc:
                    done[key] = SurvivalRun(start, end, float(lev), mode, oc.NOT_TRADABLE,
                                            "; ".join(exc.problems), None, None, None)
                    if progress:
                        progress(len(done), total, done[key])
                    continue
                keys.append(key)
                configs.append(cfg)

    def tick(i: int, result: Any) -> None:
        start, end, lev, mode = keys[i]
        c = oc.classify(result)
        hours = None
        if c.outcome in (oc.LIQUIDATED, oc.WIPED_OUT) and c.time:
            hours = (pd.Timestamp(c.time) - pd.Timestamp(start)).total_seconds() / 3600
        done[keys[i]] = SurvivalRun(start, end, lev, mode, c.outcome, c.reason, hours,
                                    result.min_liquidation_distance_pct, result.return_pct)
        if progress:
            progress(len(done), total, done[keys[i]])

    run = execute_detailed(configs, progress=tick, **execute_options)
    runs = [done[(s, e, float(lev), m)] for s, e in windows for m in margin_modes
            for lev in leverages]
    cells = [_cell(float(lev), mode, [r for r in runs if r.leverage == float(lev)
                                      and r.margin_mode == mode])
             for mode in margin_modes for lev in leverages]
    return SurvivalStudy(runs, cells, _worst_starts(runs), run.engine, run.reason)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def _cell(lev: float, mode: str, runs: list[SurvivalRun]) -> SurvivalCell:
    tradable = [r for r in runs if r.outcome != oc.NOT_TRADABLE]
    survived = sum(r.outcome == oc.SURVIVED for r in tradable)
    dists = [r.min_distance_pct for r in tradable if r.min_distance_pct is not None]
    rets = [r.return_pct for r in tradable if r.return_pct is not None]
    return SurvivalCell(
        lev, mode, len(runs), len(tradable), survived,
        sum(r.outcome == oc.LIQUIDATED for r in tradable),
        sum(r.outcome == oc.WIPED_OUT for r in tradable),
        sum(r.outcome == oc.STOPPED for r in tradable),
        survived / len(tradable) * 100 if tradable else None,
        _median([r.hours_to_liquidation for r in tradable
                 if r.hours_to_liquidation is not None]),
        min(dists) if dists else None,
        sum(rets) / len(rets) if rets else None,
    )


def _worst_starts(runs: list[SurvivalRun], n: int = 5) -> list[dict[str, Any]]:
    """Start dates with the most failed runs (liquidated, wiped out, stopped), then the
    lowest mean return."""
    by: dict[str, list[SurvivalRun]] = {}
    for r in runs:
        by.setdefault(r.start, []).append(r)
    scored = []
    for start, rs in by.items():
        failed = [r for r in rs if r.outcome in (oc.LIQUIDATED, oc.WIPED_OUT, oc.STOPPED)]
        rets = [r.return_pct for r in rs if r.return_pct is not None]
        lowest = min((r.leverage for r in failed), default=None)
        scored.append({
            "start": start, "failed": len(failed), "runs": len(rs),
            "lowest_failing_leverage": lowest,
            "mean_return_pct": sum(rets) / len(rets) if rets else None,
        })
    scored.sort(key=lambda d: (-d["failed"], d["mean_return_pct"]
                               if d["mean_return_pct"] is not None else math.inf, d["start"]))
    return [d for d in scored if d["failed"]][:n] or scored[:n]


# --------------------------------------------------------------------------------------------
# optimizer
# --------------------------------------------------------------------------------------------

#: short names accepted in --objective / --constraint for sweep-row columns
ALIASES = {
    "min_liq_distance_pct": "min_liquidation_distance_pct",
    "liq_distance_pct": "min_liquidation_distance_pct",
    "drawdown_pct": "max_drawdown_pct",
}

#: objectives where lower is better (everything else is maximized)
MINIMIZE = frozenset({"max_drawdown_pct", "fees_paid", "funding_paid",
                      "max_drawdown_duration_hours"})

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class ParamSpace:
    """One searched parameter: ``key`` (a :meth:`RunConfig.with_overrides` key) and either an
    int/float range or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Ask optuna's ``trial`` for a value."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high),
                                     step=int(self.step or 1))
        return trial.suggest_float(self.key, float(self.low), float(self.high),
                                   step=self.step)


_RANGE = re.compile(r"^\s*([-+0-9.eE]+)\s*\.\.\s*([-+0-9.eE]+)\s*(?::\s*([-+0-9.eE]+))?\s*$")


def parse_param(text: str) -> ParamSpace:
    """``KEY=LO..HI[:STEP]`` (ints when both bounds are integers) or ``KEY=A,B,C``."""
    from liqbt.config import parse_value

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ValidationError([f"--param {text!r}: use KEY=LO..HI[:STEP] or KEY=A,B,C"])
    m = _RANGE.match(raw)
    if m:
        lo_s, hi_s, step_s = m.groups()
        try:
            lo, hi = float(lo_s), float(hi_s)
            step = float(step_s) if step_s else None
        except ValueError:
            raise ValidationError([f"--param {text!r}: bounds must be numbers"]) from None
        if not lo < hi or (step is not None and step <= 0):
            raise ValidationError([f"--param {text!r}: need LO < HI and STEP > 0"])
        integer = all(re.fullmatch(r"[-+]?\d+", s.strip()) for s in (lo_s, hi_s)) and (
            step_s is None or re.fullmatch(r"[-+]?\d+", step_s.strip()) is not None)
        return ParamSpace(key, lo, hi, step, integer)
    choices = tuple(parse_value(v.strip()) for v in raw.split(",") if v.strip())
    if len(choices) < 2:
        raise ValidationError([f"--param {text!r}: give a range LO..HI or at least two "
                               "choices A,B"])
    return ParamSpace(key, choices=choices)


@dataclass(frozen=True)
class Constraint:
    """``column OP value`` on a run's summary row."""

    column: str
    op: str
    value: float

    def violation(self, row: dict[str, Any]) -> float:
        """How far ``row`` is from satisfying the constraint (``<= 0`` = satisfied), the form
        optuna's ``constraints_func`` takes. A missing distance to liquidation (no liquidation
        price at all) satisfies ``>=`` / ``>`` bounds on it."""
        v = row.get(self.column)
        if v is None:
            if self.column == "min_liquidation_distance_pct" and self.op in (">=", ">"):
                return -1.0
            return 1.0
        v = float(v)
        if _OPS[self.op](v, self.value):
            return -abs(v - self.value) if self.op != "==" else 0.0
        return abs(v - self.value) or 1e-9

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value:g}"


def parse_constraint(text: str, columns: Sequence[str]) -> Constraint:
    """``column>=10`` (``>=, <=, >, <, ==``); the column must be a summary-row column."""
    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|>|<)\s*([-+0-9.eE]+)\s*", text)
    if not m:
        raise ValidationError([f"--constraint {text!r}: use COLUMN>=VALUE (or <=, >, <, ==)"])
    col = ALIASES.get(m.group(1), m.group(1))
    if col not in columns:
        raise ValidationError([f"--constraint {text!r}: no column {m.group(1)!r} (columns: "
                               f"{', '.join(columns)})"])
    try:
        value = float(m.group(3))
    except ValueError:
        raise ValidationError([f"--constraint {text!r}: {m.group(3)!r} is not a number"]) from None
    return Constraint(col, m.group(2), value)


def resolve_objective(name: str, columns: Sequence[str]) -> tuple[str, str]:
    """``(column, direction)`` for ``--objective``; ``direction`` is ``maximize`` unless the
    column is a cost (:data:`MINIMIZE`)."""
    col = ALIASES.get(name, name)
    numeric = [c for c in columns if c not in ("label", "first_liquidation", "stopped_reason",
                                               "stopped_kind", "stopped_time", "wiped_out",
                                               "config_hash", "engine")]
    if col not in numeric:
        raise ValidationError([f"--objective {name!r}: not a result column (use one of "
                               f"{', '.join(numeric)})"])
    return col, "minimize" if col in MINIMIZE else "maximize"


@dataclass
class Trial:
    """One optimizer trial: its parameters, the aggregate score and feasibility."""

    number: int
    params: dict[str, Any]
    value: float | None
    feasible: bool
    outcome: str
    reason: str | None
    min_distance_pct: float | None
    return_pct: float | None
    windows: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """Flat row (table, CSV, JSON)."""
        return {"trial": self.number, **self.params, "value": self.value,
                "feasible": self.feasible, "outcome": self.outcome, "reason": self.reason,
                "min_liquidation_distance_pct": self.min_distance_pct,
                "return_pct": self.return_pct}


@dataclass
class Optimization:
    """All trials (in order), the best feasible one and how it was run."""

    trials: list[Trial]
    best: Trial | None
    objective: str
    direction: str
    engine: str = ""
    engine_reason: str = ""

    def ranked(self) -> list[Trial]:
        """Feasible trials best first, then the infeasible ones by trial number."""
        sign = -1 if self.direction == "maximize" else 1
        good = sorted((t for t in self.trials if t.feasible and t.value is not None),
                      key=lambda t: (sign * t.value, t.number))
        return good + [t for t in self.trials if t not in good]


def parse_windows(text: str | None) -> list[tuple[str, str]]:
    """``START..END,START..END`` (UTC dates/times) → windows; ``None`` → []."""
    if not text:
        return []
    out = []
    for part in text.split(","):
        a, sep, b = part.partition("..")
        if not sep or not a.strip() or not b.strip():
            raise ValidationError([f"--windows {part!r}: use START..END (e.g. "
                                   "2020-03-01..2020-03-16)"])
        out.append((a.strip(), b.strip()))
    return out


def optimize(
    config: RunConfig,
    space: Sequence[ParamSpace],
    objective: str = "return_pct",
    constraints: Sequence[Constraint] = (),
    trials: int = 50,
    seed: int = 0,
    windows: Sequence[tuple[str, str]] = (),
    batch: int = 8,
    progress: Callable[[Trial], None] | None = None,
    **execute_options: Any,
) -> Optimization:
    """Search ``space`` with optuna (TPE, seeded) for the best feasible ``objective``.

    Parameters
    ----------
    config
        Base config.
    space
        From :func:`parse_param`.
    objective
        A summary-row column (:func:`resolve_objective`); over several windows the score is
        the mean across windows.
    constraints
        From :func:`parse_constraint`; must hold in every window.
    trials, seed
        Number of trials; the sampler's seed (same seed, same trials).
    windows
        ``(start, end)`` pairs; empty = the config's own window.
    batch
        Trials proposed per round (all run in one :func:`liqbt.executor.execute` call). Fixed,
        so that results do not depend on where the runs execute.
    execute_options
        Passed to :func:`liqbt.executor.execute_detailed`.
    """
    import optuna

    from liqbt.executor import execute_detailed
    from liqbt.sweep import result_row, row_columns

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    columns = row_columns()
    col, direction = resolve_objective(objective, columns)
    # optuna >= 5 takes constraints per trial (set_constraint); older versions read them
    # through the sampler's constraints_func
    per_trial = hasattr(optuna.trial.Trial, "set_constraint")
    sampler = (optuna.samplers.TPESampler(seed=seed, constraints_func=None) if per_trial else
               optuna.samplers.TPESampler(
                   seed=seed, constraints_func=lambda t: t.user_attrs["constraints"]))
    study = optuna.create_study(direction=direction, sampler=sampler)
    wins = list(windows) or [(None, None)]
    out: list[Trial] = []
    engine = reason = ""
    while len(out) < trials:
        asked = [study.ask() for _ in range(min(batch, trials - len(out)))]
        plans: list[tuple[int, int, RunConfig | None, str | None]] = []
        configs: list[RunConfig] = []
        params_of: list[dict[str, Any]] = []
        for k, tr in enumerate(asked):
            params = {p.key: p.suggest(tr) for p in space}
            params_of.append(params)
            for w, (start, end) in enumerate(wins):
                over = dict(params)
                if start is not None:
                    over.update({"start": start, "end": end})
                try:
                    cfg = config.with_overrides(over)
                except ValidationError as exc:
                    plans.append((k, w, None, "; ".join(exc.problems)))
                    continue
                plans.append((k, w, cfg, None))
                configs.append(cfg)
        run = execute_detailed(configs, **execute_options)
        engine, reason = run.engine, run.reason
        results = iter(run.results)
        rows_of: list[list[dict[str, Any]]] = [[] for _ in asked]
        for k, _w, cfg, problem in plans:
            if cfg is None:
                rows_of[k].append({"outcome": oc.NOT_TRADABLE, "reason": problem})
                continue
            res = next(results)
            row = result_row(cfg, res)
            c = oc.classify(res)
            row.update({"outcome": c.outcome, "reason": c.reason})
            rows_of[k].append(row)
        for k, tr in enumerate(asked):
            rows = rows_of[k]
            bad = next((r for r in rows if r["outcome"] != oc.SURVIVED), None)
            violations = [max((c.violation(r) for r in rows), default=0.0)
                          for c in constraints] if bad is None else []
            # a run that did not survive violates the survival constraint by 1
            survival = 1.0 if bad is not None else -1.0
            vals = [r.get(col) for r in rows]
            value = (sum(float(v) for v in vals) / len(vals)
                     if bad is None and all(v is not None for v in vals) else None)
            feasible = bad is None and all(v <= 0 for v in violations) and value is not None
            limits = [survival, *violations]
            if per_trial:
                for n, limit in enumerate(limits):
                    tr.set_constraint(f"c{n}", limit)
            else:
                tr.set_user_attr("constraints", limits)
            if value is None:
                # optuna needs a number: the worst possible one, but the constraint above is
                # what excludes the trial
                value_told = -1e12 if direction == "maximize" else 1e12
            else:
                value_told = value
            study.tell(tr, value_told)
            dists = [r.get("min_liquidation_distance_pct") for r in rows]
            dists = [d for d in dists if d is not None]
            rets = [r.get("return_pct") for r in rows if r.get("return_pct") is not None]
            broken = [str(c) for c, v in zip(constraints, violations, strict=False) if v > 0]
            trial = Trial(
                tr.number, params_of[k], value, feasible,
                bad["outcome"] if bad else ("constraint" if broken else oc.SURVIVED),
                bad.get("reason") if bad else ("violates " + ", ".join(broken)
                                               if broken else None),
                min(dists) if dists else None,
                sum(rets) / len(rets) if rets else None,
                [{k2: r.get(k2) for k2 in ("outcome", "return_pct",
                                           "min_liquidation_distance_pct", col)}
                 for r in rows],
            )
            out.append(trial)
            if progress:
                progress(trial)
    opt = Optimization(out, None, col, direction, engine, reason)
    ranked = opt.ranked()
    opt.best = ranked[0] if ranked and ranked[0].feasible else None
    return opt


__all__ = [
    "Constraint",
    "Optimization",
    "ParamSpace",
    "SurvivalCell",
    "SurvivalRun",
    "SurvivalStudy",
    "Trial",
    "optimize",
    "parse_constraint",
    "parse_duration",
    "parse_param",
    "parse_windows",
    "resolve_objective",
    "survival_study",
    "survival_windows",
]
