"""Binance profile covers every USDT-M perpetual from the bundled ccxt tier snapshot (loaded
lazily); ``calc import-tiers`` output loads as a profile without hand edits."""

from __future__ import annotations

import gzip
import json
import textwrap
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from liqbt.cli import main
from liqbt.config import load_config
from liqbt.core.ccxt_tiers import snapshot_from_ccxt
from liqbt.core.profile import load_profile, profile_from_dict

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "configs" / "exchanges" / "binance-usdm-tiers.json.gz"
SHARED = REPO.parent / "shared" / "data" / "freqtrade_freqtrade" / "binance_leverage_tiers.json"


def test_profile_loads_lazily_and_covers_every_usdt_perpetual() -> None:
    from liqbt.core import profile as profile_module

    profile_module._parsed_profile.cache_clear()  # a fresh parse (memoized per file content)
    profile = load_profile("binance")
    table = profile.symbols
    assert table._markets is None  # loading the profile did not read the snapshot
    assert profile.symbol("BTCUSDT").tiers_as_of == "2024-10"  # explicit table wins
    assert table._markets is None
    doge = profile.symbol("DOGE/USDT:USDT")
    assert table._markets is not None
    # DOGE/USDT:USDT 2024-10-24: 0–10k 0.5 % 75x, 10k–50k 0.7 % (cum 20) 50x
    assert [(t.floor, t.cap, t.mmr, t.max_leverage, t.maintenance_amount)
            for t in doge.tiers.tiers[:2]] == [(0, 10_000, 0.005, 75, 0),
                                               (10_000, 50_000, 0.007, 50, 20)]
    assert (doge.price_tick, doge.size_step, doge.min_notional) == (0.0, 0.0, 5.0)
    assert doge.tiers_as_of == "2024-10-24"
    names = list(table)
    assert len(names) == len(set(names)) == 318
    assert all(n.endswith("USDT") for n in names)
    for name in names:  # every table is valid (the recurrence of the given amounts holds)
        assert table[name].tiers.tiers[0].max_leverage >= 1


def test_snapshot_reproduces_from_the_ccxt_file() -> None:
    data = json.loads(gzip.decompress(SNAPSHOT.read_bytes()))
    assert set(data["BTC/USDT:USDT"][0]) == {"tier", "minNotional", "maxNotional",
                                             "maintenanceMarginRate", "maxLeverage", "info"}
    if SHARED.is_file():
        assert snapshot_from_ccxt(json.loads(SHARED.read_text())) == SNAPSHOT.read_bytes()


def test_any_binance_perpetual_runs_in_a_config(tmp_path: Path) -> None:
    path = tmp_path / "doge.toml"
    candles = REPO / "datasets" / "2020-03" / "BTCUSDT-1h.feather"
    path.write_text(textwrap.dedent(f"""
        [account]
        exchange = "binance"
        [[market]]
        symbol = "WIFUSDT"
        candles = "{candles.as_posix()}"
        leverage = 100
        [strategy]
        name = "hold"
    """))
    with pytest.raises(Exception, match=r"leverage = 100 is above 75, the tier maximum of "
                                        r"binance WIFUSDT"):
        load_config(path)
    path.write_text(path.read_text().replace("leverage = 100", "leverage = 20"))
    assert load_config(path).markets[0].symbol == "WIFUSDT"
    path.write_text(path.read_text().replace("WIFUSDT", "WIFUSDX"))
    with pytest.raises(Exception, match=r"318 symbols; closest: WIFUSDT"):
        load_config(path)


def test_import_tiers_output_loads_without_hand_edits(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["calc", "import-tiers", str(SNAPSHOT), "--symbol",
                                    "DOGEUSDT", "--symbol", "1000PEPE/USDT:USDT", "--as-of",
                                    "2024-10-24"])
    assert res.exit_code == 0, res.output
    assert "# price_tick = ?  (optional" in res.output
    header = ('name = "mine"\n[fees]\nmaker = 0.0002\ntaker = 0.0005\n'
              '[rules]\nlp_formula = "binance"\n\n')
    profile = profile_from_dict(tomllib.loads(header + res.output), source="mine.toml")
    assert sorted(profile.symbols) == ["1000PEPEUSDT", "DOGEUSDT"]
    doge = profile.symbol("DOGEUSDT")
    assert doge.min_notional == 5 and doge.price_tick == 0
    assert doge.tiers.tiers == load_profile("binance").symbol("DOGEUSDT").tiers.tiers
