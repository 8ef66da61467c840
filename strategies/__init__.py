"""liqbt's bots and the strategy loader.

Built-ins (``STRATEGIES``): ``grid`` (:class:`GridStrategy`), ``dca`` (:class:`DcaStrategy`),
``hold`` (:class:`HoldStrategy`). Each exposes ``param_docs``: name → ``"unit; default;
meaning"``. :func:`load_strategy` also loads ``path/to/file.py:ClassName``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import backtrader as bt

from .base import MarginAwareStrategy
from .dca import DcaStrategy
from .grid import GridStrategy
from .hold import HoldStrategy

STRATEGIES: dict[str, type[bt.Strategy]] = {
    "grid": GridStrategy,
    "dca": DcaStrategy,
    "hold": HoldStrategy,
}

__all__ = [
    "STRATEGIES",
    "DcaStrategy",
    "GridStrategy",
    "HoldStrategy",
    "MarginAwareStrategy",
    "StrategyLoadError",
    "load_strategy",
]


class StrategyLoadError(ValueError):
    """A strategy name or ``file.py:ClassName`` that cannot be loaded (the message says why)."""


def load_strategy(name_or_path: str) -> type[bt.Strategy]:
    """The strategy class for a built-in name (``grid``, ``dca``, ``hold``, case-insensitive)
    or for ``path/to/file.py:ClassName``.

    Raises
    ------
    StrategyLoadError
        Unknown name, missing file, file that fails to import, missing class, or a class that
        is not a ``backtrader.Strategy`` subclass; the message names the file and class.
    """
    spec_text = str(name_or_path).strip()
    builtin = STRATEGIES.get(spec_text.lower())
    if builtin is not None:
        return builtin
    if ":" not in spec_text or not spec_text.rsplit(":", 1)[0].endswith(".py"):
        raise StrategyLoadError(
            f"unknown strategy {spec_text!r}: use one of {sorted(STRATEGIES)} or "
            "'path/to/file.py:ClassName'"
        )
    file_text, class_name = spec_text.rsplit(":", 1)
    path = Path(file_text).expanduser()
    if not path.is_file():
        raise StrategyLoadError(f"strategy file {str(path)!r} does not exist")
    if not class_name.isidentifier():
        raise StrategyLoadError(f"{class_name!r} (after ':' in {spec_text!r}) is not a class name")
    module_name = f"liqbt_user_strategy_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise StrategyLoadError(f"cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # registered before exec so dataclasses/pickling inside the file can find the module
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise StrategyLoadError(
            f"importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(
            k for k, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, bt.Strategy) and v is not bt.Strategy
        )
        raise StrategyLoadError(
            f"{str(path)!r} has no class {class_name!r} (strategies found: {found or 'none'})"
        )
    if not (isinstance(cls, type) and issubclass(cls, bt.Strategy)):
        raise StrategyLoadError(
            f"{class_name!r} in {str(path)!r} is not a backtrader.Strategy subclass"
        )
    return cls
