"""Order semantics of MarginBroker under real margin rules (issue items 1–7): leverage, fees,
exchange tiers. Expected values are worked out by hand in the comments."""

from __future__ import annotations

from typing import Any

import backtrader as bt
import numpy as np
import pytest
from scripted import events_of, run

import liqbt
from liqbt.comminfo import LeveragedCommInfo, floor_to_step
from liqbt.core.errors import ValidationError

P = 50_000.0
FLAT50 = [(P, P + 100, P - 100, P)] * 6


def statuses(strat: Any) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for order in strat.orders:
        out.setdefault(order.ref, []).append(order.getstatusname())
    return out


def test_filled_order_ends_completed_at_leverage() -> None:
    """Item 1: a fill is notified Completed once and stays Completed (never Canceled)."""
    broker, strat = run({"BTCUSDT": (FLAT50, {"leverage": 10})},
                        {1: lambda s: s.buy(size=0.1)})
    assert list(statuses(strat).values()) == [["Submitted", "Accepted", "Completed"]]
    # 0.1 × 50,000 = 5,000 notional; Binance taker 0.05 % → fee 2.5
    assert broker.account.fees_paid == pytest.approx(2.5)


def bracket_bars(after_tp: float, drop: float = 2_000) -> list[tuple[float, float, float, float]]:
    return [
        (P, P + 50, P - 50, P),          # 1: bracket placed
        (P, P + 50, P - 50, P),          # 2: entry limit 49,900 not reached
        (P, P + 1_200, P - 50, P + 1_000),  # 3: the take-profit level 51,000 is crossed
        (after_tp, after_tp + 50, after_tp - drop, after_tp),  # 4: the stop 48,500 too
        (P, P + 50, P - 50, P),
    ]


def test_bracket_children_wait_for_the_entry() -> None:
    """Item 2: the entry limit (49,900) never fills, so the take-profit child may not fill
    although bar 3 crosses its 51,000."""
    broker, strat = run(
        {"BTCUSDT": (bracket_bars(P, drop=50), {"leverage": 10})},
        {1: lambda s: s.buy_bracket(size=0.1, price=49_900, stopprice=48_500,
                                    limitprice=51_000)},
    )
    assert [s[-1] for s in statuses(strat).values()] == ["Accepted"] * 3
    assert not broker.positions_of(strat.data)
    assert not events_of(broker, "fill")


def test_take_profit_cancels_the_stop_at_leverage() -> None:
    """Items 1 and 3: market entry at 50,000 (bar 2), take-profit 51,000 on bar 3 cancels the
    stop-loss, so bar 4's fall through 48,500 opens nothing."""
    broker, strat = run(
        {"BTCUSDT": (bracket_bars(P), {"leverage": 10})},
        {1: lambda s: s.buy_bracket(size=0.1, exectype=bt.Order.Market, stopprice=48_500,
                                    limitprice=51_000)},
    )
    final = [s[-1] for s in statuses(strat).values()]
    assert final == ["Completed", "Canceled", "Completed"]
    assert not broker.positions_of(strat.data)
    # entry taker 0.1 × 50,000 × 0.0005 = 2.5; take-profit maker 0.1 × 51,000 × 0.0002 = 1.02
    assert broker.account.fees_paid == pytest.approx(3.52)
    assert broker.account.realized_pnl == pytest.approx(100.0)


def test_hedge_mode_bracket_children_close_the_parent_leg() -> None:
    """Hedge mode: the take-profit sell of a long bracket closes the LONG leg (it does not
    open a SHORT one), then cancels the stop; bar 4's fall opens nothing."""
    broker, strat = run(
        {"BTCUSDT": (bracket_bars(P), {"leverage": 10})},
        {1: lambda s: s.buy_bracket(size=0.1, exectype=bt.Order.Market, stopprice=48_500,
                                    limitprice=51_000)},
        position_mode="hedge",
    )
    assert [s[-1] for s in statuses(strat).values()] == ["Completed", "Canceled", "Completed"]
    assert not broker.positions_of(strat.data)
    assert [(f.leg, f.size) for f in events_of(broker, "fill")] == [("long", 0.1),
                                                                     ("long", -0.1)]


def test_stop_trail_is_not_a_limit() -> None:
    """Item 4: a sell StopTrail 500 below the close (stop 49,500) must not fill at once."""
    bars = [(P, P + 50, P - 50, P)] * 3 + [(P, P + 50, P - 600, P - 550)]
    broker, strat = run(
        {"BTCUSDT": (bars, {"leverage": 10})},
        {1: lambda s: s.buy(size=0.1),
         2: lambda s: s.sell(size=0.1, exectype=bt.Order.StopTrail, trailamount=500)},
    )
    fills = events_of(broker, "fill")
    assert [(f.size, f.price) for f in fills] == [(0.1, P), (-0.1, 49_500)]
    assert len(strat) == 4 and fills[1].time == strat.data.datetime.datetime(0)


def test_order_target_percent_sizes_by_margin_times_leverage() -> None:
    """Item 5: 1,000 USDT equity, 10x: order_target_percent(0.5) puts 500 USDT of margin to
    work, 500 × 10 / 50,000 = 0.1 BTC; order_target_value(200) then sells down to
    200 × 10 / 50,000 = 0.04 BTC (the position's value is 0.1 × 50,000 / 10 = 500)."""
    broker, strat = run(
        {"BTCUSDT": (FLAT50, {"leverage": 10})},
        {1: lambda s: s.order_target_percent(target=0.5),
         3: lambda s: s.order_target_value(target=200)},
    )
    fills = events_of(broker, "fill")
    assert [f.size for f in fills] == pytest.approx([0.1, -0.06])
    assert broker.get_value(datas=[strat.data]) == pytest.approx(200.0)


def test_percent_sizer_sizes_by_margin_times_leverage() -> None:
    """Item 5: PercentSizer(95) at 20x with 1,000 USDT available: 950 × 20 / 50,000 = 0.38."""
    cerebro_sizer = (bt.sizers.PercentSizer, {"percents": 95})
    broker, _ = run({"BTCUSDT": (FLAT50, {"leverage": 20})},
                        {1: lambda s: s.buy()}, sizer=cerebro_sizer)
    assert [f.size for f in events_of(broker, "fill")] == pytest.approx([0.38])


def test_all_in_sizer_leaves_no_room_for_the_fee() -> None:
    """AllInSizer at 10x: 1,000 × 10 / 50,000 = 0.2 BTC needs 1,000 margin + 5 fee > 1,000:
    refused with a reason (BackBroker would refuse it too once fees are charged)."""
    _, strat = run({"BTCUSDT": (FLAT50, {"leverage": 10})},
                        {1: lambda s: s.buy()}, sizer=(bt.sizers.AllInSizer, {}))
    order = strat.orders[-1]
    assert order.getstatusname() == "Margin"
    assert order.info.reject_reason == (
        "BTCUSDT: order needs 1,005.00 USDT margin (incl. fee) but only 1,000.00 USDT is "
        "available"
    )


@pytest.mark.parametrize("size", [np.float64(0.01), np.int64(1)])
def test_numpy_sizes_at_leverage(size: Any) -> None:
    """Item 6: numpy sizes are plain numbers to the broker."""
    broker, strat = run({"BTCUSDT": (FLAT50, {"leverage": 20})},
                        {1: lambda s: s.buy(size=size)}, cash=100_000)
    (pos,) = broker.positions_of(strat.data)
    assert pos.size == float(size)
    assert type(strat.orders[-1].executed.size) is float


def test_unsupported_exectype_is_refused_at_acceptance() -> None:
    broker, strat = run({"BTCUSDT": (FLAT50, {"leverage": 10})},
                        {1: lambda s: s.buy(size=0.1, price=P, exectype=bt.Order.Historical,
                                                histnotify=True)})
    order = strat.orders[-1]
    assert [o.getstatusname() for o in strat.orders] == ["Submitted", "Rejected"]
    assert order.info.reject_reason.startswith("exectype Historical is not simulated")
    assert not events_of(broker, "fill")


def test_unsimulated_backbroker_params_are_refused() -> None:
    with pytest.raises(ValidationError) as err:
        liqbt.MarginBroker(exchange="binance", cash=1000, coc=True, slip_perc=0.001)
    assert err.value.problems == [
        "coc = True: BackBroker's coc is not simulated by MarginBroker (fills are exchange "
        "fills on the bar path)",
        "slip_perc = 0.001: BackBroker's slip_perc is not simulated by MarginBroker (fills are "
        "exchange fills on the bar path)",
    ]


def test_okx_order_above_7200_usdt_at_25x_is_accepted() -> None:
    """Item 7: OKX ETHUSDT caps are in ETH (7,200 ETH at 25x), so 5 ETH at 2,000
    (10,000 USDT) is accepted: isolated margin 10,000 / 25 = 400, taker fee 0.05 % = 5."""
    bars = [(2_000.0, 2_001.0, 1_999.0, 2_000.0)] * 3
    broker, strat = run(
        {"ETHUSDT": (bars, {"leverage": 25, "margin_mode": "isolated"})},
        {1: lambda s: s.buy(size=5)}, cash=1_000, exchange="okx",
    )
    assert strat.orders[-1].getstatusname() == "Completed"
    assert broker.position_margin(strat.data) == pytest.approx(400.0)
    assert broker.account.wallet_balance == pytest.approx(595.0)


def test_okx_partial_liquidation_tiers_are_reachable_at_real_prices() -> None:
    """Item 7: 1,000 ETH isolated long at 2,000, 20x (tier 3 of OKX's ETHUSDT: 600–1,200 ETH,
    mmr 1 %). M = 2,000,000 / 20 = 100,000. OKX liquidates when M + upnl ≤ notional × (mmr +
    taker): 100,000 + 1,000 (P − 2,000) = 1,000 P × 0.0105 → P = 1,900,000 / 989.5 = 1,920.16.
    Two tiers down is tier 1 (cap 300 ETH): 700 ETH are closed at the trigger. The remaining
    300 ETH keep M = 30,000 at mmr 0.4 %: 30,000 + 300 (P − 2,000) = 300 P × 0.0045 →
    P = 570,000 / 298.65 = 1,908.59, below the bar's low 1,915, so they survive."""
    bars = [
        (2_000.0, 2_000.0, 2_000.0, 2_000.0),
        (2_000.0, 2_001.0, 1_999.0, 2_000.0),
        (1_990.0, 1_995.0, 1_915.0, 1_930.0),
        (1_930.0, 1_931.0, 1_929.0, 1_930.0),
    ]
    broker, strat = run(
        {"ETHUSDT": (bars, {"leverage": 20, "margin_mode": "isolated"})},
        {1: lambda s: s.buy(size=1_000)}, cash=150_000, exchange="okx",
    )
    (liq,) = events_of(broker, "liquidation")
    assert liq.partial
    assert liq.size == pytest.approx(700.0)
    assert liq.trigger_price == pytest.approx(1_920.16, abs=0.01)
    (pos,) = broker.positions_of(strat.data)
    assert pos.size == pytest.approx(300.0)
    assert pos.margin == pytest.approx(30_000.0)
    assert broker.liquidation_price(strat.data) == pytest.approx(1_908.59, abs=0.01)


def test_leveraged_comminfo() -> None:
    info = LeveragedCommInfo(leverage=10, size_step=0.001)
    assert info.getsize(50_000, 500) == pytest.approx(0.1)  # 500 × 10 / 50,000
    assert info.getsize(30_000, 100) == pytest.approx(0.033)  # 0.0333… rounded down
    assert info.getoperationcost(0.1, 50_000) == pytest.approx(500.0)
    assert info.getvaluesize(-0.1, 50_000) == pytest.approx(-500.0)
    assert floor_to_step(0.3, 0.1) == pytest.approx(0.3)  # 0.3 / 0.1 = 2.9999999999999996
    assert floor_to_step(0.0666, 0.001) == pytest.approx(0.066)
    assert floor_to_step(5.0, 0.0) == 5.0
