"""The run report in a real browser: headless Chromium renders it with no JavaScript error,
every panel present, and writes a screenshot for a person to look at.

Output: ``test-output/report-grid.png`` and ``test-output/report-grid.html`` at the top of the
repository (git-ignored). Skipped only when no Chromium is installed (``.ci/run`` installs
Debian's ``chromium``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cdp import Browser, find_chromium

from liqbt.config import load_config
from liqbt.report import write_run_report
from liqbt.runner import run_config

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-output"
CHROMIUM = find_chromium()

PANELS = ["charts", "price-BTCUSDT", "position", "equity", "drawdown", "margin-ratio",
          "liquidation-distance", "trades"]

# names of Bokeh models that have a rendered view, and canvases drawn inside shadow roots
_PROBE = """(() => {
  if (!window.Bokeh || !Bokeh.documents.length) return null;
  const names = [];
  for (const root of Bokeh.index.roots || Object.values(Bokeh.index)) {
    const walk = (view) => {
      if (view.model && view.model.name) names.push(view.model.name);
      for (const child of (view.child_views ? view.child_views : [])) walk(child);
    };
    walk(root);
  }
  const canvases = [];
  const deep = (node) => {
    for (const el of node.querySelectorAll('*')) {
      if (el.tagName === 'CANVAS' && el.width > 0 && el.height > 0) canvases.push(el);
      if (el.shadowRoot) deep(el.shadowRoot);
    }
  };
  deep(document);
  return {names, canvases: canvases.length,
          tables: [...document.querySelectorAll('table.liqbt')].map(t => t.id)};
})()"""


def _render(page: Path, shot: Path) -> tuple[dict | None, list[str], Path]:
    """Open ``page``, wait until every panel rendered, screenshot it; (state, errors, shot)."""
    with Browser(CHROMIUM, width=1400, height=1000) as browser:
        browser.open(page.as_uri())
        state = None
        for _ in range(60):  # Bokeh renders asynchronously after load
            state = browser.evaluate(_PROBE)
            if state and set(PANELS) <= set(state["names"]) and state["canvases"] >= 7:
                break
            browser.pump(0.25)
        browser.pump(0.5)
        browser.screenshot(shot)
        return state, browser.errors(), shot


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed")
def test_grid_report_renders_in_chromium():
    result = run_config(load_config(ROOT / "configs" / "grid.toml"))
    page = write_run_report(result, OUT / "report-grid.html")
    state, errors, shot = _render(page, OUT / "report-grid.png")
    assert errors == []
    assert state is not None, "Bokeh never loaded"
    assert set(PANELS) <= set(state["names"]), state["names"]
    assert state["canvases"] >= 7  # six charts + the trade table
    assert {"summary", "statistics", "exit-reasons", "grid-view", "liquidations"} <= set(
        state["tables"])
    assert shot.stat().st_size > 50_000  # a real picture, not a blank page


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed")
def test_dca_report_renders_in_chromium():
    """The DCA page: the deal table and the ladder, average-entry and take-profit overlay."""
    result = run_config(load_config(ROOT / "configs" / "dca.toml"))
    page = write_run_report(result, OUT / "report-dca.html")
    state, errors, shot = _render(page, OUT / "report-dca.png")
    assert errors == []
    assert state is not None and set(PANELS) <= set(state["names"])
    assert {"deals", "statistics", "liquidations"} <= set(state["tables"])
    assert shot.stat().st_size > 50_000


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed")
def test_a_broken_page_is_caught(tmp_path):
    """The harness itself sees JavaScript errors (a test that could not fail is no test)."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom'); undefined_fn();</script>"
                    "</body></html>")
    with Browser(CHROMIUM) as browser:
        browser.open(page.as_uri())
        browser.pump(0.3)
        errors = browser.errors()
    assert any("boom" in e for e in errors)
    assert any("undefined_fn" in e for e in errors)
