"""Parity of the fast engine with MarginBroker on several symbols of one account (issue 12).

Two or three symbols held on one wallet, each cross or isolated: the cross legs share the
wallet and are walked together on one clock (margin-model §8, the joint walk of issue 11), the
cross plan closes them in the profile's ``cross_liquidation_order`` with the balance shared by
MM (margin-model §9). Random walks (perfectly correlated or independent, with gaps, crashes
and squeezes), random margin modes, leverages, profile rules and intrabar modes; plus the
bundled real-data reproduction of issue 11 (BTCUSDT + ETHUSDT through 2025-10-10, cross 20x).
Everything :func:`fast_parity_support.assert_parity` compares must agree to 1e-9 relative, and
each fill and liquidation's symbol.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from fast_parity_support import (
    CONFIGS,
    SETTINGS,
    assert_parity,
    config_toml,
    load_or_reject,
    write_data,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st

from liqbt.config import load_config
from liqbt.fast import supports

pytest.importorskip("numba")

ROOT = Path(__file__).parents[1]
DATA = ROOT / "datasets" / "2025-10"
START = {"BTCUSDT": 50_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 150.0}


def _check(config: Any) -> tuple[Any, Any]:
    fast, slow = assert_parity(config)
    assert [f["symbol"] for f in fast.fills] == [s["symbol"] for s in slow.fills]
    assert [f["symbol"] for f in fast.liquidations] == [s["symbol"] for s in slow.liquidations]
    assert fast.funding_by_symbol == pytest.approx(slow.funding_by_symbol, rel=1e-9, abs=1e-12)
    assert fast.stopped_reason == slow.stopped_reason
    assert fast.stopped_time == slow.stopped_time
    return fast, slow


ACCOUNT = st.fixed_dictionaries({
    "exchange": st.sampled_from(["binance", "binance", "simple"]),
    "balance": st.sampled_from([300.0, 1000.0, 5000.0]),
    "settlement": st.sampled_from(["bankruptcy", "liquidation_price"]),
    "debit": st.booleans(),
})
RULES = st.fixed_dictionaries({
    "cross_liquidation_order": st.sampled_from(["largest_loss", "largest_maintenance_margin"]),
    "partial_liquidation_tiers": st.sampled_from([0, 1, 2]),
    "lp_formula": st.sampled_from(["binance", "taker_at_mark", "bybit"]),
    "auto_top_up": st.booleans(),
})
MARKET = st.fixed_dictionaries({
    "leverage": st.sampled_from([5, 10, 20, 50]),
    "margin_mode": st.sampled_from(["cross", "cross", "isolated"]),
    "top_up": st.booleans(),
})


@settings(SETTINGS, max_examples=150)
@given(account=ACCOUNT, rules=RULES, data=st.data(), seed=st.integers(0, 2**31 - 1),
       bars=st.integers(20, 80), together=st.booleans(), mark=st.booleans(),
       funding=st.booleans(), direction=st.sampled_from(["long", "short"]),
       intrabar=st.sampled_from(["heuristic", "pessimistic", "optimistic"]))
def test_multi_hold_parity(tmp_path_factory, account, rules, data, seed, bars, together, mark,
                           funding, direction, intrabar):
    """Several symbols held on one wallet: cross legs liquidated together at the first joint
    breach, isolated legs on their own LP, in one walk."""
    tmp = tmp_path_factory.mktemp("multi")
    account = dict(account)
    if account["exchange"] == "binance":
        account.update(rules)
        symbols = data.draw(st.sampled_from([["BTCUSDT", "ETHUSDT"], ["ETHUSDT", "BTCUSDT"],
                                             ["SOLUSDT", "BTCUSDT", "ETHUSDT"]]))
    else:
        symbols = data.draw(st.sampled_from([["BTCUSDT", "ETHUSDT"], ["ETHUSDT", "BTCUSDT"]]))
    markets = []
    for k, symbol in enumerate(symbols):
        sub = tmp / symbol
        sub.mkdir()
        files = write_data(sub, seed if together else seed + k, bars, START[symbol], mark, funding)
        m = data.draw(MARKET)
        top = m.pop("top_up") and m["margin_mode"] == "isolated" and account.get("auto_top_up")
        markets.append({"symbol": symbol, **{key: str(p) for key, p in files.items()},
                        **m, "auto_top_up": bool(top)})
    margin = data.draw(st.sampled_from(["none", "number", "table"]))
    strategy: dict[str, Any] = {"name": "hold", "direction": direction}
    if margin == "number":
        strategy["margin"] = 0.6 * account["balance"]
    elif margin == "table":
        strategy["margin"] = {s: round(account["balance"] * (0.15 + 0.1 * k), 2)
                              for k, s in enumerate(symbols)}
    cfg = load_or_reject(tmp / "run.toml",
                         config_toml(account, markets, strategy, {"intrabar": intrabar}))
    fast, _ = _check(cfg)
    modes = {m["margin_mode"] for m in markets}
    kinds = sorted({("partial " if e["partial"] else "") + e["margin_mode"]
                    for e in fast.liquidations})
    event(f"{'/'.join(sorted(modes))}: liquidated " + ("/".join(kinds) or "no"))


def _real(tmp: Path, margin: float, order: tuple[str, str], mode: str = "cross",
          intrabar: str = "heuristic") -> Any:
    markets = [{"symbol": s, "candles": str(DATA / f"{s}-5m.feather"),
                "mark": str(DATA / f"{s}-1h-mark.feather"),
                "funding": str(DATA / f"{s}-5m-funding_rate.feather"),
                "leverage": 20, "margin_mode": mode} for s in order]
    path = tmp / f"real-{margin}-{order[0]}-{mode}-{intrabar}.toml"
    path.write_text(config_toml(
        {"exchange": "binance", "balance": 1000.0}, markets,
        {"name": "hold", "direction": "long", "margin": {s: margin for s in order}},
        {"start": "2025-10-10 12:00", "end": "2025-10-11 00:00", "intrabar": intrabar}))
    return load_config(path)


@pytest.mark.skipif(not DATA.is_dir(), reason="bundled datasets/2025-10 absent")
@pytest.mark.parametrize(("margin", "bar"), [(135.0, "2025-10-10T21:20:00Z"),
                                             (137.0, "2025-10-10T21:15:00Z")])
def test_issue11_reproduction_parity(tmp_path, margin, bar):
    """Issue 11 on real Binance data: BTCUSDT + ETHUSDT longs, cross 20x, 135 or 137 USDT per
    symbol (the joint 21:20 lows, or already 21:15, breach maintenance), in either market
    order; both engines liquidate both legs in the same bar at the same marks."""
    for order in (("BTCUSDT", "ETHUSDT"), ("ETHUSDT", "BTCUSDT")):
        fast, _ = _check(_real(tmp_path, margin, order))
        assert {e["symbol"] for e in fast.liquidations} == {"BTCUSDT", "ETHUSDT"}
        assert {e["time"] for e in fast.liquidations} == {bar}
        assert fast.final_equity == 0.0


@pytest.mark.skipif(not DATA.is_dir(), reason="bundled datasets/2025-10 absent")
def test_real_mixed_and_bundled_pair_parity(tmp_path):
    """The bundled cross-vs-isolated config (BTC cross, ETH isolated: ETH liquidated at 21:10)
    and the issue 11 pair isolated and under the pessimistic path."""
    pair = load_config(CONFIGS / "cross-vs-isolated.toml")
    fast, _ = _check(pair)
    assert [(e["symbol"], e["time"]) for e in fast.liquidations] == [
        ("ETHUSDT", "2025-10-10T21:10:00Z")]
    _check(pair.with_overrides({"margin_mode": "cross", "leverage": 20}))
    _check(_real(tmp_path, 135.0, ("BTCUSDT", "ETHUSDT"), mode="isolated"))
    _check(_real(tmp_path, 160.0, ("ETHUSDT", "BTCUSDT"), intrabar="pessimistic"))


def test_multi_supports():
    pair = load_config(CONFIGS / "cross-vs-isolated.toml")
    assert supports(pair) is None
    grid = load_config(CONFIGS / "grid.toml")
    several = dataclasses.replace(grid, markets=pair.markets)
    assert "hold bot only" in supports(several)


@pytest.mark.skipif(not DATA.is_dir(), reason="bundled datasets/2025-10 absent")
def test_symbols_on_different_clocks_run_on_backtrader(tmp_path):
    """ETH's 5m bars with a gap of an hour: the symbols do not share one clock, so the fast
    engine hands the config to the backtrader engine, whose result says so."""
    from liqbt.data import load_candles, save_candles
    from liqbt.fast import run_batch, run_one

    eth = load_candles(DATA / "ETHUSDT-5m.feather", start="2025-10-10 12:00",
                       end="2025-10-11 00:00")
    save_candles(eth.drop(eth.index[30:42]), tmp_path / "eth.feather")
    markets = [{"symbol": "BTCUSDT", "candles": str(DATA / "BTCUSDT-5m.feather"),
                "leverage": 10, "margin_mode": "cross"},
               {"symbol": "ETHUSDT", "candles": str(tmp_path / "eth.feather"),
                "leverage": 10, "margin_mode": "cross"}]
    path = tmp_path / "gap.toml"
    path.write_text(config_toml({"exchange": "binance", "balance": 1000.0}, markets,
                          {"name": "hold", "direction": "long"},
                          {"start": "2025-10-10 12:00", "end": "2025-10-11 00:00"}))
    cfg = load_config(path)
    assert supports(cfg) is None
    result = run_one(cfg)
    assert result.engine == "backtrader" and result.bars == 144
    (batch,) = run_batch([cfg])
    assert batch.engine == "backtrader" and batch.final_equity == result.final_equity
