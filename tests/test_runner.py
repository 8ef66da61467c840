"""Runner on a small synthetic crash: RunResult fields from broker events and trades."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from liqbt.config import load_config
from liqbt.data import save_candles
from liqbt.runner import max_drawdown_pct, run_config

# Buys once on the first bar (fills at the second bar's open): size = fraction × equity ×
# leverage / close, so margin = fraction × equity whatever the leverage.
STRATEGY = '''
import backtrader as bt


class BuyOnce(bt.Strategy):
    params = (("fraction", 0.5), ("side", "long"))

    def next(self):
        if len(self) == 1:
            symbol = self.broker.symbol_of(self.data)
            lev = self.broker.account.market(symbol).leverage
            size = round(self.broker.getvalue() * self.p.fraction * lev / self.data.close[0], 3)
            order = (self.buy if self.p.side == "long" else self.sell)(size=size)
            order.addinfo(reason="signal")
'''

# 10 flat bars at 50,000, a crash bar to a 40,000 low (close 45,000), 5 flat bars at 45,000.
CRASH_BARS = [(50_000.0,) * 4] * 10 + [(50_000.0, 50_000.0, 40_000.0, 45_000.0)] + [
    (45_000.0,) * 4
] * 5


def write_crash(directory: Path, bars=CRASH_BARS) -> Path:
    index = pd.date_range("2024-01-01", periods=len(bars), freq="5min", tz="UTC", name="date")
    frame = pd.DataFrame(bars, columns=["open", "high", "low", "close"], index=index)
    frame["volume"] = 1.0
    path = directory / "crash-5m.feather"
    save_candles(frame, path)
    return path


def write_config(directory: Path, leverage: float = 10, margin_mode: str = "isolated",
                 balance: float = 10_000, extra: str = "") -> Path:
    write_crash(directory)
    (directory / "strat.py").write_text(STRATEGY)
    path = directory / "run.toml"
    path.write_text(textwrap.dedent(f"""
        [account]
        exchange = "binance"
        balance = {balance}

        [[market]]
        symbol = "BTCUSDT"
        candles = "crash-5m.feather"
        leverage = {leverage}
        margin_mode = "{margin_mode}"

        [strategy]
        name = "strat.py:BuyOnce"
        fraction = 0.5
        {extra}
    """))
    return path


def test_isolated_long_liquidated_in_the_crash(tmp_path):
    cfg = load_config(write_config(tmp_path, leverage=10))
    result = run_config(cfg)
    # q = 0.5 × 10,000 × 10 / 50,000 = 1 BTC; LP = 50,000 × 0.9 / 0.996 (Binance, mmr 0.4 %)
    assert result.liquidation_count == 1
    liq = result.liquidations[0]
    assert liq["time"] == "2024-01-01T00:50:00Z"
    assert liq["symbol"] == "BTCUSDT" and liq["side"] == "long" and liq["size"] == 1.0
    assert liq["trigger_price"] == pytest.approx(50_000 * 0.9 / 0.996, abs=0.01)
    assert liq["settlement_price"] == pytest.approx(45_000.0)  # bankruptcy price
    assert liq["loss"] == pytest.approx(5_000.0)
    assert liq["partial"] is False
    fee = 50_000 * 0.0005
    assert result.fees_paid == pytest.approx(fee)
    assert result.final_equity == pytest.approx(10_000 - 5_000 - fee)
    assert result.return_pct == pytest.approx(-(5_000 + fee) / 10_000 * 100)
    assert result.insurance_fund_delta > 0
    assert result.funding_note == "no funding data"
    assert result.funding_by_symbol == {"BTCUSDT": 0.0}
    assert not result.wiped_out and result.wipeout_time is None
    trade = result.trades[0]
    assert trade["reason"] == "liquidation"
    assert trade["entry_time"] == "2024-01-01T00:05:00Z"
    assert trade["exit_time"] == "2024-01-01T00:50:00Z"
    assert trade["entry_price"] == 50_000 and trade["exit_price"] == pytest.approx(45_000)
    assert trade["pnl"] == pytest.approx(-5_000)
    assert result.max_drawdown_pct == pytest.approx((5_000 + fee) / 10_000 * 100, rel=1e-6)
    assert result.bars == len(CRASH_BARS)
    assert len(result.timeline["time"]) == len(CRASH_BARS)


def test_surviving_run_has_distance_and_no_liquidation(tmp_path):
    cfg = load_config(write_config(tmp_path, leverage=2))
    result = run_config(cfg, timeline=False)
    assert result.liquidation_count == 0 and result.liquidations == []
    # LP = 50,000 × 0.5 / 0.996 = 25,100.4; closest mark 40,000
    assert result.min_liquidation_distance_pct == pytest.approx(
        (40_000 - 25_000 / 0.996) / 40_000 * 100, abs=1e-3)
    assert result.trades[0]["exit_time"] is None  # still open at the end
    data = result.to_dict()
    assert "timeline" not in data and all(
        not isinstance(v, float) or math.isfinite(v) for v in data.values())


def test_max_drawdown():
    assert max_drawdown_pct([100, 120, 60, 130, 65]) == pytest.approx(50.0)
    assert max_drawdown_pct([]) == 0.0


CONFIGS = Path(__file__).parents[1] / "configs"

# every bundled config on its real window: the liquidation each config's comment documents
DOCUMENTED = {
    "grid.toml": (6048, [("2025-10-10T20:55:00Z", "BTCUSDT", "isolated", 113_113.05, 568.69)],
                  1054.29),
    "hold.toml": (744, [("2020-03-12T10:00:00Z", "BTCUSDT", "isolated", 5_785.09, 485.98)],
                  503.07),
    "dca.toml": (744, [("2021-05-13T00:00:00Z", "BTCUSDT", "isolated", 48_458.61, 176.31)],
                 875.10),
    "cross-vs-isolated.toml": (
        6048, [("2025-10-10T21:10:00Z", "ETHUSDT", "isolated", 3_755.42, 292.22)], 541.15),
}


def test_every_bundled_config_is_documented():
    assert sorted(p.name for p in CONFIGS.glob("*.toml")) == sorted(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_bundled_config_on_real_data(name):
    bars, liquidations, equity = DOCUMENTED[name]
    result = run_config(load_config(CONFIGS / name), timeline=False)
    assert result.bars == bars
    assert [(q["time"], q["symbol"], q["margin_mode"]) for q in result.liquidations] == [
        q[:3] for q in liquidations]
    for got, want in zip(result.liquidations, liquidations, strict=True):
        assert got["trigger_price"] == pytest.approx(want[3], abs=0.005)
        assert got["loss"] == pytest.approx(want[4], abs=0.005)
    assert result.final_equity == pytest.approx(equity, abs=0.005)
    assert result.funding_note == "" and result.funding_paid != 0
    assert not result.wiped_out
    stats = result.statistics
    assert stats.liquidations == len(liquidations) and stats.exit_reasons["liquidation"] == 1
    assert stats.max_drawdown_pct == result.max_drawdown_pct > 0
    assert stats.trades_closed + stats.trades_open == len(result.trades)


def test_grid_round_trips_are_its_matched_pairs():
    """The trade list agrees with the grid's pair accounting: every grid round trip is a
    pair closed one line above its buy (a gross win of quantity × gap), none a FIFO 'loss'."""
    result = run_config(load_config(CONFIGS / "grid.toml"), timeline=False)
    grid = [t for t in result.trades if t["reason"] == "grid"]
    # every closing grid fill is one of the bot's pairs (a launch sell that exceeded its
    # float-residue position by 3e-17 BTC once ended Partial/Canceled and lost its pair)
    assert result.bot["pairs"] == len(grid) == 28
    # FIFO matched these against the oldest (launch) lots and showed 7 of them as losses
    assert min(t["pnl"] for t in grid) > 0
    # a counter-order pair: 0.008 BTC × the 1,000 USDT line gap
    assert sum(1 for t in grid if t["pnl"] == pytest.approx(8.0)) == 16


def test_cross_vs_isolated_config_isolated_eth_dies_cross_btc_survives():
    result = run_config(load_config(CONFIGS / "cross-vs-isolated.toml"), timeline=False)
    assert [m["symbol"] for m in result.markets] == ["BTCUSDT", "ETHUSDT"]
    # the isolated position lost at most its own margin (300 USDT incl. the entry fee)
    assert result.liquidations[0]["loss"] <= 300
    still_open = {t["symbol"] for t in result.trades if t["exit_time"] is None}
    assert still_open == {"BTCUSDT"}
    assert set(result.funding_by_symbol) == {"BTCUSDT", "ETHUSDT"}


def test_synthetic_flash_crash_liquidates_20x_not_3x(synth_flash_crash, tmp_path):
    candles, mark, funding = synth_flash_crash
    results = {}
    for leverage in (3, 20):
        path = tmp_path / f"hold{leverage}.toml"
        path.write_text(textwrap.dedent(f"""
            [account]
            exchange = "binance"
            balance = 1000

            [[market]]
            symbol = "BTCUSDT"
            candles = "{candles.as_posix()}"
            mark = "{mark.as_posix()}"
            funding = "{funding.as_posix()}"
            leverage = {leverage}
            margin_mode = "isolated"

            [strategy]
            name = "hold"
            margin = 500
        """))
        results[leverage] = run_config(load_config(path), timeline=False)
    assert results[20].liquidation_count == 1 and results[3].liquidation_count == 0
    # isolated: the 20x long loses (almost) exactly its 500 margin, never more
    assert 480 < results[20].liquidations[0]["loss"] <= 500


def test_grid_take_profit_is_the_exit_reason_of_its_closing_trade():
    cfg = load_config(CONFIGS / "grid.toml").with_overrides({"strategy.take_profit": 125500})
    result = run_config(cfg, timeline=False)
    assert result.stopped_reason.startswith("take profit 125500 reached")
    assert result.trades[-1]["reason"] == "take_profit"
    assert result.statistics.exit_reasons == {"take_profit": 1, "grid": 16}
