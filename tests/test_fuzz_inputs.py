"""Fuzz: malformed and hostile data files and configs fed to the loaders and the CLI.

Every outcome must be either success or a clear error: exit code 1 or 2 (click usage), the
message names the file, no traceback, no exception escaping, and no file in the folder
modified (inputs are never "repaired" in place, nothing is written next to them).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liqbt.cli import main
from liqbt.core.errors import ValidationError
from liqbt.data import load_candles, load_funding

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "datasets" / "2020-03" / "BTCUSDT-1h.feather"
REAL_BYTES = REAL.read_bytes()
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir()) if p.is_file()}


def assert_clean_failure(result: Any, path: Path, expected_names: list[str] | None = None) -> None:
    """Exit 0, or exit 1/2 with one 'Error:' naming the file; never a traceback."""
    text = result.output
    assert "Traceback" not in text, text
    if result.exit_code == 0:
        assert result.exception is None
        return
    assert result.exit_code in (1, 2), (result.exit_code, text, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Error" in text, text
    names = expected_names or [path.name]
    assert any(n in text for n in names), (names, text)


# --- data files --------------------------------------------------------------------------
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -1.0, 1e308, -0.0, 1.0]),
)
cells = st.one_of(floats, st.integers(-(2**70), 2**70), st.text(max_size=8), st.none(),
                  st.booleans())


@st.composite
def feather_payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["truncated", "garbage", "mutated", "columns"]))
    if kind == "truncated":
        return REAL_BYTES[: draw(st.integers(0, len(REAL_BYTES) - 1))]
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    frame = pd.read_feather(REAL).head(draw(st.integers(0, 12)))
    if kind == "columns":
        drop = draw(st.lists(st.sampled_from(list(frame.columns)), max_size=3, unique=True))
        frame = frame.drop(columns=drop)
        if draw(st.booleans()):
            frame["date"] = [str(i) for i in range(len(frame))] if "date" in frame else None
    else:
        for _ in range(draw(st.integers(1, 4))):
            if not len(frame):
                break
            row = draw(st.integers(0, len(frame) - 1))
            col = draw(st.sampled_from(["open", "high", "low", "close", "volume", "date"]))
            if col == "date":
                frame.loc[row, "date"] = frame["date"].iloc[draw(st.integers(0, len(frame) - 1))]
            else:
                frame.loc[row, col] = draw(floats)
    out = Path(tempfile.mkdtemp()) / "x.feather"
    frame.reset_index(drop=True).to_feather(out)
    return out.read_bytes()


json_rows = st.one_of(
    st.lists(st.lists(cells, max_size=8), max_size=6),
    st.dictionaries(st.text(max_size=4), cells, max_size=3),
    cells,
)


@st.composite
def data_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["feather", "json", "csv", "funding"]))
    if kind == "feather":
        return "BTCUSDT-1h.feather", draw(feather_payloads())
    if kind == "funding":
        return "BTCUSDT-1h-funding_rate.feather", draw(feather_payloads())
    if kind == "json":
        if draw(st.booleans()):
            return "BTCUSDT-1h.json", draw(st.binary(max_size=100))
        return "BTCUSDT-1h.json", json.dumps(draw(json_rows)).encode()
    header = draw(st.sampled_from(["date,open,high,low,close,volume\n", "", "a;b\n"]))
    rows = draw(st.lists(st.lists(cells, min_size=1, max_size=7), max_size=5))
    body = "".join(",".join(str(c) for c in r) + "\n" for r in rows)
    return "BTCUSDT-1h.csv", (header + body).encode("utf-8", "surrogatepass")


@SETTINGS
@given(data_files())
def test_fuzz_data_files_loaders_and_cli(file: tuple[str, bytes]) -> None:
    name, payload = file
    folder = Path(tempfile.mkdtemp())
    path = folder / name
    path.write_bytes(payload)
    before = snapshot(folder)
    loader = load_funding if "funding" in name else load_candles
    try:
        loader(path)
    except ValidationError as exc:
        assert str(exc).startswith(str(path)), str(exc)
        assert exc.problems and all(p.strip() for p in exc.problems)
    for argv in (["data", "inspect", str(path)], ["data", "list", str(folder)]):
        result = CliRunner().invoke(main, argv)
        assert_clean_failure(result, path)
        if argv[1] == "list":
            assert result.exit_code == 0  # an unreadable file is listed with its error
    assert snapshot(folder) == before


# --- configs -----------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) \
            + " }"
    raise TypeError(value)


scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.booleans(), st.sampled_from(["", "grid", "dca", "hold", "cross",
                                                          "isolated", "2025-10-05", "up"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.sampled_from(["BTCUSDT", "x", "1"]), scalars, max_size=2))
STRATEGY_KEYS = ["name", "direction", "lower", "upper", "grids", "spacing", "investment",
                 "leverage", "margin", "base_order", "safety_order", "max_safety_orders",
                 "take_profit", "price_buffer", "entry_filter", "zzz"]
MARKET_KEYS = ["symbol", "candles", "mark", "funding", "leverage", "margin_mode",
               "auto_top_up", "colour"]
ACCOUNT_KEYS = ["exchange", "balance", "position_mode", "settlement", "debit", "taker_fee"]
BACKTEST_KEYS = ["start", "end", "intrabar", "strict_data"]


def section(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=4)


@st.composite
def configs(draw: st.DrawFn, data_file: str) -> str:
    if draw(st.integers(0, 9)) == 0:  # not TOML at all
        return draw(st.text(max_size=60))
    base_strategy = draw(st.sampled_from([
        {"name": "hold", "margin": 100},
        {"name": "grid", "lower": 5000, "upper": 9000, "grids": 5, "investment": 500},
        {"name": "dca", "base_order": 200, "safety_order": 200},
    ]))
    account = {"exchange": "binance", "balance": 1000, **draw(section(ACCOUNT_KEYS))}
    market = {"symbol": "BTCUSDT", "candles": data_file, "leverage": 3,
              **draw(section(MARKET_KEYS))}
    strategy = {**base_strategy, **draw(section(STRATEGY_KEYS))}
    backtest = draw(section(BACKTEST_KEYS))
    lines = ["[account]"] + [f"{k} = {toml_value(v)}" for k, v in account.items()]
    lines += ["[[market]]"] + [f"{k} = {toml_value(v)}" for k, v in market.items()]
    lines += ["[strategy]"] + [f"{k} = {toml_value(v)}" for k, v in strategy.items()]
    lines += ["[backtest]"] + [f"{k} = {toml_value(v)}" for k, v in backtest.items()]
    if draw(st.booleans()):
        lines.append(f"[{draw(st.sampled_from(['extra', 'market', 'strategy.params']))}]")
    return "\n".join(lines) + "\n"


TINY = pd.read_feather(REAL).head(48)


@SETTINGS
@given(st.data())
def test_fuzz_configs_cli(data: st.DataObject) -> None:
    folder = Path(tempfile.mkdtemp())
    TINY.to_feather(folder / "btc-1h.feather")
    text = data.draw(configs("btc-1h.feather"))
    path = folder / "run.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = snapshot(folder)
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert_clean_failure(result, path, [path.name, "btc-1h.feather", "--"])
    assert snapshot(folder) == before


@SETTINGS
@given(key=st.sampled_from(["strategy.margin", "leverage", "margin_mode", "balance",
                            "strategy.price_buffer", "intrabar", "nope"]),
       raw=st.lists(st.one_of(st.text(alphabet="0123456789.-eEnaif abc", max_size=6),
                              st.sampled_from(["nan", "inf", "-1", "0", "1e400", "true"])),
                    min_size=1, max_size=3))
def test_fuzz_sweep_set_values(key: str, raw: list[str]) -> None:
    folder = Path(tempfile.mkdtemp())
    TINY.to_feather(folder / "btc-1h.feather")
    path = folder / "run.toml"
    path.write_text('[account]\nexchange = "binance"\nbalance = 1000\n[[market]]\n'
                    'symbol = "BTCUSDT"\ncandles = "btc-1h.feather"\nleverage = 2\n'
                    '[strategy]\nname = "hold"\nmargin = 100\n')
    before = snapshot(folder)
    value = ",".join(v.replace(",", "") for v in raw)
    result = CliRunner().invoke(main, ["sweep", str(path), "--set", f"{key}={value}",
                                       "--workers", "1", "--no-cache", "--quiet"])
    assert_clean_failure(result, path, [path.name, "--set"])
    assert snapshot(folder) == before


def test_fuzz_helpers_catch_a_traceback() -> None:
    # the checker itself fails on an escaping exception (a test that cannot fail is a defect)
    class Fake:
        output = "Traceback (most recent call last)"
        exit_code = 1
        exception = RuntimeError("x")

    try:
        assert_clean_failure(Fake(), Path("f"))
    except AssertionError:
        return
    raise AssertionError("assert_clean_failure accepted a traceback")

