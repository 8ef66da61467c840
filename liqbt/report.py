"""Self-contained interactive HTML reports (Bokeh, JavaScript inlined: they work offline).

* :func:`write_run_report` — one page per run: the run and its statistics, exit reasons, the
  bot's own view (grid pairs and grid profit vs floating PnL, DCA deals), then charts on one
  linked time axis — candles with fills, liquidations and the bot's overlay (grid lines and
  the orders resting at the end; DCA average entry, take profit and safety ladder per deal),
  position size, equity, drawdown, margin ratio with the warning and liquidation lines,
  distance to liquidation in % — and the trade table.
* :func:`write_sweep_report`, :func:`write_compare_report` — a leverage × margin-mode heatmap
  and/or a table per run, each row linking the run's own report when one was written.
* :func:`write_table_report` (max leverage), :func:`html_page`, :func:`html_table`,
  :func:`run_link`, :class:`Link` — the small page pieces other reports (survival,
  optimisation...) reuse.

Long runs are downsampled for the charts only (statistics use every bar): above
:data:`MAX_CHART_BARS` bars, buckets of consecutive bars become one candle (open of the first,
highest high, lowest low, close of the last) and each series keeps the value a trader must not
miss in the bucket (the worst drawdown, margin ratio and distance to liquidation; the last
equity and position). All times are UTC.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liqbt.outcome import compare_rows
from liqbt.runner import RunResult
from liqbt.stats import drawdown

#: runs longer than this many bars are downsampled in the charts
MAX_CHART_BARS = 10_000
#: ... to at most this many candles
TARGET_CHART_BARS = 5_000
#: most fill markers drawn per side and symbol (evenly thinned above; the trade table has all)
MAX_FILL_MARKERS = 5_000

_BUY = "#1a9850"
_SELL = "#d73027"
_LIQ = "#7b3294"
_WARN = "#e6ab02"
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
_TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}"
    "table.liqbt{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
    "table.liqbt th,table.liqbt td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    "table.liqbt th{background:#f4f4f4}table.liqbt td.num{text-align:right}"
    ".cols{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}.bad{color:#b2182b;font-weight:bold}"
    ".note{color:#555;font-size:0.85em}"
)


# --- small page helpers (also used by other reports) ---------------------------------------
@dataclass(frozen=True)
class Link:
    """A table cell that links ``href`` (relative to the page) with ``text``."""

    text: str
    href: str


def run_link(target: str | Path, page_dir: str | Path) -> str:
    """The relative href from a page in ``page_dir`` to the report ``target`` (a file or a
    report folder, whose ``index.html`` is linked), with ``/`` separators."""
    target = Path(target)
    if target.suffix.lower() != ".html":
        target = target / "index.html"
    rel = os.path.relpath(target.resolve(), Path(page_dir).resolve())
    return rel.replace(os.sep, "/")


def _cell(value: Any) -> str:
    if isinstance(value, Link):
        return f"<td><a href='{html.escape(value.href)}'>{html.escape(value.text)}</a></td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, float):
        # money and percentages with 2 decimals; small quantities (0.003 BTC) significant
        text = ("–" if not math.isfinite(value) else f"{value:,.2f}"
                if abs(value) >= 1 or value == 0 else f"{value:.4g}")
        return f"<td class='num'>{text}</td>"
    if isinstance(value, int):
        return f"<td class='num'>{value}</td>"
    return f"<td>{html.escape('–' if value is None else str(value))}</td>"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
               table_id: str | None = None) -> str:
    """An HTML table: floats as ``1,234.56``, ``None`` as ``–``, :class:`Link` cells as
    links, everything escaped."""
    ident = f" id='{html.escape(table_id)}'" if table_id else ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table class='liqbt'{ident}><tr>{head}</tr>{body}</table>"


def html_page(title: str, body: str, bokeh: bool = False) -> str:
    """A complete page; ``bokeh=True`` inlines Bokeh's JavaScript and CSS (no network)."""
    resources = ""
    if bokeh:
        from bokeh.resources import Resources

        # inline (offline) and only what the reports use: no WebGL, MathJax or API bundles
        resources = Resources(mode="inline",
                              components=["bokeh", "bokeh-widgets", "bokeh-tables"]).render()
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>{resources}</head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def _target(path: str | Path) -> Path:
    """``path`` if it names an ``.html`` file, else ``path/index.html`` (folder created)."""
    p = Path(path)
    if p.suffix.lower() != ".html":
        p = p / "index.html"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _write(path: Path, text: str) -> Path:
    from liqbt.outputs import atomic_write_text

    atomic_write_text(path, text)
    return path


# --- downsampling ---------------------------------------------------------------------------
def bucket_starts(n: int, max_bars: int = MAX_CHART_BARS,
                  target: int = TARGET_CHART_BARS) -> np.ndarray | None:
    """Start indices of equal buckets of consecutive bars (``None``: draw every bar)."""
    if n <= max_bars:
        return None
    size = math.ceil(n / target)
    return np.arange(0, n, size)


def _agg(values: Sequence[float] | np.ndarray, starts: np.ndarray | None, how: str) -> np.ndarray:
    """Per bucket: ``first``, ``last``, ``max`` or ``min`` (NaN ignored) of ``values``."""
    arr = np.asarray(values, dtype=float)
    if starts is None or not len(arr):
        return arr
    if how == "first":
        return arr[starts]
    if how == "last":
        return arr[np.append(starts[1:], len(arr)) - 1]
    with np.errstate(invalid="ignore"):
        return (np.fmax if how == "max" else np.fmin).reduceat(arr, starts)


def liquidation_distance_pct(mark: Sequence[float], lp: Sequence[float],
                             size: Sequence[float]) -> np.ndarray:
    """How far the mark can move against the position before it is liquidated, in % of the
    mark: ``(mark − LP) / mark × 100`` for a long (size > 0), ``(LP − mark) / mark × 100`` for
    a short; NaN when flat or no price liquidates. Positive while safe, 0 at liquidation —
    the same reading for longs, shorts and neutral grids."""
    m = np.asarray(mark, dtype=float)
    p = np.asarray(lp, dtype=float)
    side = np.sign(np.asarray(size, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = side * (m - p) / m * 100.0
    out[(side == 0) | ~np.isfinite(out)] = np.nan
    return out


# --- the run report --------------------------------------------------------------------------
def _fmt(x: Any, spec: str = ",.2f", unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:{spec}}{unit}"


def _run_rows(result: RunResult) -> list[tuple[str, str]]:
    markets = ", ".join(f"{m['symbol']} {m['margin_mode']} {m['leverage']:g}x"
                        for m in result.markets)
    rows = [
        ("Run", result.label), ("Strategy", result.strategy), ("Markets", markets),
        ("Bars (UTC)", f"{result.start} → {result.end} ({result.bars:,} bars)"),
        ("Initial balance", f"{result.initial_balance:,.2f} USDT"),
        ("Final equity", f"{result.final_equity:,.2f} USDT"),
        ("Return", f"{result.return_pct:+,.2f} %"),
        ("Max drawdown", f"{result.max_drawdown_pct:,.2f} %"),
        ("Fees paid", f"{result.fees_paid:,.2f} USDT"),
        ("Funding paid (+ = paid)", f"{result.funding_paid:+,.2f} USDT "
                                     f"{result.funding_note}".strip()),
        ("Insurance fund gained", f"{result.insurance_fund_delta:+,.2f} USDT"),
        ("Liquidations", str(result.liquidation_count)),
        ("Top-ups", str(len(result.top_ups))),
        ("Closest to liquidation", _fmt(result.min_liquidation_distance_pct, ",.2f", " %")),
        ("Wiped out", f"yes, {result.wipeout_time}" if result.wiped_out else "no"),
        ("Bot stopped", (f"{result.stopped_kind or 'stop'}"
                         + (f" at {result.stopped_time}" if result.stopped_time else "")
                         + f": {result.stopped_reason}") if result.stopped_reason
         else "no (ran to the end of the data)"),
    ]
    est = (result.launch_report or {}).get("estimated_liquidation_price") or (
        result.launch_report or {}).get("estimated_liquidation_price_all_filled")
    if est:
        rows.append(("Estimated LP at launch if every adverse order fills", f"{est:,.2f}"))
    return rows


def _kv_table(rows: Sequence[tuple[str, str]], table_id: str) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in rows)
    return f"<table class='liqbt' id='{table_id}'>{body}</table>"


def _bot_html(result: RunResult) -> str:
    bot = result.bot or {}
    parts: list[str] = []
    if "pairs" in bot:
        total = bot.get("grid_profit", 0.0) + bot.get("unrealized_pnl", 0.0)
        parts.append("<h2>Grid</h2>" + _kv_table([
            ("Matched pairs", str(bot["pairs"])),
            ("Grid profit (gross)", f"{bot.get('grid_profit', 0.0):+,.2f} USDT"),
            ("Floating PnL at the end", f"{bot.get('unrealized_pnl', 0.0):+,.2f} USDT"),
            ("Grid profit + floating PnL", f"{total:+,.2f} USDT"),
            ("Fees", f"{bot.get('fees', 0.0):,.2f} USDT"),
            ("Orders resting at the end", str(len(bot.get("open_orders", [])))),
        ], "grid-view"))
    if "deals" in bot:
        deals = bot["deals"]
        parts.append(
            f"<h2>DCA deals ({len(deals)})</h2>" + html_table(
                ["deal", "start", "end", "hours", "safety orders", "entry", "average", "exit",
                 "size", "pnl (gross USDT)", "reason"],
                [[d["deal"], d["start"], d["end"], d["duration_hours"], d["safety_orders"],
                  d["entry"], d["average"], d["exit"], d["size"], d["pnl"], d["reason"]]
                 for d in deals], "deals"))
    return "".join(parts)


def _stats_html(result: RunResult) -> str:
    st = result.statistics
    if st is None:
        return ""
    rows = st.rows()
    half = (len(rows) + 1) // 2
    reasons = html_table(["exit reason", "trades"],
                         [[k.replace("_", " "), v] for k, v in st.exit_reasons.items()],
                         "exit-reasons")
    return ("<h2>Statistics</h2><p class='note'>Every figure is defined, with its sign, in "
            "docs/results.md. Win rate, profit factor and expectancy are net of fees.</p>"
            f"<div class='cols'>{_kv_table(rows[:half], 'statistics')}"
            f"{_kv_table(rows[half:], 'statistics-2')}{reasons}</div>")


def _liq_html(result: RunResult) -> str:
    if not result.liquidations:
        return ""
    return "<h2>Liquidations</h2>" + html_table(
        ["time (UTC)", "symbol", "side", "size", "trigger (mark)", "settled at", "loss (USDT)",
         "partial", "margin mode"],
        [[q["time"], q["symbol"], q["side"], q["size"], q["trigger_price"],
          q["settlement_price"], q["loss"], q["partial"], q["margin_mode"]]
         for q in result.liquidations], "liquidations")


def _warnings_html(result: RunResult) -> str:
    lines = getattr(result, "data_warnings", [])
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<h2>Data warnings</h2><ul class='data-warnings'>{items}</ul>"


def _ms(times: Sequence[Any]) -> np.ndarray:
    """Milliseconds since the epoch as floats (Bokeh's datetime axis unit; sent as binary)."""
    arr = np.array([t.replace(tzinfo=None) if hasattr(t, "replace") else t for t in times],
                   dtype="datetime64[ms]")
    return arr.astype("int64").astype(float)


def _iso_ms(value: str) -> float:
    return float(np.datetime64(value.rstrip("Z"), "ms").astype("int64"))


def _thin(items: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _figure(title: str, height: int, x_range: Any = None, y_label: str = "") -> Any:
    from bokeh.models import NumeralTickFormatter
    from bokeh.plotting import figure

    kwargs: dict[str, Any] = {} if x_range is None else {"x_range": x_range}
    fig = figure(title=title, height=height, sizing_mode="stretch_width",
                 x_axis_type="datetime", tools=_TOOLS, active_scroll="xwheel_zoom",
                 active_drag="xpan", **kwargs)
    fig.yaxis.axis_label = y_label
    fig.yaxis.formatter = NumeralTickFormatter(format="0,0.[00]")
    return fig


def _legend(fig: Any) -> None:
    if fig.legend:
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        fig.legend.label_text_font_size = "8pt"
        fig.legend.background_fill_alpha = 0.7


def _price_figure(result: RunResult, symbol: str, x: np.ndarray, starts: np.ndarray | None,
                  width_ms: float, x_range: Any) -> Any:
    from bokeh.models import ColumnDataSource, HoverTool, Span

    row = result.timeline["symbols"][symbol]
    o, h = _agg(row["open"], starts, "first"), _agg(row["high"], starts, "max")
    lo, c = _agg(row["low"], starts, "min"), _agg(row["close"], starts, "last")
    label = next((f"{m['margin_mode']} {m['leverage']:g}x" for m in result.markets
                  if m["symbol"] == symbol), "")
    note = f" — {len(x):,} candles of {len(result.timeline['time']):,} bars" if (
        starts is not None) else ""
    fig = _figure(f"{symbol} ({label}): candles, fills, liquidations{note}", 380, x_range,
                  "price (USDT)")
    fig.name = f"price-{symbol}"
    up = c >= o
    src = ColumnDataSource({"x": x, "open": o, "high": h, "low": lo, "close": c,
                            "top": np.maximum(o, c), "bottom": np.minimum(o, c),
                            "colour": np.where(up, _BUY, _SELL)})
    fig.segment("x", "high", "x", "low", source=src, color="colour", line_width=1)
    bars = fig.vbar("x", width_ms * 0.8, "top", "bottom", source=src, fill_color="colour",
                    line_color="colour", legend_label="candles (trade price)")
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[
        ("time", "@x{%F %H:%M}"), ("open", "@open{0,0.[00]}"), ("high", "@high{0,0.[00]}"),
        ("low", "@low{0,0.[00]}"), ("close", "@close{0,0.[00]}")],
        formatters={"@x": "datetime"}))
    fills = [f for f in result.fills if f["symbol"] == symbol and not f["liquidation"]]
    for side, marker, colour, name in (
        (1, "triangle", _BUY, "buy fills"), (-1, "inverted_triangle", _SELL, "sell fills"),
    ):
        chosen = [f for f in fills if (f["size"] > 0) == (side > 0)]
        if not chosen:
            continue
        shown = _thin(chosen, MAX_FILL_MARKERS)
        extra = f", {len(shown):,} drawn" if len(shown) < len(chosen) else ""
        fsrc = ColumnDataSource({"x": _ms([f["time"] for f in shown]),
                                 "price": [f["price"] for f in shown],
                                 "size": [abs(f["size"]) for f in shown]})
        r = fig.scatter("x", "price", source=fsrc, marker=marker, size=8, color=colour,
                        legend_label=f"{name} ({len(chosen):,}{extra})")
        fig.add_tools(HoverTool(renderers=[r], tooltips=[
            ("fill", name), ("time", "@x{%F %H:%M}"), ("price", "@price{0,0.[00]}"),
            ("size", "@size")], formatters={"@x": "datetime"}))
    liqs = [q for q in result.liquidations if q["symbol"] == symbol]
    if liqs:
        lsrc = ColumnDataSource({"x": [_iso_ms(q["time"]) for q in liqs],
                                 "price": [q["trigger_price"] for q in liqs],
                                 "loss": [q["loss"] for q in liqs],
                                 "side": [q["side"] for q in liqs]})
        r = fig.scatter("x", "price", source=lsrc, marker="x", size=18, line_width=3,
                        color=_LIQ, legend_label=f"liquidations ({len(liqs)})")
        fig.add_tools(HoverTool(renderers=[r], tooltips=[
            ("liquidated", "@side"), ("time", "@x{%F %H:%M}"), ("mark", "@price{0,0.[00]}"),
            ("loss", "@loss{0,0.00} USDT")], formatters={"@x": "datetime"}))
    _overlay(fig, result, symbol, x, Span)
    _legend(fig)
    return fig


def _overlay(fig: Any, result: RunResult, symbol: str, x: np.ndarray, span: Any) -> None:
    """The bot's own lines: grid levels and the orders resting at the end; DCA deals."""
    report = result.launch_report or {}
    mine = len(result.markets) == 1 or report.get("symbol") in (None, symbol)
    if not mine or not len(x):
        return
    levels = report.get("levels") or ()
    if 0 < len(levels) <= 400:
        for level in levels:
            fig.add_layout(span(location=float(level), dimension="width", line_color="#4575b4",
                                line_alpha=0.35, line_dash="dashed", line_width=1))
        # an invisible glyph so the legend explains the dashed lines
        fig.line([x[0], x[0]], [levels[0], levels[0]], color="#4575b4", line_dash="dashed",
                 legend_label=f"grid lines ({len(levels)})")
    orders = [o for o in (result.bot or {}).get("open_orders", [])
              if o.get("symbol", symbol) == symbol]
    if orders:
        end = x[-1]
        for side, colour in ((1, _BUY), (-1, _SELL)):
            prices = [o["price"] for o in orders if (o["size"] > 0) == (side > 0)]
            if prices:
                fig.scatter([end] * len(prices), prices, marker="dash", size=22, line_width=3,
                            color=colour, legend_label=f"{'buy' if side > 0 else 'sell'} "
                                                       f"orders resting at the end "
                                                       f"({len(prices)})")
    deals = (result.bot or {}).get("deals")
    if deals:
        _dca_overlay(fig, result, symbol, deals, x[-1])


def _dca_overlay(fig: Any, result: RunResult, symbol: str, deals: list[dict[str, Any]],
                 last: float) -> None:
    """Per deal: the safety ladder (dotted), the average entry and take profit as steps that
    move with each safety fill."""
    report = result.launch_report or {}
    ladder = report.get("ladder") or ()
    first_entry = report.get("entry_price")
    tp = report.get("take_profit_pct")
    side = 1.0 if report.get("direction", "long") == "long" else -1.0
    fills = sorted((f for f in result.fills if f["symbol"] == symbol and not f["liquidation"]),
                   key=lambda f: f["time"])
    fill_x = _ms([f["time"] for f in fills]) if fills else np.zeros(0)
    lad_x0, lad_x1, lad_y = [], [], []
    avg_xs, avg_ys, tp_xs, tp_ys = [], [], [], []
    for d in deals:
        if not d.get("start") or not d.get("entry"):
            continue
        x0 = _iso_ms(d["start"])
        x1 = _iso_ms(d["end"]) if d.get("end") else last
        if first_entry:
            for rung in ladder[1:]:
                lad_x0.append(x0)
                lad_x1.append(x1)
                lad_y.append(d["entry"] * float(rung.price) / float(first_entry))
        # running average entry from the deal's opening fills (base, then safety orders)
        qty = cost = 0.0
        xs, ys = [], []
        for f, fx in zip(fills, fill_x, strict=True):
            if fx < x0 or fx >= x1 or (f["size"] > 0) != (side > 0):
                continue
            qty += abs(f["size"])
            cost += abs(f["size"]) * f["price"]
            xs.append(fx)
            ys.append(cost / qty)
        if not xs:
            xs, ys = [x0], [d["entry"]]
        xs.append(x1)
        ys.append(ys[-1])
        avg_xs.append(xs)
        avg_ys.append(ys)
        if tp:
            tp_xs.append(xs)
            tp_ys.append([y * (1 + side * tp / 100) for y in ys])
    if lad_y:
        fig.segment(lad_x0, lad_y, lad_x1, lad_y, color="#999999", line_dash="dotted",
                    legend_label="safety-order ladder")
    if avg_xs:
        fig.multi_line(avg_xs, avg_ys, color="#ff7f0e", line_width=2,
                       legend_label="average entry")
    if tp_xs:
        fig.multi_line(tp_xs, tp_ys, color=_BUY, line_width=2, line_dash="dashed",
                       legend_label=f"take profit ({tp:g} %)")


def _charts(result: RunResult, warning_threshold: float) -> Any:
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, HoverTool, Range1d, Span

    tl = result.timeline
    times = _ms(tl["time"])
    n = len(times)
    starts = bucket_starts(n)
    x = times if starts is None else times[starts]
    step = np.diff(times).astype("int64") if n > 1 else np.array([60_000])
    width_ms = float(np.median(step)) * (1 if starts is None else int(starts[1] - starts[0])
                                         if len(starts) > 1 else 1)
    symbols = list(tl.get("symbols", {}))
    figs = []
    x_range = None
    for symbol in symbols:
        fig = _price_figure(result, symbol, x, starts, width_ms, x_range)
        x_range = fig.x_range
        figs.append(fig)
    # position size
    pos = _figure("Position size (base units; + long, − short)", 170, x_range, "size")
    pos.name = "position"
    x_range = x_range or pos.x_range
    for k, symbol in enumerate(symbols):
        size = _agg(tl["symbols"][symbol]["size"], starts, "last")
        pos.step(x, size, mode="after", color=_COLOURS[k % len(_COLOURS)],
                 legend_label=symbol)
    _legend(pos)
    figs.append(pos)
    # equity and drawdown
    equity = np.asarray(tl["equity"], dtype=float)
    eq = _figure(f"Equity: return {result.return_pct:+.2f} %", 230, x_range, "USDT")
    eq.name = "equity"
    esrc = ColumnDataSource({"x": x, "equity": _agg(equity, starts, "last"),
                             "low": _agg(equity, starts, "min")})
    r = eq.line("x", "equity", source=esrc, color="#1f77b4", legend_label="equity (at mark)")
    if starts is not None:
        eq.line("x", "low", source=esrc, color="#1f77b4", alpha=0.3,
                legend_label="lowest equity in each candle")
    if "margin_balance" in tl and any(m["margin_mode"] == "cross" for m in result.markets):
        eq.line(x, _agg(tl["margin_balance"], starts, "last"), color="#ff7f0e", alpha=0.6,
                legend_label="cross margin balance")
    eq.add_layout(Span(location=result.initial_balance, dimension="width",
                       line_color="grey", line_dash="dashed"))
    eq.add_tools(HoverTool(renderers=[r], tooltips=[("time", "@x{%F %H:%M}"),
                                                    ("equity", "@equity{0,0.00}")],
                           formatters={"@x": "datetime"}))
    _legend(eq)
    figs.append(eq)
    dd = drawdown(np.concatenate(([result.initial_balance], equity)))[1:] * -100.0
    ddf = _figure(f"Drawdown: max {result.max_drawdown_pct:.2f} % (initial balance is the "
                  "first high)", 160, x_range, "% below high")
    ddf.name = "drawdown"
    ddf.varea(x=x, y1=np.zeros(len(x)), y2=_agg(dd, starts, "min"), color=_SELL, alpha=0.4)
    figs.append(ddf)
    # margin ratio
    ratio = _figure("Margin ratio = maintenance margin / margin balance (liquidation at "
                    "100 %)", 200, x_range, "%")
    ratio.name = "margin-ratio"
    top = 110.0
    for k, symbol in enumerate(symbols):
        series = _agg(np.asarray(tl["symbols"][symbol]["margin_ratio"], dtype=float) * 100,
                      starts, "max")
        if len(series):
            top = max(top, float(np.nanmax(series)) * 1.05 if np.any(
                np.isfinite(series)) else top)
        ratio.line(x, series, color=_COLOURS[k % len(_COLOURS)], legend_label=symbol)
    ratio.add_layout(Span(location=warning_threshold * 100, dimension="width",
                          line_color=_WARN, line_dash="dashed", line_width=2))
    ratio.add_layout(Span(location=100, dimension="width", line_color=_LIQ, line_width=2))
    ratio.line([x[0], x[0]] if len(x) else [], [warning_threshold * 100] * (2 if len(x) else 0),
               color=_WARN, line_dash="dashed",
               legend_label=f"warning ({warning_threshold * 100:.0f} %)")
    if result.liquidations:
        ratio.scatter([_iso_ms(q["time"]) for q in result.liquidations],
                      [100.0] * len(result.liquidations), marker="x", size=16, line_width=3,
                      color=_LIQ, legend_label="liquidation (inside the bar)")
    ratio.y_range = Range1d(0, min(top, 1000.0))
    _legend(ratio)
    figs.append(ratio)
    # distance to liquidation
    dist = _figure("Distance to liquidation: how far the mark can move against the position "
                   "(% of mark; 0 = liquidated)", 200, x_range, "%")
    dist.name = "liquidation-distance"
    high = 0.0
    for k, symbol in enumerate(symbols):
        row = tl["symbols"][symbol]
        d = _agg(liquidation_distance_pct(row["mark"], row["liquidation_price"], row["size"]),
                 starts, "min")
        if np.any(np.isfinite(d)):
            high = max(high, float(np.nanmax(d)))
        dsrc = ColumnDataSource({"x": x, "d": d})
        r = dist.line("x", "d", source=dsrc, color=_COLOURS[k % len(_COLOURS)],
                      legend_label=symbol)
        dist.add_tools(HoverTool(renderers=[r], tooltips=[
            (symbol, "@d{0.00} %"), ("time", "@x{%F %H:%M}")], formatters={"@x": "datetime"}))
    dist.add_layout(Span(location=0, dimension="width", line_color=_LIQ, line_width=2))
    if result.liquidations:
        dist.scatter([_iso_ms(q["time"]) for q in result.liquidations],
                     [0.0] * len(result.liquidations), marker="x", size=16, line_width=3,
                     color=_LIQ, legend_label="liquidation")
    # far-away LPs (a short grid's LP at 20× the price) would squash the axis: cap the view
    dist.y_range = Range1d(-2, min(max(high * 1.05, 5.0), 100.0))
    _legend(dist)
    figs.append(dist)
    figs[-1].xaxis.axis_label = "time (UTC)"
    return column(*figs, sizing_mode="stretch_width", name="charts")


def _trade_table(result: RunResult) -> Any:
    from bokeh.models import ColumnDataSource, DataTable, NumberFormatter, TableColumn

    trades = result.trades
    cols = ["symbol", "side", "size", "entry_time", "entry_price", "exit_time", "exit_price",
            "pnl", "fees", "net", "reason"]
    numeric = ("pnl", "fees", "net", "entry_price", "exit_price")
    data: dict[str, list[Any]] = {c: [] for c in cols}
    for t in trades:
        for c in cols:
            if c == "net":
                data[c].append(t["pnl"] - t["fees"])
            else:
                v = t.get(c)
                # an open trade's exit price is NaN (shown as –), its exit time blank
                data[c].append((math.nan if c in numeric else "") if v is None else v)
    money = NumberFormatter(format="0,0.00", nan_format="–")
    columns = [TableColumn(field=c, title=c.replace("_", " "), formatter=money)
               if c in numeric else TableColumn(field=c, title=c.replace("_", " "))
               for c in cols]
    return DataTable(source=ColumnDataSource(data), columns=columns, sortable=True,
                     height=min(420, 30 + 25 * max(len(trades), 1)),
                     sizing_mode="stretch_width", name="trades")


def run_report_html(result: RunResult, warning_threshold: float | None = None,
                    title: str | None = None) -> str:
    """The run report page (see :func:`write_run_report`)."""
    from bokeh.embed import components

    if warning_threshold is None:
        warning_threshold = result.warning_threshold

    if not result.timeline.get("symbols"):
        raise ValueError("the run has no per-bar timeline: run it with timeline=True")
    charts = _charts(result, warning_threshold)
    table = _trade_table(result)
    script, (charts_div, table_div) = components((charts, table))
    closed = sum(1 for t in result.trades if t["exit_time"] is not None)
    body = (
        f"<div class='cols'><div><h2>Run</h2>{_kv_table(_run_rows(result), 'summary')}</div>"
        f"<div>{_stats_html(result)}</div></div>{_warnings_html(result)}{_bot_html(result)}"
        f"{_liq_html(result)}"
        "<h2>Charts</h2><p class='note'>Drag to pan, scroll to zoom the shared time axis; "
        "click a legend entry to hide it.</p>"
        f"{charts_div}<h2>Trades ({closed} closed, {len(result.trades) - closed} open)</h2>"
        "<p class='note'>Round trips: pnl is gross, net = pnl − fees; reason is the exit "
        "tag (docs/results.md).</p>"
        f"{table_div}{script}"
    )
    return html_page(title or f"liqbt run — {result.label} — {result.strategy}", body,
                     bokeh=True)


def write_run_report(result: RunResult, path: str | Path,
                     warning_threshold: float | None = None, title: str | None = None) -> Path:
    """Write one self-contained interactive HTML report for a run.

    Parameters
    ----------
    result
        From ``run_config(..., timeline=True)``.
    path
        An ``.html`` file, or a folder (then ``index.html`` inside it).
    warning_threshold
        Margin-ratio warning line of the margin-ratio chart (default: the run's account
        setting, ``result.warning_threshold``).
    title
        Page title (default: the run's label and strategy).

    Returns
    -------
    Path
        The HTML file written.
    """
    return _write(_target(path), run_report_html(result, warning_threshold, title))


def write_trades_csv(result: RunResult, path: str | Path) -> Path:
    """Write the round trips (plus ``net = pnl − fees``) as CSV; returns the path."""
    import csv
    import io

    cols = ["symbol", "side", "size", "entry_time", "entry_price", "exit_time", "exit_price",
            "pnl", "fees", "net", "reason"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for t in result.trades:
        writer.writerow(["" if t.get(c) is None else t.get(c) for c in cols[:-2]]
                        + [t["pnl"] - t["fees"], t.get("reason", "")])
    return _write(Path(path), buf.getvalue())


# --- sweeps and comparisons ------------------------------------------------------------------
def write_table_report(directory: str | Path, title: str, headers: Sequence[str],
                       rows: Sequence[Sequence[Any]], intro: str = "") -> Path:
    """A page with one table (cells may be :class:`Link` to run reports) and an optional
    intro paragraph: the shape of the max-leverage, survival and optimisation pages."""
    out = _target(directory)
    body = (f"<p>{html.escape(intro)}</p>" if intro else "") + html_table(headers, rows,
                                                                           "runs")
    return _write(out, html_page(title, body))



def _cell_notes(r: Mapping[str, Any]) -> str:
    """What went wrong in one sweep run, for the heatmap cell (empty when nothing did)."""
    if r.get("wiped_out"):
        return "WIPED OUT"
    liqs = int(r.get("liquidations") or 0)
    if liqs:
        return f"{liqs} liquidation" + ("s" if liqs > 1 else "")
    if r.get("trades") == 0 and not r.get("fees_paid"):
        return "no trades"
    return ""


def _deaths(xs: list[Any], ys: list[Any], dead: np.ndarray, x_key: str = "leverage") -> str:
    """``isolated: first liquidation at 20x; cross: survives ...`` per row of the map."""
    def name(v: Any) -> str:
        return f"{v:g}x" if x_key == "leverage" and isinstance(v, int | float) else (
            f"{x_key}={v:g}" if isinstance(v, int | float) else f"{x_key}={v}")

    parts = []
    for i, y in enumerate(ys):
        first = next((xs[j] for j in range(len(xs)) if dead[i, j]), None)
        parts.append(f"{y}: survives every value up to {name(xs[-1])}" if first is None
                     else f"{y}: first liquidation at {name(first)}")
    return "; ".join(parts)


def _axis_values(members: list[Mapping[str, Any]], key: str) -> list[Any]:
    values = list(dict.fromkeys(r.get(key) for r in members))
    try:
        return sorted(values)
    except TypeError:
        return values


def _label(key: str, value: Any) -> str:
    if key == "leverage" and isinstance(value, int | float):
        return f"{float(value):g}x"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _heatmap(members: list[Mapping[str, Any]], title: str, x_key: str = "leverage",
             y_key: str = "margin_mode") -> tuple[Any, str]:
    """A Bokeh ``x_key`` × ``y_key`` heatmap of the return (any two swept keys) and its
    caption."""
    from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper
    from bokeh.palettes import RdYlGn11
    from bokeh.plotting import figure

    xs = _axis_values(members, x_key)
    ys = _axis_values(members, y_key)
    xl = [_label(x_key, v) for v in xs]
    yl = [_label(y_key, v) for v in ys]
    dead = np.zeros((len(ys), len(xs)), dtype=bool)
    data: dict[str, list[Any]] = {k: [] for k in ("lev", "mode", "ret", "text", "dead")}
    for r in members:
        i, j = ys.index(r.get(y_key)), xs.index(r.get(x_key))
        died = bool(r.get("liquidations")) or bool(r.get("wiped_out"))
        dead[i, j] = died
        ret = r.get("return_pct")
        data["lev"].append(xl[j])
        data["mode"].append(yl[i])
        data["ret"].append(float("nan") if ret is None else float(ret))
        note = _cell_notes(r)
        data["text"].append(("–" if ret is None else f"{ret:+.1f} %") + (
            f" {note}" if note else ""))
        data["dead"].append(died)
    finite = [v for v in data["ret"] if math.isfinite(v)]
    span = max([abs(v) for v in finite] + [1.0])
    mapper = LinearColorMapper(palette=list(reversed(RdYlGn11)), low=-span, high=span,
                               nan_color="#dddddd")
    fig = figure(title=title, x_range=xl, y_range=yl,
                 height=110 + 70 * len(ys), width=max(420, 110 * len(xs) + 120),
                 tools="hover,save", toolbar_location="right")
    fig.name = "heatmap"
    src = ColumnDataSource(data)
    fig.rect("lev", "mode", 1, 1, source=src, fill_color={"field": "ret", "transform": mapper},
             line_color="white")
    fig.rect("lev", "mode", 0.92, 0.86, source=ColumnDataSource(
        {k: [v for v, d in zip(data[k], data["dead"], strict=True) if d] for k in data}),
        fill_alpha=0, line_color="#222222", line_width=3, line_dash="dashed")
    fig.text("lev", "mode", "text", source=src, text_align="center", text_baseline="middle",
             text_font_size="9pt")
    fig.xaxis.axis_label = x_key.replace("_", " ")
    fig.yaxis.axis_label = y_key.replace("_", " ")
    hover = fig.select_one(HoverTool)
    hover.tooltips = [(x_key, "@lev"), (y_key, "@mode"), ("return", "@ret{+0.00} %"),
                      ("", "@text")]
    return fig, _deaths(xs, yl, dead, x_key)


def _runs_table(rows: Sequence[Mapping[str, Any]], links: Mapping[int, str]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r if k != "config_hash"))
    head = (["report"] if links else []) + columns
    body = [([Link("open", links[i]) if i in links else None] if links else [])
            + [r.get(c) for c in columns] for i, r in enumerate(rows)]
    return html_table(head, body, "runs")


def write_sweep_report(
    rows: Sequence[Mapping[str, Any]], directory: str | Path, keys: Sequence[str] = (),
    title: str = "liqbt sweep", run_reports: Mapping[int, str | Path] | None = None,
    axes: tuple[str, str] | None = None,
) -> Path:
    """Write ``index.html``: per combination of the other swept values, a leverage ×
    margin-mode heatmap of the return, or of any two swept keys given as ``axes`` (cells name
    their liquidations, wipeout or "no trades"; liquidated cells are outlined; the caption says
    at which value each row of the map first dies),
    then every row, linking ``run_reports[i]`` (row index → report path) where given."""
    from bokeh.embed import components
    from bokeh.layouts import column

    out = _target(directory)
    rows = list(rows)
    parts: list[str] = []
    maps = []
    if axes is None and "leverage" in keys and "margin_mode" in keys:
        axes = ("leverage", "margin_mode")
    if axes is None and not keys and rows and all("leverage" in r and "margin_mode" in r
                                                  for r in rows):
        axes = ("leverage", "margin_mode")
    if rows and axes is not None and all(a in r for a in axes for r in rows):
        x_key, y_key = axes
        other = [k for k in keys if k not in axes]
        groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        for r in rows:
            groups.setdefault(tuple(r.get(k) for k in other), []).append(r)
        for combo, members in list(groups.items())[:12]:
            suffix = ", ".join(f"{k}={v}" for k, v in zip(other, combo, strict=True))
            fig, deaths = _heatmap(members, f"Return by {x_key} and {y_key}"
                                   + (f" — {suffix}" if suffix else ""), x_key, y_key)
            maps.append(fig)
            parts.append(f"<p><b>{html.escape((suffix + ': ') if suffix else '')}"
                         f"{html.escape(deaths)}</b> (outlined = liquidated)</p>")
    links = {i: run_link(p, out.parent) for i, p in (run_reports or {}).items()}
    body = "".join(parts)
    if maps:
        script, div = components(column(*maps))
        body += div + script
    body += "<h2>Runs</h2>" + _runs_table(rows, links)
    return _write(out, html_page(title, body, bokeh=bool(maps)))


def write_compare_report(results: Sequence[RunResult], directory: str | Path,
                         run_reports: Sequence[str | Path] | None = None,
                         title: str = "liqbt compare") -> Path:
    """Write ``index.html`` with one column per run (the compare table) and a link to each
    run's own report (``run_reports``, same order as ``results``)."""
    out = _target(directory)
    links = [run_link(p, out.parent) for p in run_reports or []]
    rows: list[list[Any]] = []
    if links:
        rows.append(["report", *(Link("open", h) for h in links)])
    rows += compare_rows(results)
    body = html_table(["", *(r.label for r in results)], rows, "compare")
    return _write(out, html_page(title, body))


__all__ = [
    "MAX_CHART_BARS",
    "MAX_FILL_MARKERS",
    "TARGET_CHART_BARS",
    "Link",
    "bucket_starts",
    "html_page",
    "html_table",
    "liquidation_distance_pct",
    "run_link",
    "run_report_html",
    "write_compare_report",
    "write_run_report",
    "write_sweep_report",
    "write_table_report",
    "write_trades_csv",
]
