"""Parity of the DCA bot: the fast engine (liqbt.fast.dca) and MarginBroker, fill by fill.

Random walks with gaps, a crash or a squeeze (:func:`fast_parity_support.random_bars`),
random ladders (deviation, step and volume scales, safety order count and size, some below
the exchange minimum so they are refused and retried), take profit, stop loss, cooldown, max
cycles, both directions, the RSI and Bollinger entry filters, every profile, leverages,
settlements, auto top-up and the three intrabar modes. Besides everything
:func:`fast_parity_support.assert_parity` compares (fills, liquidations, top-ups, funding,
fees, final equity to 1e-9 relative), the bot's own view must agree: cycles, cycle PnL,
refused orders, finished, and every deal (:func:`fast_parity_support.assert_dca_parity`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fast_parity_support import (
    ACCOUNTS,
    CONFIGS,
    FILTER,
    LADDER,
    SETTINGS,
    assert_dca_parity,
    make_config,
    random_bars,
    scenario_config,
    scenarios,
)
from hypothesis import given, settings

from liqbt.config import load_config
from liqbt.data import save_candles
from liqbt.fast import supports

pytest.importorskip("numba")

SCENARIO = scenarios(bars=(40, 160))


EXAMPLES = 240
COVERAGE: list[dict[str, Any]] = []


@settings(SETTINGS, max_examples=EXAMPLES)
@given(sc=SCENARIO, account=ACCOUNTS, ladder=LADDER, entry=FILTER)
def test_dca_parity(tmp_path_factory, sc, account, ladder, entry):
    """Random DCA bots on random bars: base and safety orders, take profits moved after
    each safety fill, stop losses, cooldowns, cycle limits, refusals retried, liquidations."""
    strategy = {"name": "dca", **ladder, **entry}
    fast, slow = assert_dca_parity(scenario_config(tmp_path_factory.mktemp("dca"), sc, account,
                                                   strategy))
    COVERAGE.append(_what(fast, slow, strategy))


def _what(fast: Any, slow: Any, strategy: dict[str, Any]) -> dict[str, Any]:
    """What an example exercised (LIQBT_DCA_COVERAGE=1 prints the tally)."""
    deals = slow.bot["deals"]
    return {
        "cycles": slow.bot["cycles"] > 0, "several cycles": slow.bot["cycles"] > 1,
        "safety fills": any(d["safety_orders"] for d in deals),
        "stop loss": any(d["reason"] == "stop_loss" for d in deals),
        "refused": slow.bot["refused_orders"] > 0, "liquidated": slow.liquidation_count > 0,
        "top-up": bool(slow.top_ups), "finished": slow.bot["finished"],
        "filter": strategy.get("entry_filter") != "none", "short": strategy["direction"] == "short",
        "stopped": slow.stopped_kind is not None,
    }


def test_dca_parity_coverage():
    """The generated examples reach every branch worth comparing (run after
    :func:`test_dca_parity`; LIQBT_DCA_COVERAGE=1 prints the tally)."""
    if len(COVERAGE) < EXAMPLES:
        pytest.skip("test_dca_parity did not run in full before")
    tally = {k: sum(c[k] for c in COVERAGE) for k in COVERAGE[0]}
    if os.environ.get("LIQBT_DCA_COVERAGE"):
        print(tally, len(COVERAGE))
    assert all(count >= 5 for count in tally.values()), tally


def test_bundled_dca_parity():
    """configs/dca.toml over its real BTCUSDT month (16 take-profit cycles, then the whole
    ladder fills and the position is liquidated) and variants: short, a stop loss, filters,
    cooldown, cycle limit, other leverages and intrabar modes."""
    base = load_config(CONFIGS / "dca.toml")
    fast, _slow = assert_dca_parity(base)
    assert fast.bot["cycles"] == 16 and fast.liquidation_count == 1
    assert fast.stopped_kind == "liquidated"
    for overrides in [
        {"leverage": 3},
        {"leverage": 20, "intrabar": "pessimistic"},
        {"strategy.direction": "short", "intrabar": "optimistic"},
        {"strategy.stop_loss": 4.0, "strategy.cooldown": 3},
        {"strategy.entry_filter": "rsi", "strategy.rsi_below": 40.0},
        {"strategy.entry_filter": "bollinger", "strategy.bb_dev": 1.0, "strategy.max_cycles": 5},
        {"leverage": 5, "settlement": "liquidation_price"},
    ]:
        assert_dca_parity(base.with_overrides(overrides))


def test_dca_base_order_below_one_step():
    """A base order worth less than half a size step rounds to nothing: both engines stop the
    bot on the first bar (below_minimum) without an order."""
    cfg = load_config(CONFIGS / "dca.toml").with_overrides({"strategy.base_order": 20.0})
    fast, slow = assert_dca_parity(cfg)
    assert fast.stopped_kind == slow.stopped_kind == "below_minimum"
    assert fast.stopped_reason == slow.stopped_reason
    # 20 / 57,820.6 = 0.00035 BTC, nearer 0 than one 0.001 step
    assert fast.stopped_reason == ("base order 20 USDT at 57820.6 rounds to no size step "
                                   "(0.001): raise base_order")
    assert not fast.fills and fast.stopped_time == slow.stopped_time


def _crash_config(tmp_path: Path, rows: list[tuple[float, ...]], **strategy: Any) -> Any:
    """A long DCA bot (base and safety orders of 1,000 USDT, safety orders every 1 %, take
    profit 1 %) on ``rows`` of (open, high, low, close) × 500 from 2024-01-01, 5-minute bars,
    on the simple exchange at 5x isolated."""
    index = pd.date_range("2024-01-01", periods=len(rows), freq="5min", tz="UTC", name="date")
    frame = pd.DataFrame([[x * 500 for x in r] for r in rows], index=index,
                         columns=["open", "high", "low", "close"]).assign(volume=1.0)
    save_candles(frame, tmp_path / "c.feather")
    return make_config(tmp_path, {"candles": tmp_path / "c.feather"},
                   {"exchange": "simple", "balance": 5000.0},
                   {"leverage": 5, "margin_mode": "isolated"},
                   {"name": "dca", "direction": "long", "base_order": 1000.0,
                    "safety_order": 1000.0, "max_safety_orders": 3, "price_deviation": 1.0,
                    "step_scale": 1.0, "volume_scale": 1.0, "take_profit": 1.0, **strategy},
                   "heuristic")


@pytest.mark.parametrize(("cooldown", "max_cycles", "next_base", "base_size"), [
    (0, 0, "00:20", 0.02), (2, 0, "00:30", 0.019), (0, 1, None, 0.0)])
def test_dca_take_profit_replaced_while_submitted(tmp_path, cooldown, max_cycles, next_base,
                                                  base_size):
    """Three safety orders fill in one crash bar: each fill moves the take profit, so the two
    earlier ones are cancelled while still submitted (cancelled once accepted, after the walk
    they take part in: :meth:`strategies.base.MarginAwareStrategy.cancel_order`), and the next
    bar gaps above all of them: the oldest (stale, sized like the current one) fills at the
    open and flattens the position. It ends the cycle as the current take profit would, in
    both engines: exit at its fill price, the cycle's PnL, then a new base order per cooldown
    and max_cycles."""
    rows = [(100, 100.5, 99.8, 100), (100, 100.4, 99.9, 100.1), (100, 100, 97, 97.5),
            (102, 103, 101.5, 102.5)] + [(102.5, 103, 102, 102.6)] * 6
    cfg = _crash_config(tmp_path, rows, cooldown=cooldown, max_cycles=max_cycles)
    fast, _slow = assert_dca_parity(cfg)
    # base at 50,000, safety orders at 49,500 / 49,000 / 48,500 in one bar, then the gap
    expected = [(0.02, 50000.0), (0.02, 49500.0), (0.02, 49000.0), (0.021, 48500.0),
                (-0.081, 51000.0)]
    if next_base is not None:
        # cooldown 0: next() of the closing bar, 1,000 USDT at its close 51,250 = 0.01951 →
        # 0.02 BTC; cooldown 2: two bars later, at 51,300 = 0.01949 → 0.019; at the next open
        expected.append((base_size, 51250.0))
    assert [(f["size"], f["price"]) for f in fast.fills] == expected
    assert [f["time"].strftime("%H:%M") for f in fast.fills[4:]] == ["00:15", next_base][
        :len(expected) - 4]
    first = fast.bot["deals"][0]
    # average (1,000 + 990 + 980 + 1,018.5) / 0.081 = 49,240.74; PnL 0.081 × (51,000 − it)
    assert first["reason"] == "take_profit" and first["exit"] == 51000.0
    assert first["safety_orders"] == 3 and first["size"] == pytest.approx(0.081)
    assert first["average"] == pytest.approx(3988.5 / 0.081, rel=1e-12)
    assert first["pnl"] == pytest.approx(142.5, rel=1e-12) == fast.bot["cycle_pnl"]
    assert fast.bot["cycles"] == 1 and fast.bot["finished"] == bool(max_cycles)
    assert fast.bot["position"] == base_size


def test_dca_replaced_take_profit_partly_reduces(tmp_path):
    """Safety orders 1 and 2 fill in one bar (two take profits of 0.091 at 49,822.97, the
    first cancelled while submitted); the next bar first fills safety order 3 (0.129 at
    48,500: 0.22 held, average 10,745.5 / 0.22 = 48,843.18) then rises through both take
    profits, which only reduce the position to 0.038. The bot banks their PnL and keeps the
    take profit it re-placed for 0.038 at 48,843.18 × 1.01, which fills at the next open
    (51,000) and ends the cycle: the cycle PnL is the account's realized PnL,
    0.182 × (49,822.97 − 48,843.18) + 0.038 × (51,000 − 48,843.18) = 260.28 USDT."""
    rows = [(100, 100.5, 99.8, 100), (100, 100.4, 99.9, 100.1), (100, 100, 97.5, 97.8),
            (98.5, 100, 96.9, 99.8), (102, 103, 101.5, 102.5)] + [(102.5, 103, 102, 102.6)] * 6
    cfg = _crash_config(tmp_path, rows, volume_scale=2.5, max_cycles=1)
    fast, slow = assert_dca_parity(cfg)
    tp = 4489.0 / 0.091 * 1.01
    assert [x for f in fast.fills for x in (f["size"], f["price"])] == pytest.approx([
        0.02, 50000.0, 0.02, 49500.0, 0.051, 49000.0, 0.129, 48500.0, -0.091, tp,
        -0.091, tp, -0.038, 51000.0], rel=1e-12)
    average = 10745.5 / 0.22
    pnl = 0.182 * (tp - average) + 0.038 * (51000.0 - average)
    (deal,) = fast.bot["deals"]
    assert deal["reason"] == "take_profit" and deal["exit"] == 51000.0
    assert deal["average"] == pytest.approx(average, rel=1e-12)
    assert deal["pnl"] == pytest.approx(pnl, rel=1e-12) == pytest.approx(260.28, rel=1e-12)
    assert fast.bot["cycle_pnl"] == pytest.approx(fast.bot["realized_pnl"], rel=1e-12)
    assert fast.bot["finished"] and slow.bot["finished"] and fast.bot["position"] == 0.0


def test_cli_run_and_sweep_engine_fast_same_output():
    """`liqbt run --engine fast` prints what the backtrader run prints (the engine named on
    stderr); `liqbt sweep` gives the same rows through both engines; a report needs the
    backtrader engine's timeline (refused up front with --engine fast)."""
    from click.testing import CliRunner

    from liqbt.cli import main

    dca = str(CONFIGS / "dca.toml")
    runner = CliRunner()
    fast = runner.invoke(main, ["run", dca, "--engine", "fast"])
    slow = runner.invoke(main, ["run", dca, "--quiet"])
    assert fast.exit_code == 0 and slow.exit_code == 0, (fast.output, slow.output)
    assert fast.stdout == slow.stdout and "DCA deals         17" in fast.stdout
    assert "fast engine (requested)" in fast.stderr
    sweep = ["sweep", dca, "--set", "leverage=3,10", "--set", "strategy.take_profit=0.8,1.5",
             "--no-cache", "--workers", "1"]
    rows = [runner.invoke(main, [*sweep, "--engine", e]) for e in ("fast", "backtrader")]
    assert all(r.exit_code == 0 for r in rows), [r.output for r in rows]
    assert rows[0].stdout == rows[1].stdout and "liquidated at 48,093.88" in rows[0].stdout
    assert "fast engine (requested)" in rows[0].stderr
    refused = runner.invoke(main, ["run", dca, "--engine", "fast", "--report", "out"])
    assert refused.exit_code != 0 and "--report with --engine fast" in refused.output


@pytest.mark.parametrize("direction", ["long", "short"])
def test_dca_large_sizes(tmp_path, direction):
    """A coin priced below 1 USDT: sizes of thousands of units, where rounding to the size
    step (``round(x, 12)``) needs CPython's algorithm (:func:`liqbt.fast.dca.round12`)."""
    frame = random_bars(5, 150, 50_000.0)
    frame[["open", "high", "low", "close"]] = (frame[["open", "high", "low", "close"]]
                                               * (0.03 / 50_000)).round(6)
    save_candles(frame, tmp_path / "c.feather")
    cfg = make_config(tmp_path, {"candles": tmp_path / "c.feather"},
                  {"exchange": "simple", "balance": 20_000.0},
                  {"leverage": 3, "margin_mode": "isolated"},
                  {"name": "dca", "direction": direction, "base_order": 1000.0,
                   "safety_order": 777.0, "max_safety_orders": 4, "price_deviation": 0.4,
                   "step_scale": 1.3, "volume_scale": 1.7, "take_profit": 0.5}, "heuristic")
    fast, _slow = assert_dca_parity(cfg)
    assert max(abs(f["size"]) for f in fast.fills) > 1000 and fast.bot["cycles"] >= 7


def test_round12_is_pythons_round():
    """Sizes rounded to the step in the kernel equal the bot's ``round(x, 12)``, also where
    numba's own ``round`` (scaling by 10**12 in floating point) differs from CPython's."""
    import math
    import random

    from liqbt.fast.dca import round12

    rng = random.Random(3)
    values = [15235.460000000001, 14740.710000000001, 9634.130000000001, 0.1 + 0.2, 1e-13]
    for _ in range(3000):
        step = rng.choice([0.1, 0.01, 0.001, 0.0001, 1.0])
        values.append(math.floor(rng.uniform(0, 40_000) / step + 0.5) * step)
    assert [round12(v) for v in values] == [round(v, 12) for v in values]


def test_dca_supports():
    """Every DCA parameter is mirrored; only the log printing is left to backtrader."""
    cfg = load_config(CONFIGS / "dca.toml")
    assert supports(cfg) is None
    assert supports(cfg.with_overrides({"strategy.stop_loss": 3.0,
                                        "strategy.entry_filter": "rsi"})) is None
    assert "verbose" in supports(cfg.with_overrides({"strategy.verbose": True}))
    assert supports(cfg.with_overrides({"margin_mode": "cross"})) is None
