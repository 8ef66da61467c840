"""Issue 11: a cross account's symbols move through each bar together (margin-model §8–9).

The hand-derived two-symbol crash (zero fees so the numbers stay readable): wallet 1,100 USDT,
BTC long 0.1 at 100,000 and ETH long 2.5 at 4,000, both cross 20x, Binance tier 1 (MMR 0.4 %,
no maintenance amount). The cross condition is

    g = 1,100 + 0.1·(pB − 100,000) + 2.5·(pE − 4,000) − 0.004·0.1·pB − 0.004·2.5·pE  ≤ 0.

BTC alone at 92,000 (ETH at 4,000): g = 1,100 − 800 − 36.8 − 40 = 223.2 > 0 (survives).
ETH alone at 3,700 (BTC at 100,000): g = 1,100 − 750 − 40 − 37 = 273 > 0 (survives).
Both together at their lows: g = 1,100 − 800 − 750 − 36.8 − 37 = −523.8 < 0.
On the segment where both fall together, at fraction s: pB = 100,000 − 8,000 s,
pE = 4,000 − 300 s and g(s) = 1,020 − 1,543.8 s, so s* = 1,020 / 1,543.8.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import backtrader as bt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import events_of, run

BTC, ETH, SOL = "BTCUSDT", "ETHUSDT", "SOLUSDT"
NO_FEES = {"maker_fee": 0.0, "taker_fee": 0.0}
S_STAR = 1020 / 1543.8
BTC_FLAT = (100_000.0,) * 4
ETH_FLAT = (4_000.0,) * 4
BTC_CRASH = (100_000.0, 100_000.0, 92_000.0, 92_000.0)  # closes down: O→H→L→C
ETH_CRASH = (4_000.0, 4_000.0, 3_700.0, 3_700.0)


def _open_both(s):
    s.buy(data=s.getdatabyname(BTC), size=0.1)
    s.buy(data=s.getdatabyname(ETH), size=2.5)


def _run_pair(btc_bars, eth_bars, order=(BTC, ETH), **kwargs):
    bars = {BTC: btc_bars, ETH: eth_bars}
    markets = {sym: (bars[sym], dict(leverage=20, margin_mode="cross")) for sym in order}
    kwargs.setdefault("profile_overrides", NO_FEES)
    return run(markets, actions={1: _open_both}, cash=1100.0, **kwargs)


@pytest.mark.parametrize(
    ("btc_crash", "eth_crash"), [(True, False), (False, True)], ids=["btc-alone", "eth-alone"]
)
def test_each_symbol_alone_survives(btc_crash, eth_crash):
    btc = BTC_CRASH if btc_crash else BTC_FLAT
    eth = ETH_CRASH if eth_crash else ETH_FLAT
    broker, _ = _run_pair([BTC_FLAT, BTC_FLAT, btc, (btc[3],) * 4],
                          [ETH_FLAT, ETH_FLAT, eth, (eth[3],) * 4])
    assert not events_of(broker, "liquidation")
    expected = 1100 - (800 if btc_crash else 0) - (750 if eth_crash else 0)
    assert broker.getvalue() == pytest.approx(expected)


@pytest.mark.parametrize("order", [(BTC, ETH), (ETH, BTC)])
def test_pair_crashing_together_is_liquidated_at_the_hand_derived_instant(order):
    broker, strategy = _run_pair(
        [BTC_FLAT, BTC_FLAT, BTC_CRASH, BTC_FLAT], [ETH_FLAT, ETH_FLAT, ETH_CRASH, ETH_FLAT],
        order=order,
    )
    liqs = events_of(broker, "liquidation")
    assert [e.symbol for e in liqs] == [BTC, ETH]  # largest loss first: 800 s* > 750 s*
    by_symbol = {e.symbol: e for e in liqs}
    assert by_symbol[BTC].trigger_price == pytest.approx(100_000 - 8_000 * S_STAR, rel=1e-12)
    assert by_symbol[ETH].trigger_price == pytest.approx(4_000 - 300 * S_STAR, rel=1e-12)
    # the crash happens on the middle third of the clock (both bars close down: high first)
    forced = [o for o in strategy.orders if o.info.get("liquidation") and o.status == o.Completed]
    assert len(forced) == 2
    assert [o.info.intrabar_time for o in forced] == pytest.approx([1 / 3 + S_STAR / 3] * 2)
    assert str(liqs[0].time) == "2024-01-01 00:10:00"
    assert broker.account.wallet_balance == 0.0
    assert broker.getvalue() == 0.0


def test_cross_liquidation_order_is_a_profile_field():
    # at s*: MM BTC = 0.004·0.1·94,714.3 = 37.89 < MM ETH = 0.004·2.5·3,801.8 = 38.02
    broker, _ = _run_pair(
        [BTC_FLAT, BTC_FLAT, BTC_CRASH, BTC_FLAT], [ETH_FLAT, ETH_FLAT, ETH_CRASH, ETH_FLAT],
        profile_overrides={**NO_FEES, "cross_liquidation_order": "largest_maintenance_margin"},
    )
    assert [e.symbol for e in events_of(broker, "liquidation")] == [ETH, BTC]


@pytest.mark.parametrize(("mode", "liquidated"), [("heuristic", False), ("pessimistic", True)])
def test_pessimistic_puts_every_adverse_extreme_on_the_same_instant(mode, liquidated):
    # BTC closes up (heuristic: low at t = 1/3), ETH closes down (heuristic: low at t = 2/3).
    # Heuristic: g(1/3) = 223.2 and on the middle third g = 223.2 + 99.6 s > 0: survives.
    # Pessimistic: both lows at t = 1/3, the first third is the hand-derived crash.
    btc_up = (100_000.0, 100_500.0, 92_000.0, 100_500.0)
    eth_down = (4_000.0, 4_000.0, 3_700.0, 3_900.0)
    broker, strategy = _run_pair(
        [BTC_FLAT, BTC_FLAT, btc_up, BTC_FLAT], [ETH_FLAT, ETH_FLAT, eth_down, ETH_FLAT],
        intrabar=mode,
    )
    liqs = events_of(broker, "liquidation")
    assert bool(liqs) is liquidated
    if liquidated:
        forced = [o for o in strategy.orders if o.info.get("liquidation")]
        assert forced[0].info.intrabar_time == pytest.approx(S_STAR / 3)
        assert {e.symbol: e.trigger_price for e in liqs} == {
            BTC: pytest.approx(100_000 - 8_000 * S_STAR), ETH: pytest.approx(4_000 - 300 * S_STAR)
        }


def test_optimistic_mirrors_pessimistic():
    # shorts: BTC −0.1 at 100,000, ETH −2.5 at 4,000; g = 1,100 − 0.1·(pB − 100,000)
    # − 2.5·(pE − 4,000) − 0.0004·pB − 0.01·pE. Both highs together (106,000 and 4,250):
    # g = −209.9, each alone: 417.6 and 392.5.
    # pessimistic: highs first, on the first third pB = 100,000 + 6,000 s, pE = 4,000 + 250 s,
    #   g = 1,020 − 1,229.9 s -> s = 1,020 / 1,229.9 at t = s / 3.
    # optimistic: lows first (99,000 and 3,950), then on the middle third
    #   pB = 99,000 + 7,000 u, pE = 3,950 + 300 u, g = 1,245.9 − 1,455.8 u -> t = (1 + u) / 3.
    btc_bar = (100_000.0, 106_000.0, 99_000.0, 100_000.0)
    eth_bar = (4_000.0, 4_250.0, 3_950.0, 4_000.0)

    def open_shorts(s):
        s.sell(data=s.getdatabyname(BTC), size=0.1)
        s.sell(data=s.getdatabyname(ETH), size=2.5)

    seen = {}
    for mode in ("pessimistic", "optimistic"):
        markets = {BTC: ([BTC_FLAT, BTC_FLAT, btc_bar, BTC_FLAT], dict(leverage=20)),
                   ETH: ([ETH_FLAT, ETH_FLAT, eth_bar, ETH_FLAT], dict(leverage=20))}
        broker, strategy = run(markets, actions={1: open_shorts}, cash=1100.0,
                               profile_overrides=NO_FEES, intrabar=mode)
        forced = [o for o in strategy.orders if o.info.get("liquidation")]
        seen[mode] = (forced[0].info.intrabar_time,
                      {e.symbol: e.trigger_price for e in events_of(broker, "liquidation")})
    s_p, u_o = 1020 / 1229.9, 1245.9 / 1455.8
    assert seen["pessimistic"][0] == pytest.approx(s_p / 3)
    assert seen["pessimistic"][1] == {BTC: pytest.approx(100_000 + 6_000 * s_p),
                                      ETH: pytest.approx(4_000 + 250 * s_p)}
    assert seen["optimistic"][0] == pytest.approx((1 + u_o) / 3)
    assert seen["optimistic"][1] == {BTC: pytest.approx(99_000 + 7_000 * u_o),
                                     ETH: pytest.approx(3_950 + 300 * u_o)}


# --- order independence -------------------------------------------------------------------
_bar = st.tuples(
    st.floats(-0.12, 0.12), st.floats(0.0, 0.08), st.floats(0.0, 0.08), st.booleans()
)
_BASE = {BTC: 60_000.0, ETH: 3_000.0, SOL: 150.0}


def _bars(base, moves):
    out, price = [(base,) * 4, (base,) * 4], base
    for drift, up, down, _ in moves:
        close = price * (1 + drift)
        high = max(price, close) * (1 + up)
        low = min(price, close) * (1 - down)
        out.append((price, high, low, close))
        price = close
    return out


def _strip(event):
    if dataclasses.is_dataclass(event) and hasattr(event, "order_ref"):
        return dataclasses.replace(event, order_ref=None)
    return event


@settings(deadline=None, max_examples=12)
@given(
    moves=st.fixed_dictionaries({s: st.lists(_bar, min_size=3, max_size=3) for s in _BASE}),
    notionals=st.fixed_dictionaries({s: st.floats(-2_500, 2_500) for s in _BASE}),
    limits=st.fixed_dictionaries({s: st.floats(0.9, 0.99) for s in _BASE}),
    modes=st.fixed_dictionaries({s: st.sampled_from(["cross", "cross", "isolated"])
                                 for s in _BASE}),
    intrabar=st.sampled_from(["heuristic", "pessimistic", "optimistic"]),
    permutation=st.permutations([BTC, ETH, SOL]),
)
def test_events_and_results_do_not_depend_on_the_market_order(
    moves, notionals, limits, modes, intrabar, permutation
):
    def act(s):
        for sym in sorted(_BASE):  # orders of each symbol in the same relative order
            data = s.getdatabyname(sym)
            qty = notionals[sym] / _BASE[sym]
            if abs(notionals[sym]) < 200:
                continue
            s.buy(data=data, size=qty) if qty > 0 else s.sell(data=data, size=-qty)
            s.buy(data=data, size=abs(qty), price=_BASE[sym] * limits[sym], exectype=bt.Order.Limit)

    results = []
    for order in ([BTC, ETH, SOL], permutation):
        markets = {
            sym: (_bars(_BASE[sym], moves[sym]), dict(leverage=20, margin_mode=modes[sym]))
            for sym in order
        }
        broker, _ = run(markets, actions={1: act}, cash=1000.0, intrabar=intrabar)
        results.append(([_strip(e) for e in broker.events], broker.getvalue(),
                        broker.account.insurance_fund))
    assert results[0][0] == results[1][0]
    assert results[0][1] == pytest.approx(results[1][1], abs=1e-9)
    assert results[0][2] == pytest.approx(results[1][2], abs=1e-9)


# --- the reproduction of issue 11 on real Binance data ------------------------------------
DATA = Path(__file__).resolve().parents[1] / "datasets" / "2025-10"  # bundled, see its README


def _real_run(margin: float, order: tuple[str, str]):
    import liqbt
    from liqbt.config import load_strategy_class
    from liqbt.data.loaders import load_candles
    from liqbt.feeds import make_feed

    cerebro = bt.Cerebro(stdstats=False)
    broker = liqbt.MarginBroker(exchange="binance", cash=1000)
    cerebro.broker = broker
    files = {BTC: "BTCUSDT-5m.feather", ETH: "ETHUSDT-5m.feather"}
    for sym in order:
        candles = load_candles(DATA / files[sym], start="2025-10-10 12:00",
                               end="2025-10-11 00:00")
        feed = make_feed(candles, name=sym)
        cerebro.adddata(feed, name=sym)
        broker.set_market(feed, symbol=sym, leverage=20, margin_mode="cross")
    cerebro.addstrategy(load_strategy_class("hold"), direction="long",
                        margin={BTC: margin, ETH: margin})
    cerebro.run()
    return broker


@pytest.mark.parametrize(
    ("margin", "bar"), [(135.0, "2025-10-10 21:20:00"), (137.0, "2025-10-10 21:15:00")]
)
def test_real_crash_liquidates_in_the_joint_low_bar_whatever_the_market_order(margin, bar):
    # 135 per symbol: only the 21:20 lows together (BTC 101,516.5, ETH 3,400) breach
    # maintenance; 137: already the 21:15 bar. Before the joint walk 135 survived and 137 gave
    # 21:15 or 21:20 depending on which market was listed first.
    for order in ((BTC, ETH), (ETH, BTC)):
        broker = _real_run(margin, order)
        liqs = events_of(broker, "liquidation")
        assert {e.symbol for e in liqs} == {BTC, ETH}
        assert {str(e.time) for e in liqs} == {bar}, order
        assert broker.getvalue() == 0.0


# --- mixed timeframes ---------------------------------------------------------------------
class _Recorder(bt.Strategy):
    """Opens BTC and ETH longs on the first bar; records ETH's mark at every step."""

    def __init__(self) -> None:
        self.eth_marks: list[tuple[str, float]] = []

    def nextstart(self) -> None:
        self.buy(data=self.getdatabyname(BTC), size=0.1)
        self.buy(data=self.getdatabyname(ETH), size=2.5)

    def next(self) -> None:
        pos = self.broker.account.positions.get((ETH, "net"))
        if pos is not None and pos.size:
            self.eth_marks.append((str(self.datetime.datetime(0))[11:16], pos.mark_price))


def _frame(rows, freq):
    import pandas as pd

    index = pd.date_range("2024-01-01", periods=len(rows), freq=freq, tz="UTC", name="date")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index)
    frame["volume"] = 1.0
    return frame


@pytest.mark.parametrize("order", [(BTC, ETH), (ETH, BTC)])
def test_coarser_bar_is_walked_when_complete_and_held_before(order):
    import liqbt
    from liqbt.feeds import make_feed

    # BTC 5m flat at 100,000; ETH 15m: flat, flat, then the 00:30 bar crashes to 3,000
    frames = {BTC: _frame([BTC_FLAT] * 12, "5min"),
              ETH: _frame([ETH_FLAT, ETH_FLAT, (4_000.0, 4_000.0, 3_000.0, 3_000.0),
                           (3_000.0,) * 4], "15min")}
    cerebro = bt.Cerebro(stdstats=False)
    broker = liqbt.MarginBroker(exchange="binance", cash=1100.0, profile_overrides=NO_FEES)
    cerebro.broker = broker
    for sym in order:
        feed = make_feed(frames[sym], name=sym)
        cerebro.adddata(feed, name=sym)
        broker.set_market(feed, symbol=sym, leverage=20, margin_mode="cross")
    cerebro.addstrategy(_Recorder)
    strategy = cerebro.run()[0]

    # the ETH market order placed on the first bar fills with ETH's 00:15 bar, which completes
    # at the 00:25 step; the crash bar opening 00:30 completes (and is walked) at 00:40
    (eth_fill,) = [e for e in events_of(broker, "fill") if e.symbol == ETH and not e.liquidation]
    assert str(eth_fill.time) == "2024-01-01 00:25:00"
    liqs = events_of(broker, "liquidation")
    assert {str(e.time) for e in liqs} == {"2024-01-01 00:40:00"}
    # g = 1,100 + 2.5·(pE − 4,000) − 0.01·pE − 40 = 0 on ETH's fall 4,000 → 3,000 (BTC flat)
    eth = next(e for e in liqs if e.symbol == ETH)
    assert eth.trigger_price == pytest.approx((10_000 - 1_060) / 2.49)
    # before its bar completes ETH stays at its last close: no look-ahead into the crash
    assert dict(strategy.eth_marks)["00:30"] == 4_000.0
    assert dict(strategy.eth_marks)["00:35"] == 4_000.0


# --- the exact first crossing against a dense scan ------------------------------------------
@settings(deadline=None, max_examples=15)
@given(
    notionals=st.tuples(st.floats(2_000, 9_000), st.floats(2_000, 9_000)),
    sides=st.tuples(st.sampled_from([1, -1]), st.sampled_from([1, -1])),
    moves=st.tuples(*[st.tuples(st.floats(0, 0.15), st.floats(0, 0.15), st.floats(0, 1))] * 2),
    intrabar=st.sampled_from(["heuristic", "pessimistic", "optimistic"]),
)
def test_trigger_instant_matches_a_dense_scan_of_the_account_condition(
    notionals, sides, moves, intrabar
):
    from liqbt.core import path as pth
    from liqbt.core.account import Account
    from liqbt.core.profile import load_profile

    entries = {BTC: 100_000.0, ETH: 4_000.0}
    sizes = {sym: side * n / entries[sym]
             for sym, n, side in zip((BTC, ETH), notionals, sides, strict=True)}
    crash = {}
    for sym, (up, down, where) in zip((BTC, ETH), moves, strict=True):
        e = entries[sym]
        high, low = e * (1 + up), e * (1 - down)
        crash[sym] = (e, high, low, low + (high - low) * where)

    def act(s):
        for sym in (BTC, ETH):
            qty = sizes[sym]
            data = s.getdatabyname(sym)
            s.buy(data=data, size=qty) if qty > 0 else s.sell(data=data, size=-qty)

    markets = {sym: ([(entries[sym],) * 4] * 2 + [crash[sym], (crash[sym][3],) * 4],
                     dict(leverage=20)) for sym in (BTC, ETH)}
    broker, strategy = run(markets, actions={1: act}, cash=1000.0, profile_overrides=NO_FEES,
                           intrabar=intrabar)
    forced = [o for o in strategy.orders if o.info.get("liquidation")]
    assert len([e for e in events_of(broker, "fill") if not e.liquidation]) == 2

    # the same account, rebuilt from the core alone, scanned on 3,000 instants of the clock
    account = Account(load_profile("binance").with_overrides(NO_FEES), 1000.0)
    paths = {}
    for sym in (BTC, ETH):
        account.set_market(sym, 20)
        account.fill(sym, sizes[sym], entries[sym], 0.0)
        o, h, low, c = crash[sym]
        paths[sym] = pth.bar_path(o, h, low, c, pth.high_first(intrabar, o, c, sizes[sym]))

    def g(t):
        for sym in (BTC, ETH):
            account.set_mark(sym, pth.value_at(paths[sym], t))
        return account.cross_margin_balance() - account.cross_maintenance_margin()

    steps = 3000
    first = next((i / steps for i in range(steps + 1) if g(i / steps) <= 0), None)
    if first is None:
        # never breached on the scan: the walk may only find a breach between two samples
        assert not forced or g(forced[0].info.intrabar_time) <= 1e-6
    else:
        assert forced, "the scan breaches maintenance but the broker did not liquidate"
        t = forced[0].info.intrabar_time
        assert first - 1 / steps - 1e-9 <= t <= first + 1e-9
        assert abs(g(t)) <= 1e-6 * 20_000
