"""`liqbt calc liq-price` and `liqbt calc import-tiers` (CliRunner)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from liqbt.cli import main
from liqbt.core.ccxt_tiers import profile_symbols_to_toml, tiers_from_ccxt
from liqbt.core.errors import ValidationError
from liqbt.core.profile import load_profile, profile_from_dict

BINANCE_JSON = Path(__file__).resolve().parents[2] / "shared" / "data" / "freqtrade_freqtrade" / \
    "binance_leverage_tiers.json"
BASE = ["calc", "liq-price", "--exchange", "binance", "--symbol", "BTCUSDT", "--side", "long",
        "--entry", "60000", "--size", "1"]
KEYS = {"symbol", "side", "liquidation_price", "bankruptcy_price", "maintenance_margin", "tier",
        "mmr", "maintenance_amount", "display_liquidation_price", "past_liquidation",
        "closing_fee"}


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_table_output() -> None:
    result = run(*BASE, "--margin", "6000")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:3] == ["symbol", "side", "mode"]
    assert "54,221.11" in lines[2] and "54,000.00" in lines[2]
    assert "margin ratio 4.17 %" in lines[3]


def test_json_shape_and_values() -> None:
    result = run(*BASE, "--margin", "6000", "--json")
    out = json.loads(result.output)
    assert set(out) == {"positions", "margin_balance", "maintenance_margin", "margin_ratio",
                        "closing_fee", "order_margin", "trigger_margin"}
    pos = out["positions"][0]
    assert set(pos) == KEYS
    # Binance isolated long, tier 2 (0.5 %, cum 50): (6000 + 50 − 60000)/(0.005 − 1)
    assert pos["liquidation_price"] == pytest.approx((6000 + 50 - 60000) / (0.005 - 1), rel=1e-12)
    assert pos["display_liquidation_price"] == round(pos["liquidation_price"], 2)
    assert (pos["tier"], pos["mmr"], pos["maintenance_amount"]) == (2, 0.005, 50)
    assert out["margin_balance"] == 6000 and out["maintenance_margin"] == 250
    # Binance has no closing-fee term: the trigger margin is the MM
    assert (out["closing_fee"], out["order_margin"], out["trigger_margin"]) == (0, 0, 250)


def test_one_x_long_has_no_lp() -> None:
    out = json.loads(run(*BASE, "--leverage", "1", "--json").output)
    assert out["positions"][0]["liquidation_price"] is None
    assert out["positions"][0]["display_liquidation_price"] is None
    assert "none" in run(*BASE, "--leverage", "1").output


def test_mmr_override_cross_wallet_and_mark() -> None:
    out = json.loads(run(*BASE, "--mode", "cross", "--wallet", "10000", "--mark", "59000",
                         "--mmr", "0.01", "--maintenance-amount", "100", "--json").output)
    pos = out["positions"][0]
    # (WB + cum − q·E)/(q·mmr − q)
    assert pos["liquidation_price"] == pytest.approx((10000 + 100 - 60000) / (0.01 - 1))
    assert pos["mmr"] == 0.01 and pos["maintenance_amount"] == 100
    assert out["margin_balance"] == pytest.approx(9000)


def test_taker_fee_override() -> None:
    base = ["calc", "liq-price", "--exchange", "gate", "--symbol", "BTCUSDT", "--side", "short",
            "--entry", "60000", "--size", "1", "--margin", "6000", "--json"]
    plain = json.loads(run(*base).output)["positions"][0]["liquidation_price"]
    free = json.loads(run(*base, "--taker-fee", "0").output)["positions"][0]["liquidation_price"]
    # short, tier 3 at the LP (0.5 %, derived amount 35): (q·E + M + amount)/(q·(1 + mmr + fee))
    assert plain == pytest.approx((60000 + 6000 + 35) / (1 + 0.005 + 0.00075))
    assert free > plain


@pytest.mark.parametrize(
    ("args", "messages"),
    [
        (["--size", "-1"], ["size = -1.0 must be > 0"]),
        (["--exchange", "nope"], ["unknown exchange 'nope'"]),
        (["--symbol", "DOGEUSDX"], ["'DOGEUSDX' is not in profile 'binance' (318 symbols"]),
        (["--leverage", "150"], ["leverage 150× is above the maximum 100×"]),
        (["--leverage", "150", "--mark", "-5", "--margin", "0"],
         ["leverage 150×", "mark_price = -5.0 must be > 0", "margin = 0.0 must be > 0"]),
    ],
)
def test_bad_values(args: list[str], messages: list[str]) -> None:
    argv = [*BASE, "--margin", "6000"]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    result = run(*argv)
    assert result.exit_code != 0
    for message in messages:
        assert message in result.output, result.output


def test_usage_problems_are_collected(tmp_path: Path) -> None:
    result = run("calc", "liq-price", "--exchange", "binance", "--side", "long")
    assert result.exit_code == 2
    for flag in ("--symbol", "--entry", "--size"):
        assert f"missing option {flag}" in result.output
    assert "needs --margin or --leverage" in result.output
    result = run(*BASE, "--mode", "cross", "--maintenance-amount", "5")
    assert "cross mode needs --wallet" in result.output
    assert "--maintenance-amount needs --mmr" in result.output
    account = tmp_path / "a.toml"
    account.write_text('exchange = "binance"\n')
    result = run("calc", "liq-price", "--account", str(account), "--entry", "1")
    assert result.exit_code == 2
    assert "--account cannot be combined with --entry" in result.output


def _account_toml(tmp_path: Path, body: str) -> str:
    path = tmp_path / "account.toml"
    path.write_text(body)
    return str(path)


def test_account_toml_mixed_modes(tmp_path: Path) -> None:
    path = _account_toml(tmp_path, """
exchange = "binance"
mode = "cross"
wallet_balance = 20000
[[positions]]
symbol = "BTCUSDT"
side = "long"
size = 1
entry_price = 60000
mark_price = 61000
[[positions]]
symbol = "ETHUSDT"
side = "short"
size = 10
entry_price = 3000
mark_price = 3100
margin_mode = "isolated"
leverage = 20
""")
    out = json.loads(run("calc", "liq-price", "--account", path, "--json").output)
    btc, eth = out["positions"]
    # cross BTC alone in the cross pool: (WB + cum − q·E)/(q·mmr − q), tier 1 at the LP (~40k)
    assert btc["liquidation_price"] == pytest.approx((20000 + 0 - 60000) / (0.004 - 1))
    # isolated ETH short, M = 1500: (M + cum + q·E)/(q·mmr + q) in tier 1
    assert eth["liquidation_price"] == pytest.approx((1500 + 0 + 30000) / (10 * 0.004 + 10))
    assert out["margin_balance"] == pytest.approx(21000)  # cross wallet + cross upnl only
    table = run("calc", "liq-price", "--account", path)
    assert table.exit_code == 0 and "isolated" in table.output and "cross" in table.output


def test_account_problems_collected(tmp_path: Path) -> None:
    path = _account_toml(tmp_path, """
exchange = "binance"
wallet_balance = 100
colour = "red"
[[positions]]
symbol = "BTCUSDT"
side = "up"
size = 1
[[positions]]
symbol = "ETHUSDT"
side = "long"
size = 1
entry_price = 3000
maintenance_amount = 3
""")
    result = run("calc", "liq-price", "--account", path)
    assert result.exit_code != 0
    for message in ["unknown key(s) ['colour']", "position 1: missing field(s) ['entry_price']",
                    "position 2: maintenance_amount needs mmr"]:
        assert message in result.output, result.output
    result = run("calc", "liq-price", "--account", str(tmp_path / "missing.json"))
    assert result.exit_code != 0 and "does not exist" in result.output


# --- import-tiers -------------------------------------------------------------------------
SMALL = {
    "BTC/USDT:USDT": [
        {"minNotional": 0, "maxNotional": 50000, "maintenanceMarginRate": 0.004,
         "maxLeverage": 125, "info": {"cum": "0.0", "notionalFloor": "0"}},
        {"minNotional": 50000, "maxNotional": 600000, "maintenanceMarginRate": 0.005,
         "maxLeverage": 100, "info": {"cum": "50.0", "notionalFloor": "50000"}},
    ],
    "BTC/USDT:USDT-250328": [
        {"minNotional": 0, "maxNotional": 1e6, "maintenanceMarginRate": 0.01, "maxLeverage": 50},
    ],
    "ETH/USDT:USDT": [
        {"minNotional": 0, "maxNotional": 50000, "maintenanceMarginRate": 0.004,
         "maxLeverage": 125, "info": {"cum": "0"}},
        {"minNotional": 50000, "maxNotional": 600000, "maintenanceMarginRate": 0.005,
         "maxLeverage": 100, "info": {"cum": "70"}},
    ],
}


def test_tiers_from_ccxt_small(tmp_path: Path) -> None:
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(SMALL))
    for spelling in ("BTCUSDT", "BTC/USDT:USDT", "btc_usdt"):
        table = tiers_from_ccxt(path, spelling)
        assert [t.maintenance_amount for t in table.tiers] == [0, 50]
    assert tiers_from_ccxt(SMALL, "BTC/USDT:USDT-250328").tiers[0].mmr == 0.01
    with pytest.raises(ValidationError, match="maintenance_amount = 70 breaks"):
        tiers_from_ccxt(path, "ETHUSDT")
    with pytest.raises(ValidationError, match="'SOLUSDT' is not in the tier file"):
        tiers_from_ccxt(path, "SOLUSDT")


def test_rendered_toml_round_trips() -> None:
    table = tiers_from_ccxt(SMALL, "BTCUSDT")
    text = profile_symbols_to_toml(
        {"BTCUSDT": table}, {"BTCUSDT": {"price_tick": 0.1, "size_step": 0.001,
                                         "min_notional": 100}}, tiers_as_of="2024-10")
    doc = {"name": "mine", "fees": {"maker": 0.0002, "taker": 0.0005}, **tomllib.loads(text)}
    profile = profile_from_dict(doc)
    assert profile.symbol("BTCUSDT").tiers.tiers == table.tiers
    assert "# price_tick = ?" in profile_symbols_to_toml({"BTCUSDT": table})


def test_import_tiers_cli(tmp_path: Path) -> None:
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(SMALL))
    result = run("calc", "import-tiers", str(path), "--symbol", "BTCUSDT", "--exchange", "binance")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("[symbols.BTCUSDT]\nprice_tick = 0.1")
    out = tmp_path / "out.toml"
    result = run("calc", "import-tiers", str(path), "--symbol", "BTCUSDT", "--out", str(out))
    assert result.exit_code == 0 and out.read_text().startswith("[symbols.BTCUSDT]")
    result = run("calc", "import-tiers", str(path), "--symbol", "ETHUSDT", "--symbol", "XUSDT")
    assert result.exit_code == 1
    assert "breaks" in result.output and "'XUSDT' is not in the tier file" in result.output


@pytest.mark.skipif(not BINANCE_JSON.is_file(), reason="shared Binance tier snapshot absent")
def test_import_real_binance_snapshot() -> None:
    """ccxt fetch_leverage_tiers snapshot (Oct 2024): BTC/USDT:USDT has 12 tiers, equal to the
    bundled binance profile's BTCUSDT table (ETHUSDT too)."""
    profile = load_profile("binance")
    for symbol in ("BTC/USDT:USDT", "ETHUSDT"):
        table = tiers_from_ccxt(BINANCE_JSON, symbol)
        assert len(table.tiers) == 12
        assert table.tiers == profile.symbol(symbol).tiers.tiers


def test_cross_position_already_past_liquidation_is_said() -> None:
    args = ["calc", "liq-price", "--exchange", "binance", "--symbol", "BTCUSDT", "--side",
            "long", "--size", "1", "--entry", "60000", "--mode", "cross", "--wallet", "100"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    # MM = 60,000 × 0.5 % − 50 = 250 > margin balance 100: LP 60,150.75 is above the mark
    assert res.output.splitlines()[-1] == (
        "PAST LIQUIDATION: the BTCUSDT long is already liquidated at this mark: mark 60,000.00 "
        "is below its liquidation price 60,150.75 (margin ratio 250.00 % >= 100 %); the "
        "exchange would not let it open (add margin or reduce the size)")
    data = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert data["positions"][0]["past_liquidation"] is True
    healthy = CliRunner().invoke(main, [*args[:-1], "10000"])
    assert "PAST LIQUIDATION" not in healthy.output
