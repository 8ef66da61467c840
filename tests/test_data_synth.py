"""Crash-scenario generator, the synth/inspect CLI and the bundled dataset."""

from __future__ import annotations

import re
import shlex
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


# ------------------------------------------------------------------ bundled dataset


def readme_commands() -> list[list[str]]:
    text = (DATASETS / "README.md").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("liqbt data synth ")]
    assert len(lines) == 3, "datasets/README.md must hold one regeneration command per symbol"
    return [shlex.split(line) for line in lines]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["btcusdt", "ethusdt", "solusdt"])
def test_bundled_dataset_matches_regeneration_command(tmp_path: Path, index: int) -> None:
    argv = readme_commands()[index]
    out_at = argv.index("--out") + 1
    bundled = Path(argv[out_at])
    assert bundled.parts[0] == "datasets"
    argv[out_at] = str(tmp_path / bundled.name)
    res = CliRunner().invoke(main, argv[1:])
    assert res.exit_code == 0, res.output
    for suffix in ("", "-mark", "-funding_rate"):
        name = bundled.name.replace(".feather", f"{suffix}.feather")
        mine = tmp_path / name
        theirs = DATASETS / name
        assert theirs.exists(), f"missing bundled file {theirs}"
        if name.endswith("funding_rate.feather"):
            pd.testing.assert_frame_equal(load_funding(mine), load_funding(theirs))
        else:
            pd.testing.assert_frame_equal(load_candles(mine), load_candles(theirs))
        assert mine.read_bytes() == theirs.read_bytes(), f"{name} differs byte-wise"


def test_bundled_multi_pair_datasets_align() -> None:
    # the three-pair config needs the same bars on every symbol and each its own price level
    frames = {s: load_candles(DATASETS / f"{s}-5m.feather", gaps="refuse")
              for s in ("btcusdt", "ethusdt", "solusdt")}
    index = frames["btcusdt"].index
    for frame in frames.values():
        assert (frame.index == index).all()
    assert frames["ethusdt"]["open"].iloc[0] == pytest.approx(3_000, rel=0.01)
    assert frames["solusdt"]["open"].iloc[0] == pytest.approx(150, rel=0.01)
    # SOL's crash is deeper than BTC's: a 10x isolated SOL long cannot survive it
    assert max_drawdown(frames["solusdt"]) > max_drawdown(frames["btcusdt"]) > 0.1


def test_bundled_dataset_properties() -> None:
    candles = load_candles(DATASETS / "btcusdt-5m.feather", gaps="refuse")
    mark = load_candles(DATASETS / "btcusdt-5m-mark.feather", gaps="refuse")
    funding = load_funding(DATASETS / "btcusdt-5m-funding_rate.feather")
    total = sum(p.stat().st_size for p in DATASETS.glob("*.feather"))
    assert total < 5_000_000
    assert candles.attrs["timeframe"] == pd.Timedelta("5min")
    assert 21 <= (candles.index[-1] - candles.index[0]).days <= 31
    assert candles["open"].iloc[0] == pytest.approx(60_000, rel=0.01)
    assert (candles.index == mark.index).all()
    assert set(funding.index.hour) == {0, 8, 16}
    # deep enough for a 20x long (> 5 % adverse move within a day) ...
    lows = candles["low"].to_numpy()
    highs = candles["high"].to_numpy()
    day = 288
    worst_day = max(1 - lows[i : i + day].min() / highs[i] for i in range(0, len(lows) - day, 12))
    assert worst_day > 0.08
    # ... but never a 3x liquidation: deepest peak-to-trough well under 30 %
    assert max_drawdown(candles) < 0.20
    assert max_drawdown(mark) < 0.20
    # first half is range-bound (for grid bots)
    first = candles.iloc[: len(candles) // 2]
    assert first["high"].max() / first["low"].min() - 1 < 0.10
