"""Run one backtest from a :class:`liqbt.config.RunConfig` and collect a :class:`RunResult`.

The runner only wires things together: loaders + :func:`liqbt.feeds.make_feed` for the data,
:class:`liqbt.broker.MarginBroker` with one ``set_market`` per data, the strategy with its
params and the analyzers of :mod:`liqbt.analyzers`. Every number in the result is derived from
the broker's immutable events and backtrader's trades.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import backtrader as bt
import numpy as np

from liqbt import analyzers as an
from liqbt.config import RunConfig, load_strategy_class
from liqbt.core import events as ev
from liqbt.core.errors import ValidationError
from liqbt.stats import Statistics, compute_statistics

# bars per progress tick; below this many bars a run is too short for a progress bar
_PROGRESS_EVERY = 500


@dataclass
class RunResult:
    """The outcome of one run. :meth:`to_dict` is the JSON form (``liqbt run --json``).

    Attributes
    ----------
    initial_balance, final_equity
        USDT at the start and at the last bar's mark.
    return_pct, max_drawdown_pct
        Total return and the largest peak-to-trough fall of per-bar equity, in %.
    fees_paid, funding_paid, funding_by_symbol
        Trading fees (liquidation fees included) and net funding paid (negative = received).
    insurance_fund_delta
        What the insurance fund gained from this account's liquidations.
    wiped_out, wipeout_time
        Whether (and when) equity fell below what the smallest order needs.
    liquidations, top_ups, trades
        Lists of plain dicts (see ``liqbt run --json``).
    funding_note
        ``"no funding data"`` when no market had funding events.
    data_warnings
        Data-quality findings of :mod:`liqbt.data.quality` (gaps, mark/funding coverage,
        outliers, funding magnitude), one line each naming the file.
    min_liquidation_distance_pct
        Closest the mark came to a liquidation price, in % (``None`` without positions).
    engine
        ``backtrader`` (MarginBroker) or ``fast`` (:mod:`liqbt.fast`).
    warning_threshold
        The account's margin-ratio warning threshold (fraction; reports draw it).
    statistics
        :class:`liqbt.stats.Statistics` (Sharpe, CAGR, win rate, exit reasons...).
    bot
        The bot's own view: its ``summary()`` (grid profit, pairs, floating PnL; DCA cycles)
        and, for DCA, ``deals`` (one row per cycle).
    timeline, fills, launch_report
        Report material (not in :meth:`to_dict`): per-bar series, fill events, the
        strategy's launch report (grid levels...).
    """

    label: str
    start: str | None
    end: str | None
    bars: int
    initial_balance: float
    final_equity: float
    return_pct: float
    max_drawdown_pct: float
    fees_paid: float
    funding_paid: float
    funding_by_symbol: dict[str, float]
    insurance_fund_delta: float
    wiped_out: bool
    wipeout_time: str | None
    liquidation_count: int
    liquidations: list[dict[str, Any]]
    top_ups: list[dict[str, Any]]
    trades: list[dict[str, Any]]
    funding_note: str
    min_liquidation_distance_pct: float | None
    markets: list[dict[str, Any]]
    strategy: str
    stopped_reason: str | None = None
    stopped_kind: str | None = None
    stopped_time: str | None = None
    rejected_orders: int = 0
    data_warnings: list[str] = field(default_factory=list)
    warning_threshold: float = 0.8
    statistics: Statistics | None = None
    bot: dict[str, Any] = field(default_factory=dict)
    engine: str = "backtrader"
    timeline: dict[str, Any] = field(default_factory=dict, repr=False)
    fills: list[dict[str, Any]] = field(default_factory=list, repr=False)
    launch_report: dict[str, Any] = field(default_factory=dict, repr=False)

    _REPORT_ONLY = ("timeline", "fills", "launch_report")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (no NaN/inf: those become ``None``)."""
        data = {k: v for k, v in asdict(self).items() if k not in self._REPORT_ONLY}
        return _clean(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Rebuild a result from :meth:`to_dict` (the executor's cache); unknown keys are
        ignored, report-only fields are empty."""
        import dataclasses

        from liqbt.stats import Statistics

        names = {f.name for f in dataclasses.fields(cls)} - set(cls._REPORT_ONLY)
        kwargs = {k: v for k, v in data.items() if k in names}
        stats = kwargs.get("statistics")
        if isinstance(stats, dict):
            known = {f.name for f in dataclasses.fields(Statistics)}
            kwargs["statistics"] = Statistics(**{k: v for k, v in stats.items() if k in known})
        return cls(**kwargs)

    def summary(self) -> dict[str, Any]:
        """One flat row for sweep tables (no lists), with the comparable statistics."""
        st = self.statistics
        return {
            "label": self.label,
            "final_equity": self.final_equity,
            "return_pct": self.return_pct,
            "max_drawdown_pct": self.max_drawdown_pct,
            "fees_paid": self.fees_paid,
            "funding_paid": self.funding_paid,
            "liquidations": self.liquidation_count,
            "first_liquidation": self.liquidations[0]["time"] if self.liquidations else None,
            "top_ups": len(self.top_ups),
            "trades": len(self.trades),
            "wiped_out": self.wiped_out,
            "min_liquidation_distance_pct": self.min_liquidation_distance_pct,
            "stopped_reason": self.stopped_reason,
            "stopped_kind": self.stopped_kind,
            "stopped_time": self.stopped_time,
            **{k: None if st is None else getattr(st, k) for k in _SUMMARY_STATS},
        }


# statistics repeated in sweep rows (flat, comparable across runs)
_SUMMARY_STATS = ("cagr_pct", "sharpe", "sortino", "calmar", "profit_factor", "win_rate_pct",
                  "adg_pct", "buy_hold_return_pct", "exposure_pct",
                  "longest_without_new_high_hours", "time_above_warning_pct")


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def build_cerebro(
    config: RunConfig, timeline: bool = True, progress: bool = False, data: Any = None
) -> tuple[bt.Cerebro, Any]:
    """Cerebro with the config's feeds, broker, strategy and analyzers (not yet run).

    Parameters
    ----------
    config
        A validated run config.
    timeline
        Record per-bar detail for reports (``False`` keeps only equity, for the drawdown).
    progress
        Show a progress bar on stderr (only when stderr is a terminal).
    data
        A :class:`liqbt.executor.MarketData` with the windows already loaded (many runs over
        the same files), or ``None`` to load them here.

    Returns
    -------
    (cerebro, broker)
    """
    from liqbt.broker import MarginBroker
    from liqbt.data.loaders import load_market_window
    from liqbt.data.quality import market_warnings
    from liqbt.feeds import make_feed

    # runonce: indicators are computed vectorised, the broker still steps bar by bar
    cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True, quicknotify=False)
    acct = config.account
    broker = MarginBroker(
        exchange=acct.exchange,
        cash=acct.balance,
        profile_overrides=dict(acct.profile_overrides) or None,
        intrabar=config.backtest.intrabar,
        settlement=acct.settlement,
        debit=acct.debit,
        position_mode=acct.position_mode,
        warning_threshold=acct.warning_threshold,
    )
    cerebro.broker = broker
    start, end = config.backtest.start, config.backtest.end
    warnings: list[str] = []
    for market in config.markets:
        candles, mark, funding = load_market_window(market, start, end, data)
        feed = make_feed(candles, mark=mark, funding=funding, name=market.symbol)
        warnings += market_warnings(market.symbol, candles, mark, funding,
                                    feed.mark_fallback_bars)
        cerebro.adddata(feed, name=market.symbol)
        broker.set_market(feed, symbol=market.symbol, leverage=market.leverage,
                          margin_mode=market.margin_mode, auto_top_up=market.auto_top_up)
    if warnings and config.backtest.strict_data:
        raise ValidationError(
            [*warnings, "(strict data checks: fix the data, or run without --strict / "
                        "backtest.strict_data)"], config.source)
    # read back by collect_result (RunResult.data_warnings)
    broker.data_warnings = warnings
    cerebro.addstrategy(load_strategy_class(config.strategy.name), **config.strategy.kwargs)
    cerebro.addanalyzer(an.Liquidations, _name="liquidations")
    cerebro.addanalyzer(an.MarginTimeline, _name="timeline", detail=timeline)
    cerebro.addanalyzer(an.Trades, _name="trades")
    if progress:
        cerebro.addanalyzer(an.Progress, _name="progress", every=_PROGRESS_EVERY)
    return cerebro, broker


def max_drawdown_pct(equity: list[float]) -> float:
    """Largest peak-to-trough fall of an equity series, in % of the peak (0 when empty);
    the first value is the first high (:func:`liqbt.stats.drawdown`)."""
    from liqbt.stats import drawdown

    return float(drawdown(np.asarray(equity, dtype=float)).max(initial=0.0)) * 100


def run_config(config: RunConfig, timeline: bool = True, progress: bool = False,
               data: Any = None) -> RunResult:
    """Run one backtest.

    Parameters
    ----------
    config
        The validated config.
    timeline
        Keep per-bar detail for reports (slower); sweeps pass ``False``.
    progress
        Progress bar on stderr when it is a terminal.
    data
        Preloaded :class:`liqbt.executor.MarketData` (see :func:`build_cerebro`).

    Returns
    -------
    RunResult
    """
    cerebro, broker = build_cerebro(config, timeline=timeline, progress=progress, data=data)
    strategy = cerebro.run()[0]
    return collect_result(config, broker, strategy)


def collect_result(config: RunConfig, broker: Any, strategy: Any) -> RunResult:
    """Build the :class:`RunResult` of a finished run from broker events and analyzers."""
    account = broker.account
    events = list(broker.events)
    line = strategy.analyzers.timeline.get_analysis()
    liq = strategy.analyzers.liquidations.get_analysis()
    trades = list(strategy.analyzers.trades.get_analysis()["trades"])
    equity = list(line["equity"])
    final_equity = account.equity()
    initial = account.initial_balance
    funding_by_symbol: dict[str, float] = defaultdict(float)
    liquidations: list[dict[str, Any]] = []
    top_ups: list[dict[str, Any]] = []
    fills: list[dict[str, Any]] = []
    wipeout_time = None
    rejected = 0
    for e in events:
        if isinstance(e, ev.Funding):
            funding_by_symbol[e.symbol] += e.payment
        elif isinstance(e, ev.Liquidation):
            liquidations.append({
                "time": an.iso(e.time), "symbol": e.symbol, "side": e.side, "size": e.size,
                "trigger_price": e.trigger_price, "settlement_price": e.settlement_price,
                "loss": e.loss, "partial": e.partial, "margin_mode": e.margin_mode,
                "insurance_fund_delta": e.insurance_fund_delta,
            })
        elif isinstance(e, ev.TopUp):
            top_ups.append({
                "time": an.iso(e.time), "symbol": e.symbol, "amount": e.amount,
                "liquidation_price_after": e.liquidation_price_after,
            })
        elif isinstance(e, ev.Fill):
            fills.append({
                "time": e.time, "symbol": e.symbol, "size": e.size, "price": e.price,
                "liquidation": e.liquidation,
            })
        elif isinstance(e, ev.Wipeout) and wipeout_time is None:
            wipeout_time = an.iso(e.time)
        elif isinstance(e, ev.Rejected):
            rejected += 1
    has_funding = any(m.funding is not None for m in config.markets)
    times = line["time"]
    report = getattr(strategy, "launch_report", None)
    closes = strategy.datas[0].close.array if strategy.datas else []
    stats = compute_statistics(
        times, equity, initial, final_equity, trades,
        benchmark_close=[closes[0], closes[-1]] if len(closes) else None,
        exposed=line.get("exposed"), margin_ratio=line.get("margin_ratio"),
        warning_threshold=config.account.warning_threshold,
        fees_paid=account.fees_paid, funding_paid=account.funding_paid,
        liquidations=liq["count"], top_ups=len(top_ups),
        min_liquidation_distance_pct=liq["min_distance_pct"],
    )
    return RunResult(
        label=config.label(),
        start=an.iso(times[0]) if times else None,
        end=an.iso(times[-1]) if times else None,
        bars=len(times),
        initial_balance=initial,
        final_equity=final_equity,
        return_pct=(final_equity / initial - 1) * 100 if initial else 0.0,
        max_drawdown_pct=stats.max_drawdown_pct,
        fees_paid=account.fees_paid,
        funding_paid=account.funding_paid,
        funding_by_symbol={m.symbol: funding_by_symbol.get(m.symbol, 0.0)
                           for m in config.markets},
        insurance_fund_delta=account.insurance_fund,
        wiped_out=bool(broker.wiped_out),
        wipeout_time=wipeout_time,
        liquidation_count=liq["count"],
        liquidations=liquidations,
        top_ups=top_ups,
        trades=trades,
        funding_note="" if has_funding else "no funding data",
        min_liquidation_distance_pct=liq["min_distance_pct"],
        markets=[{"symbol": m.symbol, "leverage": m.leverage, "margin_mode": m.margin_mode,
                  "auto_top_up": m.auto_top_up} for m in config.markets],
        strategy=config.strategy.name,
        stopped_reason=getattr(strategy, "stopped_reason", None),
        stopped_kind=getattr(strategy, "stopped_kind", None),
        stopped_time=getattr(strategy, "stopped_time", None),
        rejected_orders=rejected,
        data_warnings=list(getattr(broker, "data_warnings", [])),
        warning_threshold=config.account.warning_threshold,
        statistics=stats,
        bot=bot_view(strategy, trades),
        timeline=dict(line),
        fills=fills,
        launch_report=dict(report) if isinstance(report, dict) else {},
    )


def bot_view(strategy: Any, trades: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The bot's ``summary()`` (when it has one) plus, for a DCA bot, its ``deals``: one row
    per cycle (``deal, start, end, duration_hours, safety_orders, entry, average, exit, size,
    pnl`` gross USDT, ``reason``), the last one possibly liquidated or cut by the data's end
    (matched to its round trip in ``trades``)."""
    trades = trades or []
    summary = getattr(strategy, "summary", None)
    view: dict[str, Any] = dict(summary()) if callable(summary) else {}
    live = getattr(strategy, "live_orders", None)
    if isinstance(live, dict):
        # resting orders when the data ended (a grid's open orders), for the report overlay
        view["open_orders"] = [
            {"price": float(o.created.price), "size": float(o.size),
             "symbol": strategy.broker.symbol_of(o.data)}
            for o in live.values() if o.alive() and o.created.price
        ]
    cycles = getattr(strategy, "cycles", None)
    if isinstance(cycles, list):
        view["deals"] = [{
            "deal": i + 1,
            "start": an.iso(c.get("start")),
            "end": an.iso(c.get("end")),
            "duration_hours": (c["end"] - c["start"]).total_seconds() / 3600
            if c.get("end") and c.get("start") else None,
            "safety_orders": c.get("safety_filled", 0),
            "entry": c.get("entry"), "average": c.get("average"), "exit": c.get("exit"),
            "size": c.get("size"), "pnl": c.get("pnl"), "reason": c.get("reason"),
        } for i, c in enumerate(cycles)]
        unfinished = strategy.open_deal() if hasattr(strategy, "open_deal") else None
        if unfinished:
            view["deals"].append(_unfinished_deal(len(cycles) + 1, unfinished, trades))
    return view


def _unfinished_deal(number: int, cycle: dict[str, Any],
                     trades: list[dict[str, Any]]) -> dict[str, Any]:
    """The deal open at the end: closed by a liquidation (its trade's exit and gross PnL) or
    still open when the data ended (unrealized PnL at the last mark)."""
    start = an.iso(cycle.get("start"))
    trip = next((t for t in trades if start and (t["entry_time"] or "") >= start
                 and t["reason"] in ("liquidation", "open")), None)
    liquidated = trip is not None and trip["reason"] == "liquidation"
    end = trip["exit_time"] if liquidated else None
    hours = None
    if end and start:
        hours = (datetime.fromisoformat(end.rstrip("Z"))
                 - datetime.fromisoformat(start.rstrip("Z"))).total_seconds() / 3600
    return {
        "deal": number, "start": start, "end": end, "duration_hours": hours,
        "safety_orders": cycle.get("safety_filled", 0), "entry": cycle.get("entry"),
        "average": cycle.get("average"), "exit": trip["exit_price"] if liquidated else None,
        "size": cycle.get("size"), "pnl": trip["pnl"] if trip else None,
        "reason": "liquidation" if liquidated else "end_of_data",
    }


__all__ = ["RunResult", "bot_view", "build_cerebro", "collect_result", "max_drawdown_pct",
           "run_config"]
