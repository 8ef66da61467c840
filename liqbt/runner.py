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
from typing import Any

import backtrader as bt

from liqbt import analyzers as an
from liqbt.config import RunConfig, load_strategy_class
from liqbt.core import events as ev
from liqbt.core.errors import ValidationError

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
    min_liquidation_distance_pct
        Closest the mark came to a liquidation price, in % (``None`` without positions).
    engine
        ``backtrader`` (MarginBroker) or ``fast`` (:mod:`liqbt.fast`).
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
    rejected_orders: int = 0
    engine: str = "backtrader"
    timeline: dict[str, Any] = field(default_factory=dict, repr=False)
    fills: list[dict[str, Any]] = field(default_factory=list, repr=False)
    launch_report: dict[str, Any] = field(default_factory=dict, repr=False)

    _REPORT_ONLY = ("timeline", "fills", "launch_report")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (no NaN/inf: those become ``None``)."""
        data = {k: v for k, v in asdict(self).items() if k not in self._REPORT_ONLY}
        return _clean(data)

    def summary(self) -> dict[str, Any]:
        """One flat row for sweep tables (no lists)."""
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
        }


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def build_cerebro(
    config: RunConfig, timeline: bool = True, progress: bool = False
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

    Returns
    -------
    (cerebro, broker)
    """
    from liqbt.broker import MarginBroker
    from liqbt.data import load_candles, load_funding
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
    for market in config.markets:
        candles = load_candles(market.candles, kind="candles", start=start, end=end)
        if candles.empty:
            raise ValidationError(
                [f"{market.symbol}: no candles in {market.candles} between "
                 f"{start or 'the start'} and {end or 'the end'}"]
            )
        mark = (load_candles(market.mark, kind="mark", start=start, end=end)
                if market.mark is not None else None)
        funding = (load_funding(market.funding, start=start, end=end)
                   if market.funding is not None else None)
        feed = make_feed(candles, mark=mark, funding=funding, name=market.symbol)
        cerebro.adddata(feed, name=market.symbol)
        broker.set_market(feed, symbol=market.symbol, leverage=market.leverage,
                          margin_mode=market.margin_mode, auto_top_up=market.auto_top_up)
    cerebro.addstrategy(load_strategy_class(config.strategy.name), **config.strategy.kwargs)
    cerebro.addanalyzer(an.Liquidations, _name="liquidations")
    cerebro.addanalyzer(an.MarginTimeline, _name="timeline", detail=timeline)
    cerebro.addanalyzer(an.Trades, _name="trades")
    if progress:
        cerebro.addanalyzer(an.Progress, _name="progress", every=_PROGRESS_EVERY)
    return cerebro, broker


def max_drawdown_pct(equity: list[float]) -> float:
    """Largest peak-to-trough fall of an equity series, in % of the peak (0 when empty)."""
    peak = -math.inf
    worst = 0.0
    for value in equity:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst * 100


def run_config(config: RunConfig, timeline: bool = True, progress: bool = False) -> RunResult:
    """Run one backtest.

    Parameters
    ----------
    config
        The validated config.
    timeline
        Keep per-bar detail for reports (slower); sweeps pass ``False``.
    progress
        Progress bar on stderr when it is a terminal.

    Returns
    -------
    RunResult
    """
    cerebro, broker = build_cerebro(config, timeline=timeline, progress=progress)
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
    return RunResult(
        label=config.label(),
        start=an.iso(times[0]) if times else None,
        end=an.iso(times[-1]) if times else None,
        bars=len(times),
        initial_balance=initial,
        final_equity=final_equity,
        return_pct=(final_equity / initial - 1) * 100 if initial else 0.0,
        max_drawdown_pct=max_drawdown_pct([*equity, final_equity]),
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
        rejected_orders=rejected,
        timeline=dict(line),
        fills=fills,
        launch_report=dict(report) if isinstance(report, dict) else {},
    )


__all__ = ["RunResult", "build_cerebro", "collect_result", "max_drawdown_pct", "run_config"]
