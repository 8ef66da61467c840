"""HTML reports with matplotlib (Agg) charts for runs and sweeps.

``write_run_report(result, directory)`` draws, per symbol, the price with grid levels, fills and
liquidations, then equity/margin balance, margin ratio and liquidation price against mark;
``write_sweep_report(rows, directory)`` draws leverage × margin-mode heatmaps. Each writes an
``index.html`` referencing PNGs next to it. All times are UTC.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written from CLI runs and workers

import matplotlib.dates as mdates
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np

from liqbt.runner import RunResult

_DPI = 110
_BUY = "#1a9850"
_SELL = "#d73027"
_LIQ = "#7b3294"


def _dates_axis(ax: Any) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.grid(True, alpha=0.3)


def _save(fig: Any, directory: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(directory / name, dpi=_DPI)
    plt.close(fig)
    return name


def _when(event: dict[str, Any]) -> datetime:
    """The naive-UTC bar time of a result record (``time`` is ISO-8601 with ``Z``)."""
    return datetime.fromisoformat(event["time"].rstrip("Z"))


def _money(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.2f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:,.2f} %"


def _price_fmt(values: Sequence[float]) -> str:
    """Format spec for prices: no decimals above 1,000, two below, four below 1."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=1000.0)
    return ",.0f" if top >= 1000 else ",.2f" if top >= 1 else ",.4f"


def _market_label(result: RunResult, symbol: str) -> str:
    """``isolated 10x`` for ``symbol`` (from the run's markets)."""
    for m in result.markets:
        if m["symbol"] == symbol:
            return f"{m['margin_mode']} {m['leverage']:g}x"
    return result.label


def _price_chart(result: RunResult, symbol: str, directory: Path, index: int) -> str:
    tl = result.timeline
    times = tl["time"]
    row = tl["symbols"][symbol]
    fmt = _price_fmt(row["close"])
    fig, ax = plt.subplots(figsize=(12, 5.5))
    ax.plot(times, row["close"], color="#444444", lw=0.8, label="close (trade price)")
    report = result.launch_report or {}
    levels = report.get("levels") or report.get("grid_levels") or []
    if len(result.markets) == 1 or report.get("symbol") == symbol:
        for k, level in enumerate(levels):
            ax.axhline(level, color="#4575b4", lw=0.5, alpha=0.45, ls="--",
                       label="grid levels" if k == 0 else None)
        est = report.get("estimated_liquidation_price")
        if est:
            ax.axhline(est, color=_LIQ, lw=1.0, ls=":",
                       label=f"estimated LP at launch if every buy fills ({est:{fmt}})")
    fills = [f for f in result.fills if f["symbol"] == symbol]
    buys = [f for f in fills if f["size"] > 0 and not f["liquidation"]]
    sells = [f for f in fills if f["size"] < 0 and not f["liquidation"]]
    if buys:
        ax.scatter([f["time"] for f in buys], [f["price"] for f in buys], marker="^", s=28,
                   color=_BUY, zorder=3, label=f"buy fills ({len(buys)})")
    if sells:
        ax.scatter([f["time"] for f in sells], [f["price"] for f in sells], marker="v", s=28,
                   color=_SELL, zorder=3, label=f"sell fills ({len(sells)})")
    liqs = [q for q in result.liquidations if q["symbol"] == symbol]
    if liqs:
        when = [_when(q) for q in liqs]
        ax.scatter(when, [q["trigger_price"] for q in liqs], marker="X", s=140, color=_LIQ,
                   edgecolor="white", zorder=4, label=f"liquidations ({len(liqs)})")
        for t, q in zip(when, liqs, strict=True):
            ax.annotate(f"liquidated {q['side']} {q['size']:g}\nat {q['trigger_price']:{fmt}}"
                        f" (loss {q['loss']:,.0f} USDT)",
                        (t, q["trigger_price"]), textcoords="offset points", xytext=(12, -30),
                        fontsize=8, color=_LIQ, zorder=5,
                        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": _LIQ,
                              "alpha": 0.9},
                        arrowprops={"arrowstyle": "-", "color": _LIQ, "lw": 0.8})
    ax.set_title(f"{symbol} ({_market_label(result, symbol)}) — price, fills and liquidations")
    ax.set_ylabel("price (USDT)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:" + fmt + "}"))
    _dates_axis(ax)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, directory, f"price_{index}_{symbol}.png")


def _equity_chart(result: RunResult, directory: Path) -> str:
    tl = result.timeline
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.plot(tl["time"], tl["margin_balance"], color="#ff7f0e", lw=2.2, alpha=0.55,
            label="cross margin balance (wallet + cross uPnL; = equity without isolated "
                  "positions)")
    ax.plot(tl["time"], tl["equity"], color="#1f77b4", lw=1.0, label="equity (at mark)",
            zorder=3)
    ax.plot(tl["time"], tl["available"], color="#2ca02c", lw=0.8, alpha=0.8,
            label="available balance")
    ax.axhline(result.initial_balance, color="grey", lw=0.7, ls="--",
               label=f"initial balance ({result.initial_balance:,.0f})")
    for q in result.liquidations:
        ax.axvline(_when(q), color=_LIQ, lw=0.8, ls=":")
    ax.set_title(
        f"Equity — return {result.return_pct:+.2f} %, max drawdown "
        f"{result.max_drawdown_pct:.2f} %" + ("  (dotted: liquidations)" if result.liquidations
                                             else "")
    )
    ax.set_ylabel("USDT")
    _dates_axis(ax)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, directory, "equity.png")


def _ratio_chart(result: RunResult, directory: Path, threshold: float) -> str:
    tl = result.timeline
    times = tl["time"]
    fig, ax = plt.subplots(figsize=(12, 3.8))
    symbols = tl.get("symbols", {})
    modes = {m["symbol"]: m["margin_mode"] for m in result.markets}
    lines: list[tuple[str, np.ndarray]] = []
    cross = [s for s in symbols if modes.get(s) == "cross"]
    if cross:
        series = np.max([np.asarray(symbols[s]["margin_ratio"], dtype=float) for s in cross],
                        axis=0) * 100
        lines.append((f"cross account ({', '.join(cross)})", series))
    for s in symbols:
        if modes.get(s) == "isolated":
            lines.append((f"{s} (isolated)",
                          np.asarray(symbols[s]["margin_ratio"], dtype=float) * 100))
    if not lines:
        lines.append(("margin ratio (worst position)",
                      np.asarray(tl["margin_ratio"], dtype=float) * 100))
    colours = ["#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"]
    top = 0.0
    for k, (label, ratio) in enumerate(lines):
        if not len(ratio):
            continue
        peak = int(np.nanargmax(ratio))
        top = max(top, float(ratio[peak]))
        colour = colours[k % len(colours)]
        ax.plot(times, ratio, color=colour, lw=0.9,
                label=f"{label} — peak {ratio[peak]:.1f} % on {times[peak]:%m-%d %H:%M}")
        ax.plot([times[peak]], [ratio[peak]], "o", color=colour, ms=4)
    if result.liquidations:
        # the ratio is sampled at bar closes, so an intrabar liquidation never shows as 100 %
        # on the lines: mark where the ratio did reach it
        ax.scatter([_when(q) for q in result.liquidations],
                   [100.0] * len(result.liquidations), marker="X", s=70, color=_LIQ, zorder=4,
                   label=f"liquidations inside a bar ({len(result.liquidations)})")
    ax.axhline(threshold * 100, color="#e6ab02", lw=1.0, ls="--",
               label=f"warning ({threshold * 100:.0f} %)")
    ax.axhline(100, color=_LIQ, lw=1.0, label="liquidation (100 %)")
    ax.set_ylim(0, max(110.0, top * 1.05))
    ax.set_title("Margin ratio = maintenance margin / margin balance (liquidation at 100 %)")
    ax.set_ylabel("%")
    _dates_axis(ax)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, directory, "margin_ratio.png")


def _lp_chart(result: RunResult, symbol: str, directory: Path, index: int) -> str:
    tl = result.timeline
    row = tl["symbols"][symbol]
    fig, ax = plt.subplots(figsize=(12, 4.2))
    ax.plot(tl["time"], row["mark"], color="#444444", lw=0.8, label="mark price")
    lp = np.asarray(row["liquidation_price"], dtype=float)
    ax.plot(tl["time"], lp, color=_LIQ, lw=1.2,
            label="liquidation price (blank: flat, or no price liquidates the position)")
    liqs = [q for q in result.liquidations if q["symbol"] == symbol]
    if liqs:
        ax.scatter([_when(q) for q in liqs],
                   [q["trigger_price"] for q in liqs], marker="X", s=120, color=_LIQ,
                   edgecolor="white", zorder=4, label="liquidation (mark reached LP)")
    ax.set_title(f"{symbol} ({_market_label(result, symbol)}) liquidation price against mark "
                 "— the gap is the safety margin")
    ax.set_ylabel("price (USDT)")
    fmt = _price_fmt(row["mark"])
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:" + fmt + "}"))
    finite = lp[np.isfinite(lp)]
    if len(finite):
        marks = np.asarray(row["mark"], dtype=float)
        low = min(float(finite.min()), float(np.nanmin(marks)))
        high = max(float(finite.max()), float(np.nanmax(marks)))
        pad = (high - low) * 0.05 or high * 0.01
        ax.set_ylim(low - pad, high + pad)
    _dates_axis(ax)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, directory, f"liquidation_price_{index}_{symbol}.png")


def _summary_table(result: RunResult) -> str:
    rows = [
        ("Run", result.label),
        ("Strategy", result.strategy),
        ("Period (UTC)", f"{result.start} → {result.end} ({result.bars} bars)"),
        ("Initial balance", f"{_money(result.initial_balance)} USDT"),
        ("Final equity", f"{_money(result.final_equity)} USDT"),
        ("Return", _pct(result.return_pct)),
        ("Max drawdown", _pct(result.max_drawdown_pct)),
        ("Fees paid", f"{_money(result.fees_paid)} USDT"),
        ("Funding paid", f"{_money(result.funding_paid)} USDT {result.funding_note}"),
        ("Trades (FIFO round trips)",
         f"{sum(1 for x in result.trades if x['exit_time'] is not None)} closed, pnl "
         f"{_money(sum(x['pnl'] for x in result.trades if x['exit_time'] is not None))} USDT "
         f"gross; {sum(1 for x in result.trades if x['exit_time'] is None)} still open"),
        ("Liquidations", str(result.liquidation_count)),
        ("Top-ups", str(len(result.top_ups))),
        ("Closest to liquidation", _pct(result.min_liquidation_distance_pct)),
        ("Wiped out", f"yes, {result.wipeout_time}" if result.wiped_out else "no"),
    ]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    liq = ""
    if result.liquidations:
        head = "".join(f"<th>{h}</th>" for h in ("time (UTC)", "symbol", "side", "size",
                                                 "trigger", "settled at", "loss", "partial"))
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                q["time"], q["symbol"], q["side"], f"{q['size']:g}",
                _money(q["trigger_price"]), _money(q["settlement_price"]), _money(q["loss"]),
                "yes" if q["partial"] else "no")) + "</tr>"
            for q in result.liquidations
        )
        liq = f"<h2>Liquidations</h2><table><tr>{head}</tr>{body}</table>"
    return f"<table>{cells}</table>{liq}"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;"
    "text-align:left}th{background:#f4f4f4}img{max-width:100%;border:1px solid #eee;"
    "margin:0.5em 0}"
)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>\n")


def write_run_report(
    result: RunResult, directory: str | Path, warning_threshold: float = 0.8,
    title: str | None = None,
) -> Path:
    """Write ``index.html`` and PNGs for one run; returns the ``index.html`` path.

    ``result`` must come from ``run_config(..., timeline=True)``.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    images: list[str] = []
    symbols = list(result.timeline.get("symbols", {}))
    for i, symbol in enumerate(symbols):
        images.append(_price_chart(result, symbol, out, i))
    images.append(_equity_chart(result, out))
    images.append(_ratio_chart(result, out, warning_threshold))
    for i, symbol in enumerate(symbols):
        images.append(_lp_chart(result, symbol, out, i))
    body = _summary_table(result) + _data_warnings_html(result) + "".join(
        f"<p><img src='{n}' alt='{n}'></p>" for n in images)
    path = out / "index.html"
    path.write_text(_page(title or f"liqbt run — {result.label}", body))
    return path


def _data_warnings_html(result: RunResult) -> str:
    """The data-quality warnings of the run (``RunResult.data_warnings``), if any."""
    lines = getattr(result, "data_warnings", [])
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<h2>Data warnings</h2><ul class='data-warnings'>{items}</ul>"


def _cell_notes(r: dict[str, Any]) -> str:
    """What went wrong in one sweep run, for the heatmap cell (empty when nothing did)."""
    if r.get("wiped_out"):
        return "WIPED OUT"
    liqs = int(r.get("liquidations") or 0)
    if liqs:
        return f"{liqs} liquidation" + ("s" if liqs > 1 else "")
    if r.get("trades") == 0 and not r.get("fees_paid"):
        return "no trades"
    return ""


def _deaths(levs: list[float], modes: list[str], dead: np.ndarray) -> str:
    """``isolated dies from 20x, cross from 50x`` (or ``survives up to 50x``) per mode."""
    parts = []
    for i, mode in enumerate(modes):
        first = next((levs[j] for j in range(len(levs)) if dead[i, j]), None)
        parts.append(f"{mode}: survives every leverage up to {levs[-1]:g}x" if first is None
                     else f"{mode}: first liquidation at {first:g}x")
    return "; ".join(parts)


def _heatmap(ax: Any, ret: np.ndarray, notes: list[list[str]], dead: np.ndarray,
             levs: list[float], modes: list[str], title: str) -> None:
    """Return (%) per leverage × margin mode, each cell annotated with its liquidations or
    wipeout and hatched/outlined when the run was liquidated."""
    finite = ret[np.isfinite(ret)]
    span = max(abs(float(finite.min())), abs(float(finite.max())), 1.0) if len(finite) else 1.0
    im = ax.imshow(ret, cmap="RdYlGn", aspect="auto", vmin=-span, vmax=span)
    ax.set_xticks(range(len(levs)), [f"{v:g}x" for v in levs])
    ax.set_yticks(range(len(modes)), modes)
    ax.set_xlabel("leverage")
    ax.set_ylabel("margin mode")
    ax.set_title(title, fontsize=10)
    for r in range(ret.shape[0]):
        for c in range(ret.shape[1]):
            v = ret[r, c]
            level = float(im.norm(v)) if np.isfinite(v) else 0.5
            dark = level < 0.15 or level > 0.85
            text = "–" if not np.isfinite(v) else f"{v:+.1f} %"
            if notes[r][c]:
                text += "\n" + notes[r][c]
            ax.text(c, r, text, ha="center", va="center", fontsize=9,
                    color="white" if dark else "black", fontweight="bold")
            if dead[r, c]:
                ax.add_patch(matplotlib.patches.Rectangle(
                    (c - 0.5, r - 0.5), 1, 1, fill=False, hatch="//", edgecolor="#222222",
                    lw=1.5, alpha=0.6))
    bar = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("return (%)")


def write_sweep_report(
    rows: Sequence[dict[str, Any]], directory: str | Path, keys: Sequence[str] = (),
    title: str = "liqbt sweep",
) -> Path:
    """Write ``index.html`` with one leverage × margin-mode heatmap of the return per other
    swept value combination (each cell also names its liquidations, wipeout or "no trades";
    liquidated cells are hatched and the title says at which leverage each mode first dies),
    and the full table."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    images: list[str] = []
    captions: list[str] = []
    rows = list(rows)
    if rows and all("leverage" in r and "margin_mode" in r for r in rows):
        other = [k for k in keys if k not in ("leverage", "margin_mode")]
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(tuple(r.get(k) for k in other), []).append(r)
        for g, (combo, members) in enumerate(list(groups.items())[:12]):
            levs = sorted({float(r["leverage"]) for r in members})
            modes = sorted({str(r["margin_mode"]) for r in members})
            ret = np.full((len(modes), len(levs)), np.nan)
            dead = np.zeros((len(modes), len(levs)), dtype=bool)
            notes = [["" for _ in levs] for _ in modes]
            for r in members:
                i, j = modes.index(str(r["margin_mode"])), levs.index(float(r["leverage"]))
                ret[i, j] = np.nan if r.get("return_pct") is None else r["return_pct"]
                dead[i, j] = bool(r.get("liquidations")) or bool(r.get("wiped_out"))
                notes[i][j] = _cell_notes(r)
            suffix = ", ".join(f"{k}={v}" for k, v in zip(other, combo, strict=True))
            deaths = _deaths(levs, modes, dead)
            fig, ax = plt.subplots(figsize=(max(8, 1.5 * len(levs) + 3), 1.3 * len(modes) + 2.2))
            _heatmap(ax, ret, notes, dead, levs, modes,
                     "Return by leverage and margin mode" + (f" — {suffix}" if suffix else "")
                     + f"\n{deaths}  (hatched = liquidated)")
            images.append(_save(fig, out, f"heatmap_{g}.png"))
            captions.append((f"{suffix}: " if suffix else "") + deaths)
    columns = list(dict.fromkeys(k for r in rows for k in r if k != "config_hash"))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}"
        return html.escape("–" if v is None else str(v))

    table = ("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns)
                       + "</tr>" for r in rows) + "</table>")
    body = "".join(f"<p><b>{html.escape(c)}</b><br><img src='{n}' alt='{n}'></p>"
                   for n, c in zip(images, captions, strict=True)) + table
    path = out / "index.html"
    path.write_text(_page(title, body))
    return path


__all__ = ["write_run_report", "write_sweep_report"]
