"""liqbt's bots and the strategy loader.

Built-ins (``STRATEGIES``): ``grid`` (:class:`GridStrategy`), ``dca`` (:class:`DcaStrategy`),
``hold`` (:class:`HoldStrategy`). Each declares its parameters as
:class:`liqbt.core.params.Param` records (``parameters``). :func:`load_strategy` is the one
strategy loader of liqbt (configs use it too): built-in names, ``path/to/file.py:ClassName``
and ``package.module:ClassName``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

import backtrader as bt

from .base import MarginAwareStrategy, MarketContext
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
    "MarketContext",
    "StrategyLoadError",
    "load_strategy",
]


class StrategyLoadError(ValueError):
    """A strategy name or ``file.py:ClassName`` that cannot be loaded (the message says why)."""


def load_strategy(name_or_path: str) -> type[bt.Strategy]:
    """The strategy class for a built-in name (``grid``, ``dca``, ``hold``, case-insensitive),
    ``path/to/file.py:ClassName`` or ``package.module:ClassName``.

    A file is imported once per process under a name derived from its absolute path (sha1),
    so worker processes of a sweep that load the same config find the same module.

    Raises
    ------
    StrategyLoadError
        Unknown name, missing file, file or module that fails to import, missing class, or a
        class that is not a ``backtrader.Strategy`` subclass; the message names the file and
        class.
    """
    spec_text = str(name_or_path).strip()
    builtin = STRATEGIES.get(spec_text.lower())
    if builtin is not None:
        return builtin
    head, sep, class_name = spec_text.rpartition(":")
    if not sep or not head:
        raise StrategyLoadError(
            f"unknown strategy {spec_text!r}: use one of {sorted(STRATEGIES)}, "
            "'path/to/file.py:ClassName' or 'package.module:ClassName'"
        )
    if not class_name.isidentifier():
        raise StrategyLoadError(f"{class_name!r} (after ':' in {spec_text!r}) is not a class name")
    if head.endswith(".py"):
        path = Path(head).expanduser()
        where = repr(str(path))
        module = _import_file(path)
    else:
        where = repr(head)
        try:
            module = importlib.import_module(head)
        except Exception as exc:
            raise StrategyLoadError(
                f"importing module {head!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(
            k for k, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, bt.Strategy) and v is not bt.Strategy
        )
        raise StrategyLoadError(
            f"{where} has no class {class_name!r} (strategies found: {found or 'none'})"
        )
    if not (isinstance(cls, type) and issubclass(cls, bt.Strategy)):
        raise StrategyLoadError(f"{class_name!r} in {where} is not a backtrader.Strategy subclass")
    return cls


def _import_file(path: Path) -> object:
    if not path.is_file():
        raise StrategyLoadError(f"strategy file {str(path)!r} does not exist")
    resolved = path.resolve()
    module_name = "liqbt_user_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module = sys.modules.get(module_name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(module_name, resolved)
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
    return module
