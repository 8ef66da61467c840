"""The joint intrabar clock: every symbol of an account moves through a bar together.

Pure functions of floats (margin-model §8). A bar of one symbol becomes a piecewise-linear path
on a common clock ``t ∈ [0, 1]`` with vertices at ``t = 0, 1/3, 2/3, 1``: open, first extreme,
second extreme, close. Which extreme comes first is the intrabar mode:

* ``heuristic``: high first when the bar closes below its open (O→H→L→C), else O→L→H→C;
  each symbol on its own.
* ``pessimistic``: every symbol visits the extreme adverse to the account's net exposure in it
  first (the low for a net long, the high for a net short), so all adverse extremes fall on the
  same instant ``t = 1/3``; a flat symbol keeps the heuristic.
* ``optimistic``: the mirror (the favourable extreme first).

The account condition along the joint path is piecewise linear in ``t`` (margin balance and
maintenance margin are linear in each mark inside one tier), so its first root is exact once
the tier breakpoints are inserted (:func:`tier_breakpoints`, :func:`first_nonpositive`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence

from liqbt.core.choices import INTRABAR_PATHS

#: The intrabar path modes (defined once in :mod:`liqbt.core.choices`).
INTRABAR_MODES: tuple[str, ...] = INTRABAR_PATHS
VERTEX_TIMES: tuple[float, float, float, float] = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)

Path = tuple[float, float, float, float]


def high_first(mode: str, open_: float, close: float, net: float) -> bool:
    """Whether the high comes before the low in a bar (margin-model §8).

    Parameters
    ----------
    mode
        One of :data:`INTRABAR_MODES`.
    open_, close
        The bar's open and close (any price unit).
    net
        The account's signed net exposure in the symbol (base units; > 0 long, < 0 short,
        0 flat). Only the sign matters.
    """
    heuristic = close < open_
    if mode == "heuristic" or not net:
        return heuristic
    adverse_high = net < 0  # a short suffers from the high
    return adverse_high if mode == "pessimistic" else not adverse_high


def bar_path(open_: float, high: float, low: float, close: float, first_high: bool) -> Path:
    """The four vertices ``(open, X1, X2, close)`` at :data:`VERTEX_TIMES`."""
    if first_high:
        return open_, high, low, close
    return open_, low, high, close


def constant_path(price: float) -> Path:
    """A symbol without a new bar in this step: held at its last known price (no look-ahead)."""
    return price, price, price, price


def segment_of(t: float) -> int:
    """Index (0, 1, 2) of the path segment containing ``t`` (a vertex belongs to the segment it
    starts, the close to the last)."""
    return min(int(t * 3.0 + 1e-12), 2)


def value_at(path: Path, t: float) -> float:
    """The path's price at clock ``t`` (linear between vertices; exact at the vertices)."""
    if t <= 0.0:
        return path[0]
    if t >= 1.0:
        return path[3]
    k = segment_of(t)
    t0 = VERTEX_TIMES[k]
    a, b = path[k], path[k + 1]
    if t == t0 or a == b:
        return a
    return a + (b - a) * (t - t0) * 3.0


def crossing(a: float, b: float, level: float, rising: bool) -> tuple[float, float] | None:
    """Where a price moving ``a → b`` first reaches ``level`` from below (``rising``) or above.

    Returns ``(fraction of the move, price)``; ``(0, a)`` when the move starts at or beyond the
    level (a gap acts at the start price), ``None`` when the level is not reached.
    """
    if rising:
        if a >= level:
            return 0.0, a
        if b >= level:
            return (level - a) / (b - a), level
        return None
    if a <= level:
        return 0.0, a
    if b <= level:
        return (a - level) / (a - b), level
    return None


def tier_breakpoints(
    m0: float, m1: float, sizes: Iterable[float], caps: Sequence[float]
) -> list[float]:
    """Fractions of a mark move ``m0 → m1`` where a leg's notional ``|size| × mark`` equals a
    tier cap (USDT): the points where the maintenance margin changes slope (or jumps, for flat
    tier tables). Sorted, strictly inside ``(0, 1)``."""
    if m0 == m1:
        return []
    low, high = min(m0, m1), max(m0, m1)
    out: set[float] = set()
    for size in sizes:
        q = abs(size)
        if not q:
            continue
        for cap in caps:
            if not math.isfinite(cap):
                continue
            price = cap / q
            if low < price < high:
                out.add((price - m0) / (m1 - m0))
    return sorted(out)


def first_nonpositive(
    t0: float,
    t1: float,
    evaluate: Callable[[float], float],
    breakpoints: Iterable[float] = (),
    tol: float = 0.0,
) -> float | None:
    """First clock ``t ∈ [t0, t1]`` where ``evaluate(t) <= tol``, for a function that is linear
    between consecutive ``breakpoints`` (clock values) and may jump at them. Inside a piece
    the returned instant is the exact zero of the linear function (``tol`` only absorbs float
    noise: a level met exactly counts as met).

    Each linear piece is sampled at two interior points and extended to its ends, so a jump at
    a breakpoint is attributed to the side it belongs to; the root inside a piece is then exact
    (up to float rounding). Returns ``None`` when the condition never holds on the interval.
    """
    if t1 < t0:
        raise ValueError("t1 must not precede t0")
    if evaluate(t0) <= tol:
        return t0
    if t1 == t0:
        return None
    cuts = [t0, *sorted(b for b in breakpoints if t0 < b < t1), t1]
    for lo, hi in itertools.pairwise(cuts):
        width = hi - lo
        if width <= 0:
            continue
        u, v = lo + width / 3.0, lo + 2.0 * width / 3.0
        gu, gv = evaluate(u), evaluate(v)
        slope = (gv - gu) / (v - u)
        g_lo = gu - slope * (u - lo)
        g_hi = gv + slope * (hi - v)
        if g_lo <= tol:
            return lo
        if g_hi <= tol:
            # the exact zero of the linear piece (a root of ``tol`` would sit on the edge of
            # the condition and float noise could undo it); clamped against float drift
            root = lo + g_lo / (g_lo - g_hi) * width if g_lo != g_hi else lo
            return min(max(root, lo), hi)
    return None
