"""Data that is valid but damaged is never used silently: gaps, half a mark file, a bad tick,
funding ×100 are warned about in the terminal, the JSON and the report, or refused with
``--strict`` / ``backtest.strict_data``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from liqbt.cli import main
from liqbt.config import load_config
from liqbt.core.errors import ValidationError
from liqbt.data import load_candles, load_funding, save_candles, save_funding
from liqbt.data.quality import market_warnings
from liqbt.runner import run_config

REPO = Path(__file__).resolve().parents[1]
WINDOW = REPO / "datasets" / "2025-10"


def damaged(tmp_path: Path) -> Path:
    """Four days of real BTC 5m data with a 300-bar hole, a 1.0 USDT tick, a mark file
    covering half the candles and funding rates ×100; returns a hold config on it."""
    candles = load_candles(WINDOW / "BTCUSDT-5m.feather", end="2025-10-05")
    mark = load_candles(WINDOW / "BTCUSDT-1h-mark.feather", end="2025-10-03")
    funding = load_funding(WINDOW / "BTCUSDT-5m-funding_rate.feather", end="2025-10-05")
    candles.loc["2025-10-03 12:00", "low"] = 1.0  # a bad tick
    hole = candles.index[400:700]  # 300 bars
    candles = candles.drop(index=hole)
    funding["funding_rate"] *= 100
    save_candles(candles, tmp_path / "c.feather")
    save_candles(mark, tmp_path / "m.feather")
    save_funding(funding, tmp_path / "f.feather")
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent("""
        [account]
        exchange = "binance"
        balance = 1000
        [[market]]
        symbol = "BTCUSDT"
        candles = "c.feather"
        mark = "m.feather"
        funding = "f.feather"
        leverage = 2
        margin_mode = "isolated"
        [strategy]
        name = "hold"
        margin = 100
    """))
    return path


EXPECTED = [
    "BTCUSDT candles ({d}/c.feather): gap: 300 bar(s) missing from 2025-10-02T09:20:00+00:00",
    "BTCUSDT candles ({d}/c.feather): 2025-10-03T12:00:00+00:00 low 1 is ",
    "BTCUSDT mark ({d}/m.feather): covers 45.5% of the 852 candle bars",
    "BTCUSDT funding ({d}/f.feather): median |rate| ",
]


def check_lines(lines: list[str], d: Path) -> None:
    for want in EXPECTED:
        want = want.format(d=d)
        assert any(line.startswith(want) for line in lines), (want, lines)


def test_run_result_terminal_json_and_report_carry_the_warnings(tmp_path: Path) -> None:
    cfg = damaged(tmp_path)
    result = run_config(load_config(cfg), timeline=False)
    check_lines(result.data_warnings, tmp_path)
    assert len(result.data_warnings) == 4
    res = CliRunner().invoke(main, ["run", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    check_lines(json.loads(res.stdout)["data_warnings"], tmp_path)
    res = CliRunner().invoke(main, ["run", str(cfg), "--quiet", "--report",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 0
    check_lines([ln.removeprefix("data warning: ") for ln in res.stderr.splitlines()], tmp_path)
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Data warnings" in page and "300 bar(s) missing" in page


def test_strict_refuses_before_the_run(tmp_path: Path) -> None:
    cfg = damaged(tmp_path)
    res = CliRunner().invoke(main, ["run", str(cfg), "--strict", "--report",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 1
    assert "300 bar(s) missing" in res.output and "strict data checks" in res.output
    assert "Traceback" not in res.output and "final equity" not in res.output
    text = cfg.read_text().replace('[strategy]', '[backtest]\nstrict_data = true\n[strategy]')
    cfg.write_text(text)
    with pytest.raises(ValidationError, match=r"covers 45\.5%"):
        run_config(load_config(cfg))


def test_clean_real_windows_have_no_warnings() -> None:
    for name in ("grid.toml", "hold.toml", "dca.toml", "cross-vs-isolated.toml"):
        cfg = load_config(REPO / "configs" / name).with_overrides({"backtest.strict_data": True})
        assert cfg.backtest.strict_data
    # the bundled windows are contiguous, fully covered and tick-clean
    for sym in ("BTCUSDT", "ETHUSDT"):
        c = load_candles(WINDOW / f"{sym}-5m.feather")
        m = load_candles(WINDOW / f"{sym}-1h-mark.feather")
        f = load_funding(WINDOW / f"{sym}-5m-funding_rate.feather")
        assert market_warnings(sym, c, m, f, mark_fallback_bars=12) == []


def test_a_real_crash_is_not_an_outlier() -> None:
    c = load_candles(REPO / "datasets" / "2020-03" / "BTCUSDT-1h.feather")
    assert market_warnings("BTCUSDT", c) == []  # the −29 % hour moves its neighbours too
    spiked = c.copy()
    spiked.iloc[300, spiked.columns.get_loc("high")] = spiked["close"].iloc[300] * 100
    (line,) = market_warnings("BTCUSDT", spiked)
    assert "high" in line and "bad tick?" in line


def test_funding_gaps_and_big_rates() -> None:
    c = load_candles(WINDOW / "BTCUSDT-5m.feather")
    f = load_funding(WINDOW / "BTCUSDT-5m-funding_rate.feather")
    f2 = f.drop(index=f.index[10:20])
    f2.iloc[0, 0] = 0.03
    lines = market_warnings("BTCUSDT", c, None, f2)
    assert lines[0].endswith("expected ≈ 63 (one per 8h); 10 missing, funding is not charged "
                             "there")
    assert "rate 0.03 is above 0.02 per event" in lines[1]


def test_inspect_prints_bad_ticks_and_funding_warnings(tmp_path: Path) -> None:
    c = load_candles(REPO / "datasets" / "2020-03" / "BTCUSDT-1h.feather")
    c.iloc[100, c.columns.get_loc("low")] = 1.0
    save_candles(c, tmp_path / "tick.feather")
    res = CliRunner().invoke(main, ["data", "inspect", str(tmp_path / "tick.feather")])
    assert res.exit_code == 0
    assert res.output.splitlines()[-1] == (
        "warning:   2020-03-05T04:00:00+00:00 low 1 is 0.000112× the neighbouring closes "
        "(median 8914.76): bad tick?")
    f = load_funding(REPO / "datasets" / "2020-03" / "BTCUSDT-1h-funding_rate.feather")
    f["funding_rate"] *= 10
    save_funding(f, tmp_path / "x-funding_rate.feather")
    res = CliRunner().invoke(main, ["data", "inspect", str(tmp_path / "x-funding_rate.feather")])
    assert "rate -0.03 is above 0.02 per event" in res.output
