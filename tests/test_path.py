"""The pure intrabar clock (liqbt.core.path, margin-model §8): vertices, modes, exact roots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liqbt.core import path as pth


@pytest.mark.parametrize(
    ("mode", "open_", "close", "net", "expected"),
    [
        ("heuristic", 100, 90, 1.0, True),  # closes down: high first, whatever the position
        ("heuristic", 100, 110, -1.0, False),
        ("pessimistic", 100, 110, 1.0, False),  # a long suffers from the low: low first
        ("pessimistic", 100, 90, -1.0, True),  # a short suffers from the high: high first
        ("pessimistic", 100, 110, 0.0, False),  # flat keeps the heuristic
        ("optimistic", 100, 90, 1.0, True),  # the favourable extreme (high) first for a long
        ("optimistic", 100, 110, -1.0, False),
    ],
)
def test_high_first_per_mode(mode, open_, close, net, expected):
    assert pth.high_first(mode, open_, close, net) is expected


def test_bar_path_vertices_and_linear_values():
    path = pth.bar_path(100.0, 110.0, 80.0, 95.0, first_high=True)
    assert path == (100.0, 110.0, 80.0, 95.0)
    assert pth.bar_path(100.0, 110.0, 80.0, 95.0, first_high=False) == (100.0, 80.0, 110.0, 95.0)
    # t = 1/2 is halfway through the middle third: (110 + 80) / 2
    assert pth.value_at(path, 0.5) == pytest.approx(95.0)
    assert pth.value_at(path, 1 / 6) == pytest.approx(105.0)
    assert pth.value_at(path, 1.0) == 95.0
    assert pth.value_at(pth.constant_path(42.0), 0.7) == 42.0


def test_crossing_fraction_and_gap():
    assert pth.crossing(100.0, 80.0, 90.0, rising=False) == (0.5, 90.0)
    assert pth.crossing(85.0, 80.0, 90.0, rising=False) == (0.0, 85.0)  # opened beyond: at a
    assert pth.crossing(100.0, 95.0, 90.0, rising=False) is None
    assert pth.crossing(100.0, 120.0, 110.0, rising=True) == (0.5, 110.0)


def test_tier_breakpoints_are_where_notional_meets_a_cap():
    # 2 units falling 30,000 -> 20,000 cross the 50,000 USDT cap at 25,000 = half way
    assert pth.tier_breakpoints(30_000, 20_000, [2.0], [50_000, 600_000]) == [0.5]
    assert pth.tier_breakpoints(30_000, 20_000, [0.0], [50_000]) == []
    assert pth.tier_breakpoints(30_000, 30_000, [2.0], [50_000]) == []


def test_first_nonpositive_exact_root_and_jump_at_breakpoint():
    # g(t) = 10 − 20 t on [0, 1]: root at 0.5
    assert pth.first_nonpositive(0.0, 1.0, lambda t: 10 - 20 * t) == pytest.approx(0.5)
    assert pth.first_nonpositive(0.0, 1.0, lambda t: 10 - 5 * t) is None
    # a step down by 8 just after t = 0.4 (a flat tier table): 10 − 5 t − 8 for t > 0.4
    # reaches 0 at t = 0.4 + 0 (value 0 right after the jump) -> the root is the breakpoint
    def jump(t: float) -> float:
        return 10 - 5 * t - (8 if t > 0.4 else 0)

    assert pth.first_nonpositive(0.0, 1.0, jump, [0.4]) == pytest.approx(0.4)
    # slope change at 0.4 (bracket tables are continuous): 10 − 5 t, then 8 − 30 (t − 0.4)
    def kink(t: float) -> float:
        return 10 - 5 * t if t <= 0.4 else 8 - 30 * (t - 0.4)

    assert pth.first_nonpositive(0.0, 1.0, kink, [0.4]) == pytest.approx(0.4 + 8 / 30)
    assert pth.first_nonpositive(0.2, 0.9, lambda t: -1.0) == 0.2


@settings(deadline=None, max_examples=60)
@given(
    st.lists(st.floats(-50, 50), min_size=2, max_size=6),
    st.floats(0.0, 0.5),
)
def test_first_nonpositive_matches_a_dense_scan(slopes, start):
    # a continuous piecewise-linear function with kinks at 0.1, 0.2, ...: the returned instant
    # holds the condition and no earlier grid point does
    kinks = [0.1 * (i + 1) for i in range(len(slopes) - 1)]

    def g(t: float) -> float:
        value, last = 5.0, 0.0
        for slope, kink in zip(slopes, [*kinks, 2.0], strict=True):
            seg_end = min(t, kink)
            if seg_end > last:
                value += slope * (seg_end - last)
            last = kink
            if t <= kink:
                break
        return value

    root = pth.first_nonpositive(start, 1.0, g, kinks, tol=1e-12)
    grid = [start + (1.0 - start) * i / 2000 for i in range(2001)]
    first_grid = next((t for t in grid if g(t) <= 0), None)
    if root is None:
        assert first_grid is None
    else:
        assert g(root) <= 1e-9
        assert first_grid is None or root <= first_grid + 1e-9
