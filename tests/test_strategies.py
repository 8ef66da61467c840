"""Bots on scripted bars: grid counter-orders, neutral grid, DCA cycles and liquidation,
cross vs isolated, hold sizing, and the strategy loader."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd
import pytest
from liqbt.strategies import (
    STRATEGIES,
    DcaStrategy,
    GridStrategy,
    HoldStrategy,
    StrategyLoadError,
    load_strategy,
)

import liqbt
from liqbt.core import events as ev


def path_bars(closes: Sequence[float]) -> pd.DataFrame:
    """Bars whose open is the previous close and whose range spans open..close (a continuous
    price path), 5-minute naive-UTC index."""
    rows, prev = [], closes[0]
    for close in closes:
        rows.append((prev, max(prev, close), min(prev, close), close))
        prev = close
    index = pd.date_range("2024-01-01", periods=len(rows), freq="5min")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index)
    frame["volume"] = 1.0
    return frame


def run(
    strategy: type[bt.Strategy], closes: Sequence[float], leverage: float = 10,
    margin_mode: str = "isolated", cash: float = 1000.0, **params: Any,
) -> tuple[liqbt.MarginBroker, Any]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = liqbt.MarginBroker(exchange="binance", cash=cash)
    data = bt.feeds.PandasData(
        dataname=path_bars(closes), timeframe=bt.TimeFrame.Minutes, compression=5
    )
    cerebro.adddata(data, name="BTCUSDT")
    cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=leverage, margin_mode=margin_mode)
    cerebro.addstrategy(strategy, **params)
    return cerebro.broker, cerebro.run()[0]


def fills(broker: liqbt.MarginBroker) -> list[tuple[float, float]]:
    return [(round(e.size, 6), e.price) for e in broker.events if isinstance(e, ev.Fill)]


def liquidations(broker: liqbt.MarginBroker) -> list[ev.Liquidation]:
    return [e for e in broker.events if isinstance(e, ev.Liquidation)]


GRID = {"lower": 45_000, "upper": 55_000, "grids": 10, "investment": 500, "leverage": 10}


# --- grid ----------------------------------------------------------------------------------
def test_long_grid_launch_and_counter_orders() -> None:
    closes = [50_000, 50_000, 49_000, 48_000, 49_000, 50_000, 51_000, 52_000, 51_000, 50_000]
    broker, strat = run(GridStrategy, closes, **GRID)
    # quantity = 500 × 10 / (1 + 10 × 0.0005) / Σ(45k..54k = 495k) = 0.01005 → 0.01 (step)
    assert strat.launch_report["quantity"] == 0.01
    assert strat.launch_report["levels"] == tuple(float(x) for x in range(45_000, 55_001, 1000))
    assert fills(broker) == [
        (0.05, 50_000.0),   # launch: market buy of the 5 lines above 50k, next open
        (0.01, 49_000.0),   # buy limits below fill on the way down
        (0.01, 48_000.0),
        (-0.01, 49_000.0),  # counter-orders one line up
        (-0.01, 50_000.0),
        (-0.01, 51_000.0),  # launch inventory sells
        (-0.01, 52_000.0),
        (0.01, 51_000.0),   # counter-orders one line down
        (0.01, 50_000.0),
    ]
    assert strat.pairs == 4
    assert strat.grid_profit == pytest.approx(4 * 0.01 * 1000)
    assert strat.position_size == pytest.approx(0.05)
    assert strat.stopped_reason is None
    # estimated LP: 0.05 @ 50k + 0.01 at each of 49k..45k, isolated margin = cost / 10
    q, cost = 0.1, 2500 + 10 * (49 + 48 + 47 + 46 + 45)
    expected = (cost / 10 - cost) / (q * 0.004 - q)
    assert strat.launch_report["estimated_liquidation_price"] == pytest.approx(expected)


def test_neutral_grid_long_below_short_above() -> None:
    closes = [50_000, 50_000, 49_000, 48_000, 48_000, 50_000, 51_000, 52_000, 52_000]
    broker, strat = run(GridStrategy, closes, direction="neutral", **GRID)
    sizes = [e.position_after for e in broker.events if isinstance(e, ev.Fill)]
    prices = [e.price for e in broker.events if isinstance(e, ev.Fill)]
    assert prices == [49_000, 48_000, 49_000, 50_000, 51_000, 52_000]
    assert sizes == pytest.approx([0.01, 0.02, 0.01, 0.0, -0.01, -0.02])
    assert strat.position_size == pytest.approx(-0.02)  # short above the start
    assert strat.pairs == 2


def test_short_grid_mirrors_long() -> None:
    closes = [50_000, 50_000, 51_000, 50_000]
    broker, strat = run(GridStrategy, closes, direction="short", **GRID)
    assert fills(broker) == [(-0.05, 50_000.0), (-0.01, 51_000.0), (0.01, 50_000.0)]
    assert strat.pairs == 1


def test_grid_cross_survives_where_isolated_is_liquidated() -> None:
    closes = [50_000, 50_000, 48_000, 46_000, 45_000, 43_000, 41_000, 41_500, 44_000]
    iso_broker, iso = run(GridStrategy, closes, margin_mode="isolated", cash=5000, **GRID)
    cross_broker, cross = run(GridStrategy, closes, margin_mode="cross", cash=5000, **GRID)
    # same orders up to the crash: 0.05 @ 50k then 0.01 at each line down to 45k
    assert fills(iso_broker)[:6] == fills(cross_broker)[:6]
    [liq] = liquidations(iso_broker)
    lp = iso.launch_report["estimated_liquidation_price"]
    # every buy filled, so the estimate is the real LP: trigger on the way 45k → 43k
    assert liq.trigger_price == pytest.approx(lp)
    assert 43_000 < lp < 45_000
    assert liq.size == pytest.approx(0.1)
    assert iso.stopped_reason.startswith("liquidated")
    # isolated loses exactly its position margin (cost / 10) plus fees; the wallet survives
    cost = 0.05 * 50_000 + 0.01 * (49_000 + 48_000 + 47_000 + 46_000 + 45_000)  # 4850
    assert iso_broker.getvalue() == pytest.approx(5000 - cost / 10 - sum(
        e.fee for e in iso_broker.events if isinstance(e, ev.Fill)), abs=1e-6)
    assert liquidations(cross_broker) == []
    assert cross.stopped_reason is None
    assert cross.position_size == pytest.approx(0.1)
    # 0.1 BTC at 48,500 backed by ~5,000 USDT: no positive price liquidates the cross position
    assert cross_broker.liquidation_price(cross.data) is None


def test_grid_stop_loss_closes_and_stops() -> None:
    closes = [50_000, 50_000, 48_000, 46_000, 44_000, 43_000, 44_000]
    broker, strat = run(GridStrategy, closes, stop_loss=44_500, cash=5000, **GRID)
    assert strat.stopped_reason.startswith("stop loss 44500")
    assert strat.position_size == 0
    # the close came at the open after the 44,000 close, as a reduce-only market sell
    assert fills(broker)[-1] == (-0.1, 44_000.0)
    assert all(not o.alive() for o in strat.live_orders.values())


def test_grid_trigger_price_delays_launch() -> None:
    closes = [50_000, 50_500, 50_800, 51_200, 51_000, 50_000]
    broker, strat = run(GridStrategy, closes, trigger_price=51_000, **GRID)
    assert strat.launch_report["reference_price"] == 51_200  # bar 4 crossed 51,000
    assert fills(broker)[0] == (0.04, 51_200.0)


def test_grid_rejected_for_margin_stops() -> None:
    # investment 5000 with only 300 USDT in the account: the launch orders cannot be backed
    broker, strat = run(GridStrategy, [50_000] * 4, cash=300, **{**GRID, "investment": 5000})
    assert strat.stopped_reason.startswith("order rejected")
    assert "available" in strat.stopped_reason
    assert any(isinstance(e, ev.Rejected) for e in broker.events)


def test_grid_below_min_notional_does_not_trade() -> None:
    broker, strat = run(GridStrategy, [50_000] * 3, **{**GRID, "investment": 50})
    assert "minimum order value" in strat.stopped_reason
    assert fills(broker) == []


# --- DCA -----------------------------------------------------------------------------------
DCA = {
    "base_order": 200, "safety_order": 200, "max_safety_orders": 3, "price_deviation": 2.0,
    "step_scale": 2.0, "volume_scale": 2.0, "take_profit": 1.0,
}


def test_dca_take_profit_and_cycle_restart() -> None:
    closes = [50_000, 50_000, 49_500, 48_800, 49_300, 49_700, 50_000, 50_000, 50_000, 50_000,
              50_600, 50_600]
    broker, strat = run(DcaStrategy, closes, cooldown=2, **DCA)
    # cycle 1: base 0.004 @ 50,000 (200/50k), safety 1 at −2 % = 49,000: 200/49k → 0.004
    # average (200 + 196) / 0.008 = 49,500 → TP at 49,995 (+1 %)
    assert fills(broker)[:3] == [(0.004, 50_000.0), (0.004, 49_000.0), (-0.008, 49_995.0)]
    first = strat.cycles[0]
    assert first["average"] == pytest.approx(49_500)
    assert first["pnl"] == pytest.approx(0.008 * 495)
    assert first["safety_filled"] == 1 and first["reason"] == "take_profit"
    # TP filled in bar 7 (49,700 → 50,000); cooldown 2 → base order in bar 9, fills bar 10 open
    assert fills(broker)[3] == (0.004, 50_000.0)
    assert fills(broker)[4] == (-0.004, 50_500.0)
    assert len(strat.cycles) == 2
    # the remaining safety orders of cycle 1 were cancelled, none filled later
    assert all(not o.alive() for o in strat.live_orders.values()) or strat.position_size == 0
    assert strat.stopped_reason is None


def test_dca_max_cycles() -> None:
    closes = [50_000, 50_000] + [50_600, 50_000] * 4
    broker, strat = run(DcaStrategy, closes, max_cycles=2, cooldown=1, **DCA)
    # base @ 50k (bar 1), TP 50,500 (bar 2); cooldown 1 → base in bar 3, fills bar 4 open;
    # its TP is placed after bar 4 (notification) and fills at bar 5's gap open of 50,600
    assert fills(broker) == [(0.004, 50_000.0), (-0.004, 50_500.0),
                             (0.004, 50_000.0), (-0.004, 50_600.0)]
    assert len(strat.cycles) == 2
    assert strat.finished


CRASH = [50_000, 50_000, 49_500, 48_500, 47_500, 46_000, 44_000, 42_000, 40_000, 38_000,
         36_000, 35_000]


def test_dca_ladder_liquidated_at_10x_survives_at_2x() -> None:
    broker10, dca10 = run(DcaStrategy, CRASH, leverage=10, **DCA)
    broker2, dca2 = run(DcaStrategy, CRASH, leverage=2, **DCA)
    # ladder 50k, 49k (−2 %), 47k (−6 %), 43k (−14 %); 200, 200, 400, 800 USDT; sizes to 0.001
    assert fills(broker2) == [(0.004, 50_000.0), (0.004, 49_000.0), (0.009, 47_000.0),
                              (0.019, 43_000.0)]
    # 10x: after SO2 the isolated LP is above SO3's 43,000: liquidated on the way down
    assert fills(broker10)[:3] == fills(broker2)[:3]
    q, cost = 0.017, 0.004 * 50_000 + 0.004 * 49_000 + 0.009 * 47_000  # 819 USDT
    lp10 = (cost / 10 - cost) / (q * 0.004 - q)  # Binance isolated, tier 1 (mmr 0.4 %)
    assert lp10 == pytest.approx(43_532.96, abs=0.01)
    [liq] = liquidations(broker10)
    assert liq.trigger_price == pytest.approx(lp10)
    assert liq.size == pytest.approx(q) and liq.side == "long"
    assert liq.settlement_price == pytest.approx(cost / q - cost / 10 / q)  # bankruptcy
    assert fills(broker10)[3] == (-0.017, pytest.approx(lp10))
    # SO3 and the TP were cancelled by the liquidation; the bot stopped
    cancelled = [e for e in broker10.events if isinstance(e, ev.OrderCancelled)]
    assert sorted(e.price for e in cancelled) == pytest.approx([43_000.0, cost / q * 1.01])
    assert dca10.stopped_reason.startswith("liquidated")
    report = dca10.launch_report
    assert report["first_unreachable_safety_order"] == 3
    steps = report["liquidation_price_after_each_fill"]
    assert steps[2] > 43_000 > report["estimated_liquidation_price_all_filled"]
    # 2x: the whole ladder fills and the LP stays far below the crash low of 35,000
    assert liquidations(broker2) == []
    assert dca2.stopped_reason is None
    assert dca2.launch_report["first_unreachable_safety_order"] is None
    q2 = 0.036
    cost2 = cost + 0.019 * 43_000
    lp2 = (cost2 / 2 - cost2) / (q2 * 0.004 - q2)
    assert broker2.liquidation_price(dca2.data) == pytest.approx(lp2)
    assert lp2 < 35_000
    # the all-filled estimate uses the unrounded ladder: within 0.5 % of the real LP
    assert dca2.launch_report["estimated_liquidation_price_all_filled"] == pytest.approx(
        lp2, rel=5e-3)


def test_dca_stop_loss_ends_cycle() -> None:
    closes = [50_000, 50_000, 49_000, 47_000, 46_000, 46_000, 46_000]
    broker, strat = run(DcaStrategy, closes, stop_loss=5.0, max_cycles=1,
                        **{**DCA, "max_safety_orders": 1})
    # average 49,500 after SO1; stop at 47,025; the 47,000 close triggers; sold at next open
    assert fills(broker)[-1] == (-0.008, 47_000.0)
    assert strat.cycles[0]["reason"] == "stop_loss"
    assert strat.cycles[0]["pnl"] == pytest.approx(-0.008 * 2500)


def test_dca_rsi_filter_waits_for_oversold() -> None:
    closes = [50_000 + 100 * i for i in range(20)] + [49_000 - 300 * i for i in range(10)]
    broker, _ = run(DcaStrategy, closes, entry_filter="rsi", rsi_period=5, rsi_below=30,
                        **DCA)
    first_fill = next(e for e in broker.events if isinstance(e, ev.Fill))
    # the rally keeps RSI high: no base order before the drop starts at bar 21
    assert first_fill.time >= pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=5 * 21)


def test_dca_bad_params() -> None:
    with pytest.raises(ValueError, match="entry_filter"):
        run(DcaStrategy, [50_000] * 3, entry_filter="macd")


# --- hold ----------------------------------------------------------------------------------
def test_hold_sizes_with_fee_and_buffer() -> None:
    broker, strat = run(HoldStrategy, [50_000, 50_100, 50_200], leverage=5, margin=1000)
    # notional = 1000 / (1/5 + 0.0005) = 4987.53; / (50,000 × 1.005) = 0.09925 → 0.099
    assert strat.launch_report["size"] == pytest.approx(0.099)
    assert fills(broker) == [(0.099, 50_000.0)]
    assert strat.stopped_reason is None


def test_hold_all_available_short() -> None:
    broker, strat = run(HoldStrategy, [50_000, 49_000], direction="short", leverage=20)
    assert strat.position_size < 0
    assert broker.position_margin(strat.data) <= 1000


def test_hold_below_min_notional() -> None:
    broker, strat = run(HoldStrategy, [50_000] * 2, leverage=1, margin=50)
    assert "minimum order value" in strat.stopped_reason
    assert fills(broker) == []


# --- loader --------------------------------------------------------------------------------
def test_loader_by_name() -> None:
    assert load_strategy("grid") is GridStrategy
    assert load_strategy("DCA") is DcaStrategy
    assert set(STRATEGIES) == {"grid", "dca", "hold"}
    for cls in STRATEGIES.values():
        # backtrader's params are exactly the declared parameters, each documented
        names = [name for name, _ in cls.params._getitems()]
        assert sorted(names) == sorted(p.name for p in cls.parameters)
        assert all(p.doc and p.unit_text() for p in cls.parameters)


def test_loader_by_path(tmp_path: Path) -> None:
    file = tmp_path / "mine.py"
    file.write_text(
        "import backtrader as bt\n"
        "class Mine(bt.Strategy):\n    params = (('x', 1),)\n"
        "class NotAStrategy:\n    pass\n"
    )
    cls = load_strategy(f"{file}:Mine")
    assert issubclass(cls, bt.Strategy) and cls.__name__ == "Mine"
    with pytest.raises(StrategyLoadError, match=r"has no class 'Missing'.*Mine"):
        load_strategy(f"{file}:Missing")
    with pytest.raises(StrategyLoadError, match=r"not a backtrader\.Strategy subclass"):
        load_strategy(f"{file}:NotAStrategy")
    with pytest.raises(StrategyLoadError, match="does not exist"):
        load_strategy(f"{tmp_path / 'nope.py'}:Mine")
    with pytest.raises(StrategyLoadError, match="unknown strategy 'martingale'"):
        load_strategy("martingale")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(StrategyLoadError, match=r"broken\.py.*RuntimeError: boom"):
        load_strategy(f"{broken}:Any")


def test_readme_parameter_tables_are_the_declarations() -> None:
    from liqbt.core.params import markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for cls in STRATEGIES.values():
        assert markdown_table(cls.parameters) in readme, (
            f"README table of {cls.__name__} differs from its declaration: paste "
            f"liqbt.core.params.markdown_table({cls.__name__}.parameters)")
