"""Properties of the margin core (hypothesis), on the bundled exchange tables."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from liqbt.core import margin as mg
from liqbt.core.profile import load_profile
from liqbt.core.tiers import TierTable

BINANCE = load_profile("binance").symbol("BTCUSDT").tiers
BINANCE_ETH = load_profile("binance").symbol("ETHUSDT").tiers
GATE = load_profile("gate").symbol("BTCUSDT").tiers
BYBIT = load_profile("bybit").symbol("BTCUSDT").tiers
BRACKET_TABLES = {"binance": BINANCE, "binance_eth": BINANCE_ETH, "gate": GATE, "bybit": BYBIT}

CASES = [("binance", BINANCE, 0.0), ("taker_at_mark", GATE, 0.00075),
         ("taker_at_mark", BINANCE, 0.0005)]

prices = st.floats(min_value=100, max_value=200_000)
sizes = st.floats(min_value=0.001, max_value=2_000)
sides = st.sampled_from([1, -1])
leverages = st.floats(min_value=1.5, max_value=125)
cases = st.sampled_from(CASES)
FAST = settings(max_examples=150, deadline=None)


def _position(tiers: TierTable, q: float, entry: float, leverage: float) -> float:
    """Margin at ``leverage``, skipping positions the exchange would refuse."""
    notional = q * entry
    assume(notional <= tiers.last_cap)
    assume(leverage <= tiers.max_leverage(notional))
    return notional / leverage


@FAST
@given(cases, sides, sizes, prices, leverages)
def test_isolated_lp_balance_equals_mm(case, side, q, entry, leverage) -> None:
    """At an isolated LP the margin balance equals MM at the LP (+ taker × notional for
    taker_at_mark), in the tier of the position valued at the LP."""
    formula, tiers, fee = case
    margin = _position(tiers, q, entry, leverage)
    lp = mg.isolated_liquidation_price(side, q, entry, margin, tiers, formula, fee)
    assume(lp is not None and lp > 0)
    balance = margin + side * q * (lp - entry)
    required = tiers.maintenance_margin_at(q, lp) + fee * q * lp
    # on a cycle between flat-rate boundaries this may not hold exactly; bracket tables converge
    assert balance == pytest.approx(required, rel=1e-9, abs=1e-9 * q * entry)


@FAST
@given(cases, sides, sizes, prices, leverages)
def test_lp_on_the_losing_side_of_entry(case, side, q, entry, leverage) -> None:
    """A long's LP is below entry, a short's above."""
    formula, tiers, fee = case
    margin = _position(tiers, q, entry, leverage)
    lp = mg.isolated_liquidation_price(side, q, entry, margin, tiers, formula, fee)
    if side > 0:
        assert lp is None or lp < entry
    else:
        assert lp is not None and lp > entry


@FAST
@given(cases, sides, sizes, prices, leverages, st.floats(min_value=1.01, max_value=3))
def test_higher_leverage_moves_lp_toward_entry(case, side, q, entry, leverage, factor) -> None:
    """Less margin (higher leverage) moves the LP toward the entry price (weakly)."""
    formula, tiers, fee = case
    high = leverage * factor
    margin_high = _position(tiers, q, entry, high)
    margin_low = q * entry / leverage
    lp_high = mg.isolated_liquidation_price(side, q, entry, margin_high, tiers, formula, fee)
    lp_low = mg.isolated_liquidation_price(side, q, entry, margin_low, tiers, formula, fee)
    if side > 0:
        assert lp_high is not None
        assert lp_low is None or lp_low <= lp_high * (1 + 1e-12)
    else:
        assert lp_high <= lp_low * (1 + 1e-12)


@FAST
@given(cases, sides, sizes, prices, leverages)
def test_tier_used_is_tier_at_lp(case, side, q, entry, leverage) -> None:
    """The LP returned satisfies its own tier's equation: solving in the tier at the LP gives
    the same price (the fixed point of margin-model §2)."""
    formula, tiers, fee = case
    margin = _position(tiers, q, entry, leverage)
    lp = mg.isolated_liquidation_price(side, q, entry, margin, tiers, formula, fee)
    assume(lp is not None and lp > 0)
    one_tier = tiers.tier_at(q, lp)
    pinned = TierTable((one_tier,), style="bracket")
    again = mg.isolated_liquidation_price(side, q, entry, margin, pinned, formula, fee)
    assert again == pytest.approx(lp, rel=1e-12)


@pytest.mark.parametrize("name", sorted(BRACKET_TABLES))
def test_mm_continuous_at_every_boundary(name: str) -> None:
    """Bracket-style MM is continuous at each cap: MM(cap) ≈ MM(cap + ε) (margin-model §2)."""
    tiers = BRACKET_TABLES[name]
    for tier in tiers.tiers[:-1]:
        eps = tier.cap * 1e-12
        below, above = tiers.maintenance_margin(tier.cap), tiers.maintenance_margin(tier.cap + eps)
        assert above == pytest.approx(below, rel=1e-9)
        assert tiers.tier_for(tier.cap) is tier
        assert tiers.tier_for(tier.cap + max(eps, 1e-6)) is not tier


@FAST
@given(cases, sides, sizes, prices, leverages)
def test_cross_single_position_equals_isolated(case, side, q, entry, leverage) -> None:
    """A cross account holding one position with wallet = its margin liquidates where the
    isolated position with that margin does."""
    formula, tiers, fee = case
    margin = _position(tiers, q, entry, leverage)
    iso = mg.isolated_liquidation_price(side, q, entry, margin, tiers, formula, fee)
    cross, direction = mg.cross_liquidation_price(
        margin, [mg.CrossLeg(side, q, entry, tiers)], taker_fee=fee, formula=formula
    )
    assert direction == -side
    if iso is None or iso == 0:
        assert cross is None or cross == pytest.approx(0.0, abs=1e-9)
    else:
        assert cross == pytest.approx(iso, rel=1e-9)


@FAST
@given(sides, sizes, prices, st.floats(min_value=10, max_value=1e7))
def test_bankruptcy_price_zero_balance(side, q, entry, margin) -> None:
    """At the bankruptcy price ``M + upnl = 0``."""
    bp = mg.isolated_bankruptcy_price(side, q, entry, margin)
    assert math.isclose(margin + side * q * (bp - entry), 0.0, abs_tol=1e-7 * margin)
