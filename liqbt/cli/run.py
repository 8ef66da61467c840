"""``liqbt run / compare / sweep``: parse, load the config, delegate, print."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from liqbt.core.errors import ValidationError

T = TypeVar("T")


def _guard(fn: Callable[[], T]) -> T:
    """Turn validation errors into a clean CLI error (non-zero exit, no traceback)."""
    try:
        return fn()
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None


def _load(path: str, strict: bool = False) -> Any:
    from liqbt.config import load_config

    cfg = _guard(lambda: load_config(path))
    if strict:
        cfg = _guard(lambda: cfg.with_overrides({"backtest.strict_data": True}))
    return cfg


def _warn_data(result: Any) -> None:
    """Data-quality warnings on stderr (they are in the JSON and the report too)."""
    for line in getattr(result, "data_warnings", []):
        click.echo(f"data warning: {line}", err=True)


def _strict_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--strict", is_flag=True,
        help="Fail before the run on data warnings (gaps, mark/funding coverage, outliers, "
             "funding magnitude) instead of listing them; config: backtest.strict_data.",
    )(fn)


def _csv(value: str | None, conv: Callable[[str], T], name: str) -> list[T]:
    if not value:
        return []
    try:
        return [conv(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list", param_hint=name
        ) from None


def _modes(value: str | None) -> list[str]:
    modes = _csv(value, str, "--margin-modes")
    from liqbt.core.choices import MARGIN_MODES

    bad = [m for m in modes if m not in MARGIN_MODES]
    if bad:
        raise click.BadParameter(f"{bad} (use cross and/or isolated)", param_hint="--margin-modes")
    return modes


def _fmt(value: Any, spec: str = ",.2f") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if k else c.ljust(w)
                       for k, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _trades_text(trades: Sequence[dict[str, Any]]) -> str:
    """``205 round trips (130 won), pnl +121.25 USDT gross, fees 14.6; 1 position open``."""
    closed = [t for t in trades if t["exit_time"] is not None]
    still = [t for t in trades if t["exit_time"] is None]
    if not trades:
        return "0"
    text = f"{len(closed)} round trip{'s' if len(closed) != 1 else ''}"
    if closed:
        # won = net of fees, as the statistics' win rate counts
        won = sum(1 for t in closed if t["pnl"] - t["fees"] > 0)
        pnl = sum(t["pnl"] for t in closed)
        fees = sum(t["fees"] for t in closed)
        text += f" ({won} won net of fees), pnl {pnl:+,.2f} USDT gross, fees {fees:,.2f}"
    if still:
        upnl = sum(t["pnl"] for t in still)
        text += (f"; {len(still)} position{'s' if len(still) != 1 else ''} still open "
                 f"(unrealized {upnl:+,.2f} USDT)")
    return text


def _result_text(result: Any) -> str:
    out = [
        f"{result.label} — {result.strategy}",
        f"period            {result.start} → {result.end} ({result.bars} bars)",
        f"initial balance   {result.initial_balance:,.2f} USDT",
        f"final equity      {result.final_equity:,.2f} USDT",
        f"return            {result.return_pct:+,.2f} %",
        f"max drawdown      {result.max_drawdown_pct:,.2f} %",
        f"fees paid         {result.fees_paid:,.2f} USDT",
        f"funding paid      {result.funding_paid:,.2f} USDT"
        + (f" ({result.funding_note})" if result.funding_note else ""),
    ]
    if len(result.funding_by_symbol) > 1:
        out += [f"  {s:<15} {v:,.2f} USDT" for s, v in result.funding_by_symbol.items()]
    out += [
        f"insurance fund    {result.insurance_fund_delta:+,.2f} USDT",
        f"closest to liq.   {_fmt(result.min_liquidation_distance_pct)} %"
        + (" (reached: liquidated)" if result.liquidations else " (mark to liq. price)"),
        f"trades            {_trades_text(result.trades)}",
        f"wiped out         {'yes at ' + str(result.wipeout_time) if result.wiped_out else 'no'}",
    ]
    if result.stopped_reason:
        when = f" at {result.stopped_time}" if result.stopped_time else ""
        out.append(f"bot stopped       {result.stopped_kind or 'stop'}{when}: "
                   f"{result.stopped_reason}")
    out.append(f"liquidations      {result.liquidation_count}")
    if result.liquidations:
        out.append(_table(
            ["time (UTC)", "symbol", "side", "size", "trigger", "settled", "loss", "partial"],
            [[q["time"], q["symbol"], q["side"], f"{q['size']:g}", q["trigger_price"],
              q["settlement_price"], q["loss"], q["partial"]] for q in result.liquidations],
        ))
    out.append(f"top-ups           {len(result.top_ups)}")
    if result.top_ups:
        out.append(_table(
            ["time (UTC)", "symbol", "amount", "LP after"],
            [[t["time"], t["symbol"], t["amount"], t["liquidation_price_after"]]
             for t in result.top_ups],
        ))
    out += _bot_lines(result.bot)
    if result.statistics is not None:
        out.append("statistics (docs/results.md defines each)")
        out += [f"  {k:<22} {v}" for k, v in result.statistics.rows()]
    return "\n".join(out)


def _bot_lines(bot: dict[str, Any]) -> list[str]:
    """The bot's own accounting: grid pairs and profit vs floating PnL; DCA deals."""
    out = []
    if "pairs" in bot:
        out.append(f"grid              {bot['pairs']} matched pairs, grid profit "
                   f"{bot.get('grid_profit', 0.0):+,.2f} USDT gross, floating PnL "
                   f"{bot.get('unrealized_pnl', 0.0):+,.2f} USDT")
    if "deals" in bot:
        deals = bot["deals"]
        out.append(f"DCA deals         {len(deals)}, profit "
                   f"{sum(d['pnl'] or 0.0 for d in deals):+,.2f} USDT gross, safety orders "
                   f"used {sum(d['safety_orders'] for d in deals)}, floating PnL "
                   f"{bot.get('unrealized_pnl', 0.0):+,.2f} USDT")
    return out


def precheck(checks: Sequence[Callable[[], Any]]) -> None:
    """Run every check that could otherwise only fail after the work (output paths, sort keys,
    engines, schedulers...); one CLI error listing all their problems, before any run."""
    problems: list[str] = []
    for check in checks:
        try:
            check()
        except ValidationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise click.ClickException(str(ValidationError(problems)))


def _no_fast_report() -> None:
    raise ValidationError(["--report with --engine fast: the report's charts need the per-bar "
                           "timeline only the backtrader engine records (use --engine "
                           "backtrader)"])


def _run(config: Any, timeline: bool, quiet: bool) -> Any:
    from liqbt.runner import run_config

    return _guard(lambda: run_config(config, timeline=timeline, progress=not quiet))


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="Write DIR/index.html: one self-contained interactive report (charts, "
                   "statistics, trades).")
@click.option("--trades-csv", "trades_csv", type=click.Path(dir_okay=False),
              help="Write the round trips to FILE.csv.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--engine", default="backtrader", show_default=True,
              help="backtrader, fast (the compiled engine: same fills and figures for the "
                   "bundled bots, no launch table or bot log) or auto.")
@_strict_option
def run(config: str, as_json: bool, report_dir: str | None, trades_csv: str | None,
        quiet: bool, engine: str, strict: bool) -> None:
    """Run the backtest described by CONFIG (a TOML run config)."""
    from liqbt.outputs import ReportDir, check_output_file, check_report_dir

    cfg = _load(config, strict)
    # output paths (and the engine) are checked before the run, all problems at once
    precheck([lambda: report_dir and check_report_dir(report_dir),
                    lambda: trades_csv and check_output_file(trades_csv, (".csv",),
                                                             "--trades-csv"),
                    lambda: engine != "backtrader" and _engine_check(engine, [cfg]),
                    lambda: engine == "fast" and report_dir and _no_fast_report()])
    # the report's charts need backtrader's per-bar timeline: auto takes it with --report
    if engine == "backtrader" or (engine == "auto" and report_dir):
        result = _run(cfg, timeline=report_dir is not None, quiet=quiet or as_json)
    else:
        from liqbt.executor import resolve_engine

        chosen, why = _guard(lambda: resolve_engine(engine, [cfg]))
        if not as_json:
            click.echo(why, err=True)
        result = _guard(lambda: chosen.run_batch([cfg], None)[0])
    if not as_json:
        _warn_data(result)
    if trades_csv:
        from liqbt.report import write_trades_csv

        write_trades_csv(result, trades_csv)
    if report_dir:
        from liqbt.report import write_run_report

        with ReportDir(report_dir) as out:
            path = write_run_report(result, out.path, cfg.account.warning_threshold)
        if not as_json:
            click.echo(f"report: {path}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(_result_text(result))


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--margin-modes", default="cross,isolated", show_default=True,
              help="Comma-separated margin modes.")
@click.option("--leverage", "leverages", default=None,
              help="Comma-separated leverages (default: the config's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="Write DIR/index.html (the comparison) linking one report per run.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_strict_option
def compare(config: str, margin_modes: str, leverages: str | None, as_json: bool,
            report_dir: str | None, quiet: bool, strict: bool) -> None:
    """Run CONFIG once per margin mode (and leverage) and show the results side by side."""
    from liqbt.outputs import ReportDir, check_report_dir

    cfg = _load(config, strict)
    modes = _modes(margin_modes) or [cfg.margin_mode]
    levs = _csv(leverages, float, "--leverage") or [cfg.leverage]
    precheck([lambda: report_dir and check_report_dir(report_dir)])
    results = []
    for lev in levs:
        for mode in modes:
            variant = _guard(lambda lev=lev, mode=mode: cfg.with_overrides(
                {"leverage": lev, "margin_mode": mode}))
            results.append(_run(variant, timeline=report_dir is not None,
                                quiet=quiet or as_json))
    if report_dir:
        from liqbt.report import write_compare_report, write_run_report

        with ReportDir(report_dir) as out:
            pages = [write_run_report(r, out.path / f"run-{i + 1}.html",
                                      cfg.account.warning_threshold)
                     for i, r in enumerate(results)]
            path = write_compare_report(results, out.path, pages)
        if not as_json:
            click.echo(f"report: {path}", err=True)
    if not as_json and results:
        _warn_data(results[0])
    if as_json:
        from liqbt.outcome import classify

        click.echo(json.dumps({"runs": [
            {**r.to_dict(), "outcome": classify(r).outcome,
             "outcome_reason": classify(r).reason} for r in results]}))
        return
    from liqbt.outcome import compare_rows

    rows = compare_rows(results)
    click.echo(_table(["", *(r.label for r in results)], rows))


def _engine_check(engine: str, configs: Sequence[Any]) -> None:
    from liqbt.executor import resolve_engine

    resolve_engine(engine, configs)


def _parse_sets(values: Sequence[str]) -> dict[str, list[Any]]:
    from liqbt.config import parse_value

    grid: dict[str, list[Any]] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise click.BadParameter(f"{item!r}: use KEY=V1,V2,...", param_hint="--set")
        grid[key.strip()] = [parse_value(v) for v in raw.split(",") if v.strip()]
    return grid


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, required=True,
              help="KEY=V1,V2,... (leverage, margin_mode, strategy.NAME, account.NAME...); "
                   "repeat for a cartesian product.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes (default: CPU count).")
@click.option("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT.")
@click.option("--engine", default="auto", show_default=True,
              help="auto (the fast engine for every run it covers, backtrader for "
                   "the others; says which ran), fast or backtrader.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write all rows to FILE.csv or FILE.json.")
@click.option("--sort", "sort_key", default="risk", show_default=True,
              help="Order of the rows: survivors first, then bot stopped, not tradable, "
                   "liquidated, wiped out; within each group by this column descending "
                   "(risk = return_pct).")
@click.option("--heatmap", "heatmap", default=None,
              help="X,Y: the two swept keys of the report's heatmaps (default: leverage,"
                   "margin_mode when both are swept, else the first two --set keys).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=".liqbt-cache",
              show_default=True, help="Per-run result cache (resumes interrupted sweeps).")
@click.option("--no-cache", is_flag=True, help="Ignore and do not write the cache.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="Write DIR/index.html with leverage × margin-mode heatmaps and the runs, "
                   "linking a report of each of the first --run-reports runs.")
@click.option("--run-reports", type=click.IntRange(min=0), default=12, show_default=True,
              help="With --report: how many runs (in --sort order) get their own report "
                   "(each is run again with per-bar detail).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_strict_option
def sweep(config: str, sets: tuple[str, ...], workers: int | None, scheduler: str | None,
          engine: str, out_file: str | None, sort_key: str, heatmap: str | None, cache_dir: str,
          no_cache: bool, report_dir: str | None, run_reports: int, as_json: bool, quiet: bool,
          strict: bool) -> None:
    """Run CONFIG over the cartesian product of every --set."""
    from liqbt import sweep as sw
    from liqbt.outputs import ReportDir, check_output_file, check_report_dir

    cfg = _load(config, strict)
    grid = _parse_sets(sets)
    points = _guard(lambda: sw.expand(cfg, grid))
    # every option that could only fail after the sweep is checked now, all problems at once
    precheck([
        lambda: sw.check_sort_key(sort_key, list(grid)),
        lambda: heatmap and sw.heatmap_axes(heatmap, list(grid)),
        lambda: _engine_check(engine, [p.config for p in points]),
        lambda: out_file and check_output_file(out_file, sw.ROW_SUFFIXES),
        lambda: report_dir and check_report_dir(report_dir),
        lambda: scheduler and sw.check_scheduler(scheduler),
    ])
    show = not quiet and not as_json and sys.stderr.isatty()
    bar = click.progressbar(length=len(points), label="sweep", file=sys.stderr) if show else None
    tick = (lambda _i, _row: bar.update(1)) if bar is not None else None
    try:
        if bar is not None:
            bar.__enter__()
        outcome = _guard(lambda: sw.run_sweep(
            points, workers=workers, scheduler=scheduler,
            cache_dir=None if no_cache else cache_dir, on_result=tick, engine=engine))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    rows = _guard(lambda: sw.sort_rows(outcome.rows, sort_key))
    if out_file:
        _guard(lambda: sw.write_rows(rows, out_file))
    if report_dir:
        from liqbt.report import write_sweep_report

        with ReportDir(report_dir) as out:
            pages = _sweep_run_reports(points, rows[:run_reports], out.path, cfg, quiet)
            axes = sw.heatmap_axes(heatmap, outcome.keys)
            write_sweep_report(rows, out.path, outcome.keys, run_reports=pages, axes=axes)
    if as_json:
        click.echo(json.dumps({"computed": outcome.computed, "cached": outcome.cached,
                               "engine": outcome.engine,
                               "engine_reason": outcome.engine_reason, "rows": rows}))
        return
    columns = [*outcome.keys, "outcome", "return_pct", "max_drawdown_pct",
               "min_liquidation_distance_pct", "liquidations", "first_liquidation",
               "stopped_kind", "stopped_time", "trades", "final_equity", "fees_paid",
               "funding_paid", "top_ups"]
    click.echo(_table(columns, [[r.get(c) for c in columns] for r in rows]))
    # every run that did not simply survive: say why (never only in the CSV)
    for r in rows:
        if r.get("outcome") not in (None, "survived") and r.get("outcome_reason"):
            where = " ".join(f"{k}={r.get(k)}" for k in outcome.keys)
            click.echo(f"{r['outcome']} at {where}: {r['outcome_reason']}")
    click.echo("rows: survivors first, then bot stopped, not tradable, liquidated, wiped out; "
               f"within each by {'return_pct' if sort_key == 'risk' else sort_key}", err=True)
    click.echo(f"{len(rows)} runs: {outcome.computed} computed, {outcome.cached} from cache; "
               f"{outcome.engine_reason}", err=True)


def _sweep_run_reports(points: Sequence[Any], rows: Sequence[dict[str, Any]], folder: Any,
                       cfg: Any, quiet: bool) -> dict[int, Any]:
    """Run the configs of ``rows`` again with per-bar detail and write ``run-N.html`` each;
    returns row index → report path."""
    from liqbt.report import write_run_report

    by_hash = {p.config.config_hash(): p.config for p in points}
    pages = {}
    for i, row in enumerate(rows):
        config = by_hash.get(row.get("config_hash"))
        if config is None:
            continue
        result = _run(config, timeline=True, quiet=True)
        pages[i] = write_run_report(result, folder / f"run-{i + 1}.html",
                                    config.account.warning_threshold)
    return pages


__all__ = ["compare", "run", "sweep"]
