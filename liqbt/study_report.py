"""HTML pages of the leverage studies: the max-leverage ladder, the survival map (a Bokeh
start date × leverage heatmap per margin mode, JavaScript inlined so the page works offline)
and the optimizer's trials. Page helpers come from :mod:`liqbt.report`."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from liqbt import outcome as oc
from liqbt.report import Link, _target, _write, html_page, html_table

#: heatmap colour per outcome
COLORS = {
    oc.SURVIVED: "#1a9850",
    oc.STOPPED: "#fdae61",
    oc.NOT_TRADABLE: "#bdbdbd",
    oc.LIQUIDATED: "#d73027",
    oc.WIPED_OUT: "#67001f",
}


def write_ladder_report(found: Sequence[Any], directory: str | Path,
                        title: str = "liqbt max-leverage",
                        links: Mapping[tuple[str, float], str] | None = None) -> Path:
    """``index.html``: the answer per margin mode and the whole ladder (every candidate, its
    outcome, reason, time, closest distance to liquidation and return); ``links`` maps
    ``(margin mode, leverage)`` to a run report (relative href) for the leverage cell."""
    out = _target(directory)
    body = "".join(f"<p><b>{html.escape(f.explanation)}</b></p>" for f in found)
    if found:
        body += (f"<p>Safe = survived (position opened, no liquidation, no wipeout, bot never "
                 f"stopped) with at least {found[0].min_distance_pct:g} % between the mark and "
                 "the liquidation price; the answer is the highest leverage that is safe and "
                 "whose every lower tradable leverage is safe too.</p>")
    links = links or {}
    rows = [[s.margin_mode, Link(f"{s.leverage:g}x", links[(s.margin_mode, s.leverage)])
             if (s.margin_mode, s.leverage) in links else f"{s.leverage:g}x", s.outcome,
             s.reason, s.time, s.min_distance_pct, s.return_pct, s.safe]
            for f in found for s in f.ladder]
    body += html_table(["margin mode", "leverage", "outcome", "reason", "time (UTC)",
                        "closest to liq. %", "return %", "safe"], rows, "ladder")
    return _write(out, html_page(title, body))


def _survival_heatmap(study: Any, mode: str) -> Any:
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    runs = [r for r in study.runs if r.margin_mode == mode]
    levs = sorted({r.leverage for r in runs})
    starts = sorted({r.start[:16].replace("T", " ") for r in runs})
    data: dict[str, list[Any]] = {k: [] for k in ("lev", "start", "color", "outcome", "ret",
                                                  "dist", "hours", "reason")}
    for r in runs:
        data["lev"].append(f"{r.leverage:g}x")
        data["start"].append(r.start[:16].replace("T", " "))
        data["color"].append(COLORS.get(r.outcome, "#999999"))
        data["outcome"].append(r.outcome)
        data["ret"].append(float("nan") if r.return_pct is None else r.return_pct)
        data["dist"].append(float("nan") if r.min_distance_pct is None else r.min_distance_pct)
        data["hours"].append(float("nan") if r.hours_to_liquidation is None
                             else r.hours_to_liquidation)
        data["reason"].append(r.reason or "")
    fig = figure(title=f"{mode}: outcome by start date and leverage",
                 x_range=[f"{v:g}x" for v in levs], y_range=list(reversed(starts)),
                 height=max(240, 18 * len(starts) + 90), width=max(360, 70 * len(levs) + 200),
                 tools="hover,save", toolbar_location="right")
    fig.name = f"survival-{mode}"
    fig.rect("lev", "start", 1, 1, source=ColumnDataSource(data), fill_color="color",
             line_color="white")
    fig.xaxis.axis_label = "leverage"
    fig.yaxis.axis_label = "start (UTC)"
    hover = fig.select_one(HoverTool)
    hover.tooltips = [("start", "@start"), ("leverage", "@lev"), ("outcome", "@outcome"),
                      ("return", "@ret{+0.00} %"), ("closest to liq.", "@dist{0.00} %"),
                      ("hours to liquidation", "@hours{0.0}"), ("", "@reason")]
    return fig


def write_survival_report(study: Any, directory: str | Path, every: str, horizon: str,
                          title: str = "liqbt survival",
                          links: Mapping[tuple[str, str, float], str] | None = None) -> Path:
    """``index.html``: survival probability per leverage and mode, the worst start dates,
    one start date × leverage heatmap per margin mode and every run; ``links`` maps
    ``(start, margin mode, leverage)`` to a run report (relative href) shown in the worst
    start dates and on that run's row."""
    from bokeh.embed import components
    from bokeh.layouts import column

    out = _target(directory)
    modes = list(dict.fromkeys(r.margin_mode for r in study.runs))
    legend = " ".join(f"<span style='background:{c};color:white;padding:0 6px'>"
                      f"{html.escape(k)}</span>" for k, c in COLORS.items())
    body = (f"<p>Each run starts on a start date (every {html.escape(every)}) and lasts "
            f"{html.escape(horizon)}. Survival % = survived / tradable runs.</p>")
    body += html_table(
        ["margin mode", "leverage", "runs", "tradable", "survived", "liquidated", "wiped out",
         "bot stopped", "survival %", "median h to liq.", "worst closest to liq. %",
         "mean return %"],
        [[c.margin_mode, f"{c.leverage:g}x", c.runs, c.tradable, c.survived, c.liquidated,
          c.wiped_out, c.stopped, c.survival_pct, c.median_hours_to_liquidation,
          c.worst_distance_pct, c.mean_return_pct] for c in study.cells], "cells")
    links = links or {}

    def reports(start: str) -> Any:
        # the first failed run of that start (others are linked from their rows below)
        found = [(mode, lev, href) for (s, mode, lev), href in links.items() if s == start]
        return Link(f"{found[0][0]} {found[0][1]:g}x", found[0][2]) if found else None

    body += "<h2>Worst start dates</h2>" + html_table(
        ["start", "failed runs", "runs", "lowest failing leverage", "mean return %",
         "run report"],
        [[w["start"], w["failed"], w["runs"], w["lowest_failing_leverage"],
          w["mean_return_pct"], reports(w["start"])] for w in study.worst_starts], "worst")
    script, div = components(column(*[_survival_heatmap(study, m) for m in modes]))
    body += f"<h2>Survival map</h2><p>{legend}</p>" + div + script
    body += "<h2>Runs</h2>" + html_table(
        ["start", "end", "margin mode", "leverage", "outcome", "reason", "h to liq.",
         "closest to liq. %", "return %"],
        [[Link(r.start, links[(r.start, r.margin_mode, r.leverage)])
          if (r.start, r.margin_mode, r.leverage) in links else r.start,
          r.end, r.margin_mode, f"{r.leverage:g}x", r.outcome, r.reason,
          r.hours_to_liquidation, r.min_distance_pct, r.return_pct] for r in study.runs],
        "runs")
    return _write(out, html_page(title, body, bokeh=True))


def write_optimize_report(opt: Any, directory: str | Path,
                          title: str = "liqbt optimize") -> Path:
    """``index.html``: the best feasible trial and every trial (feasible first, best first)."""
    out = _target(directory)
    best = opt.best
    head = (f"<p><b>best feasible trial {best.number}: "
            + html.escape(", ".join(f"{k}={v}" for k, v in best.params.items()))
            + f" → {html.escape(opt.objective)} {best.value:,.4g}</b></p>"
            if best else "<p><b>no feasible trial</b></p>")
    head += (f"<p>Objective: {html.escape(opt.direction)} {html.escape(opt.objective)}. "
             "A trial is feasible only if every run survived (no liquidation, wipeout, refused "
             "order or bot stop) and every constraint holds.</p>")
    rows = [t.row() for t in opt.ranked()]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    body = head + html_table(cols, [[r.get(c) for c in cols] for r in rows], "trials")
    return _write(out, html_page(title, body))


__all__ = ["write_ladder_report", "write_optimize_report", "write_survival_report"]
