"""Sweeps: cartesian product, local pool vs Dask (identical), cache resume, max-leverage."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_runner import write_config

from liqbt.config import load_config
from liqbt.sweep import expand, find_max_leverage, run_sweep, sort_rows, write_rows

HOLD = Path(__file__).parents[1] / "configs" / "hold.toml"
GRID = {"leverage": [1, 2, 3, 5, 10, 20], "margin_mode": ["cross", "isolated"]}


@pytest.fixture(scope="module")
def points():
    # two days around Black Thursday (2020-03-12, the bundled hold config's real data)
    base = load_config(HOLD).with_overrides(
        {"start": "2020-03-11T00:00:00", "end": "2020-03-13T00:00:00"})
    pts = expand(base, GRID)
    assert len(pts) == 12
    return pts


def test_pool_and_dask_agree_and_cache_resumes(points, tmp_path):
    from distributed import Client, LocalCluster

    pool = run_sweep(points, workers=2, cache_dir=tmp_path / "cache")
    assert pool.computed == 12 and pool.cached == 0
    assert [r["leverage"] for r in pool.rows[:2]] == [1, 1]
    assert any(r["liquidations"] for r in pool.rows) and not all(
        r["liquidations"] for r in pool.rows)
    again = run_sweep(points, workers=2, cache_dir=tmp_path / "cache")
    assert again.computed == 0 and again.cached == 12
    assert again.rows == pool.rows
    # an interrupted sweep: only the missing results are computed
    for f in sorted((tmp_path / "cache").glob("*.json"))[:5]:
        f.unlink()
    resumed = run_sweep(points, workers=2, cache_dir=tmp_path / "cache")
    assert resumed.computed == 5 and resumed.rows == pool.rows
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dask = run_sweep(points, scheduler=client)
    assert dask.computed == 12
    assert dask.rows == pool.rows


def test_sort_and_write(points, tmp_path):
    rows = [{"leverage": 1, "return_pct": 1.0}, {"leverage": 2, "return_pct": None},
            {"leverage": 3, "return_pct": 5.0}]
    assert [r["leverage"] for r in sort_rows(rows, "return_pct")] == [3, 1, 2]
    assert write_rows(rows, tmp_path / "o.csv").read_text().startswith("leverage,return_pct")
    assert '"leverage": 3' in write_rows(rows, tmp_path / "o.json").read_text()


def test_max_leverage_bisection_matches_hand_numbers(tmp_path):
    cfg = load_config(write_config(tmp_path))
    # isolated long, margin = 5,000 USDT, entry 50,000, low 40,000, Binance mmr 0.4 %:
    # LP = 50,000 (1 − 1/L) / 0.996 < 40,000  <=>  L < 1 / (1 − 0.8 × 0.996) = 4.92
    iso = find_max_leverage(cfg, "isolated", maximum=10, min_distance_pct=0)
    assert iso.leverage == 4 and iso.failed_at == 5
    assert iso.distance_pct == pytest.approx((40_000 - 50_000 * 0.75 / 0.996) / 400, abs=1e-3)
    half = find_max_leverage(cfg, "isolated", maximum=10, step=0.5, min_distance_pct=0)
    assert half.leverage == 4.5
    # every candidate is run and classified
    assert [s.leverage for s in half.ladder] == [1 + k / 2 for k in range(19)]
    assert [s.outcome for s in half.ladder if s.leverage >= 5] == ["liquidated"] * 11
    # 4.5x comes within (40,000 − 50,000 × (1 − 1/4.5) / 0.996) / 400 = 2.39 % of its LP:
    # below the default 5 % distance, so 4x is the answer
    safe = find_max_leverage(cfg, "isolated", maximum=10, step=0.5)
    assert half.ladder[7].min_distance_pct == pytest.approx(
        (40_000 - 50_000 * (1 - 1 / 4.5) / 0.996) / 400, abs=1e-3)
    assert safe.leverage == 4 and safe.failed_at == 4.5 and "only 2.39 %" in safe.explanation
    # cross: the whole 10,000 wallet (minus the 2.5 L fee) backs q = 0.1 L BTC:
    # LP = (5,000 L + 2.5 L − 10,000) / (0.0996 L) < 40,000  <=>  L < 9.86
    cross = find_max_leverage(cfg, "cross", maximum=20, min_distance_pct=0)
    assert cross.leverage == 9 and cross.failed_at == 10


def test_risk_aware_sort_puts_survivors_first():
    rows = [
        {"k": 1, "return_pct": 50.0, "outcome": "liquidated"},
        {"k": 2, "return_pct": 3.0, "outcome": "survived"},
        {"k": 3, "return_pct": 14.2, "outcome": "bot stopped"},
        {"k": 4, "return_pct": None, "outcome": "survived"},
        {"k": 5, "return_pct": 9.0, "outcome": "survived"},
        {"k": 6, "return_pct": -100.0, "outcome": "wiped out"},
        {"k": 7, "return_pct": 0.0, "outcome": "not tradable"},
    ]
    assert [r["k"] for r in sort_rows(rows)] == [5, 2, 4, 3, 7, 1, 6]
    assert [r["k"] for r in sort_rows(rows, "return_pct", risk_aware=False)][:2] == [1, 3]


def test_heatmap_axes_any_two_swept_keys():
    from liqbt.core.errors import ValidationError
    from liqbt.sweep import heatmap_axes

    assert heatmap_axes(None, ["strategy.grids", "leverage", "margin_mode"]) == (
        "leverage", "margin_mode")
    assert heatmap_axes(None, ["strategy.grids", "leverage"]) == ("strategy.grids", "leverage")
    assert heatmap_axes("leverage,strategy.grids", ["strategy.grids", "leverage"]) == (
        "leverage", "strategy.grids")
    assert heatmap_axes(None, ["leverage"]) is None
    with pytest.raises(ValidationError, match="not swept"):
        heatmap_axes("leverage,balance", ["leverage"])
