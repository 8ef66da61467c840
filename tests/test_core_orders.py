"""Order acceptance rules (liqbt.core.orders), with hand-computed values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liqbt.core import orders
from liqbt.core.profile import load_profile
from liqbt.core.tiers import TierTable

NOTIONAL_TIERS = TierTable.from_rows(
    [
        {"floor": 0, "cap": 50_000, "mmr": 0.004, "max_leverage": 125},
        {"floor": 50_000, "cap": 250_000, "mmr": 0.005, "max_leverage": 100},
        {"floor": 250_000, "cap": 1_000_000, "mmr": 0.01, "max_leverage": 50},
    ],
    symbol="BTCUSDT",
)


def okx_eth() -> TierTable:
    return load_profile("okx").symbol("ETHUSDT").tiers


def check(**kwargs: float | str) -> orders.OrderCheck:
    base: dict[str, float | str] = dict(
        symbol="BTCUSDT", size=0.1, opening=0.1, price=50_000.0, held=0.0, leverage=10.0,
        taker_fee=0.0005, min_notional=100.0, available=10_000.0,
    )
    base.update(kwargs)
    return orders.OrderCheck(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "held", "reduces", "netted", "expected"),
    [
        (0.5, 0.0, False, True, 0.5),  # flat: all of it opens
        (0.5, 1.0, False, True, 0.5),  # adds to a long
        (-3.0, 1.0, False, True, 2.0),  # closes 1, opens a 2 short
        (-1.0, 1.0, False, True, 0.0),  # a close
        (-(1.0 + 1e-12), 1.0, False, True, 0.0),  # float residue of a close
        (-3.0, 1.0, True, True, 0.0),  # reduce-only never opens
        (-3.0, 1.0, False, False, 3.0),  # hedge leg: the order's own leg
    ],
)
def test_opening_part(size: float, held: float, reduces: bool, netted: bool,
                      expected: float) -> None:
    assert orders.opening_part(size, held, reduces, netted) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("size", "held", "reduces", "netted", "expected"),
    [
        (0.5, 1.0, False, True, 0.0),  # adds to a long: the long's size does not matter
        (0.5, 0.0, False, True, 0.0),  # flat
        (-3.0, 1.0, False, True, 1.0),  # nets against the long: it matters
        (3.0, -2.5, False, True, -2.5),  # a buy against a short
        (-3.0, 1.0, True, True, 0.0),  # reduce-only never opens
        (-3.0, 1.0, False, False, 0.0),  # hedge leg: the order's own leg
    ],
)
def test_opening_held(size: float, held: float, reduces: bool, netted: bool,
                      expected: float) -> None:
    assert orders.opening_held(size, held, reduces, netted) == expected


@given(
    size=st.floats(-10, 10, allow_nan=False).filter(bool),
    held=st.one_of(st.just(0.0), st.floats(-10, 10, allow_nan=False)),
    reduces=st.booleans(),
    netted=st.booleans(),
)
@settings(deadline=None, max_examples=200)
def test_opening_part_depends_on_held_only_through_opening_held(
    size: float, held: float, reduces: bool, netted: bool
) -> None:
    """The order book caches reserved margin keyed on opening_held: the key must determine
    the opening part exactly (same float)."""
    key = orders.opening_held(size, held, reduces, netted)
    assert orders.opening_part(size, key, reduces, netted) == orders.opening_part(
        size, held, reduces, netted)


@pytest.mark.parametrize(
    ("size", "held", "expected"),
    [
        (-0.5, 1.0, -0.5),  # inside the position
        (-3.0, 1.0, -1.0),  # capped at the position
        (2.0, -0.7, 0.7),  # a buy reducing a short
        (-1.0, 0.0, 0.0),  # flat: nothing to reduce
        (1.0, 1.0, 0.0),  # same side would open
        (-0.008, 0.007999999999999972, -0.008),  # exceeds by float residue only: whole
        (-0.008, 0.0079, -0.0079),  # a real excess is still capped
    ],
)
def test_reducing_fill(size: float, held: float, expected: float) -> None:
    assert orders.reducing_fill(size, held) == expected


def test_margin_figures() -> None:
    assert orders.order_margin(0.1, 50_000, 10) == pytest.approx(500.0)
    # 5,000 / 10 + 5,000 × 0.0005 = 500 + 2.5
    assert orders.margin_required(0.1, 50_000, 10, 0.0005) == pytest.approx(502.5)


def test_resulting_size() -> None:
    assert orders.resulting_size(1.0, 1.0, 2.0) == 3.0  # adds to the long
    assert orders.resulting_size(3.0, 1.0, -2.0) == 1.0  # flips a 2 short into a 1 long


def test_accepts_a_close_without_any_money() -> None:
    assert orders.acceptance_refusal(
        check(size=-0.1, opening=0.0, held=0.1, available=0.0, min_notional=1e9),
        NOTIONAL_TIERS,
    ) is None


def test_min_notional_is_on_the_whole_order() -> None:
    reason = orders.acceptance_refusal(check(size=0.001, opening=0.001), NOTIONAL_TIERS)
    assert reason == "BTCUSDT: order value 50.00 USDT is below the exchange minimum 100 USDT"


def test_margin_refusal_at_the_boundary() -> None:
    assert orders.acceptance_refusal(check(available=502.5), NOTIONAL_TIERS) is None
    reason = orders.acceptance_refusal(check(available=502.4), NOTIONAL_TIERS)
    assert reason == (
        "BTCUSDT: order needs 502.50 USDT margin (incl. fee) but only 502.40 USDT is available"
    )


def test_notional_tier_cap() -> None:
    # 50x is allowed up to the 1,000,000 USDT tier; 100x only up to 250,000 USDT
    assert NOTIONAL_TIERS.cap_for_leverage(50) == 1_000_000
    assert NOTIONAL_TIERS.cap_for_leverage(100) == 250_000
    # held 4 BTC + 1.1 BTC at 50,000 = 255,000 USDT > 250,000 at 100x
    reason = orders.acceptance_refusal(
        check(size=1.1, opening=1.1, held=4.0, leverage=100, available=1e9), NOTIONAL_TIERS
    )
    assert reason == (
        "BTCUSDT: position value 255,000.00 USDT would exceed 250,000 USDT, the largest tier "
        "allowing 100x"
    )
    assert orders.acceptance_refusal(
        check(size=0.9, opening=0.9, held=4.0, leverage=100, available=1e9), NOTIONAL_TIERS
    ) is None


def test_okx_caps_are_in_eth() -> None:
    """OKX ETHUSDT tiers are keyed on size: at 25x the cap is 7,200 ETH, not 7,200 USDT."""
    tiers = okx_eth()
    assert tiers.basis == "size"
    assert tiers.cap_for_leverage(25) == 7_200
    assert tiers.cap_for_leverage(30) == 4_800  # tiers up to 33.33x
    eth = dict(symbol="ETHUSDT", price=2_000.0, taker_fee=0.0005, min_notional=0.0,
               available=1e9)
    # 5 ETH = 10,000 USDT at 25x: accepted (needs 10,000 × (1/25 + 0.0005) = 405 USDT)
    assert orders.acceptance_refusal(check(size=5.0, opening=5.0, leverage=25, **eth),
                                     tiers) is None
    assert orders.acceptance_refusal(
        check(size=5.0, opening=5.0, leverage=25, **{**eth, "available": 404.99}), tiers
    ) == ("ETHUSDT: order needs 405.00 USDT margin (incl. fee) but only 404.99 USDT is "
          "available")
    # 7,200 ETH is the last size allowed at 25x; 7,300 ETH is not
    assert orders.acceptance_refusal(check(size=7_200.0, opening=7_200.0, leverage=25, **eth),
                                     tiers) is None
    assert orders.acceptance_refusal(
        check(size=7_300.0, opening=7_300.0, leverage=25, **eth), tiers
    ) == "ETHUSDT: position size 7,300 ETH would exceed 7,200 ETH, the largest tier allowing 25x"
    # at 30x: 4,000 held + 900 = 4,900 ETH > 4,800
    assert orders.acceptance_refusal(
        check(size=900.0, opening=900.0, held=4_000.0, leverage=30, **eth), tiers
    ) == "ETHUSDT: position size 4,900 ETH would exceed 4,800 ETH, the largest tier allowing 30x"


def test_fill_refusal() -> None:
    def never() -> float:
        raise AssertionError("the available balance is only asked for unreserved margin")

    # isolated: 0.1 × 50,000 × (1/10 + 0.0005) = 502.5 must be in the wallet
    assert orders.fill_refusal("BTCUSDT", 0.1, 0.1, 50_000, 10, 0.0005, never, True,
                               502.5) is None
    assert orders.fill_refusal("BTCUSDT", 0.1, 0.1, 50_000, 10, 0.0005, never, True, 500.0) == (
        "BTCUSDT: at fill the isolated margin and fee 502.50 USDT exceed the wallet balance "
        "500.00 USDT"
    )
    # cross: reserved at acceptance → no check; 0.04 unreserved needs 201 USDT
    assert orders.fill_refusal("BTCUSDT", 0.1, 0.1, 50_000, 10, 0.0005, never, False,
                               0.0) is None
    assert orders.fill_refusal("BTCUSDT", 0.1, 0.06, 50_000, 10, 0.0005, lambda: 201.0, False,
                               0.0) is None
    assert orders.fill_refusal("BTCUSDT", 0.1, 0.06, 50_000, 10, 0.0005, lambda: 200.0, False,
                               0.0) == (
        "BTCUSDT: at fill the order needs 201.00 USDT more margin but only 200.00 USDT is "
        "available"
    )


def test_base_unit() -> None:
    assert orders.base_unit("ETHUSDT") == "ETH"
    assert orders.base_unit("USDT") == "USDT"
