"""The fast engine's compilation choice for its small hot helpers, in one place.

The bar loops (``kernel.run``, ``multi.run``) call small helpers many times per bar, each
taking several arrays (state, parameters, tiers, order book). numba compiles such a call with
its reference counting (NRT): every array argument is incremented on entry and decremented on
exit, atomically, which costs more than the arithmetic of most helpers (measured on the
benchmark's year of 5m bars: the hold and DCA loops ran 2.6 M bars/s with it, over 25 M without).

numba's documented alternative, IR inlining (``inline="always"``), was measured first: it
removed only part of that cost (hold 2.6 -> 3.9 M bars/s, DCA 2.6 -> 3.6 M, the busy grid
1.6 -> 2.0 M) and doubled the cold compile (35 -> 63 s CPU). So the helpers below are
compiled without NRT (``_nrt=False``, an internal numba flag, kept here only): outputs are
bit-identical (the parity suites compare both engines).

Rule: a :data:`hot` function must not allocate (no ``np.empty``, no returned or stored new
array) and must call only :data:`hot` functions. numba enforces the first only for the
function's own code (an allocation there is a typing error without NRT); a call to an
allocating function already compiled with NRT is accepted and returns an array nobody owns.
``tests/test_fast_jit.py`` checks the call rule from the sources, before any compile.
"""

from __future__ import annotations

from typing import Any

from numba import njit

#: numba options of a hot helper, beside ``cache=True``.
HOT_FLAGS: dict[str, Any] = {"_nrt": False}

#: Decorator of the non-allocating helpers the bar loops call per bar or per path step.
hot = njit(cache=True, **HOT_FLAGS)
