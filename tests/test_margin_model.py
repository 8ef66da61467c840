"""One margin model (issue 10 items 8 and 10): the broker's Account, the calculator and the bots'
launch estimates give the same figures. Expected values are derived by hand from the rules in
docs/margin-model.md (§3 the `simple` profile, §4–5 the triggers)."""

from __future__ import annotations

import json

import backtrader as bt
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scripted import events_of, run

from liqbt.cli import main
from liqbt.core import ladders
from liqbt.core.account import Account
from liqbt.core.margin_models import TieredMM, UsedMarginMM, margin_model_for
from liqbt.core.profile import load_profile
from liqbt.core.snapshot import PositionInput, evaluate

TAKER = 0.0005  # simple.toml
AT_50K = (50_000.0, 50_010.0, 49_990.0, 50_000.0)


def calc(*args: str) -> dict:
    result = CliRunner().invoke(main, ["calc", "liq-price", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- the model is chosen once from the profile ---------------------------------------------
@pytest.mark.parametrize(("name", "mm", "fee", "orders"), [
    ("binance", TieredMM(False), 0.0, False),
    ("bybit", TieredMM(True), 0.0, False),
    ("okx", TieredMM(False), 0.0005, False),
    ("bitget", TieredMM(False), 0.0006, False),
    ("gate", TieredMM(False), 0.00075, False),
    ("simple", UsedMarginMM(0.5), 0.0005, True),
])
def test_margin_model_for_every_bundled_profile(name, mm, fee, orders):
    model = margin_model_for(load_profile(name))
    assert (model.mm, model.closing_fee_rate, model.order_margin_in_trigger) == (mm, fee, orders)


def test_closing_fee_is_a_separate_trigger_term():
    """OKX-style trigger (margin-model §3): MM is the tier figure; the closing fee at mark is a
    separate term and the margin ratio is (MM + fee) / margin balance. Gate BTCUSDT, cross,
    0.1 BTC long @ 60,000, mark 58,000, wallet 1,000: notional 5,800 is in tier 1 (0.4 %):
    MM 23.2, closing fee 0.00075 × 5,800 = 4.35, balance 1,000 − 200 = 800."""
    snap = evaluate(load_profile("gate"), 1000,
                    [PositionInput("BTCUSDT", "long", 0.1, 60_000, 58_000, "cross", leverage=10)])
    assert snap.maintenance_margin == pytest.approx(23.2)
    assert snap.closing_fee == pytest.approx(4.35)
    assert snap.trigger_margin == pytest.approx(27.55)
    assert snap.margin_ratio == pytest.approx(27.55 / 800)


# --- item 8: resting orders' margin in the simple profile's cross trigger ---------------------
# Balance 400, long 0.1 @ 50,000 at 50x (IM 100, MM 50). Trigger: 400 + 0.1 (P − 50,000)
# − 0.0005 × 0.1 P = 50 + order margin → P = (4,650 + order margin) / 0.09995.
LP_NO_ORDERS = 4_650 / 0.09995  # 46,523.26
LP_WITH_ORDER = 4_730 / 0.09995  # 47,323.66: the resting buy 0.1 @ 40,000 freezes 80


def test_item8_hand_values():
    assert round(LP_NO_ORDERS, 2) == 46_523.26
    assert round(LP_WITH_ORDER, 2) == 47_323.66


def test_item8_order_margin_moves_the_simple_cross_lp_in_the_calculator():
    args = ("--exchange", "simple", "--symbol", "BTCUSDT", "--side", "long", "--entry", "50000",
            "--size", "0.1", "--mode", "cross", "--wallet", "400", "--leverage", "50")
    assert calc(*args)["positions"][0]["liquidation_price"] == pytest.approx(LP_NO_ORDERS)
    out = calc(*args, "--order-margin", "80")
    assert out["positions"][0]["liquidation_price"] == pytest.approx(LP_WITH_ORDER)
    assert out["order_margin"] == 80
    assert out["trigger_margin"] == pytest.approx(50 + 80 + TAKER * 5000)
    # a profile without the rule ignores it (Binance: MM 0.4 % of 5,000 = 20, no fee term)
    binance = calc("--exchange", "binance", *args[2:], "--order-margin", "80")
    assert binance["order_margin"] == 0
    assert binance["positions"][0]["liquidation_price"] == pytest.approx(
        (400 - 5000) / (0.1 * 0.004 - 0.1))


def test_item8_order_margin_moves_the_simple_cross_lp_in_the_broker():
    """Through the broker: the LP moves to 47,323.66 once the buy @ 40,000 rests. When the mark
    reaches it, margin-model §9 step 1 cancels the order first; freed of its margin the
    account is no longer at its trigger (LP back at 46,523.26), so nothing is liquidated until
    the mark reaches 46,523.26."""
    seen: dict[str, float | None] = {}

    def rest(s):
        seen["before"] = s.broker.liquidation_price(s.datas[0])
        s.buy(data=s.datas[0], size=0.1, price=40_000, exectype=bt.Order.Limit)

    bars = [AT_50K, AT_50K, AT_50K, AT_50K, AT_50K,
            (50_000, 50_000, 47_000, 47_100), (47_100, 47_200, 47_050, 47_100),
            (47_100, 47_100, 46_000, 46_100), (46_100,) * 4]
    broker, _ = run(
        {"BTCUSDT": (bars, dict(leverage=50, margin_mode="cross"))},
        actions={
            1: lambda s: s.buy(data=s.datas[0], size=0.1, price=50_000, exectype=bt.Order.Limit),
            3: rest,
            4: lambda s: seen.setdefault("after", s.broker.liquidation_price(s.datas[0])),
            7: lambda s: seen.setdefault("cancelled", s.broker.liquidation_price(s.datas[0])),
        },
        cash=400, exchange="simple", profile_overrides={"maker_fee": 0.0},
    )
    assert seen["before"] == pytest.approx(LP_NO_ORDERS)
    assert seen["after"] == pytest.approx(LP_WITH_ORDER)
    (cancelled,) = events_of(broker, "order_cancelled")
    assert cancelled.price == 40_000
    assert seen["cancelled"] == pytest.approx(LP_NO_ORDERS)
    (liq,) = events_of(broker, "liquidation")
    assert liq.trigger_price == pytest.approx(LP_NO_ORDERS)


# --- item 10: the disagreements listed in the issue ------------------------------------------
def test_simple_add_margin_lp_equal_in_broker_and_calculator():
    """`simple`, isolated 10x long 1/30 BTC (2,000 USDT) @ 60,000: IM 200, MM = 50 % of IM = 100
    (added margin is a buffer, not used margin). After add_margin(50), M = 250:
    250 + q (P − 60,000) − 0.0005 q P = 100 → P = 1,850 × 30 / 0.9995 = 55,527.76."""
    q = 1 / 30
    expected = 1_850 * 30 / 0.9995
    seen = {}

    def add(s):
        s.broker.add_margin(s.datas[0], 50)
        seen["lp"] = s.broker.liquidation_price(s.datas[0])
        seen["mm"] = s.broker.account.maintenance_margin(s.broker.positions_of(s.datas[0])[0])
        seen["ratio"] = s.broker.margin_ratio(s.datas[0])

    flat = (60_000.0, 60_010.0, 59_990.0, 60_000.0)
    run({"BTCUSDT": ([flat] * 5, dict(leverage=10, margin_mode="isolated"))},
        actions={1: lambda s: s.buy(data=s.datas[0], size=q, price=60_000,
                                    exectype=bt.Order.Limit), 3: add},
        cash=1000, exchange="simple")
    assert round(expected, 2) == 55_527.76
    assert seen["lp"] == pytest.approx(expected)
    assert seen["mm"] == pytest.approx(100)
    out = calc("--exchange", "simple", "--symbol", "BTCUSDT", "--side", "long", "--entry",
               "60000", "--size", repr(q), "--mode", "isolated", "--leverage", "10",
               "--margin", "250")
    assert out["positions"][0]["liquidation_price"] == pytest.approx(expected)
    assert out["maintenance_margin"] == pytest.approx(seen["mm"])
    assert out["margin_ratio"] == pytest.approx(seen["ratio"])


def test_grid_launch_estimate_is_where_the_broker_liquidates():
    """`simple`, 0.05 BTC 10x isolated long at 60,000: IM 300, MM 150;
    300 + 0.05 (P − 60,000) − 0.0005 × 0.05 P = 150 → P = 2,850 / 0.049975 = 57,028.51. The
    launch estimate (a scratch account) and the broker's liquidation agree."""
    expected = 2_850 / 0.049975
    bars = [(60_000.0,) * 4] * 3 + [(60_000, 60_000, 56_000, 56_500), (56_500.0,) * 4]
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=10, margin_mode="isolated"))},
                    actions={1: lambda s: s.buy(data=s.datas[0], size=0.05)},
                    exchange="simple")
    (liq,) = events_of(broker, "liquidation")
    assert liq.trigger_price == pytest.approx(expected)
    plan = ladders.grid_plan("long", (55_000.0, 60_000.0, 65_000.0), 0.05, 60_000.0)
    assert plan.full_position == pytest.approx(0.1)  # launch buy 0.05 + the buy at 55,000
    estimate = ladders.ladder_liquidation_price(
        [(60_000.0, 0.05)], "long", broker.account.market("BTCUSDT"), broker.profile)
    assert estimate == pytest.approx(expected)


@pytest.mark.parametrize("name", ["bitget", "gate", "okx", "simple"])
def test_mm_and_margin_ratio_equal_in_broker_account_and_calculator(name):
    """The profiles with a closing-fee term (the issue's four): one cross and one isolated leg."""
    profile = load_profile(name)
    symbol, size, entry, mark = (
        ("ETHUSDT", 1.5, 3_000.0, 2_800.0) if profile.symbols.get("ETHUSDT") is not None
        else ("BTCUSDT", 0.1, 60_000.0, 56_000.0)
    )
    for mode in ("cross", "isolated"):
        account = Account(profile, 5_000.0)
        account.set_market(symbol, 10, mode)
        account.fill(symbol, size, entry, profile.taker_fee)
        account.set_mark(symbol, mark)
        pos = account.position(symbol)
        snap = evaluate(profile, account.wallet_balance, [PositionInput(
            symbol, "long", size, entry, mark, mode, leverage=10,
            margin=pos.margin if mode == "isolated" else None)])
        assert snap.maintenance_margin == pytest.approx(account.maintenance_margin(pos))
        assert snap.margin_ratio == pytest.approx(account.margin_ratio(pos))
        assert snap.positions[0].liquidation_price == pytest.approx(
            account.liquidation_price(pos)[0])


# --- item 10: one property holds the calculator to the broker on every bundled profile -------
PROFILES = ("binance", "bybit", "okx", "bitget", "gate", "simple")


def _market_of(name: str) -> tuple[str, float]:
    profile = load_profile(name)
    return ("ETHUSDT", 3_000.0) if profile.symbols.get("ETHUSDT") is not None else (
        "BTCUSDT", 60_000.0)


@settings(max_examples=50, deadline=None)
@given(
    name=st.sampled_from(PROFILES),
    mode=st.sampled_from(("cross", "isolated")),
    leverage=st.sampled_from((2, 5, 10, 20)),
    notional=st.floats(300, 3_000),
    short=st.booleans(),
    more=st.floats(0, 1),
    move=st.floats(-0.03, 0.03),
    rate=st.floats(-0.002, 0.002),
    added=st.floats(0, 150),
)
def test_calculator_and_broker_agree_after_fills_funding_and_added_margin(
    name, mode, leverage, notional, short, more, move, rate, added
):
    """The broker's figures after two fills, a funding payment and added margin (isolated) are
    what ``liqbt calc`` computes from the same state (wallet, size, entry, mark, margin,
    leverage): MM, margin ratio, LP and BP. Independently of both, the trigger holds with
    equality at the LP: margin balance = MM + closing fee (+ order margin) there."""
    symbol, price = _market_of(name)
    size = round(notional / price, 3)
    assume(size > 0)
    side = -1 if short else 1
    moved = price * (1 + move)
    flat = (price, price, price, price)
    bars = [flat, flat, flat, flat, (price, max(price, moved), min(price, moved), moved),
            (moved,) * 4]
    nan = float("nan")
    seen: dict[str, object] = {}

    def order(s, qty):
        if qty > 0:
            (s.buy if side > 0 else s.sell)(data=s.datas[0], size=qty)

    def add(s):
        if mode == "isolated" and added > 0 and s.broker.positions_of(s.datas[0]):
            s.broker.add_margin(s.datas[0], min(added, s.broker.get_cash()))

    def capture(s):
        legs = s.broker.positions_of(s.datas[0])
        if legs:
            pos = legs[0]
            seen.update(
                pos=(pos.size, pos.entry_price, pos.mark_price, pos.margin),
                wallet=s.broker.account.wallet_balance,
                mm=s.broker.account.maintenance_margin(pos),
                ratio=s.broker.margin_ratio(s.datas[0]),
                lp=s.broker.liquidation_price(s.datas[0]),
                bp=s.broker.bankruptcy_price(s.datas[0]),
            )
            account = s.broker.account
            lp = seen["lp"]
            if lp is not None:
                mark = pos.mark_price
                pos.mark_price = lp
                figures = account.margin_figures(pos)
                seen["excess_at_lp"] = figures.excess
                seen["notional_at_lp"] = abs(pos.size) * lp
                pos.mark_price = mark

    broker, _ = run(
        {symbol: (bars, dict(leverage=leverage, margin_mode=mode,
                             frame_extra={"funding_rate": [nan, nan, nan, rate, nan, nan]}))},
        actions={1: lambda s: order(s, size), 2: lambda s: order(s, round(size * more, 3)),
                 4: add, 6: capture},
        cash=2_000.0, exchange=name,
    )
    assume("pos" in seen)
    q, entry, mark, margin = seen["pos"]
    snap = evaluate(broker.profile, seen["wallet"], [PositionInput(
        symbol, "long" if q > 0 else "short", abs(q), entry, mark, mode,
        margin=margin if mode == "isolated" else None, leverage=leverage)])
    (result,) = snap.positions
    assert snap.maintenance_margin == pytest.approx(seen["mm"], rel=1e-12, abs=1e-9)
    assert snap.margin_ratio == pytest.approx(seen["ratio"], rel=1e-12, abs=1e-12)
    if seen["lp"] is None:
        assert result.liquidation_price is None
    else:
        assert result.liquidation_price == pytest.approx(seen["lp"], rel=1e-12)
        assert abs(seen["excess_at_lp"]) <= 1e-9 * seen["notional_at_lp"]
    if seen["bp"] is None:
        assert result.bankruptcy_price is None
    else:
        assert result.bankruptcy_price == pytest.approx(seen["bp"], rel=1e-12)


def test_grid_bot_launch_report_is_where_the_broker_liquidates_on_simple():
    """issue 10 item 10 through the bot itself: a one-interval long grid 60,000–61,000 on
    `simple`, 10x isolated, investment 301.5 → Q = 301.5 × 10 / (60,000 × 1.005) = 0.05: the
    launch buys 0.05 at 60,000 (the sell at 61,000 only closes). The launch report's estimate
    and the broker's liquidation are both 2,850 / 0.049975 = 57,028.51 (it was 54,244 when the
    estimate used the tier table instead of the used-margin rule)."""
    from liqbt.strategies import GridStrategy

    import liqbt

    rows = [(60_000.0,) * 4] * 3 + [(60_000.0, 60_000.0, 56_000.0, 56_500.0), (56_500.0,) * 4]
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"],
                         index=pd.date_range("2024-01-01", periods=len(rows), freq="5min"))
    frame["volume"] = 1.0
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = liqbt.MarginBroker(exchange="simple", cash=1000)
    data = bt.feeds.PandasData(dataname=frame, timeframe=bt.TimeFrame.Minutes, compression=5)
    cerebro.adddata(data, name="BTCUSDT")
    cerebro.broker.set_market(data, symbol="BTCUSDT", leverage=10, margin_mode="isolated")
    cerebro.addstrategy(GridStrategy, lower=60_000, upper=61_000, grids=1, investment=301.5,
                        leverage=10)
    strat = cerebro.run()[0]
    expected = 2_850 / 0.049975
    assert strat.quantity == pytest.approx(0.05)
    assert strat.launch_report["estimated_liquidation_price"] == pytest.approx(expected)
    (liq,) = events_of(cerebro.broker, "liquidation")
    assert liq.size == pytest.approx(0.05)
    assert liq.trigger_price == pytest.approx(expected)


@pytest.mark.parametrize("name", ["binance", "simple"])
def test_hedge_two_symbol_cross_account_equal_in_account_and_calculator(name):
    """Hedge mode, two cross symbols, resting orders' margin: the calculator's LP of each symbol
    (others held at their marks) is the account's. On `simple` the order margin (120) moves
    both LPs; on binance it is ignored."""
    profile = load_profile(name)
    account = Account(profile, 3_000.0, position_mode="hedge")
    account.hold_order_margin(120.0)
    account.set_market("BTCUSDT", 20, "cross")
    account.set_market("ETHUSDT", 10, "cross")
    account.fill("BTCUSDT", 0.2, 60_000.0, profile.taker_fee, leg="long")
    account.fill("BTCUSDT", -0.05, 61_000.0, profile.taker_fee, leg="short")
    account.fill("ETHUSDT", -2.0, 3_000.0, profile.taker_fee, leg="short")
    account.set_mark("BTCUSDT", 58_000.0)
    account.set_mark("ETHUSDT", 3_100.0)
    inputs = [
        PositionInput("BTCUSDT", "long", 0.2, 60_000.0, 58_000.0, "cross", leverage=20),
        PositionInput("BTCUSDT", "short", 0.05, 61_000.0, 58_000.0, "cross", leverage=20),
        PositionInput("ETHUSDT", "short", 2.0, 3_000.0, 3_100.0, "cross", leverage=10),
    ]
    snap = evaluate(profile, account.wallet_balance, inputs, "hedge", order_margin=120.0)
    legs = [("BTCUSDT", "long"), ("BTCUSDT", "short"), ("ETHUSDT", "short")]
    for result, key in zip(snap.positions, legs, strict=True):
        pos = account.positions[key]
        assert result.liquidation_price == pytest.approx(account.liquidation_price(pos)[0])
        assert result.maintenance_margin == pytest.approx(account.maintenance_margin(pos))
    figures = account.margin_figures()
    assert snap.margin_ratio == pytest.approx(figures.margin_ratio)
    assert snap.order_margin == (120.0 if name == "simple" else 0.0)
    # the LP solves the trigger: at BTC's LP (ETH at its mark) the excess is 0
    btc_lp = snap.positions[0].liquidation_price
    account.set_mark("BTCUSDT", btc_lp)
    assert account.cross_excess() == pytest.approx(0.0, abs=1e-9 * 0.25 * btc_lp)


def test_account_file_order_margin(tmp_path):
    """``order_margin`` in a calculator account file is the same as ``--order-margin``."""
    account = tmp_path / "account.toml"
    account.write_text(
        'exchange = "simple"\nwallet_balance = 400\norder_margin = 80\n'
        '[[positions]]\nsymbol = "BTCUSDT"\nside = "long"\nsize = 0.1\nentry_price = 50000\n'
        'leverage = 50\n', encoding="utf-8")
    out = calc("--account", str(account))
    assert out["positions"][0]["liquidation_price"] == pytest.approx(LP_WITH_ORDER)
    bad = CliRunner().invoke(main, ["calc", "liq-price", "--account", str(account),
                                    "--order-margin", "-5"])
    assert bad.exit_code == 1 and "order_margin = -5.0 must be a number >= 0" in bad.output
