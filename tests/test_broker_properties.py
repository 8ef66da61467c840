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
