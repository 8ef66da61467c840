"""MarginBroker through Cerebro on scripted bars: each rule of margin-model §4–9 with hand
numbers."""

from __future__ import annotations

import math

import backtrader as bt
import pytest
from scripted import FLAT, events_of, run

BTC = "BTCUSDT"
# 20x isolated long of 0.2 BTC at 60,000 on Binance BTCUSDT (tier 1: mmr 0.4 %, cum 0):
# M = 12,000 / 20 = 600; LP = (q·E − M) / (q·(1 − mmr)) = 11,400 / 0.1992; BP = E − M/q.
LONG_LP = 11_400 / 0.1992
LONG_BP = 57_000.0
OPEN_FEE = 12_000 * 0.0005


def buy(size, **kw):
    return lambda s: s.buy(data=s.datas[0], size=size, **kw)


def sell(size, **kw):
    return lambda s: s.sell(data=s.datas[0], size=size, **kw)


def test_isolated_long_liquidated_at_core_lp_and_settled_at_bankruptcy():
    bars = [FLAT, FLAT, FLAT, (60_000, 60_000, 56_000, 57_500), FLAT]
    broker, strat = run({BTC: (bars, dict(leverage=20, margin_mode="isolated"))},
                        actions={1: buy(0.2)})
    (liq,) = events_of(broker, "liquidation")
    assert liq.time.minute == 15  # the fourth bar, 00:15
    assert liq.trigger_price == pytest.approx(LONG_LP, rel=1e-12)
    assert liq.settlement_price == pytest.approx(LONG_BP, rel=1e-12)
    assert liq.loss == pytest.approx(600.0, rel=1e-12)
    assert liq.insurance_fund_delta == pytest.approx(0.2 * (LONG_LP - LONG_BP), rel=1e-9)
    assert broker.getvalue() == pytest.approx(1000 - OPEN_FEE - 600, rel=1e-12)
    assert broker.getcash() == pytest.approx(394.0)
    # the forced close is a real order and closes a real trade
    forced = [
        o for o in strat.orders if o.info.get("liquidation") and o.status == bt.Order.Completed
    ]
    assert len(forced) == 1 and forced[0].executed.price == pytest.approx(LONG_BP)
    assert [round(t.pnl, 6) for t in strat.closed_trades] == [-600.0]
    # the strategy saw the liquidation in the same bar, before its next()
    kinds = [e.kind for e in strat.margin_events]
    assert "liquidation" in kinds
    assert strat.event_bar[kinds.index("liquidation")] == 3  # delivered before next() of bar 4


def test_isolated_short_liquidated_on_the_way_up():
    # short 0.2 at 60,000, 20x: LP = (M + q·E) / (q·(1 + mmr)) = 12,600 / 0.2008
    lp = 12_600 / 0.2008
    bars = [FLAT, FLAT, (60_000, 63_500, 59_900, 63_000), FLAT]
    broker, _ = run({BTC: (bars, dict(leverage=20, margin_mode="isolated"))},
                    actions={1: sell(0.2)})
    (liq,) = events_of(broker, "liquidation")
    assert liq.side == "short"
    assert liq.trigger_price == pytest.approx(lp, rel=1e-12)
    assert liq.settlement_price == pytest.approx(63_000.0)
    assert broker.getvalue() == pytest.approx(394.0)


def test_price_recovering_just_above_lp_is_not_liquidated():
    bars = [FLAT, FLAT, (60_000, 60_000, LONG_LP + 0.01, 59_000), (59_000, 61_000, 59_000, 61_000)]
    broker, _ = run({BTC: (bars, dict(leverage=20, margin_mode="isolated"))},
                    actions={1: buy(0.2)})
    assert events_of(broker, "liquidation") == []
    # 0.2 × (61,000 − 60,000) unrealized, minus the opening fee
    assert broker.getvalue() == pytest.approx(1000 - OPEN_FEE + 200)


def test_gap_through_bankruptcy_settles_at_bp_and_insurance_covers_the_gap():
    bars = [FLAT, FLAT, (55_000, 55_500, 54_000, 55_000), FLAT]
    broker, _ = run({BTC: (bars, dict(leverage=20, margin_mode="isolated"))},
                    actions={1: buy(0.2)})
    (liq,) = events_of(broker, "liquidation")
    assert liq.trigger_price == 55_000  # the bar opened beyond the trigger
    assert liq.settlement_price == pytest.approx(LONG_BP)
    assert liq.insurance_fund_delta == pytest.approx(0.2 * (55_000 - LONG_BP))  # −400
    assert broker.getvalue() == pytest.approx(394.0)


def test_gap_with_debit_keeps_the_deficit():
    bars = [FLAT, FLAT, (55_000, 55_500, 54_000, 55_000), FLAT]
    broker, _ = run({BTC: (bars, dict(leverage=20, margin_mode="cross"))},
                    actions={1: buy(0.2)}, cash=700, debit=True)
    (liq,) = events_of(broker, "liquidation")
    assert liq.settlement_price == 55_000
    # wallet 700 − 6 fee + 0.2 × (55,000 − 60,000)
    assert broker.getvalue() == pytest.approx(700 - OPEN_FEE - 1000)
    assert broker.account.insurance_fund == 0


def test_cross_single_position_clears_the_wallet():
    # wallet after fee 994; LP = (WB − q·E) / (q·mmr − q); BP = E − WB/q
    wallet = 1000 - OPEN_FEE
    lp = (wallet - 12_000) / (0.2 * 0.004 - 0.2)
    bp = 60_000 - wallet / 0.2
    bars = [FLAT, FLAT, (60_000, 60_000, 54_000, 55_000), FLAT]
    broker, _ = run({BTC: (bars, dict(leverage=20, margin_mode="cross"))},
                    actions={1: buy(0.2)})
    (liq,) = events_of(broker, "liquidation")
    assert liq.trigger_price == pytest.approx(lp, rel=1e-12)
    assert liq.settlement_price == pytest.approx(bp, rel=1e-12)
    assert broker.account.wallet_balance == 0.0
    assert broker.getvalue() == 0.0
    assert broker.wiped_out
    assert events_of(broker, "wipeout")


def test_cross_multi_symbol_closes_every_cross_position():
    eth_flat = (3000.0, 3001.0, 2999.0, 3000.0)
    eth_bars = [eth_flat, eth_flat, (3000, 3000, 2000, 2100), eth_flat]
    btc_bars = [FLAT, FLAT, FLAT, FLAT]
    actions = {1: lambda s: (s.buy(data=s.datas[0], size=0.05), s.buy(data=s.datas[1], size=1.0))}
    broker, _ = run(
        {BTC: (btc_bars, dict(leverage=10, margin_mode="cross")),
         "ETHUSDT": (eth_bars, dict(leverage=10, margin_mode="cross"))},
        actions=actions,
    )
    liqs = events_of(broker, "liquidation")
    assert {e.symbol for e in liqs} == {BTC, "ETHUSDT"}
    fees = (3000 + 3000) * 0.0005
    wallet = 1000 - fees
    # joint walk (margin-model §8): on the clock's middle third ETH falls 3,000 → 2,000 while
    # BTC (flat bar, low first) rises 59,950 → 60,050; at fraction s of that third
    # g(s) = WB + 0.05·(pB − 60,000) + 1·(pE − 3,000) − 0.4 %·0.05·pB − 0.4 %·pE with
    # pB = 59,950 + 100 s, pE = 3,000 − 1,000 s: g = (WB − 2.5 − 11.99 − 12) − 991.02 s
    s = (wallet - 2.5 - 11.99 - 12) / 991.02
    eth_liq = next(e for e in liqs if e.symbol == "ETHUSDT")
    btc_liq = next(e for e in liqs if e.symbol == BTC)
    assert eth_liq.trigger_price == pytest.approx(3000 - 1000 * s, rel=1e-9)
    assert btc_liq.trigger_price == pytest.approx(59_950 + 100 * s, rel=1e-9)
    assert broker.account.wallet_balance == 0.0
    assert not list(broker.account.open_positions())


def test_isolated_liquidation_leaves_wallet_and_other_positions_alone():
    eth_flat = (3000.0, 3001.0, 2999.0, 3000.0)
    btc_bars = [FLAT, FLAT, (60_000, 60_000, 56_000, 57_500), FLAT]
    actions = {1: lambda s: (s.buy(data=s.datas[0], size=0.2), s.buy(data=s.datas[1], size=0.5))}
    broker, _ = run(
        {BTC: (btc_bars, dict(leverage=20, margin_mode="isolated")),
         "ETHUSDT": ([eth_flat] * 4, dict(leverage=5, margin_mode="cross"))},
        actions=actions, cash=2000,
    )
    (liq,) = events_of(broker, "liquidation")
    assert liq.symbol == BTC
    eth = broker.account.positions[("ETHUSDT", "net")]
    assert eth.size == 0.5
    # wallet: 2000 − 600 isolated margin − both fees; the 600 is gone, nothing else moved
    assert broker.account.wallet_balance == pytest.approx(2000 - 600 - OPEN_FEE - 1500 * 0.0005)


def test_ladder_fills_then_liquidation_inside_one_bar():
    # market 0.01 at the open, limit buys at 58,000 and 56,000 fill on the way down, then the
    # LP of the 0.03 position (entry 58,000, M = 174 at 10x) is crossed in the same bar.
    def ladder(s):
        s.buy(data=s.datas[0], size=0.01)
        s.buy(data=s.datas[0], size=0.01, price=58_000, exectype=bt.Order.Limit)
        s.buy(data=s.datas[0], size=0.01, price=56_000, exectype=bt.Order.Limit)

    bars = [FLAT, (60_000, 60_000, 50_000, 51_000), FLAT]
    broker, _ = run({BTC: (bars, dict(leverage=10, margin_mode="isolated"))},
                    actions={1: ladder})
    fills = [e for e in events_of(broker, "fill") if not e.liquidation]
    assert [f.price for f in fills] == [60_000, 58_000, 56_000]
    assert [f.maker for f in fills] == [False, True, True]
    (liq,) = events_of(broker, "liquidation")
    expected_lp = (0.03 * 58_000 - 174) / (0.03 * 0.996)
    assert liq.trigger_price == pytest.approx(expected_lp, rel=1e-9)
    assert liq.time == fills[-1].time
    assert liq.size == pytest.approx(0.03)


def test_order_rejected_for_margin_with_a_readable_reason():
    broker, strat = run({BTC: ([FLAT] * 3, dict(leverage=10, margin_mode="isolated"))},
                        actions={1: buy(0.1)}, cash=100)
    rejected = [o for o in strat.orders if o.status == bt.Order.Margin]
    assert len(rejected) == 1
    reason = rejected[0].info.reject_reason
    assert "603.00 USDT margin" in reason and "100.00 USDT is available" in reason
    assert events_of(broker, "rejected")[0].reason == reason
    assert broker.getvalue() == 100


def test_reduce_only_close_is_never_rejected_for_margin():
    actions = {1: buy(0.2), 3: sell(0.2, reduce_only=True)}
    bars = [FLAT, FLAT, (60_000, 60_000, 58_000, 58_000), (58_000, 58_100, 57_900, 58_000), FLAT]
    broker, strat = run({BTC: (bars, dict(leverage=20, margin_mode="isolated"))},
                        actions=actions)
    assert not [o for o in strat.orders if o.status == bt.Order.Margin]
    assert broker.account.positions[(BTC, "net")].size == 0
    # 0.2 × (58,000 − 60,000) − fees on 12,000 and 11,600
    assert broker.getvalue() == pytest.approx(1000 - 400 - 6 - 5.8)


def test_leverage_above_tier_maximum_is_an_error_naming_both():
    import liqbt

    broker = liqbt.MarginBroker(exchange="binance", cash=1000)
    with pytest.raises(ValueError, match=r"leverage = 150.*125"):
        broker.set_market("BTCUSDT", symbol="BTCUSDT", leverage=150)


def test_resting_orders_reserve_margin():
    # 1000 USDT at 10x: a resting buy of 0.15 at 50,000 reserves 750, so a second one is refused
    def two(s):
        s.buy(data=s.datas[0], size=0.15, price=50_000, exectype=bt.Order.Limit)
        s.buy(data=s.datas[0], size=0.15, price=50_000, exectype=bt.Order.Limit)

    broker, strat = run({BTC: ([FLAT] * 3, dict(leverage=10, margin_mode="cross"))},
                        actions={1: two})
    statuses = [o.status for o in strat.orders if o.status in (bt.Order.Accepted, bt.Order.Margin)]
    assert statuses == [bt.Order.Accepted, bt.Order.Margin]
    assert broker.getcash() == pytest.approx(1000 - 750)


def test_queries_for_strategies():
    seen = {}

    def look(s):
        d = s.datas[0]
        seen.update(lp=s.broker.liquidation_price(d), bp=s.broker.bankruptcy_price(d),
                    ratio=s.broker.margin_ratio(d), margin=s.broker.position_margin(d),
                    cash=s.broker.getcash())

    broker, _ = run({BTC: ([FLAT] * 4, dict(leverage=20, margin_mode="isolated"))},
                    actions={1: buy(0.2), 3: look})
    assert seen["lp"] == pytest.approx(LONG_LP)
    assert seen["bp"] == pytest.approx(LONG_BP)
    assert seen["margin"] == pytest.approx(600)
    assert seen["ratio"] == pytest.approx(0.2 * 60_000 * 0.004 / 600)
    assert seen["cash"] == pytest.approx(1000 - 600 - OPEN_FEE)
    assert math.isinf(broker.min_liquidation_distance) is False


def test_reduce_only_order_never_opens_or_flips_a_position():
    # flat: a reduce-only sell is cancelled, not turned into a short
    bars = [FLAT, FLAT, (60_000, 60_000, 59_000, 59_500), FLAT]
    broker, strat = run({BTC: (bars, dict(leverage=10, margin_mode="cross"))},
                        actions={1: sell(0.01, reduce_only=True)})
    assert broker.account.positions.get((BTC, "net")) is None or not broker.account.positions[
        (BTC, "net")].size
    assert any(o.status == bt.Order.Canceled for o in strat.orders)
    # long 0.1: a reduce-only sell of 0.3 closes only the 0.1
    broker, _ = run({BTC: ([FLAT] * 5, dict(leverage=10, margin_mode="cross"))},
                    actions={1: buy(0.1), 3: sell(0.3, reduce_only=True)})
    assert broker.account.positions[(BTC, "net")].size == 0


def test_order_cancelled_in_the_bar_it_was_submitted_never_fills():
    def place_and_cancel(s):
        order = s.buy(data=s.datas[0], size=0.1)
        s.cancel(order)

    broker, strat = run({BTC: ([FLAT] * 4, dict(leverage=10, margin_mode="cross"))},
                        actions={1: place_and_cancel})
    assert not events_of(broker, "fill")
    assert [o.getstatusname() for o in strat.orders] == ["Submitted", "Canceled"]


def test_resting_order_fills_on_frozen_margin_despite_later_losses():
    # cross 10x, 1,000 USDT: a long of 0.1 at 60,000 (IM 600) and a resting buy of 0.05 at
    # 57,000 (285 frozen at acceptance). At 57,000 the upnl of −300 leaves no free balance,
    # but the order's margin was frozen when it was accepted, so it fills as on an exchange.
    def open_and_rest(s):
        s.buy(data=s.datas[0], size=0.1)
        s.buy(data=s.datas[0], size=0.05, price=57_000, exectype=bt.Order.Limit)

    bars = [FLAT, FLAT, (60_000, 60_000, 56_900, 57_100), FLAT]
    broker, _ = run({BTC: (bars, dict(leverage=10, margin_mode="cross"))},
                    actions={1: open_and_rest})
    fills = events_of(broker, "fill")
    assert [f.price for f in fills] == [60_000, 57_000]
    assert not events_of(broker, "rejected")


@pytest.mark.parametrize(
    ("intrabar", "liquidated"),
    [("heuristic", False), ("optimistic", False), ("pessimistic", True)],
)
def test_intrabar_path_option_decides_which_extreme_comes_first(intrabar, liquidated):
    # long 0.2 at 60,000 (LP 57,228.92) with a reduce-only take profit at 61,000; the bar closes
    # down through both: the heuristic path (close < open) and the optimistic one visit the high
    # first and take profit; the pessimistic one visits the adverse low first and liquidates.
    def open_with_tp(s):
        s.buy(data=s.datas[0], size=0.2)
        s.sell(data=s.datas[0], size=0.2, price=61_000, exectype=bt.Order.Limit, reduce_only=True)

    bars = [FLAT, FLAT, (60_000, 61_500, 57_000, 59_000), FLAT]
    broker, _ = run({BTC: (bars, dict(leverage=20, margin_mode="isolated"))},
                    actions={1: open_with_tp}, intrabar=intrabar)
    assert bool(events_of(broker, "liquidation")) is liquidated
    if liquidated:
        assert events_of(broker, "order_cancelled")[0].price == 61_000
        assert broker.getvalue() == pytest.approx(394.0)
    else:
        assert broker.getvalue() == pytest.approx(1000 - 6 + 200 - 0.2 * 61_000 * 0.0002)


def test_closing_order_with_float_residue_is_not_refused_for_minimum_value():
    # 0.3 − 0.1 is 0.19999999999999998: the closing sell of 0.2 must not count the 3e-17
    # it exceeds the position by as an opening part (refused as an order below 100 USDT)
    actions = {1: buy(0.3), 2: sell(0.1), 3: sell(0.2)}
    broker, strat = run({BTC: ([FLAT] * 6, dict(leverage=10, margin_mode="isolated"))},
                        actions=actions, cash=5000)
    assert 0.3 - 0.1 != 0.2  # the residue this test is about
    assert not events_of(broker, "rejected")
    assert broker.account.positions[(BTC, "net")].size == 0.0
    assert broker.getposition(strat.datas[0]).size == 0.0  # backtrader's view too
    assert [t.status for t in strat.closed_trades] == [bt.Trade.Closed]
