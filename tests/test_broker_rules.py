"""Exchange rules beyond the core broker (issue 7): top-up, funding, partial liquidation, hedge
mode netting, warnings, per-symbol margin modes, the `simple` profile, settlement options.
Every expectation is computed by hand from the published formulas (sources in docstrings)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import backtrader as bt
import pytest
from scripted import FLAT, events_of, run

from liqbt.core.margin import round_price
from liqbt.core.profile import load_profile

NAN = math.nan


def test_bitget_automatic_margin_call_sequence():
    """margin-model §10 (Bitget "automatic margin call"): balance 600, long 0.1 BTC at 27,249.5,
    10x: LP 24,637.9 → +272.495 → 21,900.4 → +55.01 → 21,347.7, then liquidation."""
    flat = (27_249.5, 27_260.0, 27_240.0, 27_249.5)
    bars = [flat, flat, (27_249.5, 27_249.5, 21_000.0, 21_100.0), flat]
    broker, _ = run(
        {"BTCUSDT": (bars, dict(leverage=10, margin_mode="isolated", auto_top_up=True))},
        actions={1: lambda s: s.buy(data=s.datas[0], size=0.1, price=27_249.5,
                                    exectype=bt.Order.Limit)},
        cash=600, exchange="bitget", profile_overrides={"maker_fee": 0.0},
    )
    top_ups = events_of(broker, "top_up")
    assert [round(t.amount, 6) for t in top_ups] == [272.495, 55.01]
    shown = [round_price(t.liquidation_price_after, "tick_directional", 0.1, 1) for t in top_ups]
    assert shown == [21_900.4, 21_347.7]
    assert top_ups[-1].available_balance_after == pytest.approx(0.0, abs=1e-9)
    (liq,) = events_of(broker, "liquidation")
    assert round_price(liq.trigger_price, "tick_directional", 0.1, 1) == 21_347.7
    assert broker.getvalue() == pytest.approx(0.0, abs=1e-9)


def test_bybit_auto_margin_replenishment_sequence():
    """margin-model §12 (Bybit AMR): available 10,000, long 5 BTC at 8,000, 10x → LP 7,240; top-ups
    of 4,000 then 2,000 → LP 6,440 then 6,040."""
    flat = (8000.0, 8001.0, 7999.0, 8000.0)
    bars = [flat, flat, (8000.0, 8000.0, 6_100.0, 6_200.0), flat]
    seen = {}
    broker, _ = run(
        {"BTCUSDT": (bars, dict(leverage=10, margin_mode="isolated", auto_top_up=True))},
        actions={
            1: lambda s: s.buy(data=s.datas[0], size=5, price=8000, exectype=bt.Order.Limit),
            2: lambda s: seen.setdefault("lp", s.broker.liquidation_price(s.datas[0])),
        },
        cash=10_000, exchange="bybit", profile_overrides={"maker_fee": 0.0},
    )
    assert seen["lp"] == pytest.approx(7240.0)
    top_ups = events_of(broker, "top_up")
    assert [t.amount for t in top_ups] == pytest.approx([4000.0, 2000.0])
    assert [t.liquidation_price_after for t in top_ups] == pytest.approx([6440.0, 6040.0])
    assert not events_of(broker, "liquidation")  # the low 6,100 stays above 6,040


def test_bybit_funding_moves_the_isolated_lp():
    """margin-model §7 (Bybit): 200 USDT funding on a 1 BTC 50x long at 20,000 (mmr 0.5 %) moves
    the LP from 19,700 to 19,900."""
    flat = (20_000.0, 20_001.0, 19_999.0, 20_000.0)
    seen = []
    look = lambda s: seen.append(s.broker.liquidation_price(s.datas[0]))  # noqa: E731
    market = dict(leverage=50, margin_mode="isolated",
                  frame_extra={"funding_rate": [NAN, NAN, 0.01, NAN, NAN]})
    broker, _ = run({"BTCUSDT": ([flat] * 5, market)},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=1), 2: look, 4: look},
                    exchange="bybit")
    assert seen == pytest.approx([19_700.0, 19_900.0])
    (funding,) = events_of(broker, "funding")
    assert funding.payment == pytest.approx(200.0)
    assert broker.account.funding_paid == pytest.approx(200.0)


def test_funding_long_pays_short_receives_cross_wallet():
    """Funding: 1 BTC long, mark 60,000, rate 0.01 % → the long pays 6 USDT (margin-model §12)."""
    market = dict(leverage=10, margin_mode="cross",
                  frame_extra={"funding_rate": [NAN, NAN, 0.0001, -0.0001, NAN]})
    broker, _ = run({"BTCUSDT": ([FLAT] * 5, market)},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=1)}, cash=10_000)
    payments = [e.payment for e in events_of(broker, "funding")]
    assert payments == pytest.approx([6.0, -6.0])
    assert broker.account.wallet_balance == pytest.approx(10_000 - 30.0)  # fee only, net 0


def _three_symbol_profile():
    binance = load_profile("binance")
    sol = dataclasses.replace(binance.symbol("ETHUSDT"), symbol="SOLUSDT", min_notional=5)
    return dataclasses.replace(binance, symbols={**binance.symbols, "SOLUSDT": sol})


def test_three_pairs_only_the_isolated_pair_is_liquidated():
    """Per-symbol margin mode: BTC and ETH cross, SOL isolated 20x; SOL falls 10 %, the
    isolated pair is liquidated while the cross account stays healthy."""
    eth = (3000.0, 3001.0, 2999.0, 3000.0)
    sol_flat = (150.0, 150.1, 149.9, 150.0)
    sol_bars = [sol_flat, sol_flat, (150.0, 150.0, 134.0, 135.0), sol_flat]

    def open_all(s):
        s.buy(data=s.datas[0], size=0.01)
        s.buy(data=s.datas[1], size=0.2)
        s.buy(data=s.datas[2], size=10)

    from liqbt import MarginBroker

    cerebro_profile = _three_symbol_profile()
    broker, _ = run(
        {"BTCUSDT": ([FLAT] * 4, dict(leverage=5, margin_mode="cross")),
         "ETHUSDT": ([eth] * 4, dict(leverage=5, margin_mode="cross")),
         "SOLUSDT": (sol_bars, dict(leverage=20, margin_mode="isolated"))},
        actions={1: open_all}, cash=1000, exchange=cerebro_profile,
    )
    assert isinstance(broker, MarginBroker)
    (liq,) = events_of(broker, "liquidation")
    assert liq.symbol == "SOLUSDT" and liq.margin_mode == "isolated"
    assert liq.loss == pytest.approx(1500 / 20)
    open_symbols = {p.symbol for p in broker.account.open_positions()}
    assert open_symbols == {"BTCUSDT", "ETHUSDT"}
    assert broker.margin_ratio() < 0.05


def test_simple_profile_cross_example():
    """`simple` (margin-model §3): cross, balance 400, used margin 100 → MM 50: liquidated when
    equity minus the closing fee reaches 50, a loss of about 350."""
    q = 1000 / 60_000  # 1,000 USDT at 10x uses 100 margin
    bars = [FLAT, FLAT, (60_000, 60_000, 30_000, 31_000), FLAT]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=10, margin_mode="cross"))},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=q)}, cash=400,
                    exchange="simple")
    (liq,) = events_of(broker, "liquidation")
    taker = broker.profile.taker_fee
    wallet = 400 - 1000 * taker
    equity_at_trigger = wallet + q * (liq.trigger_price - 60_000)
    assert equity_at_trigger - taker * q * liq.trigger_price == pytest.approx(50.0, rel=1e-9)
    assert 400 - equity_at_trigger == pytest.approx(350, abs=2)


def test_simple_profile_isolated_example():
    """`simple`: isolated margin 100 → liquidated after a loss of about 50; the other 300 of the
    balance is untouched."""
    q = 1000 / 60_000
    bars = [FLAT, FLAT, (60_000, 60_000, 50_000, 51_000), FLAT]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=10, margin_mode="isolated"))},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=q)}, cash=400,
                    exchange="simple")
    (liq,) = events_of(broker, "liquidation")
    loss_at_trigger = -q * (liq.trigger_price - 60_000)
    assert loss_at_trigger == pytest.approx(50, abs=1.5)
    assert broker.account.wallet_balance == pytest.approx(300 - 1000 * broker.profile.taker_fee)


def test_hedge_mode_cross_netting_avoids_full_liquidation():
    """margin-model §9 step 2: LONG 0.2 and SHORT 0.1 BTC (cross, 50x, wallet 591 after fees). At
    the hedged LP 54,746.96 the overlapping 0.1 is closed; the remaining 0.1 long has LP 54,362.2,
    below the bar's low, so no full liquidation happens."""
    def open_legs(s):
        s.buy(data=s.datas[0], size=0.2)
        s.sell(data=s.datas[0], size=0.1)

    bars = [FLAT, FLAT, (60_000, 60_000, 54_500, 55_000), (55_000, 58_000, 55_000, 58_000)]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=50, margin_mode="cross"))},
                    actions={1: open_legs}, cash=600, position_mode="hedge")
    wallet = 600 - 0.3 * 60_000 * 0.0005
    lp_hedged = (wallet - 0.2 * 60_000 + 0.1 * 60_000) / (0.3 * 0.004 - 0.1)
    liqs = events_of(broker, "liquidation")
    assert len(liqs) == 2 and all(e.partial for e in liqs)
    assert {e.leg for e in liqs} == {"long", "short"}
    assert liqs[0].trigger_price == pytest.approx(lp_hedged, rel=1e-9)
    long_leg = broker.account.positions[("BTCUSDT", "long")]
    short_leg = broker.account.positions[("BTCUSDT", "short")]
    assert long_leg.size == pytest.approx(0.1) and short_leg.size == 0
    wallet_after = wallet - 2 * 0.1 * lp_hedged * 0.0005
    lp_after = (wallet_after - 0.1 * 60_000) / (0.1 * 0.004 - 0.1)
    assert broker.liquidation_price(broker.data_of("BTCUSDT")) == pytest.approx(lp_after)


def test_partial_liquidation_reduces_one_tier_then_recovers():
    """margin-model §9 step 3 (Binance, one tier per step): 2 BTC at 60,000, 50x isolated (notional
    120,000: tier 2, mmr 0.5 %, cum 50) → LP 59,070.35. At the trigger the position is cut to
    the tier-1 cap (50,000 USDT), whose LP is lower, and the price recovers."""
    lp = (120_000 - 2400 - 50) / (2 * 0.995)
    bars = [FLAT, FLAT, (60_000, 60_000, 59_060, 59_500), (59_500, 60_500, 59_400, 60_400)]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=50, margin_mode="isolated"))},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=2)}, cash=5000)
    (liq,) = events_of(broker, "liquidation")
    assert liq.partial
    assert liq.trigger_price == pytest.approx(lp, rel=1e-12)
    remaining = 50_000 / lp
    assert liq.size == pytest.approx(2 - remaining, rel=1e-12)
    assert broker.account.positions[("BTCUSDT", "net")].size == pytest.approx(remaining)
    assert liq.fee == pytest.approx((2 - remaining) * lp * 0.0005)


def test_margin_ratio_warning_at_most_every_30_minutes():
    near = (57_260.0, 57_270.0, 57_250.0, 57_260.0)  # ratio ≈ 0.83 for the 20x long
    bars = [FLAT, FLAT] + [near] * 12
    broker, strat = run({"BTCUSDT": (bars, dict(leverage=20, margin_mode="isolated"))},
                        actions={1: lambda s: s.buy(data=s.datas[0], size=0.2)})
    warnings = events_of(broker, "warning")
    assert len(warnings) == 2
    assert (warnings[1].time - warnings[0].time).total_seconds() == 30 * 60
    assert all(w.margin_ratio >= 0.8 for w in warnings)
    assert any(e.kind == "warning" for e in strat.margin_events)


def test_liquidation_price_settlement_charges_the_liquidation_fee():
    """issue 10 item 9: settled at the LP, the liquidation fee is taken from what is left of the
    isolated margin and never from the wallet beyond it. 20x long 0.2 @ 60,000: M = 600,
    LP = (600 − 12,000)/(0.2·0.004 − 0.2) = 11,400/0.1992; M + upnl at LP = MM = 0.2·LP·0.4 %
    = 45.78 < the 1.25 % fee 143.07, so the fee is 45.78 and the position returns nothing."""
    bars = [FLAT, FLAT, FLAT, (60_000, 60_000, 56_000, 57_500), FLAT]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=20, margin_mode="isolated"))},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=0.2)},
                    settlement="liquidation_price", profile_overrides={"liquidation_fee": 0.0125})
    (liq,) = events_of(broker, "liquidation")
    lp = 11_400 / 0.1992
    assert liq.settlement_price == pytest.approx(lp)
    left = 600 + 0.2 * (lp - 60_000)  # = MM at the LP
    assert left == pytest.approx(0.2 * lp * 0.004)
    assert liq.liquidation_fee == pytest.approx(left)
    assert broker.getvalue() == pytest.approx(1000 - 6 - 600, rel=1e-12)  # wallet untouched
    assert broker.account.fees_paid == pytest.approx(6 + left)
    assert liq.insurance_fund_delta == pytest.approx(0.0, abs=1e-9)
    assert broker.account.insurance_fund == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("rate", "equity"), [
    # 1.25 %: the fee 119.23 exceeds what is left (38.15): the trader keeps the wallet's 500
    (0.0125, 500.0),
    # 0.2 %: the fee 19.08 is paid from the 38.15 left: 500 + 38.15 − 19.08
    (0.002, 500 + (500 - 10_000 + 9_500 / 0.996) - 0.002 * 9_500 / 0.996),
])
def test_isolated_liquidation_fee_never_comes_from_the_wallet(rate, equity):
    """issue 10 item 9 example: isolated 20x long 1 BTC @ 10,000 (M = 500) on a 1,000 wallet,
    no trading fees, settlement at the liquidation price. Binance LP = (500 − 10,000)/(0.004 −
    1) = 9,500/0.996 = 9,538.15; what is left of M there is 500 − 461.85 = 38.15 (= MM). The
    fee is min(rate × LP, 38.15); ``fees_paid`` includes it; the fund delta of each event sums
    to the run's total."""
    bars = [(10_000.0,) * 4] * 3 + [(10_000, 10_000, 9_000, 9_100), (9_100.0,) * 4]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=20, margin_mode="isolated"))},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=1)}, cash=1000,
                    settlement="liquidation_price",
                    profile_overrides={"liquidation_fee": rate, "maker_fee": 0.0,
                                       "taker_fee": 0.0})
    (liq,) = events_of(broker, "liquidation")
    lp = 9_500 / 0.996
    assert liq.trigger_price == pytest.approx(lp)
    assert broker.getvalue() == pytest.approx(equity, rel=1e-12)
    assert broker.account.fees_paid == pytest.approx(liq.liquidation_fee)
    assert liq.liquidation_fee == pytest.approx(min(rate * lp, 500 + lp - 10_000))
    funds = sum(e.insurance_fund_delta for e in events_of(broker, "liquidation"))
    assert funds == pytest.approx(broker.account.insurance_fund, abs=1e-12)


def test_cross_residue_is_part_of_the_liquidation_event():
    """issue 10 item 9: a cross liquidation's cleared residue belongs to its event, so the events'
    ``insurance_fund_delta`` add up to the account's ``insurance_fund`` (bankruptcy settlement,
    two cross symbols)."""
    eth = (3000.0, 3001.0, 2999.0, 3000.0)
    btc_bars = [FLAT, FLAT, (60_000, 60_000, 50_000, 51_000), FLAT]
    eth_bars = [eth, eth, (3000, 3000, 2500, 2600), eth]

    def place(s):
        s.buy(data=s.datas[0], size=0.2)
        s.buy(data=s.datas[1], size=2)

    broker, _ = run({"BTCUSDT": (btc_bars, dict(leverage=20, margin_mode="cross")),
                     "ETHUSDT": (eth_bars, dict(leverage=20, margin_mode="cross"))},
                    actions={1: place}, cash=1500)
    liqs = events_of(broker, "liquidation")
    assert liqs
    assert broker.account.wallet_balance == 0.0
    assert sum(e.insurance_fund_delta for e in liqs) == pytest.approx(
        broker.account.insurance_fund, abs=1e-12)
    assert broker.getvalue() == pytest.approx(0.0, abs=1e-9)


def test_hedge_mode_orders_name_the_leg_they_close():
    """Hedge mode: a sell on LONG (``leg="long"``) closes the long leg, never opens a short; a
    buy with ``reduce_only`` closes the SHORT leg."""
    def open_legs(s):
        s.buy(data=s.datas[0], size=0.2)
        s.sell(data=s.datas[0], size=0.1)

    def close_legs(s):
        s.sell(data=s.datas[0], size=0.5, leg="long")  # more than held: capped at 0.2
        s.buy(data=s.datas[0], size=0.1, reduce_only=True)

    bars = [FLAT] * 6
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=10, margin_mode="cross"))},
                    actions={1: open_legs, 3: close_legs}, cash=5000, position_mode="hedge")
    positions = broker.account.positions
    assert positions[("BTCUSDT", "long")].size == 0
    assert positions[("BTCUSDT", "short")].size == 0
    sizes = [f.size for f in events_of(broker, "fill")]
    assert sizes == pytest.approx([0.2, -0.1, -0.2, 0.1])


def test_no_partial_step_on_a_gap_past_bankruptcy():
    """A large isolated position (tier 2) whose bar opens beyond its bankruptcy price is closed
    in full at the bankruptcy price: a partial step there would take the loss from the wallet.
    (Found by the hypothesis property: 1.6962 BTC at 100x, gap to 58,828.125.)"""
    size = 101_774 / 60_000
    margin = 101_774 / 100
    cash = margin * 1.5 + 101_774 * 0.0005
    bars = [FLAT, FLAT, FLAT, (58_828.125,) * 4]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=100, margin_mode="isolated"))},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=size)}, cash=cash)
    (liq,) = events_of(broker, "liquidation")
    assert not liq.partial and liq.size == pytest.approx(size)
    assert liq.settlement_price == pytest.approx(60_000 - margin / size)
    assert broker.getvalue() == pytest.approx(margin * 0.5, rel=1e-9)  # the wallet is untouched


def test_cross_liquidation_cancels_every_order_of_the_account():
    """margin-model §9 step 1: a cross liquidation cancels the account's orders, also the resting
    orders of an isolated market, whose margin was frozen in the cross wallet now cleared.
    (Found by the two-symbol property: the isolated ladder filled later on a 0 wallet.)"""
    eth = (3000.0, 3001.0, 2999.0, 3000.0)
    btc_bars = [FLAT, FLAT, (60_000, 60_000, 50_000, 51_000), FLAT, FLAT]
    eth_bars = [eth, eth, eth, (3000, 3000, 2500, 2600), eth]

    def place(s):
        s.buy(data=s.datas[0], size=0.05)  # cross 25x: 3,000 notional on a 400 wallet
        s.buy(data=s.datas[1], size=0.5, price=2600, exectype=bt.Order.Limit)  # isolated

    broker, _ = run(
        {"BTCUSDT": (btc_bars, dict(leverage=25, margin_mode="cross")),
         "ETHUSDT": (eth_bars, dict(leverage=25, margin_mode="isolated"))},
        actions={1: place}, cash=400,
    )
    (liq,) = events_of(broker, "liquidation")
    assert liq.symbol == "BTCUSDT"
    (cancelled,) = events_of(broker, "order_cancelled")
    assert cancelled.symbol == "ETHUSDT" and cancelled.price == 2600
    assert broker.account.wallet_balance == 0.0
    assert not [f for f in events_of(broker, "fill") if f.symbol == "ETHUSDT"]


def test_isolated_funding_beyond_the_margin_leaves_it_negative_while_profit_holds() -> None:
    """Funding comes out of an isolated margin M even past zero; the wallet is not touched and
    the trigger M + upnl ≤ MM decides (docs/margin-model.md §7).

    ETH short 0.4 @ 3,000 at 50x isolated: M = 0.4 × 3,000 / 50 = 24. The price drops to
    2,812.5 (−6.25 %) on bar 4; funding −0.3 % every third bar makes the short pay
    0.4 × mark × 0.003: once at 3,000 (3.6) and nine times at 2,812.5 (3.375 each), 33.975 in
    all, so M = 24 − 33.975 = −9.975 while upnl = 0.4 × 187.5 = 75 keeps the margin balance at
    65.025, far above MM (0.4 × 2,812.5 × 0.5 % = 5.625). The BTC long receives 10 × 3.6.
    """
    eth, price = [], 3000.0
    for i in range(30):
        close = price * (1 - 0.0625) if i == 4 else price
        eth.append((price, max(price, close) * 1.01, min(price, close) * 0.99, close))
        price = close
    rates = [-0.003 if i % 3 == 2 else math.nan for i in range(30)]

    def market() -> dict[str, Any]:
        return dict(leverage=50, margin_mode="isolated", frame_extra={"funding_rate": rates})

    def place(s: Any) -> None:
        s.buy(data=s.datas[0], size=0.02)
        s.sell(data=s.datas[1], size=0.4)

    broker, _ = run({"BTCUSDT": ([(60000.0,) * 4] * 30, market()), "ETHUSDT": (eth, market())},
                    actions={1: place}, cash=400.0)
    wallet_after_fills = 400.0 - 24.0 - 24.0 - broker.account.fees_paid
    positions = {p.symbol: p for p in broker.account.open_positions()}
    assert positions["ETHUSDT"].margin == pytest.approx(-9.975, abs=1e-9)
    assert positions["ETHUSDT"].margin + positions["ETHUSDT"].unrealized_pnl == pytest.approx(
        65.025, abs=1e-9)
    assert positions["BTCUSDT"].margin == pytest.approx(24.0 + 36.0, abs=1e-9)
    assert broker.account.wallet_balance == pytest.approx(wallet_after_fills, abs=1e-9)
    assert not events_of(broker, "liquidation")


def test_simple_profile_cancelled_orders_leave_the_cross_trigger_at_once():
    """`simple` counts resting orders' margin in the cross trigger. Cash 400, a 10x cross long
    of 1/60 BTC at 60,000 (IM 100, MM 50, fee 0.5) and a resting buy of 0.1 BTC at 20,000
    (order margin 200). With the order the trigger is q·P·(1 − 0.0005) <= 50 + 200 + 1,000 −
    399.5, P <= 51,055.5; a bar down to 45,000 reaches it, the plan cancels every order, and
    without their margin the trigger moves to q·P·0.9995 <= 650.5, P <= 39,049.5: no
    liquidation. The LP and the distance statistic must see the cancel at once (they used the
    stale 51,055.5 until the next bar: a negative distance, -13 %)."""
    q = 1 / 60

    def open_both(s):
        s.buy(data=s.datas[0], size=q)
        s.buy(data=s.datas[0], size=0.1, price=20_000, exectype=bt.Order.Limit)

    seen = []
    bars = [FLAT, FLAT, FLAT, (60_000, 60_000, 45_000, 50_000), FLAT]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=10, margin_mode="cross"))},
                    actions={1: open_both, 4: lambda s: seen.append(
                        s.broker.liquidation_price(s.datas[0]))},
                    cash=400, exchange="simple")
    assert not events_of(broker, "liquidation")
    assert len(events_of(broker, "order_cancelled")) == 1
    lp = 650.5 * 60 / 0.9995
    assert seen == [pytest.approx(lp, rel=1e-12)]
    assert broker.min_liquidation_distance == pytest.approx((45_000 - lp) / 45_000, rel=1e-9)
