"""Crash-scenario generator and the synth/inspect CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from liqbt.cli import main
from liqbt.core.errors import ValidationError
from liqbt.data import load_candles, load_funding
from liqbt.data.synth import SCENARIOS, generate, max_drawdown, max_runup, write

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO / "datasets"


def assert_valid_ohlc(frame: pd.DataFrame) -> None:
    o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all()
    assert not frame.isna().any().any()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenarios_are_valid_and_deterministic(scenario: str) -> None:
    a = generate(scenario, seed=7, days=10)
    b = generate(scenario, seed=7, days=10)
    pd.testing.assert_frame_equal(a.candles, b.candles)
    pd.testing.assert_frame_equal(a.mark, b.mark)
    pd.testing.assert_frame_equal(a.funding, b.funding)
    c = generate(scenario, seed=8, days=10)
    assert not np.array_equal(a.candles["close"].to_numpy(), c.candles["close"].to_numpy())
    assert len(a.candles) == 10 * 288
    assert_valid_ohlc(a.candles)
    assert_valid_ohlc(a.mark)
    assert (a.candles["volume"] > 0).all()
    assert (a.mark["volume"] == 0).all()
    # mark wicks are smaller than trade wicks
    t_wick = (a.candles["high"] - a.candles["low"]).mean()
    m_wick = (a.mark["high"] - a.mark["low"]).mean()
    assert m_wick < t_wick
    # funding at 00/08/16 UTC, plausible size
    assert set(a.funding.index.hour) == {0, 8, 16}
    assert (a.funding.index.minute == 0).all()
    assert len(a.funding) == 30
    assert a.funding["funding_rate"].abs().max() <= 0.003


@pytest.mark.parametrize("depth", [0.1, 0.3, 0.5])
def test_flash_crash_depth(depth: float) -> None:
    data = generate("flash-crash", seed=3, days=6, depth=depth, duration="4h", at=0.5)
    c = data.candles
    t_start = c.index[0] + pd.Timedelta(days=3)
    before = c.loc[:t_start]["close"].iloc[-1]
    window = c.loc[t_start : t_start + pd.Timedelta("5h")]
    drop = 1 - window["low"].min() / before
    assert drop == pytest.approx(depth, abs=0.035)
    # the crash bottoms within the 4 hours, and half of it is given back a day later
    assert window["low"].idxmin() <= t_start + pd.Timedelta("4h10min")
    later = c.loc[t_start + pd.Timedelta("1D") :]["close"].iloc[0]
    bottom = window["low"].min()
    assert later > bottom + 0.3 * (before - bottom)


def test_slow_grind_and_squeeze_and_chop() -> None:
    grind = generate("slow-grind", seed=1, days=20, depth=0.35, duration="5D", rebound=0.0)
    assert max_drawdown(grind.candles) == pytest.approx(0.35, abs=0.06)
    worst_bar = (grind.candles["low"] / grind.candles["open"] - 1).min()
    assert worst_bar > -0.02  # a grind, not a wick
    squeeze = generate("short-squeeze", seed=1, days=10, depth=0.25)
    assert max_runup(squeeze.candles) == pytest.approx(0.25, abs=0.06)
    chop = generate("range-chop", seed=1, days=20, depth=0.08)
    closes = chop.candles["close"]
    assert closes.max() / closes.min() - 1 < 0.2
    assert closes.iloc[-1] / closes.iloc[0] - 1 == pytest.approx(0, abs=0.08)


def test_parameters_validated() -> None:
    with pytest.raises(ValidationError) as info:
        generate("flash-crash", depth=1.5, at=2.0, days=-1)
    assert len(info.value.problems) == 3
    with pytest.raises(ValidationError, match="unknown scenario"):
        generate("moon")
    with pytest.raises(ValidationError, match="does not fit"):
        generate("slow-grind", days=2, duration="5D")


def test_other_timeframe() -> None:
    data = generate("flash-crash", seed=0, days=5, timeframe="1h")
    assert len(data.candles) == 120
    assert data.candles.attrs["timeframe"] == pd.Timedelta("1h")


@pytest.mark.parametrize("ext", [".feather", ".csv", ".parquet"])
def test_write_and_reload(tmp_path: Path, ext: str) -> None:
    data = generate("short-squeeze", seed=2, days=3)
    paths = write(data, tmp_path / f"sq-5m{ext}")
    assert [p.name for p in paths] == [
        f"sq-5m{ext}",
        f"sq-5m-mark{ext}",
        f"sq-5m-funding_rate{ext}",
    ]
    candles = load_candles(paths[0])
    mark = load_candles(paths[1])
    funding = load_funding(paths[2])
    pd.testing.assert_frame_equal(
        candles, data.candles, check_index_type=False, check_exact=False, check_freq=False
    )
    assert mark.attrs["kind"] == "mark"
    pd.testing.assert_frame_equal(funding, data.funding, check_index_type=False, check_freq=False)


def test_cli_synth_and_inspect(tmp_path: Path) -> None:
    out = tmp_path / "fc.feather"
    runner = CliRunner()
    res = runner.invoke(
        main, ["data", "synth", "--scenario", "flash-crash", "--out", str(out), "--seed", "4",
               "--days", "3", "--depth", "0.2", "--duration", "2h"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "max drawdown" in res.output
    res = runner.invoke(main, ["data", "inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert "rows:      864" in res.output
    assert "first:     2024-03-01T00:00:00+00:00" in res.output
    assert "timeframe: 5m" in res.output and "gaps:      0" in res.output
    assert re.search(r"max drop:  -\d+\.\d+% @ 2024-03-0", res.output)
    res = runner.invoke(main, ["data", "inspect", str(tmp_path / "fc-funding_rate.feather")])
    assert res.exit_code == 0 and "kind:      funding" in res.output


def test_cli_inspect_bad_file_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[[1704067200000, 100, 99, 101, 100, -5]]")
    res = CliRunner().invoke(main, ["data", "inspect", str(path)])
    assert res.exit_code != 0
    assert "column 'high' = 99.0 < max(open, close)" in res.output
    assert "column 'volume' = -5.0" in res.output


def test_cli_inspect_reports_gaps(tmp_path: Path) -> None:
    data = generate("range-chop", seed=0, days=1)
    path = tmp_path / "g.feather"
    from liqbt.data import save_candles

    save_candles(data.candles.drop(index=data.candles.index[10:13]), path)
    res = CliRunner().invoke(main, ["data", "inspect", str(path)])
    assert "gaps:      1 (3 bars)" in res.output
