"""Ladder math: grid lines and quantities, 3Commas DCA ladders, ladder liquidation prices."""

from __future__ import annotations

import pytest

from liqbt.core import ladders
from liqbt.core import margin as mg
from liqbt.core.account import Account, MarketConfig
from liqbt.core.profile import load_profile

BINANCE = load_profile("binance")
TIERS = BINANCE.symbol("BTCUSDT").tiers


def market(leverage: float, mode: str = "isolated", exchange: str = "binance") -> MarketConfig:
    """The broker's market settings of BTCUSDT, as ``broker.account.market(...)`` gives them."""
    return Account(load_profile(exchange), 0.0).set_market("BTCUSDT", leverage, mode)


def test_arithmetic_grid_levels() -> None:
    assert ladders.grid_levels(100, 200, 4) == (100.0, 125.0, 150.0, 175.0, 200.0)


def test_geometric_grid_levels_equal_ratio() -> None:
    levels = ladders.grid_levels(100, 400, 4, "geometric")
    # (400/100)^(1/4) = √2: 100, 141.42, 200, 282.84, 400
    assert levels == pytest.approx((100.0, 141.42135623730951, 200.0, 282.842712474619, 400.0))
    assert levels[0] == 100.0 and levels[-1] == 400.0


@pytest.mark.parametrize(
    "args",
    [(200, 100, 4), (0, 100, 4), (100, 200, 0), (100, 200, 2.5)],
)
def test_grid_levels_rejects_bad_input(args: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError):
        ladders.grid_levels(*args)  # type: ignore[arg-type]


def test_grid_levels_rejects_unknown_spacing() -> None:
    with pytest.raises(ValueError, match="spacing"):
        ladders.grid_levels(100, 200, 4, "log")


def test_grid_quantity_levels_rule() -> None:
    # 1000 USDT × 10x = 10,000 notional over the order lines 100+125+150+175 = 550
    levels = ladders.grid_levels(100, 200, 4)
    assert ladders.grid_quantity(1000, 10, levels) == pytest.approx(10_000 / 550)


def test_grid_quantity_reference_rule_and_fee_reserve() -> None:
    levels = ladders.grid_levels(100, 200, 4)
    assert ladders.grid_quantity(1000, 10, levels, 150, rule="reference") == pytest.approx(
        10_000 / 600
    )
    # with a 0.05 % fee the buying power is 1000 / (1/10 + 0.0005) = 9950.2488
    q = ladders.grid_quantity(1000, 10, levels, fee_rate=0.0005)
    assert q == pytest.approx(9950.248756218905 / 550)
    assert q * 550 / 10 + q * 550 * 0.0005 == pytest.approx(1000)


def test_grid_quantity_geometric() -> None:
    levels = ladders.grid_levels(100, 400, 4, "geometric")
    expected = 2000 / (100 + 141.42135623730951 + 200 + 282.842712474619)
    assert ladders.grid_quantity(1000, 2, levels) == pytest.approx(expected)


def test_grid_plan_long_short_neutral() -> None:
    levels = ladders.grid_levels(100, 200, 4)
    long_plan = ladders.grid_plan("long", levels, 2.0, 151)  # nearest line 150 (index 2)
    assert long_plan.orders[0] == ladders.GridOrder(2, 151, 4.0, True, market=True)
    assert [(o.price, o.size, o.opening) for o in long_plan.orders[1:]] == [
        (100.0, 2.0, True), (125.0, 2.0, True), (175.0, -2.0, False), (200.0, -2.0, False),
    ]
    assert long_plan.full_position == 8.0
    short_plan = ladders.grid_plan("short", levels, 2.0, 151)
    assert short_plan.initial_position == -4.0
    assert [(o.price, o.size, o.opening) for o in short_plan.orders[1:]] == [
        (100.0, 2.0, False), (125.0, 2.0, False), (175.0, -2.0, True), (200.0, -2.0, True),
    ]
    neutral = ladders.grid_plan("neutral", levels, 2.0, 151)
    assert neutral.initial_position == 0
    assert all(o.opening for o in neutral.orders)


def test_dca_ladder_3commas_example() -> None:
    # 3Commas docs: deviation 1 %, step scale 2 → −1 %, −3 %, −7 %; volume scale 2 → 20, 40, 80
    ladder = ladders.dca_ladder(10, 20, 3, 1.0, 2.0, 2.0, 100.0, "long")
    assert [o.deviation for o in ladder] == [0.0, 1.0, 3.0, 7.0]
    assert [o.price for o in ladder] == pytest.approx([100.0, 99.0, 97.0, 93.0])
    assert [o.notional for o in ladder] == [10, 20, 40, 80]
    assert [o.total_notional for o in ladder] == [10, 30, 70, 150]
    sizes = [10 / 100, 20 / 99, 40 / 97, 80 / 93]
    assert [o.size for o in ladder] == pytest.approx(sizes)
    assert ladder[-1].total_size == pytest.approx(sum(sizes))
    # average entry after all fill = 150 / (0.1 + 0.20202 + 0.41237 + 0.86022) = 95.2619
    assert ladder[-1].average_price == pytest.approx(150 / sum(sizes))
    assert ladder[-1].average_price == pytest.approx(95.2619, abs=1e-4)


def test_dca_ladder_short_goes_up() -> None:
    ladder = ladders.dca_ladder(100, 100, 2, 2.0, 1.5, 1.0, 1000.0, "short")
    # deviations 2 %, 2 + 3 = 5 %
    assert [o.price for o in ladder] == pytest.approx([1000.0, 1020.0, 1050.0])


def test_dca_ladder_rejects_price_below_zero() -> None:
    with pytest.raises(ValueError, match="price <= 0"):
        ladders.dca_ladder(10, 10, 3, 40.0, 2.0, 1.0, 100.0)


def test_ladder_liquidation_price_isolated_by_hand() -> None:
    ladder = ladders.dca_ladder(1000, 1000, 2, 5.0, 1.0, 1.0, 50_000.0)
    # fills 1000 @ 50,000, 1000 @ 47,500, 1000 @ 45,000; q = Σ n/p, E = 3000 / q, M = 3000/10
    q = 1000 / 50_000 + 1000 / 47_500 + 1000 / 45_000
    entry = 3000 / q
    margin = 300.0
    expected = (margin + 0 - q * entry) / (q * 0.004 - q)  # Binance tier 1: mmr 0.4 %, cum 0
    lp = ladders.ladder_liquidation_price(ladder, "long", market(10), BINANCE)
    assert lp == pytest.approx(expected)
    assert lp == pytest.approx(42_842.35, abs=0.01)  # 2700 / (0.0632749 × 0.996)


def test_ladder_liquidation_price_cross_uses_wallet() -> None:
    fills = [(50_000.0, 0.1)]
    lp = ladders.ladder_liquidation_price(fills, "long", market(10, "cross"), BINANCE,
                                          wallet_balance=1000)
    # (WB − q·E) / (q·mmr − q) = (1000 − 5000) / (0.0004 − 0.1)
    assert lp == pytest.approx(-4000 / (0.0004 - 0.1))
    iso = ladders.ladder_liquidation_price(fills, "long", market(10), BINANCE)
    assert iso == pytest.approx(mg.isolated_liquidation_price(1, 0.1, 50_000, 500, TIERS))
    assert lp < iso  # the larger wallet behind the cross position moves the LP away
    with pytest.raises(ValueError, match="wallet_balance"):
        ladders.ladder_liquidation_price(fills, "long", market(10, "cross"), BINANCE)


def test_ladder_liquidation_price_one_x_long_has_none() -> None:
    assert ladders.ladder_liquidation_price([(100.0, 1.0)], "long", market(1), BINANCE) is None


def test_grid_liquidation_price_long_all_buys_filled() -> None:
    levels = ladders.grid_levels(40_000, 60_000, 4)  # 40k 45k 50k 55k 60k
    plan = ladders.grid_plan("long", levels, 0.01, 50_000)
    lp = ladders.grid_liquidation_price(plan, market(10), BINANCE)
    # position: 0.02 bought at 50,000 (market), 0.01 at 45,000, 0.01 at 40,000
    fills = [(50_000.0, 0.02), (45_000.0, 0.01), (40_000.0, 0.01)]
    assert lp == pytest.approx(ladders.ladder_liquidation_price(fills, "long", market(10), BINANCE))
    q, cost = 0.04, 1000 + 450 + 400
    assert lp == pytest.approx((cost / 10 - cost) / (q * 0.004 - q))
