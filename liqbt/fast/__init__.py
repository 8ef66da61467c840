"""``liqbt.fast``: a compiled (numba) engine reproducing ``MarginBroker`` for the bundled bots.

Plain arrays in, plain arrays out: :func:`supports` says whether a config is covered (else why
not), :func:`run_batch` runs configs over data loaded once and returns
:class:`liqbt.runner.RunResult` objects with ``engine = "fast"``. Parity with the backtrader
path is the contract, held by ``tests/test_fast_parity.py``.
"""

import hashlib
from pathlib import Path


def _drop_stale_cache() -> None:
    """Remove this package's numba cache when any of its sources changed since it was
    written. numba's ``cache=True`` keys a function's cache on its own file only, so the bar
    loop (``kernel.run``), compiled with the functions of ``margin.py`` and ``dca.py`` in it,
    would stay cached after only those files change (an editable install being edited; a
    fresh install has no cache). Only the default location (``__pycache__`` beside the
    sources) is checked; an unwritable one is left to numba."""
    here = Path(__file__).parent
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(here.glob("*.py"))))
    stamp = here / "__pycache__" / "liqbt-fast-sources.sha256"
    try:
        if stamp.read_text() == digest.hexdigest():
            return
    except OSError:
        pass
    try:
        for pattern in ("*.nbi", "*.nbc"):
            for cached in stamp.parent.glob(pattern):
                cached.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:
        pass


_drop_stale_cache()

from liqbt.executor import Engine, register_engine  # noqa: E402
from liqbt.fast.engine import (  # noqa: E402
    MarketArrays,
    load_market,
    run_batch,
    run_one,
    supports,
)

register_engine(Engine("fast", supports, run_batch))

__all__ = ["MarketArrays", "load_market", "run_batch", "run_one", "supports"]
