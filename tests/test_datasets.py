"""The bundled real-data windows: provenance, reproduction from the source files, contents.

``datasets/extract.py`` must reproduce every bundled file byte for byte from the freqtrade files
it was cut from; that check is skipped when the source folder (``../shared/data`` beside the
repository) is absent, e.g. on a fresh clone. Everything else runs everywhere.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from liqbt.data import load_candles, load_funding
from liqbt.data.download import plan

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO / "datasets"
SOURCE = REPO.parent / "shared" / "data"


def extract_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("liqbt_datasets_extract", DATASETS / "extract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


WINDOWS = extract_module().WINDOWS


def test_every_bundled_file_is_listed_and_small() -> None:
    bundled = sorted(str(p.relative_to(DATASETS)) for p in DATASETS.rglob("*.feather"))
    assert bundled == sorted(w.target for w in WINDOWS)
    total = sum(p.stat().st_size for p in DATASETS.rglob("*") if p.is_file())
    assert total < 1_000_000  # the issue allows 5 MB; 1 MB is plenty for these windows


@pytest.mark.skipif(not SOURCE.is_dir(), reason=f"source data not present at {SOURCE}")
def test_extract_reproduces_bundled_files_byte_for_byte(tmp_path: Path) -> None:
    module = extract_module()
    assert module.main(["--source", str(SOURCE), "--out", str(tmp_path)]) == 0
    for w in WINDOWS:
        mine, theirs = tmp_path / w.target, DATASETS / w.target
        if "funding_rate" in w.target:
            pd.testing.assert_frame_equal(load_funding(mine), load_funding(theirs))
        else:
            pd.testing.assert_frame_equal(load_candles(mine), load_candles(theirs))
        assert mine.read_bytes() == theirs.read_bytes(), f"{w.target} differs byte-wise"


def test_extract_names_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert extract_module().main(["--source", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "source file(s) missing" in err and "BTC_USDT_USDT-5m-futures.feather" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: w.target)
def test_window_is_contiguous_and_covers_its_range(window) -> None:
    path = DATASETS / window.target
    start, end = pd.Timestamp(window.start, tz="UTC"), pd.Timestamp(window.end, tz="UTC")
    if "funding_rate" in window.target:
        frame = load_funding(path)
        assert set(frame.index.hour) == {0, 8, 16}
        assert len(frame) == (end - start) / pd.Timedelta("8h")
    else:
        frame = load_candles(path, gaps="refuse")
        tf = frame.attrs["timeframe"]
        assert tf == pd.Timedelta("5min" if "-5m" in window.target else "1h")
        assert frame.index[0] == start and frame.index[-1] == end - tf
        assert len(frame) == (end - start) / tf


def test_crash_bars_are_the_documented_ones() -> None:
    btc = load_candles(DATASETS / "2025-10/BTCUSDT-5m.feather")
    bar = btc.loc["2025-10-10 21:15"]
    assert (bar["open"], bar["low"]) == (112_137.6, 102_193.6)
    assert btc["low"].min() == 101_516.5
    b2020 = load_candles(DATASETS / "2020-03/BTCUSDT-1h.feather")
    assert (b2020.loc["2020-03-12 10:00", "open"], b2020.loc["2020-03-12 10:00", "low"]) == (
        7358.51, 5199.17)
    f2020 = load_funding(DATASETS / "2020-03/BTCUSDT-1h-funding_rate.feather")
    assert f2020.loc["2020-03-13 08:00", "funding_rate"] == pytest.approx(-0.003)
    b2021 = load_candles(DATASETS / "2021-05/BTCUSDT-1h.feather")
    assert b2021.loc["2021-05-19 13:00", "low"] == 28_688.0


def readme_download_commands() -> list[list[str]]:
    text = (DATASETS / "README.md").read_text(encoding="utf-8")
    return [shlex.split(ln) for ln in text.splitlines() if ln.startswith("liqbt data download ")]


def test_readme_download_commands_fetch_every_bundled_window(tmp_path: Path) -> None:
    # each bundled file is the output name of one README command whose range is the window
    produced: dict[str, tuple[str, str]] = {}
    for argv in readme_download_commands():
        opts: dict[str, str] = {}
        flags: set[str] = set()
        rest = argv[3:]
        while rest:
            if rest[0] in ("--mark", "--funding"):
                flags.add(rest.pop(0))
            else:
                opts[rest[0]] = rest[1]
                rest = rest[2:]
        out = Path(opts["--out"])
        assert out.parts[0] == "datasets"
        symbol, tf = opts["--symbol"], opts["--timeframe"]
        items = plan(symbol, tf, opts["--start"], opts["--end"], tmp_path,
                     mark="--mark" in flags, funding="--funding" in flags)
        names = [f"{symbol}-{tf}.feather"]
        names += [f"{symbol}-{tf}-mark.feather"] * ("--mark" in flags)
        names += [f"{symbol}-{tf}-funding_rate.feather"] * ("--funding" in flags)
        assert items  # the archive plan is not empty
        end = (pd.Timestamp(opts["--end"]) + pd.Timedelta("1D")).strftime("%Y-%m-%d")
        for name in names:
            produced[str(Path(*out.parts[1:]) / name)] = (opts["--start"], end)
    for w in WINDOWS:
        assert produced.get(w.target) == (w.start, w.end), w.target


def test_readme_states_origin() -> None:
    text = (DATASETS / "README.md").read_text(encoding="utf-8")
    assert "data.binance.vision" in text and "Binance" in text
    assert re.search(r"python datasets/extract\.py", text)
