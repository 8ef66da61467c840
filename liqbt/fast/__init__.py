"""``liqbt.fast``: a compiled (numba) engine reproducing ``MarginBroker`` for the bundled bots.

Plain arrays in, plain arrays out: :func:`supports` says whether a config is covered (else why
not), :func:`run_batch` runs configs over data loaded once and returns
:class:`liqbt.runner.RunResult` objects with ``engine = "fast"``. Parity with the backtrader
path is the contract, held by ``tests/test_fast_parity.py``.
"""

from liqbt.executor import Engine, register_engine
from liqbt.fast.engine import MarketArrays, load_market, run_batch, run_one, supports

register_engine(Engine("fast", supports, run_batch))

__all__ = ["MarketArrays", "load_market", "run_batch", "run_one", "supports"]
