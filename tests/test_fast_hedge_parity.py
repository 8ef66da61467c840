"""Parity of the fast engine with MarginBroker in hedge mode (issue 12), for the bots that hold
one leg per symbol: hold, long and short grids (their closing lines are reduce-only, so they act
on the leg they close) and DCA (take profit and stop reduce-only). Hedge mode then books
exactly as one-way: the same leg, the same margin, the cross plan's netting step never applies.
A neutral grid opens SHORT beside LONG in hedge mode and is refused (test at the end).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_dca_parity import LADDER, assert_dca_parity
from test_fast_parity import ACCOUNTS, SETTINGS, _config, _market, _start, _write, assert_parity

from liqbt.config import load_config
from liqbt.fast import supports

HEDGE = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31 - 1),
    "bars": st.integers(30, 90),
    "mark": st.booleans(),
    "funding": st.booleans(),
    "leverage": st.sampled_from([2, 5, 10, 20, 50]),
    "margin_mode": st.sampled_from(["isolated", "cross"]),
    "top_up": st.booleans(),
    "intrabar": st.sampled_from(["heuristic", "pessimistic", "optimistic"]),
})
HEDGE_ACCOUNTS = ACCOUNTS.map(lambda a: {**a, "position_mode": "hedge"})


@settings(SETTINGS, max_examples=25)
@given(sc=HEDGE, account=HEDGE_ACCOUNTS, direction=st.sampled_from(["long", "short"]),
       margin=st.sampled_from([None, 250.0]))
def test_hedge_hold_parity(tmp_path_factory, sc, account, direction, margin):
    tmp = tmp_path_factory.mktemp("hhold")
    files = _write(tmp, sc["seed"], sc["bars"], _start(account), sc["mark"], sc["funding"])
    cfg = _config(tmp, files, account, _market(sc, account),
                  {"name": "hold", "direction": direction, "margin": margin}, sc["intrabar"])
    assert_parity(cfg)


@settings(SETTINGS, max_examples=30)
@given(sc=HEDGE, account=HEDGE_ACCOUNTS, direction=st.sampled_from(["long", "short"]),
       grids=st.integers(2, 12), width=st.floats(0.02, 0.2), offset=st.floats(-0.6, 0.6),
       stop=st.booleans())
def test_hedge_grid_parity(tmp_path_factory, sc, account, direction, grids, width, offset,
                           stop):
    """Long and short grids: opening lines on their leg, reduce-only closes on the same leg,
    the stop's reduce-only close."""
    tmp = tmp_path_factory.mktemp("hgrid")
    start = _start(account)
    files = _write(tmp, sc["seed"], sc["bars"], start, sc["mark"], sc["funding"])
    mid = start * (1 + offset * width)
    lower, upper = round(mid * (1 - width / 2), 1), round(mid * (1 + width / 2), 1)
    strategy = {"name": "grid", "direction": direction, "lower": lower, "upper": upper,
                "grids": grids, "out_of_range": "stop" if stop else "stay"}
    cfg = _config(tmp, files, account, _market(sc, account), strategy, sc["intrabar"])
    assert_parity(cfg)


@settings(SETTINGS, max_examples=25)
@given(sc=HEDGE.map(lambda d: {**d, "bars": d["bars"] + 40}), account=HEDGE_ACCOUNTS,
       ladder=LADDER)
def test_hedge_dca_parity(tmp_path_factory, sc, account, ladder):
    ladder = dict(ladder)
    while ladder["direction"] == "long" and ladder["max_safety_orders"] and sum(
            ladder["price_deviation"] * ladder["step_scale"] ** i
            for i in range(ladder["max_safety_orders"])) >= 90:
        ladder["max_safety_orders"] -= 1
    tmp = tmp_path_factory.mktemp("hdca")
    files = _write(tmp, sc["seed"], sc["bars"], _start(account), sc["mark"], sc["funding"])
    cfg = _config(tmp, files, account, _market(sc, account), {"name": "dca", **ladder},
                  sc["intrabar"])
    assert_dca_parity(cfg)


def test_hedge_supports():
    root = Path(__file__).parents[1] / "configs"
    grid = load_config(root / "grid.toml").with_overrides({"position_mode": "hedge"})
    assert supports(grid) is None
    neutral = grid.with_overrides({"strategy.direction": "neutral"})
    assert "neutral grid" in supports(neutral)
    pair = load_config(root / "cross-vs-isolated.toml").with_overrides(
        {"position_mode": "hedge"})
    assert supports(pair) is None
    assert_parity(pair)
