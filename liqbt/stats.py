"""Run statistics from an equity series and a trade list (pure NumPy, no backtrader).

:func:`compute_statistics` returns a frozen :class:`Statistics`: what traders compare bots by
(freqtrade's backtesting summary, backtesting.py's ``stats``, passivbot's ADG and "hours
stuck"), plus the margin facts only a leveraged backtest has (liquidations, top-ups, distance
to liquidation, time above the warning threshold). Every field is defined, with its sign, in
``docs/results.md``.

No third-party ratio library is used: the well-kept ones (quantstats, empyrical-reloaded)
pull in pandas-heavy stacks and assume 252 trading days and daily price returns, while a
perpetual-futures account trades every day and is sampled per bar. The formulas are short;
each is written in its docstring below and pinned in ``tests/test_stats.py`` against values
computed by hand on a small equity series.

Conventions
-----------
* The equity series is ``[initial_balance, equity at the close of bar 1, ..., final]``; the
  initial balance counts as the first high (a run that only loses has a drawdown).
* Times are naive UTC; a bar's equity is stamped at the bar's end (its time + one bar).
* Daily returns use the last equity of each UTC day, with the initial balance before the
  first day: ``r_d = E_d / E_{d-1} − 1``. Ratios are annualised with ``√365`` (crypto
  trades every day), risk-free rate 0.
* A trade's result is *net*: ``pnl − fees`` (gross PnL minus its share of opening and closing
  fees). Funding is not attributed to trades (it is an account figure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

#: days per year used to annualise (perpetual futures trade every day)
DAYS_PER_YEAR = 365.0
#: the canonical exit reasons of :attr:`Statistics.exit_reasons`
EXIT_REASONS = ("take_profit", "stop", "grid", "liquidation", "end_of_data", "other")


@dataclass(frozen=True)
class Statistics:
    """Statistics of one run (see ``docs/results.md`` for every field and its sign).

    Percent fields end in ``_pct``; durations in ``_hours`` or ``_days``; money in USDT.
    ``None`` means "not defined for this run" (e.g. Sharpe with fewer than two days, profit
    factor without a losing trade).
    """

    start: str | None
    end: str | None
    period_days: float
    exposure_pct: float | None
    return_pct: float
    cagr_pct: float | None
    buy_hold_return_pct: float | None
    max_drawdown_pct: float
    max_drawdown_duration_hours: float
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    trades_closed: int
    trades_open: int
    win_rate_pct: float | None
    profit_factor: float | None
    expectancy: float | None
    best_trade: float | None
    worst_trade: float | None
    avg_trade_duration_hours: float | None
    max_consecutive_losses: int
    adg_pct: float | None
    longest_without_new_high_hours: float
    fees_paid: float
    funding_paid: float
    liquidations: int
    top_ups: int
    min_liquidation_distance_pct: float | None
    time_above_warning_pct: float | None
    time_above_warning_hours: float | None
    exit_reasons: dict[str, int] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        """``(label, formatted value)`` pairs for the terminal summary and the report."""

        def num(x: float | None, spec: str = ",.2f", unit: str = "") -> str:
            return "–" if x is None else f"{x:{spec}}{unit}"

        reasons = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.exit_reasons.items())
        return [
            ("period", f"{self.start} → {self.end} ({self.period_days:,.2f} days)"),
            ("exposure", num(self.exposure_pct, ",.1f", " %")),
            ("return", num(self.return_pct, "+,.2f", " %")),
            ("CAGR", num(self.cagr_pct, "+,.2f", " %")),
            ("buy & hold", num(self.buy_hold_return_pct, "+,.2f", " %")),
            ("max drawdown", f"{self.max_drawdown_pct:,.2f} % over "
                             f"{self.max_drawdown_duration_hours:,.1f} h"),
            ("Sharpe / Sortino", f"{num(self.sharpe)} / {num(self.sortino)}"),
            ("Calmar", num(self.calmar)),
            ("ADG (avg daily gain)", num(self.adg_pct, "+,.3f", " %")),
            ("longest w/o new high", f"{self.longest_without_new_high_hours:,.1f} h"),
            ("trades closed/open", f"{self.trades_closed} / {self.trades_open}"),
            ("win rate (net)", num(self.win_rate_pct, ",.1f", " %")),
            ("profit factor", num(self.profit_factor)),
            ("expectancy", num(self.expectancy, "+,.2f", " USDT/trade")),
            ("best / worst trade", f"{num(self.best_trade, '+,.2f')} / "
                                   f"{num(self.worst_trade, '+,.2f')} USDT"),
            ("avg trade duration", num(self.avg_trade_duration_hours, ",.2f", " h")),
            ("max consec. losses", str(self.max_consecutive_losses)),
            ("exit reasons", reasons or "–"),
            ("above warning ratio", f"{num(self.time_above_warning_hours, ',.1f', ' h')} "
                                    f"({num(self.time_above_warning_pct, ',.2f', ' %')})"),
        ]


def _hours(delta: timedelta | np.timedelta64 | float) -> float:
    if isinstance(delta, np.timedelta64):
        return float(delta / np.timedelta64(1, "s")) / 3600.0
    if isinstance(delta, timedelta):
        return delta.total_seconds() / 3600.0
    return float(delta) / 3600.0


def _iso(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="s")) + "Z"


def _as_times(times: Sequence[Any] | np.ndarray) -> np.ndarray:
    """datetime64[s] array from datetimes, ISO strings or datetime64 values."""
    if isinstance(times, np.ndarray) and np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[s]")
    out = [t.replace(tzinfo=None) if isinstance(t, datetime) else
           str(t).rstrip("Z") if isinstance(t, str) else t for t in times]
    return np.array(out, dtype="datetime64[s]")


def bar_interval(times: np.ndarray) -> np.timedelta64:
    """The bar length: the median gap between bar times (0 s for fewer than two bars)."""
    if len(times) < 2:
        return np.timedelta64(0, "s")
    gaps = np.diff(times).astype("int64")
    return np.timedelta64(int(np.median(gaps)), "s")


def drawdown(values: np.ndarray) -> np.ndarray:
    """Fraction below the running peak at each point: ``1 − E_t / max_{s≤t} E_s`` (0 where the
    peak is not positive). The first value counts as the first high."""
    peak = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - values / peak, 0.0)
    return dd


def max_drawdown(values: np.ndarray, stamps: np.ndarray) -> tuple[float, float]:
    """``(max drawdown %, its duration in hours)``.

    Max drawdown = ``max_t (1 − E_t / max_{s≤t} E_s) × 100``. Its duration runs from the peak
    before the deepest trough to the first later point back at that peak (or to the last point
    when equity never recovered).
    """
    if len(values) == 0:
        return 0.0, 0.0
    dd = drawdown(values)
    trough = int(np.argmax(dd))
    if dd[trough] <= 0:
        return 0.0, 0.0
    peak_value = float(np.max(values[: trough + 1]))
    peak_at = int(np.flatnonzero(values[: trough + 1] >= peak_value)[-1])
    later = np.flatnonzero(values[trough:] >= peak_value)
    end_at = trough + int(later[0]) if len(later) else len(values) - 1
    return float(dd[trough]) * 100.0, _hours(stamps[end_at] - stamps[peak_at])


def longest_without_new_high(values: np.ndarray, stamps: np.ndarray) -> float:
    """Longest time (hours) between two points at the running equity high, the last stretch
    running to the end ("hours stuck"). A point at or above every earlier one is a high."""
    if len(values) == 0:
        return 0.0
    highs = np.flatnonzero(values >= np.maximum.accumulate(values))
    marks = np.append(stamps[highs], stamps[-1])
    return max(0.0, _hours(np.max(np.diff(marks)))) if len(marks) > 1 else 0.0


def daily_returns(values: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """``E_d / E_{d−1} − 1`` over UTC days, ``E_d`` = the last value stamped inside day ``d``
    and ``E_{−1}`` = the first value (the initial balance)."""
    if len(values) < 2:
        return np.zeros(0)
    days = stamps[1:].astype("datetime64[D]")
    # the last point of each day: where the next point's day differs (and the very last)
    last = np.append(days[1:] != days[:-1], True)
    closes = np.concatenate(([values[0]], values[1:][last]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return closes[1:] / closes[:-1] - 1.0


def sharpe_ratio(returns: np.ndarray) -> float | None:
    """``mean(r) / std(r, ddof=1) × √365`` of daily returns ``r`` (risk-free rate 0);
    ``None`` with fewer than two returns or zero deviation."""
    if len(returns) < 2 or not np.all(np.isfinite(returns)):
        return None
    sd = float(np.std(returns, ddof=1))
    return None if sd == 0 else float(np.mean(returns)) / sd * math.sqrt(DAYS_PER_YEAR)


def sortino_ratio(returns: np.ndarray) -> float | None:
    """``mean(r) / √(mean(min(r, 0)²)) × √365`` (downside deviation over all days, target 0,
    as Sortino & Price); ``None`` with fewer than two returns or no losing day."""
    if len(returns) < 2 or not np.all(np.isfinite(returns)):
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    return None if downside == 0 else float(np.mean(returns)) / downside * math.sqrt(
        DAYS_PER_YEAR)


def cagr_pct(initial: float, final: float, days: float) -> float | None:
    """``((final / initial)^(365 / days) − 1) × 100``; −100 when final ≤ 0; ``None`` below one
    day (annualising hours only magnifies noise) or without a positive initial balance."""
    if initial <= 0 or days < 1:
        return None
    if final <= 0:
        return -100.0
    try:
        return ((final / initial) ** (DAYS_PER_YEAR / days) - 1.0) * 100.0
    except OverflowError:
        return None


def adg_pct(initial: float, final: float, days: float) -> float | None:
    """passivbot's average daily gain: ``((final / initial)^(1 / days) − 1) × 100`` (the
    geometric mean daily growth); −100 when final ≤ 0, ``None`` for an empty period."""
    if initial <= 0 or days <= 0:
        return None
    if final <= 0:
        return -100.0
    try:
        return ((final / initial) ** (1.0 / days) - 1.0) * 100.0
    except OverflowError:
        return None


def exit_category(reason: str | None) -> str:
    """Map a trade's ``reason`` tag to one of :data:`EXIT_REASONS`."""
    r = (reason or "").lower()
    if r == "liquidation":
        return "liquidation"
    if r in ("open", "end_of_data"):
        return "end_of_data"
    if "take_profit" in r or r == "tp":
        return "take_profit"
    if r.startswith("stop") or "stop_loss" in r or r == "out_of_range":
        return "stop"
    if r == "grid":
        return "grid"
    return "other"


def trade_statistics(trades: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-trade figures on net results ``pnl − fees`` of closed trades (in list order):

    * win rate = #(net > 0) / #closed × 100;
    * profit factor = Σ net⁺ / |Σ net⁻| (``None`` without a losing trade);
    * expectancy = mean net; best / worst = max / min net;
    * average duration = mean(exit time − entry time) in hours;
    * max consecutive losses = longest run of net < 0;
    * exit reasons: closed trades by :func:`exit_category`, open ones as ``end_of_data``.
    """
    closed = [t for t in trades if t.get("exit_time") is not None]
    still = [t for t in trades if t.get("exit_time") is None]
    net = np.array([float(t["pnl"]) - float(t.get("fees") or 0.0) for t in closed])
    out: dict[str, Any] = {
        "trades_closed": len(closed), "trades_open": len(still), "win_rate_pct": None,
        "profit_factor": None, "expectancy": None, "best_trade": None, "worst_trade": None,
        "avg_trade_duration_hours": None, "max_consecutive_losses": 0,
    }
    reasons: dict[str, int] = {}
    for t in closed:
        key = exit_category(t.get("reason"))
        reasons[key] = reasons.get(key, 0) + 1
    if still:
        reasons["end_of_data"] = reasons.get("end_of_data", 0) + len(still)
    out["exit_reasons"] = {k: reasons[k] for k in EXIT_REASONS if k in reasons}
    if not len(net):
        return out
    gains, losses = net[net > 0].sum(), net[net < 0].sum()
    run = longest = 0
    for x in net:
        run = run + 1 if x < 0 else 0
        longest = max(longest, run)
    entry = _as_times([t["entry_time"] for t in closed])
    exit_ = _as_times([t["exit_time"] for t in closed])
    out.update(
        win_rate_pct=float(np.mean(net > 0)) * 100.0,
        profit_factor=float(gains / -losses) if losses < 0 else None,
        expectancy=float(np.mean(net)),
        best_trade=float(net.max()),
        worst_trade=float(net.min()),
        avg_trade_duration_hours=float(np.mean((exit_ - entry).astype("int64"))) / 3600.0,
        max_consecutive_losses=longest,
    )
    return out


def compute_statistics(
    times: Sequence[Any] | np.ndarray,
    equity: Sequence[float] | np.ndarray,
    initial_balance: float,
    final_equity: float | None = None,
    trades: Sequence[Mapping[str, Any]] = (),
    *,
    benchmark_close: Sequence[float] | np.ndarray | None = None,
    exposed: Sequence[bool] | np.ndarray | None = None,
    margin_ratio: Sequence[float] | np.ndarray | None = None,
    warning_threshold: float = 0.8,
    fees_paid: float = 0.0,
    funding_paid: float = 0.0,
    liquidations: int = 0,
    top_ups: int = 0,
    min_liquidation_distance_pct: float | None = None,
) -> Statistics:
    """Statistics of one run.

    Parameters
    ----------
    times
        Bar times (naive UTC datetimes, ISO strings or datetime64), one per equity value.
    equity
        Account equity (USDT, at the mark) at each bar's close.
    initial_balance
        USDT before the first bar (the first equity high).
    final_equity
        Equity after the run (defaults to the last bar's).
    trades
        Round trips as :class:`liqbt.analyzers.Trades` lists them (``pnl``, ``fees``,
        ``entry_time``, ``exit_time``, ``reason``).
    benchmark_close
        Closes of the traded market for buy & hold (unlevered: last / first − 1).
    exposed
        Per bar: whether any position was open (exposure = share of such bars).
    margin_ratio
        Per bar: the worst margin ratio (MM / margin balance, a fraction).
    warning_threshold
        Ratio counted as "above warning" when reached.
    fees_paid, funding_paid, liquidations, top_ups, min_liquidation_distance_pct
        Account figures copied through (funding: positive = paid).

    Returns
    -------
    Statistics
    """
    t = _as_times(times)
    eq = np.asarray(equity, dtype=float)
    if len(t) != len(eq):
        raise ValueError(f"times ({len(t)}) and equity ({len(eq)}) differ in length")
    final = float(eq[-1]) if final_equity is None and len(eq) else (
        float(final_equity) if final_equity is not None else float(initial_balance))
    bar = bar_interval(t)
    if len(t):
        start, end = t[0], t[-1] + bar
        # initial balance at the start, bar i's equity at its end, the final value at the end
        stamps = np.concatenate(([start], t + bar, [end]))
        values = np.concatenate(([initial_balance], eq, [final]))
    else:
        start = end = None
        stamps = np.zeros(0, dtype="datetime64[s]")
        values = np.zeros(0)
    days = _hours(end - start) / 24.0 if start is not None else 0.0
    dd_pct, dd_hours = max_drawdown(values, stamps)
    returns = daily_returns(values, stamps)
    cagr = cagr_pct(initial_balance, final, days)
    bench = None
    if benchmark_close is not None and len(benchmark_close) and benchmark_close[0]:
        bench = (float(benchmark_close[-1]) / float(benchmark_close[0]) - 1.0) * 100.0
    exposure = None
    if exposed is not None and len(exposed):
        exposure = float(np.mean(np.asarray(exposed, dtype=bool))) * 100.0
    above_pct = above_hours = None
    if margin_ratio is not None and len(margin_ratio):
        above = np.asarray(margin_ratio, dtype=float) >= warning_threshold
        above_pct = float(np.mean(above)) * 100.0
        above_hours = float(np.sum(above)) * _hours(bar)
    per_trade = trade_statistics(trades)
    return Statistics(
        start=None if start is None else _iso(start),
        end=None if end is None else _iso(end),
        period_days=days,
        exposure_pct=exposure,
        return_pct=(final / initial_balance - 1.0) * 100.0 if initial_balance else 0.0,
        cagr_pct=cagr,
        buy_hold_return_pct=bench,
        max_drawdown_pct=dd_pct,
        max_drawdown_duration_hours=dd_hours,
        sharpe=sharpe_ratio(returns),
        sortino=sortino_ratio(returns),
        calmar=None if cagr is None or dd_pct == 0 else cagr / dd_pct,
        adg_pct=adg_pct(initial_balance, final, days),
        longest_without_new_high_hours=longest_without_new_high(values, stamps),
        fees_paid=float(fees_paid),
        funding_paid=float(funding_paid),
        liquidations=int(liquidations),
        top_ups=int(top_ups),
        min_liquidation_distance_pct=min_liquidation_distance_pct,
        time_above_warning_pct=above_pct,
        time_above_warning_hours=above_hours,
        **per_trade,
    )


__all__ = [
    "DAYS_PER_YEAR",
    "EXIT_REASONS",
    "Statistics",
    "adg_pct",
    "bar_interval",
    "cagr_pct",
    "compute_statistics",
    "daily_returns",
    "drawdown",
    "exit_category",
    "longest_without_new_high",
    "max_drawdown",
    "sharpe_ratio",
    "sortino_ratio",
    "trade_statistics",
]
