"""Tier tables: lookup at boundaries, validation (all problems at once), derived amounts."""

from __future__ import annotations

import math

import pytest

from liqbt.core.errors import ValidationError
from liqbt.core.tiers import TierTable

# Binance BTCUSDT, API snapshot Oct 2024 (Binance API GET /fapi/v1/leverageBracket): floor, cap,
# mmr, lev, published cum
BINANCE_BTC = [
    (0, 50e3, 0.004, 125, 0), (50e3, 600e3, 0.005, 100, 50), (600e3, 3e6, 0.0065, 75, 950),
    (3e6, 12e6, 0.01, 50, 11_450), (12e6, 70e6, 0.02, 25, 131_450),
    (70e6, 100e6, 0.025, 20, 481_450), (100e6, 230e6, 0.05, 10, 2_981_450),
    (230e6, 480e6, 0.10, 5, 14_481_450), (480e6, 600e6, 0.125, 4, 26_481_450),
    (600e6, 800e6, 0.15, 3, 41_481_450), (800e6, 1.2e9, 0.25, 2, 121_481_450),
    (1.2e9, 1.8e9, 0.50, 1, 421_481_450),
]


def _rows(with_amounts: bool = False) -> list[dict]:
    return [
        dict(floor=f, cap=c, mmr=m, max_leverage=lv, **({"maintenance_amount": a}
                                                        if with_amounts else {}))
        for f, c, m, lv, a in BINANCE_BTC
    ]


@pytest.fixture(scope="module")
def table() -> TierTable:
    return TierTable.from_rows(_rows(), symbol="BTCUSDT")


@pytest.mark.parametrize(
    ("notional", "index"),
    [(0, 0), (1, 0), (50_000, 0), (50_000.01, 1), (600_000, 1), (600_000.0001, 2),
     (3e6, 2), (3e6 + 1, 3), (1.8e9, 11), (5e9, 11)],
)
def test_lookup_floor_exclusive_cap_inclusive(table: TierTable, notional, index) -> None:
    """``floor < notional <= cap``; above the last cap the last tier is used."""
    assert table.tier_index(notional) == index


def test_derived_amounts_equal_published_binance_cum(table: TierTable) -> None:
    """The recurrence reproduces every published Binance ``cum``."""
    for tier, row in zip(table.tiers, BINANCE_BTC, strict=True):
        assert tier.maintenance_amount == pytest.approx(row[4], abs=1e-6)


def test_given_amounts_accepted_and_broken_one_rejected() -> None:
    TierTable.from_rows(_rows(with_amounts=True))
    rows = _rows(with_amounts=True)
    rows[3]["maintenance_amount"] = 11_000
    with pytest.raises(ValidationError, match=r"tier 4: maintenance_amount = 11000 breaks"):
        TierTable.from_rows(rows)


def test_max_leverage_and_max_notional(table: TierTable) -> None:
    assert table.max_leverage(50_000) == 125
    assert table.max_leverage(50_001) == 100
    assert table.max_notional(100) == 600_000
    assert table.max_notional(20) == 100e6
    assert table.max_notional(200) == 0
    assert table.last_cap == 1.8e9


def test_mm_bracket(table: TierTable) -> None:
    assert table.maintenance_margin(500_000) == pytest.approx(500_000 * 0.005 - 50)
    assert table.maintenance_margin_at(10, 50_000) == pytest.approx(500_000 * 0.005 - 50)


def test_every_validation_error_at_once() -> None:
    """One ValidationError names every broken row and field."""
    rows = [
        dict(floor=10, cap=5, mmr=0.004, max_leverage=125),          # floor != 0, cap <= floor
        dict(floor=6, cap=100, mmr=1.5, max_leverage=0.5),           # gap, mmr, leverage
        dict(floor=100, cap=200, mmr=0.003, max_leverage=200),       # mmr falls, leverage rises
        dict(floor=200, cap="x", mmr=0.2, max_leverage=10),          # not a number, mmr > 1/lev
        dict(floor=300, mmr=0.3, max_leverage=2, colour="red"),      # missing cap, unknown field
        dict(floor=300, cap=400, mmr=math.nan, max_leverage=1),
    ]
    with pytest.raises(ValidationError) as info:
        TierTable.from_rows(rows, symbol="XUSDT")
    text = "\n".join(info.value.problems)
    for fragment in [
        "tier 1: floor = 10 must be 0", "tier 1: cap = 5 must be above floor = 10",
        "tier 2: floor = 6 must equal the previous cap = 5", "tier 2: mmr = 1.5 must be in (0, 1)",
        "tier 2: max_leverage = 0.5 must be >= 1", "tier 3: mmr = 0.003 is below",
        "tier 3: max_leverage = 200 is above", "tier 4: cap = 'x' is not a number",
        "tier 4: mmr = 0.2 exceeds the initial margin rate", "tier 5: field 'cap' is missing",
        "tier 5: unknown field(s) ['colour']", "tier 6: mmr = nan is not finite",
    ]:
        assert fragment in text, fragment
    assert len(info.value.problems) >= 12
    assert str(info.value).startswith(f"{len(info.value.problems)} problems:")


def test_empty_and_bad_style() -> None:
    with pytest.raises(ValidationError) as info:
        TierTable.from_rows([], style="stairs", basis="weight")
    text = "\n".join(info.value.problems)
    assert "tier_style 'stairs'" in text and "tier_basis 'weight'" in text and "empty" in text


def test_flat_style() -> None:
    """Flat (OKX, Bitget): the tier's rate on the whole notional, no amount; MM jumps."""
    flat = TierTable.from_rows(
        [dict(floor=0, cap=200e3, mmr=0.004, max_leverage=150),
         dict(floor=200e3, cap=1e6, mmr=0.005, max_leverage=100)], style="flat")
    assert flat.maintenance_margin(200e3) == pytest.approx(800)
    assert flat.maintenance_margin(200e3 + 1) == pytest.approx((200e3 + 1) * 0.005)
    assert all(t.maintenance_amount == 0 for t in flat.tiers)
    with pytest.raises(ValidationError, match="flat tables have no maintenance amount"):
        TierTable.from_rows(
            [dict(floor=0, cap=1e6, mmr=0.004, max_leverage=100, maintenance_amount=5)],
            style="flat")


def test_size_basis() -> None:
    """OKX counts contracts: tiers keyed on |size| (base units), not notional."""
    table = TierTable.from_rows(
        [dict(floor=0, cap=300, mmr=0.004, max_leverage=125),
         dict(floor=300, cap=600, mmr=0.005, max_leverage=100)], style="flat", basis="size")
    assert table.lookup_value(-300, 3_000) == 300
    assert table.tier_at(300, 10_000).mmr == 0.004
    assert table.tier_at(300.1, 1.0).mmr == 0.005
    assert table.maintenance_margin_at(400, 2_000) == pytest.approx(400 * 2_000 * 0.005)
    with pytest.raises(ValidationError, match="needs tier_style 'flat'"):
        TierTable.from_rows([dict(floor=0, cap=1, mmr=0.01, max_leverage=10)], basis="size")


def test_flat_rate_override() -> None:
    t = TierTable.flat_rate(0.025, 16_300)
    assert t.maintenance_margin(3_500_000) == pytest.approx(3_500_000 * 0.025 - 16_300)
    assert t.tier_index(1e15) == 0
    with pytest.raises(ValidationError) as info:
        TierTable.flat_rate(1.5, -1, max_leverage=0)
    assert len(info.value.problems) == 3


def test_as_rows_round_trip(table: TierTable) -> None:
    again = TierTable.from_rows(table.as_rows())
    assert again.tiers == table.tiers
