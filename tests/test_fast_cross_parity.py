"""Parity of the fast engine with MarginBroker in cross margin (issue 12).

The same random scenarios as ``test_fast_parity.py`` (walks with gaps, crashes and squeezes,
a mark with a premium, funding) on a cross wallet: the cross condition is searched on the
joint mark path with its tier breakpoints (margin-model §8), the liquidation runs the cross
plan (all orders cancelled, partial steps, the rest closed at bankruptcy, margin-model §9).
Fills, liquidations, funding, fees and final equity must agree to 1e-9 relative.
"""

from __future__ import annotations

from fast_parity_support import (
    ACCOUNTS,
    FILTER,
    LADDER,
    SETTINGS,
    assert_dca_parity,
    assert_parity,
    grid_bounds,
    scenario_config,
    scenarios,
    start_price,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st

CROSS = scenarios(leverage=(2, 5, 10, 20, 50, 100), margin_mode=st.just("cross"),
                  top_up=st.just(False))
CROSS_SETTINGS = settings(SETTINGS, max_examples=100)


def _note(result) -> None:
    """Label the example by what happened (hypothesis statistics show the spread)."""
    kinds = {("partial" if e["partial"] else "full") for e in result.liquidations}
    event("liquidated: " + ("/".join(sorted(kinds)) or "no"))


@CROSS_SETTINGS
@given(sc=CROSS, account=ACCOUNTS, direction=st.sampled_from(["long", "short"]),
       margin=st.sampled_from([None, 100.0, 250.0]))
def test_cross_hold_parity(tmp_path_factory, sc, account, direction, margin):
    """One cross position held: the whole wallet backs it (partial steps at high tiers)."""
    fast, _ = assert_parity(scenario_config(
        tmp_path_factory.mktemp("xhold"), sc, account,
        {"name": "hold", "direction": direction, "margin": margin}))
    _note(fast)


@CROSS_SETTINGS
@given(sc=CROSS, account=ACCOUNTS, data=st.data(),
       direction=st.sampled_from(["long", "short", "neutral"]), grids=st.integers(2, 12),
       width=st.floats(0.02, 0.2), offset=st.floats(-0.6, 0.6))
def test_cross_grid_parity(tmp_path_factory, sc, account, data, direction, grids, width,
                           offset):
    """A cross grid: resting orders reserve margin (and, on the ``simple`` profile, count in
    the trigger), a cross liquidation cancels them all."""
    start = start_price(account)
    lower, upper = grid_bounds(start, width, offset)
    pick = data.draw(st.fixed_dictionaries({
        "spacing": st.sampled_from(["arithmetic", "geometric"]),
        "investment": st.sampled_from([None, 100.0, 250.0]),
        "trigger_price": st.sampled_from([None, round(start * 0.99, 1)]),
        "out_of_range": st.sampled_from(["stay", "stop"]),
        "leverage": st.sampled_from([None, 5.0, 20.0]),
    }))
    strategy = {"name": "grid", "direction": direction, "lower": lower, "upper": upper,
                "grids": grids, **pick}
    fast, _ = assert_parity(scenario_config(tmp_path_factory.mktemp("xgrid"), sc, account,
                                            strategy))
    _note(fast)


@settings(SETTINGS, max_examples=60)
@given(sc=CROSS.map(lambda d: {**d, "bars": d["bars"] + 40}), account=ACCOUNTS, ladder=LADDER,
       entry=FILTER)
def test_cross_dca_parity(tmp_path_factory, sc, account, ladder, entry):
    """A cross DCA bot: safety orders and take profits reserve cross margin, a cross
    liquidation cancels the ladder."""
    fast, _ = assert_dca_parity(scenario_config(tmp_path_factory.mktemp("xdca"), sc, account,
                                                {"name": "dca", **ladder, **entry}))
    _note(fast)
