"""Properties of MarginBroker over random price paths (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import events_of, run

from liqbt.core import margin as mg
from liqbt.core.profile import load_profile

BINANCE = load_profile("binance")
TIERS = BINANCE.symbol("BTCUSDT").tiers
TAKER = BINANCE.taker_fee


@st.composite
def paths(draw):
    """A random walk of 4–30 five-minute bars around 60,000, each bar with a random range."""
    n = draw(st.integers(4, 30))
    moves = draw(st.lists(st.floats(-0.06, 0.06), min_size=n, max_size=n))
    wicks = draw(st.lists(st.tuples(st.floats(0, 0.03), st.floats(0, 0.03)), min_size=n,
                          max_size=n))
    gaps = draw(st.lists(st.floats(-0.02, 0.02), min_size=n, max_size=n))
    bars, price = [], 60_000.0
    for i, ((up, down), move, gap) in enumerate(zip(wicks, moves, gaps, strict=True)):
        open_ = price * (1 + gap) if i > 1 else price  # gaps only after the entry bar
        close = open_ * (1 + move)
        bars.append((open_, max(open_, close) * (1 + up), min(open_, close) * (1 - down), close))
        price = close
    return bars


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bars=paths(),
    side=st.sampled_from([1, -1]),
    leverage=st.sampled_from([2, 5, 10, 20, 50, 100]),
    notional=st.floats(1_000, 200_000),
    mode=st.sampled_from(["isolated", "cross"]),
    cushion=st.floats(1.05, 3.0),
)
def test_liquidated_on_first_bar_crossing_the_core_lp_and_money_is_conserved(
    bars, side, leverage, notional, mode, cushion
):
    entry = bars[1][0]
    size = notional / entry
    margin = size * entry / leverage
    fee = size * entry * TAKER
    cash = margin * cushion + fee
    action = (lambda s: s.buy(data=s.datas[0], size=size)) if side > 0 else (
        lambda s: s.sell(data=s.datas[0], size=size))
    broker, _ = run({"BTCUSDT": (bars, dict(leverage=leverage, margin_mode=mode))},
                    actions={1: action}, cash=cash)

    if mode == "isolated":
        lp = mg.isolated_liquidation_price(side, size, entry, margin, TIERS)
    else:
        lp, _ = mg.cross_liquidation_price(cash - fee, [mg.CrossLeg(side, size, entry, TIERS)])
    crossing = [
        i for i, (_, high, low, _) in enumerate(bars)
        if i >= 1 and lp is not None and (low <= lp if side > 0 else high >= lp)
    ]
    liquidations = events_of(broker, "liquidation")
    full = [e for e in liquidations if not e.partial]
    if not crossing:
        assert not liquidations
    else:
        first = min(crossing)
        assert liquidations, "the path crossed the LP but nothing was liquidated"
        bar_minutes = [e.time.hour * 60 + e.time.minute for e in liquidations]
        assert min(bar_minutes) == first * 5
        if not liquidations[0].partial:
            assert liquidations[0].trigger_price == pytest.approx(
                lp if (bars[first][0] > lp if side > 0 else bars[first][0] < lp)
                else bars[first][0], rel=1e-9)
        assert full or liquidations  # partial steps may save the position

    account = broker.account
    unrealized = sum(p.unrealized_pnl for p in account.open_positions())
    identity = (account.initial_balance + account.realized_pnl + unrealized - account.fees_paid
                - account.funding_paid - account.insurance_fund)
    assert account.equity() == pytest.approx(identity, rel=1e-9, abs=1e-6)
    assert account.equity() >= -1e-9
    assert account.wallet_balance >= -1e-9


@st.composite
def ladders(draw):
    """Per symbol: a market order and up to three resting limits in either direction."""
    orders = []
    for symbol_index in range(2):
        side = draw(st.sampled_from([1, -1]))
        orders.append((symbol_index, side, draw(st.floats(0.2, 1.0)), None))
        for _ in range(draw(st.integers(0, 3))):
            offset = draw(st.floats(0.005, 0.08))
            orders.append((symbol_index, side, draw(st.floats(0.1, 1.0)), 1 - side * offset))
    return orders


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    btc=paths(),
    eth_moves=st.lists(st.floats(-0.08, 0.08), min_size=30, max_size=30),
    orders=ladders(),
    modes=st.tuples(st.sampled_from(["isolated", "cross"]), st.sampled_from(["isolated", "cross"])),
    leverage=st.sampled_from([3, 10, 25, 50]),
    funding=st.floats(-0.003, 0.003),
)
def test_two_symbol_ladders_conserve_money_and_never_go_negative(
    btc, eth_moves, orders, modes, leverage, funding
):
    import math

    import backtrader as bt

    eth, price = [], 3000.0
    for move in eth_moves[: len(btc)]:
        close = price * (1 + move)
        eth.append((price, max(price, close) * 1.01, min(price, close) * 0.99, close))
        price = close
    rates = [funding if i % 3 == 2 else math.nan for i in range(len(btc))]
    base_size = {0: 0.02, 1: 0.4}  # about 1,200 USDT notional each

    def place(s):
        for index, side, scale, level in orders:
            data = s.datas[index]
            size = base_size[index] * scale
            kwargs = {}
            if level is not None:
                kwargs = dict(price=data.close[0] * level, exectype=bt.Order.Limit)
            (s.buy if side > 0 else s.sell)(data=data, size=size, **kwargs)

    broker, _ = run(
        {"BTCUSDT": (btc, dict(leverage=leverage, margin_mode=modes[0],
                               frame_extra={"funding_rate": rates})),
         "ETHUSDT": (eth, dict(leverage=leverage, margin_mode=modes[1],
                               frame_extra={"funding_rate": rates}))},
        actions={1: place}, cash=400.0,
    )
    account = broker.account
    unrealized = sum(p.unrealized_pnl for p in account.open_positions())
    identity = (account.initial_balance + account.realized_pnl + unrealized - account.fees_paid
                - account.funding_paid - account.insurance_fund)
    assert account.equity() == pytest.approx(identity, rel=1e-9, abs=1e-6)
    assert account.wallet_balance >= -1e-9
    for pos in account.open_positions():
        if pos.margin_mode == "isolated":
            # funding may push M below zero while profit holds M + upnl above maintenance
            # (docs/margin-model.md §7); a live isolated position never has a margin balance
            # at or below zero
            assert pos.margin + pos.unrealized_pnl > 0
    assert sum(e.payment for e in events_of(broker, "funding")) == pytest.approx(
        account.funding_paid, abs=1e-9)
    assert sum(e.fee for e in events_of(broker, "fill")) == pytest.approx(account.fees_paid,
                                                                           abs=1e-9)
