"""Statistics against values computed by hand on a small equity series (daily bars).

Series: initial 100 USDT, equity at the close of 5 daily bars 110, 99, 99, 118.8, 112.86.
Daily returns: +10 %, −10 %, 0, +20 %, −5 % (mean 0.03; squared deviations from the mean
.0049 + .0169 + .0009 + .0289 + .0064 = .058; downside squares .01 + .0025 = .0125).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liqbt.stats import (
    compute_statistics,
    daily_returns,
    exit_category,
    max_drawdown,
    trade_statistics,
)

T0 = datetime(2024, 1, 1)
TIMES = [T0 + timedelta(days=i) for i in range(5)]
EQUITY = [110.0, 99.0, 99.0, 118.8, 112.86]


def _trade(pnl, fees, hours, reason, start_day=0):
    entry = T0 + timedelta(days=start_day)
    return {"pnl": pnl, "fees": fees, "reason": reason,
            "entry_time": entry.isoformat() + "Z",
            "exit_time": (entry + timedelta(hours=hours)).isoformat() + "Z"}


TRADES = [
    _trade(10.0, 1.0, 2, "take_profit"),      # net +9
    _trade(-5.0, 1.0, 4, "stop_loss"),        # net −6
    _trade(-2.0, 0.5, 6, "liquidation"),      # net −2.5
    _trade(1.0, 1.5, 8, "grid"),              # gross win, net −0.5: a loss net of fees
    _trade(20.0, 0.0, 10, "grid"),            # net +20
    {"pnl": 3.0, "fees": 0.1, "reason": "open", "entry_time": "2024-01-04T00:00:00Z",
     "exit_time": None},
]


@pytest.fixture(scope="module")
def stats():
    return compute_statistics(
        TIMES, EQUITY, 100.0, 112.86, TRADES,
        benchmark_close=[100.0, 104.0, 90.0],
        exposed=[False, True, True, True, False],
        margin_ratio=[0.0, 0.5, 0.85, 0.9, 0.0], warning_threshold=0.8,
        fees_paid=4.0, funding_paid=-1.5, liquidations=1, top_ups=2,
        min_liquidation_distance_pct=0.0,
    )


def test_period_return_and_growth(stats):
    assert stats.start == "2024-01-01T00:00:00Z"
    assert stats.end == "2024-01-06T00:00:00Z"  # last bar's end
    assert stats.period_days == pytest.approx(5.0)
    assert stats.return_pct == pytest.approx(12.86)
    assert stats.cagr_pct == pytest.approx((1.1286 ** (365 / 5) - 1) * 100)
    assert stats.adg_pct == pytest.approx((1.1286 ** (1 / 5) - 1) * 100)
    assert stats.buy_hold_return_pct == pytest.approx(-10.0)
    assert stats.exposure_pct == pytest.approx(60.0)


def test_drawdown_and_time_stuck(stats):
    # 110 → 99 is the deepest fall (10 %); from the 110 high (end of day 1, Jan 2) to the
    # first value back at 110 (118.8 on Jan 5) = 3 days
    assert stats.max_drawdown_pct == pytest.approx(10.0)
    assert stats.max_drawdown_duration_hours == pytest.approx(72.0)
    # highs at Jan 1 (100), Jan 2 (110), Jan 5 (118.8); end Jan 6: longest gap 72 h
    assert stats.longest_without_new_high_hours == pytest.approx(72.0)
    assert stats.calmar == pytest.approx(stats.cagr_pct / 10.0)


def test_ratios(stats):
    assert daily_returns(
        __import__("numpy").array([100.0, *EQUITY, 112.86]),
        __import__("numpy").array(
            [T0, *(t + timedelta(days=1) for t in TIMES), TIMES[-1] + timedelta(days=1)],
            dtype="datetime64[s]"),
    ) == pytest.approx([0.10, -0.10, 0.0, 0.20, -0.05])
    assert stats.sharpe == pytest.approx(0.03 / math.sqrt(0.058 / 4) * math.sqrt(365))
    assert stats.sortino == pytest.approx(0.03 / math.sqrt(0.0125 / 5) * math.sqrt(365))


def test_trades(stats):
    assert stats.trades_closed == 5 and stats.trades_open == 1
    assert stats.win_rate_pct == pytest.approx(40.0)  # +9 and +20; the +1 gross is −0.5 net
    assert stats.profit_factor == pytest.approx(29.0 / 9.0)
    assert stats.expectancy == pytest.approx(20.0 / 5)
    assert stats.best_trade == pytest.approx(20.0)
    assert stats.worst_trade == pytest.approx(-6.0)
    assert stats.avg_trade_duration_hours == pytest.approx(6.0)
    assert stats.max_consecutive_losses == 3
    assert stats.exit_reasons == {"take_profit": 1, "stop": 1, "grid": 2, "liquidation": 1,
                                  "end_of_data": 1}


def test_margin_facts(stats):
    assert stats.time_above_warning_pct == pytest.approx(40.0)
    assert stats.time_above_warning_hours == pytest.approx(48.0)
    assert (stats.fees_paid, stats.funding_paid, stats.liquidations, stats.top_ups) == (
        4.0, -1.5, 1, 2)
    assert stats.min_liquidation_distance_pct == 0.0
    labels = [k for k, _ in stats.rows()]
    assert "Sharpe / Sortino" in labels and "exit reasons" in labels


def test_initial_balance_is_the_first_high():
    # a run that only loses: 100 → 95 → 90 is a 10 % drawdown from the initial balance
    s = compute_statistics(TIMES[:2], [95.0, 90.0], 100.0)
    assert s.max_drawdown_pct == pytest.approx(10.0)
    assert s.max_drawdown_duration_hours == pytest.approx(48.0)  # never recovered
    # two daily returns, −5 % and 90/95 − 1: mean / sample deviation (= |r1 − r2| / √2)
    r1, r2 = -0.05, 90 / 95 - 1
    assert s.sharpe == pytest.approx((r1 + r2) / 2 / (abs(r1 - r2) / math.sqrt(2))
                                     * math.sqrt(365))


def test_undefined_values():
    hours = [T0 + timedelta(hours=i) for i in range(3)]
    s = compute_statistics(hours, [100.0, 101.0, 102.0], 100.0)
    assert s.cagr_pct is None and s.calmar is None  # below one day
    assert s.sharpe is None and s.sortino is None
    assert s.profit_factor is None and s.win_rate_pct is None
    assert s.max_drawdown_pct == 0.0 and s.adg_pct == pytest.approx((1.02 ** 8 - 1) * 100)
    wiped = compute_statistics(TIMES[:2], [50.0, -1.0], 100.0)
    assert wiped.cagr_pct == -100.0 and wiped.adg_pct == -100.0
    empty = compute_statistics([], [], 100.0)
    assert empty.start is None and empty.return_pct == 0.0


def test_exit_categories():
    assert [exit_category(r) for r in (
        "take_profit", "stop_loss", "stop", "out_of_range", "grid", "liquidation", "open",
        "close", None)] == ["take_profit", "stop", "stop", "stop", "grid", "liquidation",
                            "end_of_data", "other", "other"]
    assert trade_statistics([])["exit_reasons"] == {}


@settings(deadline=None, max_examples=60)
@given(st.lists(st.floats(1.0, 1e6), min_size=1, max_size=40))
def test_max_drawdown_matches_a_loop(values):
    import numpy as np

    peak, worst = values[0], 0.0
    for v in values:
        peak = max(peak, v)
        worst = max(worst, (peak - v) / peak)
    stamps = np.array([T0 + timedelta(hours=i) for i in range(len(values))],
                      dtype="datetime64[s]")
    dd, hours = max_drawdown(np.array(values), stamps)
    assert dd == pytest.approx(worst * 100, abs=1e-9)
    assert 0 <= hours <= len(values) - 1


def test_daily_ratios_match_a_pandas_resample():
    """Hourly bars over ten days: the daily bucketing agrees with pandas' own resample of the
    same series (last value per UTC day, the initial balance before the first day)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    hours = [T0 + timedelta(hours=i) for i in range(240)]
    equity = 1000 * np.cumprod(1 + rng.normal(0.0005, 0.01, 240))
    s = compute_statistics(hours, equity, 1000.0)
    # bar i's equity is stamped at its end (time + 1 h)
    series = pd.Series(equity, index=pd.DatetimeIndex(hours) + pd.Timedelta(hours=1))
    daily = pd.concat([pd.Series([1000.0], index=[pd.Timestamp(T0)]),
                       series.resample("1D").last()])
    returns = daily.pct_change().dropna()
    assert len(returns) == 11  # ten days, the last bar ending at midnight of day eleven
    assert s.sharpe == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(365))
    downside = math.sqrt((returns.clip(upper=0) ** 2).mean())
    assert s.sortino == pytest.approx(returns.mean() / downside * math.sqrt(365))
    peak = pd.concat([pd.Series([1000.0]), pd.Series(equity)]).cummax()
    dd = 1 - pd.concat([pd.Series([1000.0]), pd.Series(equity)]) / peak
    assert s.max_drawdown_pct == pytest.approx(dd.max() * 100)
