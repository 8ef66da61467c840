"""Parity: the fast engine (liqbt.fast) and MarginBroker give the same run, fill by fill.

Random bars (walks with gaps, crashes and squeezes; a mark with a premium; funding every few
bars) and random bot, leverage, margin mode, profile, settlement and intrabar settings go
through both engines; fills (bar, price, size), liquidations (bar, trigger, settlement, loss),
top-ups, funding, fees and final equity must agree to 1e-9 relative. A failure is a bug in one
of the two engines: fix the wrong one, never the tolerance.
"""

from __future__ import annotations

import pytest
from fast_parity_support import (
    ACCOUNTS,
    CONFIGS,
    SETTINGS,
    assert_parity,
    grid_bounds,
    scenario_config,
    scenarios,
    start_price,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from liqbt.config import load_config
from liqbt.fast import supports

pytest.importorskip("numba")

SCENARIO = scenarios()


@SETTINGS
@given(sc=SCENARIO, account=ACCOUNTS, direction=st.sampled_from(["long", "short"]),
       margin=st.sampled_from([None, 100.0, 250.0]))
def test_hold_parity(tmp_path_factory, sc, account, direction, margin):
    assert_parity(scenario_config(tmp_path_factory.mktemp("hold"), sc, account,
                                  {"name": "hold", "direction": direction, "margin": margin}))


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
    start = start_price(account)
    lower, upper = grid_bounds(start, width, offset)
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
    assert_parity(scenario_config(tmp_path_factory.mktemp("grid"), sc, account, strategy))


def test_bundled_configs_parity():
    """The bundled example configs over the bundled 4-week dataset (real BTCUSDT bars)."""
    for name, overrides in [
        ("hold.toml", {}), ("hold.toml", {"leverage": 20}),
        ("hold.toml", {"leverage": 50, "intrabar": "pessimistic"}),
        ("hold.toml", {"leverage": 75, "settlement": "liquidation_price"}),
        ("grid.toml", {}), ("grid.toml", {"leverage": 5}),
        ("grid.toml", {"leverage": 10, "intrabar": "pessimistic"}),
    ]:
        assert_parity(load_config(CONFIGS / name).with_overrides(overrides))


def test_grid_refused_lines_parity():
    """The bundled grid sized at 8x on a 5x market: its opening lines are refused for margin
    again and again and retried on later bars (the grid keeps trading); sized at 10x on a 3x
    market the launch market order itself is refused and the bot stops. Both engines agree,
    down to the bot's own counters."""
    grid = load_config(CONFIGS / "grid.toml")
    retried = grid.with_overrides({"leverage": 5, "strategy.leverage": 8})
    fast, slow = assert_parity(retried)
    assert fast.stopped_kind is None and fast.rejected_orders > 100
    for key in ("refused_orders", "missing_lines", "pairs", "grid_profit"):
        assert fast.bot[key] == slow.bot[key], key
    assert fast.bot["refused_orders"] == fast.rejected_orders and fast.bot["pairs"] > 0
    refused = grid.with_overrides({"leverage": 3, "strategy.leverage": 10})
    fast, _ = assert_parity(refused)
    assert fast.stopped_kind == "order_refused"


def test_supports_refuses_with_reasons():
    hold = load_config(CONFIGS / "hold.toml").with_overrides({"margin_mode": "isolated"})
    assert supports(hold) is None
    assert supports(hold.with_overrides({"margin_mode": "cross"})) is None
    assert supports(load_config(CONFIGS / "grid.toml")) is None
    pair = load_config(CONFIGS / "cross-vs-isolated.toml")
    assert supports(pair) is None  # the hold bot on several markets
    hedge = hold.with_overrides({"position_mode": "hedge"})
    assert supports(hedge) is None  # one leg per symbol: books as one-way
    neutral = load_config(CONFIGS / "grid.toml").with_overrides(
        {"position_mode": "hedge", "strategy.direction": "neutral"})
    assert "hedge" in supports(neutral)
