"""Executor: engine choice, cache keyed by config hash + engine, preloaded data == own loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from liqbt import executor as ex
from liqbt.config import load_config
from liqbt.core.errors import ValidationError
from liqbt.runner import RunResult, run_config

HOLD = Path(__file__).parents[1] / "configs" / "hold.toml"


@pytest.fixture(scope="module")
def configs():
    base = load_config(HOLD).with_overrides(
        {"start": "2020-03-11T00:00:00", "end": "2020-03-14T00:00:00"})
    return [base.with_overrides({"leverage": lev}) for lev in (1, 2, 3)]


@pytest.fixture
def fake_fast():
    calls: list[int] = []

    def run_batch(cfgs, data):
        calls.append(len(cfgs))
        out = ex.BACKTRADER.run_batch(cfgs, data)
        for result in out:
            result.engine = "fast"  # an engine's results name it
        return out

    engine = ex.Engine(
        "fast", lambda c: None if c.leverage < 3 else "leverage >= 3 not supported", run_batch)
    real = ex.engines().get("fast")  # liqbt.fast when numba is installed
    ex.register_engine(engine)
    yield calls
    ex._ENGINES.pop("fast", None)
    if real is not None:
        ex.register_engine(real)


def test_resolve_engine_without_fast(configs, monkeypatch):
    monkeypatch.setattr(ex, "_ENGINES", {k: v for k, v in ex.engines().items() if k != "fast"})
    engine, reason = ex.resolve_engine("auto", configs)
    assert engine.name == "backtrader" and "not available" in reason
    with pytest.raises(ValidationError, match="unknown"):
        ex.resolve_engine("numba", configs)


def test_auto_takes_fast_only_when_it_supports_every_config(configs, fake_fast):
    assert ex.resolve_engine("auto", configs[:2])[0].name == "fast"
    engine, reason = ex.resolve_engine("auto", configs)
    assert engine.name == "backtrader" and "leverage >= 3 not supported" in reason
    with pytest.raises(ValidationError, match="--engine fast: leverage >= 3"):
        ex.resolve_engine("fast", configs)
    results = ex.execute(configs[:2], engine="auto", workers=1)
    assert [r.engine for r in results] == ["fast", "fast"] and sum(fake_fast) == 2


def test_preloaded_data_and_cache_give_the_same_result(configs, tmp_path):
    own = [run_config(c, timeline=False) for c in configs]
    seen: list[int] = []
    first = ex.execute_detailed(configs, engine="backtrader", workers=1, cache_dir=tmp_path,
                                progress=lambda i, r: seen.append(i))
    assert first.computed == 3 and first.cached == 0 and sorted(seen) == [0, 1, 2]
    assert [r.summary() for r in first.results] == [r.summary() for r in own]
    # 1x survives, 2x and 3x are liquidated on Black Thursday
    assert [r.liquidation_count > 0 for r in first.results] == [False, True, True]
    files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert len(files) == 3 and all(f.endswith("-backtrader.json") for f in files)
    again = ex.execute_detailed(configs, engine="backtrader", workers=1, cache_dir=tmp_path)
    assert again.computed == 0 and again.cached == 3
    assert [r.to_dict() for r in again.results] == [r.to_dict() for r in first.results]
    assert isinstance(again.results[0], RunResult) and again.results[0].engine == "backtrader"


def test_auto_runs_bundled_isolated_hold_on_the_fast_engine_with_the_same_rows(configs):
    pytest.importorskip("numba")
    own = [run_config(c, timeline=False) for c in configs]
    fast = ex.execute(configs, engine="auto", workers=1)
    assert [r.engine for r in fast] == ["fast"] * 3
    assert [r.summary() for r in fast] == [r.summary() for r in own]


def test_market_data_loads_each_window_once(configs):
    data = ex.load_market_data(configs)
    # three configs, one window: candles + mark + funding
    assert len(data.frames) == 3
