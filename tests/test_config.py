"""Run-config validation: every problem reported at once, naming field and value."""

from __future__ import annotations

import os
import textwrap

import pytest
from test_runner import write_config

from liqbt.config import load_config, parse_value
from liqbt.core.errors import ValidationError


def test_valid_config_normalizes_paths_and_params(tmp_path):
    cfg = load_config(write_config(tmp_path, leverage=10, extra="side = 'long'"))
    market = cfg.markets[0]
    assert market.candles == (tmp_path / "crash-5m.feather").resolve()
    assert cfg.strategy.kwargs == {"fraction": 0.5, "side": "long"}
    assert cfg.label() == "isolated 10x"


def test_every_error_at_once(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent("""
        [account]
        exchange = "binance"
        balance = -5
        position_mode = "both"
        taker_fees = 0.001

        [[market]]
        symbol = "BTCUSDT"
        candles = "missing.feather"
        leverage = 500
        margin_mode = "crossed"

        [strategy]
        name = "hold"
        colour = "red"

        [backtest]
        intrabar = "random"
        start = "2024-03-10"
        end = "2024-03-01"
    """))
    with pytest.raises(ValidationError) as info:
        load_config(path)
    text = str(info.value)
    for needle in ("account.balance = -5", "account.position_mode = 'both'",
                   "account.taker_fees", "missing.feather", "leverage = 500",
                   "margin_mode = 'crossed'", "strategy.colour = 'red'",
                   "backtest.intrabar = 'random'", "backtest.end"):
        assert needle in text, needle
    assert len(info.value.problems) >= 9


def test_unknown_symbol_and_top_up(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text().replace('"BTCUSDT"', '"DOGEUSDT"')
    path.write_text(text.replace('margin_mode = "isolated"',
                                 'margin_mode = "cross"\nauto_top_up = true'))
    with pytest.raises(ValidationError) as info:
        load_config(path)
    assert "DOGEUSDT" in str(info.value)
    assert "auto_top_up" in str(info.value)


def test_with_overrides_and_hash(tmp_path):
    cfg = load_config(write_config(tmp_path, leverage=10))
    other = cfg.with_overrides({"leverage": 3, "margin_mode": "cross", "strategy.fraction": 0.2})
    assert other.leverage == 3 and other.margin_mode == "cross"
    assert other.strategy.kwargs["fraction"] == 0.2
    assert cfg.leverage == 10  # frozen: the original is unchanged
    assert cfg.config_hash() == load_config(tmp_path / "run.toml").config_hash()
    assert cfg.config_hash() != other.config_hash()
    assert cfg.with_overrides({"leverage": 10}).config_hash() == cfg.config_hash()
    with pytest.raises(ValidationError, match=r"strategy\.nonsense"):
        cfg.with_overrides({"strategy.nonsense": 1})
    with pytest.raises(ValidationError, match="leverage = 0"):
        cfg.with_overrides({"leverage": 0})
    # touching a data file changes the hash (stale cache entries are not reused)
    data = tmp_path / "crash-5m.feather"
    before = cfg.config_hash()
    os.utime(data, ns=(1, 1))
    assert cfg.config_hash() != before


def test_parse_value():
    assert parse_value("10") == 10 and parse_value("2.5") == 2.5
    assert parse_value("true") is True and parse_value("cross") == "cross"
