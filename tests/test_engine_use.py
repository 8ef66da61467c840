"""The fast engine where speed matters: ``liqbt sweep`` / ``max-leverage`` / Dask.

``--engine auto`` runs the bundled bots on the fast engine and a user's strategy file on
backtrader (and says which), ``--engine fast`` and ``--engine backtrader`` give the same rows,
results name the engine that produced them, and a Dask task is a batch of configs with the
market data shipped to each worker once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_runner import write_config

from liqbt import executor as ex
from liqbt.cli import main
from liqbt.config import load_config

pytest.importorskip("numba")

ROOT = Path(__file__).parents[1]
GRID = ROOT / "configs" / "grid.toml"
HOLD = ROOT / "configs" / "hold.toml"


def _sweep(args: list[str]) -> tuple[dict, str]:
    res = CliRunner().invoke(main, ["sweep", *args, "--json", "--no-cache", "--workers", "1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    return out, out["engine_reason"]


def _without_engine(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "engine"} for r in rows]


def test_sweep_fast_and_backtrader_give_the_same_rows():
    """The bundled grid at 3x (survives the 10-10 crash) and 10x (liquidated at 21:15):
    every row column is the same through both engines; auto picks the fast engine."""
    args = [str(GRID), "--set", "leverage=3,10", "--set", "strategy.grids=8,16"]
    fast, fast_err = _sweep([*args, "--engine", "fast"])
    slow, slow_err = _sweep([*args, "--engine", "backtrader"])
    assert "backtrader engine (requested)" in slow_err
    auto, auto_err = _sweep(args)
    assert fast["engine"] == "fast" and {r["engine"] for r in fast["rows"]} == {"fast"}
    assert slow["engine"] == "backtrader"
    assert {r["engine"] for r in slow["rows"]} == {"backtrader"}
    assert "fast engine (requested)" in fast_err
    assert "fast engine (supports every config)" in auto_err
    assert auto["engine"] == "fast"
    assert _without_engine(fast["rows"]) == _without_engine(slow["rows"])
    assert _without_engine(auto["rows"]) == _without_engine(slow["rows"])
    outcomes = {(r["leverage"], r["strategy.grids"]): r["outcome"] for r in fast["rows"]}
    assert outcomes[(3, 16)] == "survived" and outcomes[(10, 16)] == "liquidated"
    assert all(r["trades"] > 0 for r in fast["rows"])


def test_sweep_auto_runs_a_user_strategy_file_on_backtrader(tmp_path):
    path = write_config(tmp_path)
    rows, err = _sweep([str(path), "--set", "leverage=2,10"])
    assert rows["engine"] == "backtrader" and "backtrader engine (fast engine: strategy" in err
    assert [r["liquidations"] for r in sorted(rows["rows"], key=lambda r: r["leverage"])] == [
        0, 1]
    res = CliRunner().invoke(main, ["sweep", str(path), "--set", "leverage=2,10", "--engine",
                                    "fast", "--no-cache"])
    assert res.exit_code != 0 and "--engine fast: strategy" in res.output
    assert "Traceback" not in res.output


def test_auto_splits_a_mixed_batch_per_config(tmp_path):
    """A bundled hold and a user's strategy in one call: each on its own engine, each result
    naming it, the rows equal to the all-backtrader ones."""
    hold = load_config(HOLD).with_overrides({"start": "2020-03-11", "end": "2020-03-14"})
    user = load_config(write_config(tmp_path))
    configs = [hold, user, hold.with_overrides({"leverage": 1})]
    plan, reason = ex.plan_engines("auto", configs)
    assert [e.name for e in plan] == ["fast", "backtrader", "fast"]
    assert reason.startswith("fast engine for 2 runs, backtrader engine for 1 (fast engine: "
                             "strategy")
    mixed = ex.execute_detailed(configs, engine="auto", workers=1)
    assert mixed.engine == "backtrader+fast" and mixed.reason == reason
    assert [r.engine for r in mixed.results] == ["fast", "backtrader", "fast"]
    slow = ex.execute(configs, engine="backtrader", workers=1)
    assert [r.summary() for r in mixed.results] == [r.summary() for r in slow]
    assert [r.liquidation_count for r in slow] == [1, 1, 0]


def test_max_leverage_fast_and_backtrader_give_the_same_ladder():
    args = ["max-leverage", str(HOLD), "--margin-modes", "isolated", "--leverage", "1,2,3,5",
            "--json", "--workers", "1"]
    runs = {}
    for engine in ("fast", "backtrader", "auto"):
        res = CliRunner().invoke(main, [*args, "--engine", engine])
        assert res.exit_code == 0, res.output
        runs[engine] = json.loads(res.stdout)
    assert runs["fast"]["engine"] == runs["auto"]["engine"] == "fast"
    assert runs["auto"]["engine_reason"] == "fast engine (supports every config)"
    assert runs["backtrader"]["engine"] == "backtrader"
    assert runs["fast"]["results"] == runs["backtrader"]["results"] == runs["auto"]["results"]
    # Black Thursday: 1x survives, 2x and up are liquidated
    (found,) = runs["fast"]["results"]
    assert found["max_leverage"] == 1 and found["first_failing_leverage"] == 2


_BATCHES: list[tuple[int, int]] = []


def _recording_batch(configs, data):
    """The fast engine's run_batch, recording (batch size, id of the data it received) in
    the worker process."""
    from liqbt.fast import run_batch

    _BATCHES.append((len(configs), id(data)))
    return run_batch(configs, data)


def _recorded() -> list[tuple[int, int]]:
    return list(_BATCHES)


def test_dask_tasks_are_batches_with_the_data_shipped_once():
    """Six configs on one worker process with batches of three: two tasks, both handed the
    same MarketData object (deserialized once in the worker, not once per task); rows equal
    to the local ones."""
    from distributed import Client, LocalCluster

    base = load_config(HOLD).with_overrides({"start": "2020-03-11", "end": "2020-03-14"})
    configs = [base.with_overrides({"leverage": lev}) for lev in (1, 1.5, 2, 3, 5, 10)]
    real = ex.engines()["fast"]
    ex.register_engine(ex.Engine("fast", real.supports, _recording_batch))
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            dask = ex.execute_detailed(configs, engine="auto", scheduler=client, batch_size=3)
            (calls,) = client.run(_recorded).values()
    finally:
        ex.register_engine(real)
    assert sorted(size for size, _ in calls) == [3, 3]
    assert len({ident for _, ident in calls}) == 1
    assert dask.engine == "fast" and [r.engine for r in dask.results] == ["fast"] * 6
    local = ex.execute(configs, engine="fast", workers=1)
    assert [r.summary() for r in dask.results] == [r.summary() for r in local]


def _fast_except_last(configs, data):
    """A fast engine that hands the batch's last config to backtrader (as liqbt.fast does
    with markets whose bars do not share one clock)."""
    from liqbt.fast import run_batch

    return [*run_batch(configs[:-1], data), *ex.BACKTRADER.run_batch(configs[-1:], data)]


def test_results_keep_the_engine_that_produced_them():
    base = load_config(HOLD).with_overrides({"start": "2020-03-11", "end": "2020-03-14"})
    configs = [base, base.with_overrides({"leverage": 1})]
    real = ex.engines()["fast"]
    ex.register_engine(ex.Engine("fast", real.supports, _fast_except_last))
    try:
        run = ex.execute_detailed(configs, engine="fast", workers=1, batch_size=2)
    finally:
        ex.register_engine(real)
    # workers=1 hands one config at a time: each batch's last is its only one
    assert [r.engine for r in run.results] == ["backtrader", "backtrader"]
    assert run.engine == "backtrader"
    fast = ex.execute_detailed(configs, engine="fast", workers=1)
    assert [r.engine for r in fast.results] == ["fast", "fast"] and fast.engine == "fast"
