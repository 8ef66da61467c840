"""Leverage studies on Black Thursday (bundled 2020-03 window): the truthful max-leverage,
the survival map and the optimizer, locally and on a Dask LocalCluster (identical)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from liqbt import outcome as oc
from liqbt import study as st
from liqbt.cli import main
from liqbt.config import load_config
from liqbt.core.errors import ValidationError
from liqbt.sweep import leverage_ladder, row_columns

HOLD = Path(__file__).parents[1] / "configs" / "hold.toml"


@pytest.fixture(scope="module")
def hold():
    # the reproduction: hold bot, balance 1,000, margin 500, Binance BTCUSDT 1h
    # trades + mark + funding, 2020-03-01 -> 03-31
    cfg = load_config(HOLD)
    assert cfg.account.balance == 1000 and cfg.strategy.kwargs["margin"] == 500
    return cfg


def test_black_thursday_max_leverage_is_truthful(hold):
    iso, cross = leverage_ladder(hold, ["isolated", "cross"],
                                 candidates=[1, 1.5, 2, 3, 4, 5, 10, 125], workers=1)
    steps = {s.leverage: s for s in iso.ladder}
    # no isolated leverage of 2x or more is safe; 2x dies on 2020-03-13 at 4,351.84
    assert iso.leverage == 1.5 and iso.failed_at == 2
    assert steps[2].outcome == oc.LIQUIDATED and steps[2].time == "2020-03-13T01:00:00Z"
    assert steps[2].reason == "liquidated at 4,351.84"
    assert all(not s.safe for s in iso.ladder if s.leverage >= 2)
    # 125x: 500 × 125 = 62,500 USDT is above the 50,000 USDT the first tier allows at 125x
    assert steps[125].outcome == oc.NOT_TRADABLE and "at most 50,000 USDT" in steps[125].reason
    # cross: 4x is wiped out (as compare shows), so nothing from 4x up is safe
    csteps = {s.leverage: s for s in cross.ladder}
    assert csteps[4].outcome == oc.WIPED_OUT
    assert cross.leverage == 3 and csteps[3].min_distance_pct == pytest.approx(24.23, abs=0.01)
    assert "not tradable" in json.dumps([s.to_dict() for s in cross.ladder])


def test_max_leverage_cli_ladder_and_min_distance(hold, tmp_path):
    args = ["max-leverage", str(HOLD), "--leverage", "1,2,3,3.5,4", "--margin-modes", "cross",
            "--workers", "1"]
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)["results"][0]
    # 3.5x survives but comes within 2.55 % of its liquidation price: unsafe at 5 %
    assert data["max_leverage"] == 3 and data["first_failing_leverage"] == 3.5
    assert [s["outcome"] for s in data["ladder"]] == ["survived"] * 4 + ["wiped out"]
    loose = json.loads(CliRunner().invoke(main, [*args, "--json", "--min-distance", "2"]).output)
    assert loose["results"][0]["max_leverage"] == 3.5
    res = CliRunner().invoke(main, [*args, "--report", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "[5/5] cross 4x: wiped out" in res.output  # one progress line per run
    assert "cross: 3x; 3.5x is only 2.55 % from liquidation (< 5 %)" in res.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<a href='run-cross-3x.html'>3x</a>" in page and "wiped out" in page


def test_classify_rows():
    assert oc.classify({"wiped_out": True, "liquidations": 1, "trades": 1}).outcome == oc.WIPED_OUT
    assert oc.classify({"liquidations": 0, "trades": 0,
                        "stopped_reason": "order rejected: x"}).outcome == oc.NOT_TRADABLE
    stopped = oc.classify({"liquidations": 0, "trades": 3, "stopped_reason": "order rejected: m",
                           "stopped_kind": "order_refused", "stopped_time": "t"})
    assert stopped.outcome == oc.STOPPED and stopped.time == "t"
    assert "order_refused" in stopped.reason
    assert oc.classify({"liquidations": 0, "trades": 3, "stopped_reason": "stop loss",
                        "stopped_kind": "stop_loss"}).survived


def test_survival_map(hold, tmp_path):
    study = st.survival_study(hold, [1, 2], ["isolated"], every="5D", horizon="10D",
                              workers=1)
    # starts 03-01, 03-06, ..., 03-21 (the last 10-day window ends 03-31 <= data end 04-01)
    assert [r.start[:10] for r in study.runs[::2]] == [
        "2020-03-01", "2020-03-06", "2020-03-11", "2020-03-16", "2020-03-21"]
    one, two = study.cells
    assert one.survival_pct == 100 and one.liquidated == 0
    # 2x isolated: the two windows holding 03-12/13 are liquidated
    assert two.survived == 3 and two.liquidated == 2 and two.survival_pct == 60
    dead = [r for r in study.runs if r.outcome == oc.LIQUIDATED]
    assert {r.start[:10] for r in dead} == {"2020-03-06", "2020-03-11"}
    # the 03-11 start enters higher than the 03-01 one, so its LP is lower: it survives
    # 03-13 01:00 and dies on the 02:00 bar (low 3,621.81), 50 h after the start
    late = next(r for r in dead if r.start.startswith("2020-03-11"))
    assert late.hours_to_liquidation == 50
    assert study.worst_starts[0]["failed"] == 1


def test_survival_cli_report_and_dask_identical(hold, tmp_path):
    from distributed import LocalCluster

    args = ["survival", str(HOLD), "--leverage", "1,3", "--margin-modes", "cross,isolated",
            "--every", "7D", "--horizon", "14D", "--workers", "1"]
    res = CliRunner().invoke(main, [*args, "--report", str(tmp_path / "rep"),
                                    "--out", str(tmp_path / "runs.csv")])
    assert res.exit_code == 0, res.output
    assert "worst start dates" in res.output and "survival %" in res.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "survival-isolated" in page and "Bokeh" in page and "<script src=" not in page
    # the failed runs of the worst start dates are linked to their own full run reports
    linked = sorted(p.name for p in (tmp_path / "rep").glob("run-*.html"))
    assert linked and all(f"href='{name}'" in page for name in linked)
    first = (tmp_path / "rep" / linked[0]).read_text()
    assert "liquidat" in first.lower() and "<script src=" not in first
    local = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        study = st.survival_study(hold, [1, 3], ["cross", "isolated"], every="7D",
                                  horizon="14D", scheduler=cluster)
    assert [r.to_dict() for r in study.runs] == local["runs"]
    assert [c.to_dict() for c in study.cells] == local["cells"]


def test_optimize_is_seeded_feasible_only_and_dask_identical(hold, tmp_path):
    from distributed import Client, LocalCluster

    space = [st.parse_param("leverage=1..6")]
    cons = [st.parse_constraint("min_liq_distance_pct>=10", row_columns())]
    a = st.optimize(hold, space, "return_pct", cons, trials=8, seed=3, batch=4, workers=1)
    b = st.optimize(hold, space, "return_pct", cons, trials=8, seed=3, batch=4, workers=1)
    assert [t.row() for t in a.trials] == [t.row() for t in b.trials]
    # on Black Thursday only 1x isolated survives with >= 10 % distance; every liquidated
    # trial is infeasible (not merely low-scoring) and never the best
    assert a.best is not None and a.best.params == {"leverage": 1}
    assert all(t.feasible == (t.params["leverage"] == 1) for t in a.trials)
    assert all(t.value is None for t in a.trials if t.outcome == oc.LIQUIDATED)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        d = st.optimize(hold, space, "return_pct", cons, trials=8, seed=3, batch=4,
                        scheduler=client)
    assert [t.row() for t in d.trials] == [t.row() for t in a.trials]


def test_optimize_cli(tmp_path):
    args = ["optimize", str(HOLD), "--param", "leverage=1..4", "--param",
            "margin_mode=cross,isolated", "--objective", "return_pct", "--constraint",
            "min_liq_distance_pct>=10", "--trials", "6", "--seed", "1", "--workers", "1",
            "--windows", "2020-03-01..2020-03-16,2020-03-16..2020-04-01"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "t.json"),
                                    "--report", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "best feasible: trial" in res.output
    rows = json.loads((tmp_path / "t.json").read_text())
    assert len(rows) == 6 and rows[0]["feasible"] is True
    assert "best feasible trial" in (tmp_path / "rep" / "index.html").read_text()
    bad = CliRunner().invoke(main, ["optimize", str(HOLD), "--param", "leverage=5..1",
                                    "--constraint", "nope>=1", "--objective", "colour",
                                    "--out", str(tmp_path / "x.txt")])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    for text in ("LO < HI", "no column 'nope'", "--objective 'colour'", "FILE.csv or FILE.json"):
        assert text in bad.output


def test_param_parsing():
    p = st.parse_param("strategy.grids=10..60:5")
    assert p.integer and (p.low, p.high, p.step) == (10, 60, 5)
    assert not st.parse_param("leverage=1.5..3").integer
    assert st.parse_param("margin_mode=cross,isolated").choices == ("cross", "isolated")
    with pytest.raises(ValidationError):
        st.parse_param("leverage")
    c = st.parse_constraint("min_liq_distance_pct>=10", row_columns())
    assert c.violation({"min_liquidation_distance_pct": 12}) < 0
    assert c.violation({"min_liquidation_distance_pct": 4}) == 6
    # no liquidation price at all (cross 1x) is infinitely far from liquidation
    assert c.violation({"min_liquidation_distance_pct": None}) < 0
    assert st.resolve_objective("max_drawdown_pct", row_columns())[1] == "minimize"
