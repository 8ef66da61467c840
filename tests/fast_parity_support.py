"""Shared helpers of the fast engine's parity tests (``tests/test_fast_*parity.py``).

Random bars and the data files written from them, run configs built from hypothesis draws,
the strategies those draws come from, and the comparison of both engines' results:
:func:`assert_parity` (fills, liquidations, top-ups, funding, fees, final equity to
:data:`REL` relative) and :func:`assert_dca_parity` (plus the DCA bot's own view). A failure
is a bug in one of the two engines: fix the wrong one, never the tolerance.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, reject, settings
from hypothesis import strategies as st

from liqbt.config import load_config
from liqbt.core.errors import ValidationError
from liqbt.core.profile import load_profile
from liqbt.data import save_candles, save_funding
from liqbt.fast import run_one, supports
from liqbt.runner import run_config

#: relative tolerance of every float both engines must agree on
REL = 1e-9
PROFILES = ("binance", "bybit", "okx", "bitget", "gate", "simple")
#: the profiles whose isolated positions may top up their margin automatically
TOP_UP = {"bybit", "bitget"}
#: the bundled example configs
CONFIGS = Path(__file__).parents[1] / "configs"


# --------------------------------------------------------------------------------------------
# data and configs
# --------------------------------------------------------------------------------------------

def random_bars(seed: int, n: int, start: float) -> pd.DataFrame:
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


def write_data(tmp: Path, seed: int, n: int, start: float, mark: bool,
               funding: bool) -> dict[str, Path]:
    """:func:`random_bars` saved as candles in ``tmp``, with a mark (the candles times a random
    premium) and funding every 8 bars when asked; the files by kind."""
    frame = random_bars(seed, n, start)
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


def toml_value(v: Any) -> str:
    """``v`` written as a TOML value (a dict as an inline table)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def config_toml(account: dict[str, Any], markets: Sequence[dict[str, Any]],
                strategy: dict[str, Any], backtest: dict[str, Any]) -> str:
    """A run config's TOML text (strategy keys set to ``None`` are left out)."""
    lines = ["[account]"] + [f"{k} = {toml_value(v)}" for k, v in account.items()]
    for m in markets:
        lines += ["[[market]]"] + [f"{k} = {toml_value(v)}" for k, v in m.items()]
    lines += ["[strategy]"] + [f"{k} = {toml_value(v)}" for k, v in strategy.items()
                               if v is not None]
    lines += ["[backtest]"] + [f"{k} = {toml_value(v)}" for k, v in backtest.items()]
    return textwrap.dedent("\n".join(lines)) + "\n"


def load_or_reject(path: Path, text: str) -> Any:
    """Write ``text`` to ``path`` and load it; a config the loader refuses (e.g. above the tier
    cap) runs in no engine, so the hypothesis example is rejected."""
    path.write_text(text)
    try:
        return load_config(path)
    except ValidationError:
        reject()


def make_config(tmp: Path, files: dict[str, Path], account: dict[str, Any],
                market: dict[str, Any], strategy: dict[str, Any], intrabar: str) -> Any:
    """One market of :func:`symbol_for` ``account`` on ``files`` (next to the config in ``tmp``),
    loaded from ``tmp/run.toml`` (or the example rejected)."""
    markets = [{"symbol": symbol_for(account), **{k: p.name for k, p in files.items()},
                **market}]
    return load_or_reject(tmp / "run.toml",
                          config_toml(account, markets, strategy, {"intrabar": intrabar}))


def symbol_for(account: dict[str, Any]) -> str:
    """The symbol traded on ``account``'s exchange (OKX's bundled profile: ETHUSDT)."""
    return "ETHUSDT" if account["exchange"] == "okx" else "BTCUSDT"


def start_price(account: dict[str, Any]) -> float:
    """The first price of the random walk, about :func:`symbol_for`'s price."""
    return 3_000.0 if account["exchange"] == "okx" else 50_000.0


def market_for(sc: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    """The market settings of scenario ``sc``: leverage capped at the first tier's, top-up
    only on an isolated market of a profile that has it."""
    top = sc["top_up"] and sc["margin_mode"] == "isolated" and account["exchange"] in TOP_UP
    tiers = load_profile(account["exchange"]).symbol(symbol_for(account)).tiers
    cap = tiers.tiers[0].max_leverage
    return {"leverage": min(sc["leverage"], cap), "margin_mode": sc["margin_mode"],
            "auto_top_up": top}


def grid_bounds(start: float, width: float, offset: float) -> tuple[float, float]:
    """A grid's (lower, upper), rounded to 0.1: ``width`` wide (a fraction of its middle)
    around ``start`` moved by ``offset`` widths."""
    mid = start * (1 + offset * width)
    return round(mid * (1 - width / 2), 1), round(mid * (1 + width / 2), 1)


def scenario_config(tmp: Path, sc: dict[str, Any], account: dict[str, Any],
                    strategy: dict[str, Any]) -> Any:
    """``strategy`` on ``account`` over the data of scenario ``sc`` (a draw of
    :func:`scenarios`) written to ``tmp``: the loaded config (or the example rejected)."""
    files = write_data(tmp, sc["seed"], sc["bars"], start_price(account), sc["mark"],
                       sc["funding"])
    return make_config(tmp, files, account, market_for(sc, account), strategy, sc["intrabar"])


# --------------------------------------------------------------------------------------------
# hypothesis strategies and settings
# --------------------------------------------------------------------------------------------

ACCOUNTS = st.fixed_dictionaries({
    "exchange": st.sampled_from(PROFILES),
    "balance": st.sampled_from([300.0, 1000.0, 5000.0]),
    "settlement": st.sampled_from(["bankruptcy", "liquidation_price"]),
    "debit": st.booleans(),
})
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


_ISOLATED = st.just("isolated")
_EITHER = st.booleans()


def scenarios(bars: tuple[int, int] = (20, 90),
              leverage: Sequence[int] = (1, 2, 3, 5, 10, 20, 50, 100),
              margin_mode: st.SearchStrategy[str] = _ISOLATED,
              top_up: st.SearchStrategy[bool] = _EITHER) -> st.SearchStrategy[dict[str, Any]]:
    """Scenarios for :func:`scenario_config`: the random walk (seed, bar count between
    ``bars``, mark, funding), the market (``leverage``, ``margin_mode``, ``top_up``) and the
    intrabar mode."""
    return st.fixed_dictionaries({
        "seed": st.integers(0, 2**31 - 1),
        "bars": st.integers(*bars),
        "mark": st.booleans(),
        "funding": st.booleans(),
        "leverage": st.sampled_from(list(leverage)),
        "margin_mode": margin_mode,
        "top_up": top_up,
        "intrabar": st.sampled_from(["heuristic", "pessimistic", "optimistic"]),
    })


def _above_zero(ladder: dict[str, Any]) -> dict[str, Any]:
    """A long ladder must stay above zero (the loader refuses it): fewer safety orders."""
    ladder = dict(ladder)
    while ladder["direction"] == "long" and ladder["max_safety_orders"] and sum(
            ladder["price_deviation"] * ladder["step_scale"] ** i
            for i in range(ladder["max_safety_orders"])) >= 90:
        ladder["max_safety_orders"] -= 1
    return ladder


#: DCA ladders (a long one's safety orders cut to stay above zero)
LADDER = st.fixed_dictionaries({
    "direction": st.sampled_from(["long", "short"]),
    "base_order": st.sampled_from([150.0, 300.0, 600.0, 1200.0]),
    "safety_order": st.sampled_from([20.0, 60.0, 150.0, 400.0]),
    "max_safety_orders": st.integers(0, 6),
    "price_deviation": st.sampled_from([0.1, 0.3, 0.6, 1.5, 3.0]),
    "step_scale": st.sampled_from([0.5, 1.0, 1.5, 2.0]),
    "volume_scale": st.sampled_from([0.5, 1.0, 1.5, 2.5]),
    "take_profit": st.sampled_from([0.3, 0.8, 2.0]),
    "stop_loss": st.sampled_from([None, None, 2.0, 5.0, 15.0]),
    "cooldown": st.sampled_from([0, 0, 1, 5]),
    "max_cycles": st.sampled_from([0, 0, 1, 3]),
}).map(_above_zero)
#: DCA entry filters
FILTER = st.one_of(
    st.just({"entry_filter": "none"}),
    st.fixed_dictionaries({"entry_filter": st.just("rsi"),
                           "rsi_period": st.sampled_from([3, 5, 14]),
                           "rsi_below": st.sampled_from([30.0, 45.0, 60.0])}),
    st.fixed_dictionaries({"entry_filter": st.just("bollinger"),
                           "bb_period": st.sampled_from([3, 5, 20]),
                           "bb_dev": st.sampled_from([0.5, 1.0, 2.0])}),
)


# --------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------

def near(a: float | None, b: float | None) -> bool:
    """``a`` and ``b`` agree to :data:`REL` relative (absolute below 1); ``None`` and NaN
    only match themselves."""
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b or abs(a - b) <= REL * max(abs(a), abs(b), 1.0)


def assert_same_values(fast: dict[str, Any], slow: dict[str, Any]) -> None:
    """Every value of ``slow`` in ``fast``: floats :func:`near`, the rest equal."""
    for key, value in slow.items():
        if isinstance(value, float):
            assert near(fast[key], value), (key, fast[key], value)
        else:
            assert fast[key] == value, (key, fast[key], value)


def assert_parity(config: Any) -> tuple[Any, Any]:
    """Run both engines and compare everything the contract names; returns both results."""
    assert supports(config) is None, supports(config)
    fast = run_one(config)
    slow = run_config(config, timeline=False)
    assert fast.engine == "fast" and slow.engine == "backtrader"
    assert len(fast.fills) == len(slow.fills), (fast.fills[-3:], slow.fills[-3:])
    for f, s in zip(fast.fills, slow.fills, strict=True):
        assert f["time"] == s["time"] and f["liquidation"] == s["liquidation"], (f, s)
        assert near(f["size"], s["size"]) and near(f["price"], s["price"]), (f, s)
    assert len(fast.liquidations) == len(slow.liquidations)
    for f, s in zip(fast.liquidations, slow.liquidations, strict=True):
        for key in ("time", "side", "partial", "margin_mode"):
            assert f[key] == s[key], (key, f, s)
        for key in ("size", "trigger_price", "settlement_price", "loss",
                    "insurance_fund_delta"):
            assert near(f[key], s[key]), (key, f, s)
    assert len(fast.top_ups) == len(slow.top_ups)
    for f, s in zip(fast.top_ups, slow.top_ups, strict=True):
        assert f["time"] == s["time"] and near(f["amount"], s["amount"]), (f, s)
        assert near(f["liquidation_price_after"], s["liquidation_price_after"])
    assert_same_values(fast.summary(), slow.summary())
    assert near(fast.insurance_fund_delta, slow.insurance_fund_delta)
    assert fast.funding_by_symbol.keys() == slow.funding_by_symbol.keys()
    assert fast.rejected_orders == slow.rejected_orders
    assert fast.bars == slow.bars and fast.start == slow.start and fast.end == slow.end
    return fast, slow


#: the DCA bot's counters both engines must agree on
DCA_VIEW = ("cycles", "cycle_pnl", "refused_orders", "finished", "position", "unrealized_pnl",
            "realized_pnl", "fees", "equity")


def assert_dca_parity(config: Any) -> tuple[Any, Any]:
    """:func:`assert_parity` plus the DCA bot's counters and deals; returns both results."""
    fast, slow = assert_parity(config)
    for key in DCA_VIEW:
        assert near(fast.bot[key], slow.bot[key]), (key, fast.bot[key], slow.bot[key])
    assert len(fast.bot["deals"]) == len(slow.bot["deals"]), (fast.bot["deals"],
                                                              slow.bot["deals"])
    for f, s in zip(fast.bot["deals"], slow.bot["deals"], strict=True):
        assert f.keys() == s.keys()
        assert_same_values(f, s)
    return fast, slow
