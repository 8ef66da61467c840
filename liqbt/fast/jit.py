"""The fast engine's compilation choice for its small hot helpers, in one place.

The bar loops (``kernel.run``, ``multi.run``) call small helpers many times per bar, each
taking several arrays (state, parameters, tiers, order book). numba compiles such a call with
its reference counting (NRT): every array argument is incremented on entry and decremented on
exit, atomically, which costs more than the arithmetic of most helpers.
"""

from __future__ import annotations

from numba import njit

hot = njit(cache=True, _nrt=False)
