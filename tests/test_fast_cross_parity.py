"""Parity of the fast engine with MarginBroker in cross margin (issue 12).

The same random scenarios as ``test_fast_parity.py`` (walks with gaps, crashes and squeezes,
a mark with a premium, funding) on a cross wallet: the cross condition is searched on the
joint mark path with its tier breakpoints (margin-model §8), the liquidation runs the cross
plan (all orders cancelled, partial steps, the rest closed at bankruptcy, margin-model §9).
Fills, liquidations, funding, fees and final equity must agree to 1e-9 relative.
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_fast_dca_parity import FILTER, LADDER, assert_dca_parity
from test_fast_parity import (
    ACCOUNTS,
    SETTINGS,
    _config,
    _market,
    _start,
    _write,
    assert_parity,
)

CROSS = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31 - 1),
    "bars": st.integers(20, 90),
    "mark": st.booleans(),
    "funding": st.booleans(),
    "leverage": st.sampled_from([2, 5, 10, 20, 50, 100]),
    "margin_mode": st.just("cross"),
    "top_up": st.just(False),
    "intrabar": st.sampled_from(["heuristic", "pessimistic", "optimistic"]),
})
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
    tmp = tmp_path_factory.mktemp("xhold")
    files = _write(tmp, sc["seed"], sc["bars"], _start(account), sc["mark"], sc["funding"])
    cfg = _config(tmp, files, account, _market(sc, account),
                  {"name": "hold", "direction": direction, "margin": margin}, sc["intrabar"])
    fast, _ = assert_parity(cfg)
    _note(fast)


@CROSS_SETTINGS
@given(sc=CROSS, account=ACCOUNTS, data=st.data(),
       direction=st.sampled_from(["long", "short", "neutral"]), grids=st.integers(2, 12),
       width=st.floats(0.02, 0.2), offset=st.floats(-0.6, 0.6))
def test_cross_grid_parity(tmp_path_factory, sc, account, data, direction, grids, width,
                           offset):
    """A cross grid: resting orders reserve margin (and, on the ``simple`` profile, count in
    the trigger), a cross liquidation cancels them all."""
    tmp = tmp_path_factory.mktemp("xgrid")
    start = _start(account)
    files = _write(tmp, sc["seed"], sc["bars"], start, sc["mark"], sc["funding"])
    mid = start * (1 + offset * width)
    lower, upper = round(mid * (1 - width / 2), 1), round(mid * (1 + width / 2), 1)
    pick = data.draw(st.fixed_dictionaries({
        "spacing": st.sampled_from(["arithmetic", "geometric"]),
        "investment": st.sampled_from([None, 100.0, 250.0]),
        "trigger_price": st.sampled_from([None, round(start * 0.99, 1)]),
        "out_of_range": st.sampled_from(["stay", "stop"]),
        "leverage": st.sampled_from([None, 5.0, 20.0]),
    }))
    strategy = {"name": "grid", "direction": direction, "lower": lower, "upper": upper,
                "grids": grids, **pick}
    cfg = _config(tmp, files, account, _market(sc, account), strategy, sc["intrabar"])
    fast, _ = assert_parity(cfg)
    _note(fast)


@settings(SETTINGS, max_examples=60)
@given(sc=CROSS.map(lambda d: {**d, "bars": d["bars"] + 40}), account=ACCOUNTS, ladder=LADDER,
       entry=FILTER)
def test_cross_dca_parity(tmp_path_factory, sc, account, ladder, entry):
    """A cross DCA bot: safety orders and take profits reserve cross margin, a cross
    liquidation cancels the ladder."""
    ladder = dict(ladder)
    while ladder["direction"] == "long" and ladder["max_safety_orders"] and sum(
            ladder["price_deviation"] * ladder["step_scale"] ** i
            for i in range(ladder["max_safety_orders"])) >= 90:
        ladder["max_safety_orders"] -= 1
    tmp = tmp_path_factory.mktemp("xdca")
    files = _write(tmp, sc["seed"], sc["bars"], _start(account), sc["mark"], sc["funding"])
    cfg = _config(tmp, files, account, _market(sc, account), {"name": "dca", **ladder, **entry},
                  sc["intrabar"])
    fast, _ = assert_dca_parity(cfg)
    _note(fast)
