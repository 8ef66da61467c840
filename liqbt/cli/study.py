"""``liqbt max-leverage / survival / optimize``: leverage studies over many runs.

Parse, validate every option before any run, delegate to :mod:`liqbt.sweep` /
:mod:`liqbt.study`, print. Runs go through :mod:`liqbt.executor` (``--engine``, ``--scheduler``,
``--workers``, ``--cache-dir``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from liqbt.cli.run import _csv, _guard, _load, _modes, _table, precheck
from liqbt.core.errors import ValidationError


def _exec_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--engine, --scheduler, --workers, --cache-dir, --quiet, --json, --report."""
    for opt in reversed([
        click.option("--engine", default="auto", show_default=True,
                     help="auto (the fast engine for every run it covers, backtrader for "
                   "the others; says which ran), fast or backtrader."),
        click.option("--scheduler", default=None,
                     help="Dask scheduler address tcp://HOST:PORT (default: this machine)."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Local worker processes (default: CPU count)."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Per-run result cache (resumes an interrupted study)."),
        click.option("--report", "report_dir", type=click.Path(file_okay=False),
                     help="Write index.html into this folder."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
        click.option("--quiet", is_flag=True, help="No progress lines."),
    ]):
        fn = opt(fn)
    return fn


def _common_checks(configs: list[Any], engine: str, scheduler: str | None,
                   report_dir: str | None) -> list[Callable[[], Any]]:
    from liqbt import sweep as sw
    from liqbt.executor import resolve_engine
    from liqbt.outputs import check_report_dir

    return [
        lambda: resolve_engine(engine, configs),
        lambda: report_dir and check_report_dir(report_dir),
        lambda: scheduler and sw.check_scheduler(scheduler),
    ]


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(text, err=True)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f} %"


@click.command("max-leverage")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--margin-modes", default="cross,isolated", show_default=True,
              help="Comma-separated margin modes.")
@click.option("--leverage", "leverages", default=None,
              help="Comma-separated candidate leverages (default: 1, 1+step, ... --max).")
@click.option("--max", "maximum", type=click.FloatRange(min=1), default=125, show_default=True,
              help="Highest leverage to consider (capped at the tier maximum).")
@click.option("--step", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Leverage granularity.")
@click.option("--min-distance", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Required closest distance between mark and liquidation price, %.")
@_exec_options
def max_leverage(config: str, margin_modes: str, leverages: str | None, maximum: float,
                 step: float, min_distance: float, engine: str, scheduler: str | None,
                 workers: int | None, cache_dir: str | None, report_dir: str | None,
                 as_json: bool, quiet: bool) -> None:
    """Highest leverage that survives CONFIG's data with a distance to liquidation.

    Every candidate is run and classified (survived / liquidated / wiped out / not tradable /
    bot stopped); the answer per margin mode is the highest leverage such that it and every
    lower tradable leverage survived with at least --min-distance % to liquidation.
    """
    from liqbt.sweep import leverage_ladder

    cfg = _load(config)
    modes = _modes(margin_modes) or [cfg.margin_mode]
    cands = _csv(leverages, float, "--leverage")
    precheck(_common_checks([cfg], engine, scheduler, report_dir))
    quiet = quiet or as_json

    def tick(done: int, total: int, s: Any) -> None:
        dist = "" if s.min_distance_pct is None else f", closest {s.min_distance_pct:.2f} %"
        _say(quiet, f"[{done}/{total}] {s.margin_mode} {s.leverage:g}x: {s.outcome}"
             + (f" ({s.reason})" if s.reason else "") + (f" {s.time}" if s.time else "")
             + dist)

    found = _guard(lambda: leverage_ladder(
        cfg, modes, candidates=cands or None, maximum=maximum, step=step,
        min_distance_pct=min_distance, progress=tick, engine=engine, scheduler=scheduler,
        workers=workers, cache_dir=cache_dir))
    if found and found[0].engine_reason:
        _say(quiet, found[0].engine_reason)
    if report_dir:
        path = _ladder_report(cfg, found, report_dir)
        _say(quiet, f"report: {path}")
    if as_json:
        click.echo(json.dumps({"min_distance_pct": min_distance,
                               "engine": found[0].engine if found else "",
                               "engine_reason": found[0].engine_reason if found else "",
                               "results": [
            {"margin_mode": f.margin_mode, "max_leverage": f.leverage,
             "min_liquidation_distance_pct": f.distance_pct,
             "first_failing_leverage": f.failed_at, "runs": f.runs,
             "explanation": f.explanation,
             "ladder": [s.to_dict() for s in f.ladder]} for f in found]}))
        return
    rows = [[s.margin_mode, f"{s.leverage:g}x", s.outcome, s.reason or "", s.time,
             s.min_distance_pct, s.return_pct, s.safe] for f in found for s in f.ladder]
    click.echo(_table(["margin mode", "leverage", "outcome", "reason", "time (UTC)",
                       "closest to liq. %", "return %", "safe"], rows))
    click.echo("")
    click.echo(_table(
        ["margin mode", "max leverage", "closest to liq. %", "first unsafe", "runs"],
        [[f.margin_mode, "none" if f.leverage is None else f"{f.leverage:g}x",
          f.distance_pct, None if f.failed_at is None else f"{f.failed_at:g}x", f.runs]
         for f in found]))
    for f in found:
        click.echo(f.explanation)


def _ladder_report(cfg: Any, found: list[Any], report_dir: str) -> Any:
    """The ladder page, linking a full run report of each mode's answer and of its first
    unsafe leverage (run again with per-bar detail)."""
    from liqbt.cli.run import _run
    from liqbt.outputs import ReportDir
    from liqbt.report import write_run_report
    from liqbt.study_report import write_ladder_report

    with ReportDir(report_dir) as out:
        links: dict[tuple[str, float], str] = {}
        for f in found:
            for lev in (f.leverage, f.failed_at):
                if lev is None:
                    continue
                variant = _guard(lambda lev=lev, f=f: cfg.with_overrides(
                    {"leverage": lev, "margin_mode": f.margin_mode}))
                name = f"run-{f.margin_mode}-{lev:g}x.html"
                write_run_report(_run(variant, timeline=True, quiet=True), out.path / name,
                                 cfg.account.warning_threshold)
                links[(f.margin_mode, lev)] = name
        return write_ladder_report(found, out.path, links=links)


def _survival_run_reports(cfg: Any, study: Any, folder: Any) -> dict[tuple[str, str, float], str]:
    """Full run reports (run again with per-bar detail) of the failed runs at each worst start
    date's lowest failing leverage; maps ``(start, margin mode, leverage)`` to the file name."""
    from liqbt.cli.run import _run
    from liqbt.outcome import LIQUIDATED, STOPPED, WIPED_OUT
    from liqbt.report import write_run_report

    links: dict[tuple[str, str, float], str] = {}
    for worst in study.worst_starts:
        lev = worst["lowest_failing_leverage"]
        for r in study.runs:
            if (r.start, r.leverage) != (worst["start"], lev) or r.outcome not in (
                    LIQUIDATED, WIPED_OUT, STOPPED):
                continue
            variant = _guard(lambda r=r: cfg.with_overrides(
                {"start": r.start, "end": r.end, "leverage": r.leverage,
                 "margin_mode": r.margin_mode}))
            name = f"run-{r.start[:10]}-{r.margin_mode}-{r.leverage:g}x.html"
            write_run_report(_run(variant, timeline=True, quiet=True), folder / name,
                             cfg.account.warning_threshold)
            links[(r.start, r.margin_mode, r.leverage)] = name
    return links


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--leverage", "leverages", default="1,2,3,5,10,20", show_default=True,
              help="Comma-separated leverages.")
@click.option("--margin-modes", default=None,
              help="Comma-separated margin modes (default: the config's).")
@click.option("--every", default="1D", show_default=True,
              help="Step between start dates (1D, 12h...).")
@click.option("--horizon", default="30D", show_default=True, help="Length of each run.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write every run to FILE.csv or FILE.json.")
@_exec_options
def survival(config: str, leverages: str, margin_modes: str | None, every: str, horizon: str,
             out_file: str | None, engine: str, scheduler: str | None, workers: int | None,
             cache_dir: str | None, report_dir: str | None, as_json: bool,
             quiet: bool) -> None:
    """Survival map: start the bot at every start date across CONFIG's data for each leverage
    and margin mode; print the survival probability per leverage and mode and the worst start
    dates."""
    from liqbt import study as st
    from liqbt import sweep as sw
    from liqbt.outputs import check_output_file

    cfg = _load(config)
    levs = _csv(leverages, float, "--leverage")
    if not levs:
        raise click.BadParameter("give at least one leverage", param_hint="--leverage")
    modes = _modes(margin_modes) or [cfg.margin_mode]
    precheck([*_common_checks([cfg], engine, scheduler, report_dir),
               lambda: st.parse_duration(every, "--every"),
               lambda: st.parse_duration(horizon, "--horizon"),
               lambda: out_file and check_output_file(out_file, sw.ROW_SUFFIXES)])
    quiet = quiet or as_json

    def tick(done: int, total: int, r: Any) -> None:
        _say(quiet, f"[{done}/{total}] {r.start[:16]} {r.margin_mode} {r.leverage:g}x: "
             f"{r.outcome}" + (f" after {r.hours_to_liquidation:.0f} h"
                               if r.hours_to_liquidation is not None else ""))

    result = _guard(lambda: st.survival_study(
        cfg, levs, modes, every, horizon, progress=tick, engine=engine, scheduler=scheduler,
        workers=workers, cache_dir=cache_dir))
    _say(quiet, result.engine_reason)
    if out_file:
        _guard(lambda: sw.write_rows([r.to_dict() for r in result.runs], out_file))
    if report_dir:
        from liqbt.outputs import ReportDir
        from liqbt.study_report import write_survival_report

        with ReportDir(report_dir) as out:
            links = _survival_run_reports(cfg, result, out.path)
            write_survival_report(result, out.path, every, horizon, links=links)
    if as_json:
        click.echo(json.dumps({"engine": result.engine,
                               "cells": [c.to_dict() for c in result.cells],
                               "worst_starts": result.worst_starts,
                               "runs": [r.to_dict() for r in result.runs]}))
        return
    click.echo(_table(
        ["margin mode", "leverage", "runs", "tradable", "survived", "liquidated", "wiped out",
         "stopped", "survival %", "median h to liq.", "worst closest to liq. %",
         "mean return %"],
        [[c.margin_mode, f"{c.leverage:g}x", c.runs, c.tradable, c.survived, c.liquidated,
          c.wiped_out, c.stopped, c.survival_pct, c.median_hours_to_liquidation,
          c.worst_distance_pct, c.mean_return_pct] for c in result.cells]))
    click.echo("\nworst start dates:")
    click.echo(_table(["start", "failed runs", "runs", "lowest failing leverage",
                       "mean return %"],
                      [[w["start"], w["failed"], w["runs"], w["lowest_failing_leverage"],
                        w["mean_return_pct"]] for w in result.worst_starts]))


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--param", "params", multiple=True, required=True,
              help="KEY=LO..HI[:STEP] (ints when both bounds are) or KEY=A,B,C; repeat.")
@click.option("--objective", default="return_pct", show_default=True,
              help="Result column to optimize (return_pct, calmar, sharpe, sortino, "
                   "profit_factor, ...; drawdowns and costs are minimized).")
@click.option("--constraint", "constraints", multiple=True,
              help="COLUMN>=VALUE (or <=, >, <, ==), e.g. min_liq_distance_pct>=10; repeat.")
@click.option("--trials", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True,
              help="Sampler seed: the same seed gives the same trials.")
@click.option("--windows", default=None,
              help="START..END,START..END: score every trial on each window (mean); "
                   "feasible only if feasible in all.")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Trials proposed per round (run together).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write every trial to FILE.csv or FILE.json.")
@_exec_options
def optimize(config: str, params: tuple[str, ...], objective: str,
             constraints: tuple[str, ...], trials: int, seed: int, windows: str | None,
             batch: int, out_file: str | None, engine: str, scheduler: str | None,
             workers: int | None, cache_dir: str | None, report_dir: str | None,
             as_json: bool, quiet: bool) -> None:
    """Risk-aware optimizer (optuna TPE): liquidated, wiped-out, stopped or constraint-breaking
    trials are infeasible, never merely low-scoring."""
    from liqbt import study as st
    from liqbt import sweep as sw
    from liqbt.outputs import check_output_file

    cfg = _load(config)
    columns = sw.row_columns()
    parsed: dict[str, Any] = {}

    def parse_all() -> None:
        problems: list[str] = []
        for name, fn in (
            ("space", lambda: [st.parse_param(p) for p in params]),
            ("constraints", lambda: [st.parse_constraint(c, columns) for c in constraints]),
            ("objective", lambda: st.resolve_objective(objective, columns)),
            ("windows", lambda: st.parse_windows(windows)),
        ):
            try:
                parsed[name] = fn()
            except ValidationError as exc:
                problems.extend(exc.problems)
        if not problems:
            for space in parsed["space"]:
                value = space.choices[0] if space.choices else (
                    int(space.low) if space.integer else space.low)
                try:
                    cfg.with_overrides({space.key: value})
                except ValidationError as exc:
                    problems.extend(f"--param {space.key}: {p}" for p in exc.problems)
        if problems:
            raise ValidationError(problems)

    precheck([parse_all, *_common_checks([cfg], engine, scheduler, report_dir),
               lambda: out_file and check_output_file(out_file, sw.ROW_SUFFIXES)])
    quiet = quiet or as_json

    def tick(t: Any) -> None:
        ps = ", ".join(f"{k}={v}" for k, v in t.params.items())
        _say(quiet, f"[{t.number + 1}/{trials}] {ps}: "
             + (f"{t.value:,.4g}" if t.feasible else f"infeasible ({t.outcome}"
                + (f": {t.reason}" if t.reason else "") + ")"))

    result = _guard(lambda: st.optimize(
        cfg, parsed["space"], objective, parsed["constraints"], trials, seed,
        parsed["windows"], batch, progress=tick, engine=engine, scheduler=scheduler,
        workers=workers, cache_dir=cache_dir))
    _say(quiet, result.engine_reason)
    rows = [t.row() for t in result.ranked()]
    if out_file:
        _guard(lambda: sw.write_rows(rows, out_file))
    if report_dir:
        from liqbt.outputs import ReportDir
        from liqbt.study_report import write_optimize_report

        with ReportDir(report_dir) as out:
            write_optimize_report(result, out.path)
    best = result.best
    if as_json:
        click.echo(json.dumps({"objective": result.objective, "direction": result.direction,
                               "seed": seed, "engine": result.engine,
                               "best": best.row() if best else None, "trials": rows}))
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    click.echo(_table(cols, [[r.get(c) for c in cols] for r in rows]))
    if best is None:
        click.echo("no feasible trial: every trial was liquidated, stopped or broke a "
                   "constraint")
    else:
        ps = ", ".join(f"{k}={v}" for k, v in best.params.items())
        click.echo(f"best feasible: trial {best.number}: {ps} → {result.objective} "
                   f"{best.value:,.4g} (closest to liq. {_pct(best.min_distance_pct)})")


__all__ = ["max_leverage", "optimize", "survival"]
