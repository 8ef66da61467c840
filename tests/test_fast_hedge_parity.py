"""Parity of the fast engine with MarginBroker in hedge mode (issue 12), for the bots that hold
one leg per symbol: hold, long and short grids (their closing lines are reduce-only, so they act
on the leg they close) and DCA (take profit and stop reduce-only). Hedge mode then books
exactly as one-way: the same leg, the same margin, the cross plan's netting step never applies.
A neutral grid opens SHORT beside LONG in hedge mode and is refused (test at the end).
"""

from __future__ import annotations

from fast_parity_support import (
    ACCOUNTS,
    CONFIGS,
    LADDER,
    SETTINGS,
    assert_dca_parity,
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

HEDGE = scenarios(bars=(30, 90), leverage=(2, 5, 10, 20, 50),
                  margin_mode=st.sampled_from(["isolated", "cross"]))
HEDGE_ACCOUNTS = ACCOUNTS.map(lambda a: {**a, "position_mode": "hedge"})


@settings(SETTINGS, max_examples=25)
@given(sc=HEDGE, account=HEDGE_ACCOUNTS, direction=st.sampled_from(["long", "short"]),
       margin=st.sampled_from([None, 250.0]))
def test_hedge_hold_parity(tmp_path_factory, sc, account, direction, margin):
    assert_parity(scenario_config(tmp_path_factory.mktemp("hhold"), sc, account,
                                  {"name": "hold", "direction": direction, "margin": margin}))


@settings(SETTINGS, max_examples=30)
@given(sc=HEDGE, account=HEDGE_ACCOUNTS, direction=st.sampled_from(["long", "short"]),
       grids=st.integers(2, 12), width=st.floats(0.02, 0.2), offset=st.floats(-0.6, 0.6),
       stop=st.booleans())
def test_hedge_grid_parity(tmp_path_factory, sc, account, direction, grids, width, offset,
                           stop):
    """Long and short grids: opening lines on their leg, reduce-only closes on the same leg,
    the stop's reduce-only close."""
    lower, upper = grid_bounds(start_price(account), width, offset)
    strategy = {"name": "grid", "direction": direction, "lower": lower, "upper": upper,
                "grids": grids, "out_of_range": "stop" if stop else "stay"}
    assert_parity(scenario_config(tmp_path_factory.mktemp("hgrid"), sc, account, strategy))


@settings(SETTINGS, max_examples=25)
@given(sc=HEDGE.map(lambda d: {**d, "bars": d["bars"] + 40}), account=HEDGE_ACCOUNTS,
       ladder=LADDER)
def test_hedge_dca_parity(tmp_path_factory, sc, account, ladder):
    assert_dca_parity(scenario_config(tmp_path_factory.mktemp("hdca"), sc, account,
                                      {"name": "dca", **ladder}))


def test_hedge_supports():
    grid = load_config(CONFIGS / "grid.toml").with_overrides({"position_mode": "hedge"})
    assert supports(grid) is None
    neutral = grid.with_overrides({"strategy.direction": "neutral"})
    assert "neutral grid" in supports(neutral)
    pair = load_config(CONFIGS / "cross-vs-isolated.toml").with_overrides(
        {"position_mode": "hedge"})
    assert supports(pair) is None
    assert_parity(pair)
