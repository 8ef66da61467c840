"""The fast engine's hot helpers (``liqbt.fast.jit.hot``: compiled without numba's reference
counting) allocate nothing and call only hot helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from liqbt.fast.jit import HOT_FLAGS

FAST = Path(__file__).resolve().parents[1] / "liqbt" / "fast"


def _functions() -> dict[str, tuple[bool, set[str]]]:
    """Every module-level numba function of ``liqbt/fast``: name -> (hot, names it calls).
    A call ``kn._x`` or ``_dca.bar`` counts by its attribute name."""
    found: dict[str, tuple[bool, set[str]]] = {}
    for path in sorted(FAST.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            marks = {ast.unparse(d) for d in node.decorator_list}
            if not marks & {"hot", "njit(cache=True)"} and not any(
                    m.startswith("njit") for m in marks):
                continue
            calls = set()
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call):
                    f = sub.func
                    calls.add(f.id if isinstance(f, ast.Name) else getattr(f, "attr", ""))
            found[f"{path.stem}.{node.name}"] = ("hot" in marks, calls)
    return found


def test_hot_helpers_call_only_hot_helpers() -> None:
    functions = _functions()
    hot = {name for name, (is_hot, _) in functions.items() if is_hot}
    # by bare name (``kn._x`` is a call by attribute): a name cold in any module counts cold
    cold = {name.split(".")[1] for name, (is_hot, _) in functions.items() if not is_hot}
    assert len(hot) > 40  # the decorator is in use (margin, kernel, dca, multi)
    wrong = {name: sorted(calls & cold) for name, (is_hot, calls) in functions.items()
             if is_hot and calls & cold}
    assert wrong == {}


def test_an_allocation_does_not_compile_without_nrt() -> None:
    """numba refuses an allocation written in a function compiled with :data:`HOT_FLAGS`.
    It does not refuse a call to an allocating function compiled before with NRT (that call
    returns an array nobody owns): the call rule above is what keeps those out."""

    @njit(**HOT_FLAGS)
    def allocating(n: int) -> float:
        return np.empty(n).sum()

    @njit(**HOT_FLAGS)
    def reading(a: np.ndarray, k: int) -> float:
        return a[k] * 2.0

    with pytest.raises(TypingError):
        allocating(3)
    assert reading(np.array([1.5, 2.5]), 1) == 5.0
