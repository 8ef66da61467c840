"""Bundled exchange profiles load, carry their documented switches, and bad ones are refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from liqbt.core.errors import ValidationError
from liqbt.core.profile import PROFILE_NAMES, load_profile, normalize_symbol, profile_from_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "exchanges"


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_profile_loads(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.funding_interval_hours == 8
    assert profile.notes and profile.source and profile.as_of
    table = profile.symbols
    explicit = table.explicit() if hasattr(table, "explicit") else table
    for spec in explicit.values():  # snapshot symbols: tests/test_tier_snapshot.py
        assert spec.tiers_source and spec.tiers_as_of
        assert spec.price_tick > 0 and spec.size_step > 0


# switch table of margin-model §3
@pytest.mark.parametrize(
    ("name", "formula", "style", "partial", "modes", "top_up", "rounding"),
    [
        ("binance", "binance", "bracket", 1, ("cross", "isolated"), False, "decimals"),
        ("bybit", "bybit", "bracket", 1, ("cross", "isolated"), True, "decimals"),
        ("okx", "taker_at_mark", "flat", 2, ("cross", "isolated"), False, "tick"),
        ("bitget", "taker_at_mark", "flat", 2, ("cross",), True, "tick_directional"),
        ("gate", "taker_at_mark", "bracket", 1, ("cross", "isolated"), False, "tick"),
    ],
)
def test_switches(name, formula, style, partial, modes, top_up, rounding) -> None:
    p = load_profile(name)
    assert (p.lp_formula, p.partial_liquidation_tiers, p.partial_liquidation_modes,
            p.auto_top_up, p.lp_rounding) == (formula, partial, modes, top_up, rounding)
    assert all(s.tiers.style == style for s in p.symbols.values())


def test_binance_tables_match_spec() -> None:
    p = load_profile("binance")
    btc, eth = p.symbol("BTCUSDT"), p.symbol("BTC/USDT:USDT")
    assert btc is eth or btc.symbol == "BTCUSDT"
    eth = p.symbol("ETHUSDT")
    assert len(btc.tiers.tiers) == 12 and len(eth.tiers.tiers) == 12
    assert btc.tiers.tiers[7].maintenance_amount == pytest.approx(14_481_450)
    assert eth.tiers.tiers[-1].maintenance_amount == pytest.approx(280_506_450)
    assert (btc.price_tick, btc.size_step, btc.min_notional) == (0.1, 0.001, 100)
    assert (eth.price_tick, eth.size_step, eth.min_notional) == (0.01, 0.001, 20)
    assert (p.maker_fee, p.taker_fee) == (0.0002, 0.0005)


def test_exchange_specifics() -> None:
    okx = load_profile("okx").symbol("ETHUSDT")
    assert okx.tiers.basis == "size" and okx.tiers.tiers[0].cap == 300  # 3,000 contracts × 0.1
    assert "0.1 ETH per contract" in okx.tiers_source
    assert any("BTCUSDT" in n and "not published" in n for n in load_profile("okx").notes)
    assert any("ETHUSDT" in n for n in load_profile("bybit").notes)
    assert load_profile("gate").taker_fee == 0.00075
    assert load_profile("gate").symbol("BTCUSDT").tiers.tiers[5].maintenance_amount == \
        pytest.approx(10_835)
    assert load_profile("bitget").symbol("BTCUSDT").price_tick == 0.1
    simple = load_profile("simple")
    assert (simple.mm_model, simple.used_margin_mm_rate) == ("used_margin", 0.5)
    assert simple.symbol("ETHUSDT").tiers.tiers[0].max_leverage == 125


def test_unknown_profile_and_symbol() -> None:
    with pytest.raises(ValidationError, match=r"unknown exchange 'nope'.*binance"):
        load_profile("nope")
    # binance covers every USDT-M perpetual of its tier snapshot; other profiles list theirs
    with pytest.raises(ValidationError, match="'DOGEUSDT' is not in profile 'bybit'"):
        load_profile("bybit").symbol("DOGEUSDT")
    with pytest.raises(ValidationError, match="'DOGEUSDX' is not in profile 'binance'"):
        load_profile("binance").symbol("DOGEUSDX")


def test_normalize_symbol() -> None:
    for spelling in ("BTC/USDT:USDT", "BTC_USDT", "BTC-USDT-SWAP", "btcusdt"):
        assert normalize_symbol(spelling) == "BTCUSDT"


def test_broken_profile_reports_every_problem(tmp_path: Path) -> None:
    """Bad fee, unknown key, broken amount recurrence and non-contiguous tiers: one error."""
    data = tomllib.loads((CONFIGS / "binance.toml").read_text(encoding="utf-8"))
    data["fees"]["taker"] = 0.5
    data["colour"] = "blue"
    data["rules"]["lp_formula"] = "magic"
    data["symbols"]["BTCUSDT"]["tiers"][2]["maintenance_amount"] = 900
    data["symbols"]["ETHUSDT"]["tiers"][3]["floor"] = 3_100_000
    data["symbols"]["ETHUSDT"]["price_tick"] = -1
    with pytest.raises(ValidationError) as info:
        profile_from_dict(data, source="broken.toml")
    text = str(info.value)
    assert text.startswith("broken.toml: ")
    for fragment in [
        "unknown top-level key(s) ['colour']",
        "symbols.BTCUSDT: BTCUSDT tier 3: maintenance_amount = 900 breaks",
        "symbols.ETHUSDT: ETHUSDT tier 4: floor = 3.1e+06 must equal the previous cap = 3e+06",
        "symbols.ETHUSDT.price_tick = -1 must be > 0",
        "taker_fee = 0.5 must be a fraction in [-0.01, 0.1)",
        "lp_formula = 'magic' is not one of",
    ]:
        assert fragment in text, fragment
    assert len(info.value.problems) == 6


def test_profile_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text((CONFIGS / "gate.toml").read_text(encoding="utf-8"), encoding="utf-8")
    profile = load_profile(path)
    assert profile.name == "gate"
    cheaper = profile.with_overrides({"taker_fee": 0.0004})
    assert cheaper.taker_fee == 0.0004
    with pytest.raises(ValidationError, match="unknown profile field"):
        profile.with_overrides({"tacker_fee": 0.1})


def test_cross_liquidation_order_is_validated_and_orders_legs() -> None:
    from liqbt.core.liquidation import LegState, cross_order

    profile = load_profile("binance")
    assert profile.cross_liquidation_order == "largest_loss"
    with pytest.raises(ValidationError, match="cross_liquidation_order = 'smallest'"):
        profile.with_overrides({"cross_liquidation_order": "smallest"})
    legs = [LegState("ETHUSDT", "net", -50.0, 40.0), LegState("BTCUSDT", "net", -80.0, 10.0),
            LegState("SOLUSDT", "net", 5.0, 60.0)]
    assert cross_order(legs, "largest_loss") == [
        ("BTCUSDT", "net"), ("ETHUSDT", "net"), ("SOLUSDT", "net")]
    assert cross_order(legs, "largest_maintenance_margin") == [
        ("SOLUSDT", "net"), ("ETHUSDT", "net"), ("BTCUSDT", "net")]
