"""Reports: index.html with the run's PNG charts and the sweep heatmaps."""

from __future__ import annotations

from test_runner import write_config

from liqbt.config import load_config
from liqbt.report import write_run_report, write_sweep_report
from liqbt.runner import run_config


def test_run_report(tmp_path):
    result = run_config(load_config(write_config(tmp_path, leverage=10)))
    index = write_run_report(result, tmp_path / "rep")
    html = index.read_text()
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs == ["equity.png", "liquidation_price_0_BTCUSDT.png", "margin_ratio.png",
                    "price_0_BTCUSDT.png"]
    for name in pngs:
        assert name in html
        assert (tmp_path / "rep" / name).read_bytes()[:4] == b"\x89PNG"
    assert "2024-01-01T00:50:00Z" in html  # the liquidation table


def test_sweep_report(tmp_path):
    rows = [{"leverage": lev, "margin_mode": mode, "return_pct": float(lev),
             "liquidations": int(lev > 5)} for lev in (1, 5, 10) for mode in ("cross", "isolated")]
    rows[-1]["wiped_out"] = True
    index = write_sweep_report(rows, tmp_path, keys=["leverage", "margin_mode"])
    text = index.read_text()
    assert "heatmap_0.png" in text
    # the leverage at which each mode dies is spelled out next to the picture
    assert "cross: first liquidation at 10x; isolated: first liquidation at 10x" in text
    assert (tmp_path / "heatmap_0.png").exists()
