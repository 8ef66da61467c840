"""liqbt.core stays pure: no backtrader, pandas, numpy, click, matplotlib, bokeh or dask."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "liqbt" / "core"
FORBIDDEN = {"backtrader", "pandas", "numpy", "click", "matplotlib", "bokeh", "dask"}
MODULES = sorted(p for p in CORE.glob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            roots.add(str(node.args[0].value).split(".")[0])
    return roots


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_heavy_imports_in_source(path: Path) -> None:
    assert not _imported_roots(path) & FORBIDDEN


def test_importing_core_loads_no_heavy_module() -> None:
    names = [f"liqbt.core.{p.stem}" for p in MODULES if p.stem != "__init__"]
    assert "liqbt.core.margin" in names
    code = (
        f"import {', '.join(names)}; import sys; "
        f"bad = sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules); "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
