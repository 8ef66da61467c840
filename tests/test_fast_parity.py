"""Parity: the fast engine (liqbt.fast) and MarginBroker give the same run, fill by fill.

Random bars (walks with gaps, crashes and squeezes; a mark with a premium; funding every few
bars) and random bot, leverage, margin mode, profile, settlement and intrabar settings go
through both engines; fills (bar, price, size), liquidations (bar, trigger, settlement, loss),
top-ups, funding, fees and final equity must agree to 1e-9 relative. A failure is a bug in one
of the two engines: fix the wrong one, never the tolerance.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from liqbt.config import load_config
from liqbt.core.errors import ValidationError
from liqbt.core.profile import load_profile
from liqbt.data import save_candles, save_funding
from liqbt.fast import run_one, supports
from liqbt.runner import run_config

pytest.importorskip("numba")

REL = 1e-9
PROFILES = ("binance", "bybit", "okx", "bitget", "gate", "simple")
TOP_UP = {"bybit", "bitget"}


def _bars(seed: int, n: int, start: float) -> pd.DataFrame:
    """A random walk with gaps, a crash and a squeeze (OHLC consistent)."""
    rng = np.random.default_rng(seed)
    ret = rng.normal(0, 0.006, n)
    shock = rng.integers(0, n)
    ret[shock] += rng.choice([-1, 1]) * rng.uniform(0.03, 0.15)
    close = start * np.exp(np.cumsum(ret))
    gaps = rng.random(n) < 0.08
    opens = np.empty(n)
    opens[0] = start
    opens[1:] = close[:-1] * np.where(gaps[1:], np.exp(rng.normal(0, 0.02, n - 1)), 1.0)
    wick = np.abs(rng.normal(0, 0.004, (2, n)))
    high = np.maximum(opens, close) * (1 + wick[0])
    low = np.minimum(opens, close) * (1 - wick[1])
    index = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC", name="date")
    frame = pd.DataFrame({"open": opens, "high": high, "low": low, "close": close,
                          "volume": 1.0}, index=index)
    return frame.round(1)


def _write(tmp: Path, seed: int, n: int, start: float, mark: bool, funding: bool) -> dict:
    frame = _bars(seed, n, start)
    files = {"candles": tmp / "c.feather"}
    save_candles(frame, files["candles"])
    if mark:
        rng = np.random.default_rng(seed + 1)
        premium = 1 + rng.normal(0, 0.0015, n)
        m = frame.copy()
        for col in ("open", "high", "low", "close"):
            m[col] = (frame[col] * premium).round(2)
        m["high"] = m[["open", "high", "low", "close"]].max(axis=1)
        m["low"] = m[["open", "high", "low", "close"]].min(axis=1)
        files["mark"] = tmp / "m.feather"
        save_candles(m, files["mark"])
    if funding:
        rng = np.random.default_rng(seed + 2)
        idx = frame.index[::8]
        f = pd.DataFrame({"funding_rate": rng.normal(0.0001, 0.0005, len(idx))}, index=idx)
        files["funding"] = tmp / "f.feather"
        save_funding(f, files["funding"])
    return files


def _config(tmp: Path, files: dict, account: dict, market: dict, strategy: dict,
            intrabar: str) -> Any:
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        return repr(v)

    lines = ["[account]"] + [f"{k} = {val(v)}" for k, v in account.items()]
    lines += ["[[market]]", f'symbol = "{_symbol(account)}"']
    lines += [f'{k} = "{p.name}"' for k, p in files.items()]
    lines += [f"{k} = {val(v)}" for k, v in market.items()]
    lines += ["[strategy]"] + [f"{k} = {val(v)}" for k, v in strategy.items() if v is not None]
    lines += ["[backtest]", f'intrabar = "{intrabar}"']
    path = tmp / "run.toml"
    path.write_text(textwrap.dedent("\n".join(lines)) + "\n")
    try:
        return load_config(path)
    except ValidationError:
        reject()  # a config the loader refuses (e.g. above the tier cap) runs in no engine


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b or abs(a - b) <= REL * max(abs(a), abs(b), 1.0)


def assert_parity(config: Any) -> tuple[Any, Any]:
    """Run both engines and compare everything the contract names; returns both results."""
    assert supports(config) is None, supports(config)
    fast = run_one(config)
    slow = run_config(config, timeline=False)
    assert fast.engine == "fast" and slow.engine == "backtrader"
    assert len(fast.fills) == len(slow.fills), (fast.fills[-3:], slow.fills[-3:])
    for f, s in zip(fast.fills, slow.fills, strict=True):
        assert f["time"] == s["time"] and f["liquidation"] == s["liquidation"], (f, s)
        assert _close(f["size"], s["size"]) and _close(f["price"], s["price"]), (f, s)
    assert len(fast.liquidations) == len(slow.liquidations)
    for f, s in zip(fast.liquidations, slow.liquidations, strict=True):
        for key in ("time", "side", "partial", "margin_mode"):
            assert f[key] == s[key], (key, f, s)
        for key in ("size", "trigger_price", "settlement_price", "loss",
                    "insurance_fund_delta"):
            assert _close(f[key], s[key]), (key, f, s)
    assert len(fast.top_ups) == len(slow.top_ups)
    for f, s in zip(fast.top_ups, slow.top_ups, strict=True):
        assert f["time"] == s["time"] and _close(f["amount"], s["amount"]), (f, s)
        assert _close(f["liquidation_price_after"], s["liquidation_price_after"])
    fs, ss = fast.summary(), slow.summary()
    for key, value in ss.items():
        if isinstance(value, float):
            assert _close(fs[key], value), (key, fs[key], value)
        else:
            assert fs[key] == value, (key, fs[key], value)
    assert _close(fast.insurance_fund_delta, slow.insurance_fund_delta)
    assert fast.funding_by_symbol.keys() == slow.funding_by_symbol.keys()
    assert fast.rejected_orders == slow.rejected_orders
    assert fast.bars == slow.bars and fast.start == slow.start and fast.end == slow.end
    return fast, slow


ACCOUNTS = st.fixed_dictionaries({
    "exchange": st.sampled_from(PROFILES),
    "balance": st.sampled_from([300.0, 1000.0, 5000.0]),
    "settlement": st.sampled_from(["bankruptcy", "liquidation_price"]),
    "debit": st.booleans(),
})
SCENARIO = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31 - 1),
    "bars": st.integers(20, 90),
    "mark": st.booleans(),
    "funding": st.booleans(),
    "leverage": st.sampled_from([1, 2, 3, 5, 10, 20, 50, 100]),
    "margin_mode": st.just("isolated"),
    "top_up": st.booleans(),
    "intrabar": st.sampled_from(["heuristic", "pessimistic", "optimistic"]),
})
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _symbol(account: dict) -> str:
    return "ETHUSDT" if account["exchange"] == "okx" else "BTCUSDT"


def _start(account: dict) -> float:
    return 3_000.0 if account["exchange"] == "okx" else 50_000.0


def _market(sc: dict, account: dict) -> dict:
    top = sc["top_up"] and sc["margin_mode"] == "isolated" and account["exchange"] in TOP_UP
    cap = load_profile(account["exchange"]).symbol(_symbol(account)).tiers.tiers[0].max_leverage
    return {"leverage": min(sc["leverage"], cap), "margin_mode": sc["margin_mode"],
            "auto_top_up": top}


@SETTINGS
@given(sc=SCENARIO, account=ACCOUNTS, direction=st.sampled_from(["long", "short"]),
       margin=st.sampled_from([None, 100.0, 250.0]))
def test_hold_parity(tmp_path_factory, sc, account, direction, margin):
    tmp = tmp_path_factory.mktemp("hold")
    files = _write(tmp, sc["seed"], sc["bars"], _start(account), sc["mark"], sc["funding"])
    cfg = _config(tmp, files, account, _market(sc, account),
                  {"name": "hold", "direction": direction, "margin": margin}, sc["intrabar"])
    assert_parity(cfg)


GRID_SETTINGS = settings(SETTINGS, max_examples=150)


@GRID_SETTINGS
@given(sc=SCENARIO, account=ACCOUNTS, data=st.data(),
       direction=st.sampled_from(["long", "short", "neutral"]),
       spacing=st.sampled_from(["arithmetic", "geometric"]), grids=st.integers(2, 12),
       width=st.floats(0.02, 0.2), offset=st.floats(-0.6, 0.6),
       investment=st.sampled_from([None, 100.0, 250.0]))
def test_grid_parity(tmp_path_factory, sc, account, data, direction, spacing, grids, width,
                     offset, investment):
    """Grids around (or off) the start price: counter-orders, refused lines retried,
    reduce-only closes cancelled on a flat leg and placed again, trigger, stop, take-profit,
    out-of-range, liquidations."""
    tmp = tmp_path_factory.mktemp("grid")
    start = _start(account)
    files = _write(tmp, sc["seed"], sc["bars"], start, sc["mark"], sc["funding"])
    mid = start * (1 + offset * width)
    lower, upper = round(mid * (1 - width / 2), 1), round(mid * (1 + width / 2), 1)
    pick = data.draw(st.fixed_dictionaries({
        "trigger_price": st.sampled_from([None, round(start * 0.99, 1), round(start * 1.01, 1)]),
        "stop_loss": st.sampled_from([None, round(lower * 0.97, 1)]),
        "take_profit": st.sampled_from([None, round(upper * 1.03, 1)]),
        "out_of_range": st.sampled_from(["stay", "stop"]),
        "leverage": st.sampled_from([None, 2.0, 5.0]),
        "quantity_rule": st.sampled_from(["levels", "reference"]),
    }))
    if direction == "short" and pick["stop_loss"] is not None:
        pick["stop_loss"] = round(upper * 1.03, 1)
        pick["take_profit"] = None if pick["take_profit"] is None else round(lower * 0.97, 1)
    strategy = {"name": "grid", "direction": direction, "lower": lower, "upper": upper,
                "grids": grids, "spacing": spacing, "investment": investment, **pick}
    cfg = _config(tmp, files, account, _market(sc, account), strategy, sc["intrabar"])
    assert_parity(cfg)


def test_bundled_configs_parity():
    """The bundled example configs over the bundled 4-week dataset (real BTCUSDT bars)."""
    root = Path(__file__).parents[1] / "configs"
    for name, overrides in [
        ("hold.toml", {}), ("hold.toml", {"leverage": 20}),
        ("hold.toml", {"leverage": 50, "intrabar": "pessimistic"}),
        ("hold.toml", {"leverage": 75, "settlement": "liquidation_price"}),
        ("grid.toml", {}), ("grid.toml", {"leverage": 5}),
        ("grid.toml", {"leverage": 10, "intrabar": "pessimistic"}),
    ]:
        assert_parity(load_config(root / name).with_overrides(overrides))


def test_grid_refused_lines_parity():
    """The bundled grid sized at 8x on a 5x market: its opening lines are refused for margin
    again and again and retried on later bars (the grid keeps trading); sized at 10x on a 3x
    market the launch market order itself is refused and the bot stops. Both engines agree,
    down to the bot's own counters."""
    root = Path(__file__).parents[1] / "configs"
    grid = load_config(root / "grid.toml")
    retried = grid.with_overrides({"leverage": 5, "strategy.leverage": 8})
    assert_parity(retried)
    fast, slow = run_one(retried), run_config(retried, timeline=False)
    assert fast.stopped_kind is None and fast.rejected_orders > 100
    for key in ("refused_orders", "missing_lines", "pairs", "grid_profit"):
        assert fast.bot[key] == slow.bot[key], key
    assert fast.bot["refused_orders"] == fast.rejected_orders and fast.bot["pairs"] > 0
    refused = grid.with_overrides({"leverage": 3, "strategy.leverage": 10})
    assert_parity(refused)
    assert run_one(refused).stopped_kind == "order_refused"


def test_supports_refuses_with_reasons():
    root = Path(__file__).parents[1] / "configs"
    hold = load_config(root / "hold.toml").with_overrides({"margin_mode": "isolated"})
    assert supports(hold) is None
    assert supports(hold.with_overrides({"margin_mode": "cross"})) is None
    assert supports(load_config(root / "grid.toml")) is None
    pair = load_config(root / "cross-vs-isolated.toml")
    assert supports(pair) is None  # the hold bot on several markets
    hedge = hold.with_overrides({"position_mode": "hedge"})
    assert supports(hedge) is None  # one leg per symbol: books as one-way
    neutral = load_config(root / "grid.toml").with_overrides(
        {"position_mode": "hedge", "strategy.direction": "neutral"})
    assert "hedge" in supports(neutral)
