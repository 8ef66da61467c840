"""liqbt: leveraged crypto-futures backtests for backtrader that liquidate when an exchange would.

The margin mathematics lives in :mod:`liqbt.core` (pure Python, importable without backtrader,
pandas or click). The backtrader adapters (``MarginBroker``, feeds, analyzers) are loaded lazily
so that ``import liqbt.core`` stays free of those dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "MarginBroker": "liqbt.broker",
    "MarketSpec": "liqbt.markets",
    "analyzers": "liqbt.analyzers",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'liqbt' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    return module if module_name.endswith(name) else getattr(module, name)


__all__ = ["MarginBroker", "MarketSpec", "__version__", "analyzers"]
