"""One clear line for every bad input, before any work (issue: bad strategy values, files,
output paths, CLI options). Each case asserts the exact problem text and that nothing ran."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from liqbt.cli import main
from liqbt.config import load_config
from liqbt.core.errors import ValidationError

REPO = Path(__file__).resolve().parents[1]
CANDLES = REPO / "datasets" / "2025-10" / "BTCUSDT-5m.feather"


def config(tmp_path: Path, strategy: str, *, balance: float = 1000, leverage: float = 10,
           markets: str | None = None) -> Path:
    path = tmp_path / "run.toml"
    market = markets or textwrap.dedent(f"""
        [[market]]
        symbol = "BTCUSDT"
        candles = "{CANDLES.as_posix()}"
        leverage = {leverage}
        margin_mode = "isolated"
    """)
    path.write_text(f"[account]\nexchange = \"binance\"\nbalance = {balance}\n{market}\n"
                    f"[strategy]\n{textwrap.dedent(strategy)}\n")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_config(path)
    return info.value.problems


# --- strategy parameters: declared, validated at config load, all at once -------------------
def test_grid_parameters_all_problems_at_once(tmp_path: Path) -> None:
    path = config(tmp_path, """
        name = "grid"
        direction = "up"
        lower = 70000
        upper = 60000
        grids = 0
        investment = -800
    """)
    assert problems(path) == [
        "strategy.direction = 'up' is not one of long, short, neutral",
        "strategy.grids = 0 must be >= 1 and <= 1000",
        "strategy.investment = -800 must be > 0",
        "strategy.lower = 70000 must be below strategy.upper = 60000",
    ]


@pytest.mark.parametrize(("line", "expected"), [
    ('grids = "ten"', "strategy.grids = 'ten' must be a whole number >= 1 and <= 1000"),
    ("grids = 20.5", "strategy.grids = 20.5 must be a whole number"),
    ("grids = true", "strategy.grids = True must be a whole number >= 1 and <= 1000"),
    ('spacing = "log"', "strategy.spacing = 'log' is not one of arithmetic, geometric"),
    ("stop_loss = 0", "strategy.stop_loss = 0 must be > 0"),
    ("leverage = 0.5", "strategy.leverage = 0.5 must be >= 1"),
    ("gridz = 5", "strategy.gridz = 5: unknown parameter of GridStrategy"),
])
def test_grid_single_bad_value(tmp_path: Path, line: str, expected: str) -> None:
    path = config(tmp_path, f'name = "grid"\nlower = 100000\nupper = 120000\n{line}\n')
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_grid_lower_upper_required_and_whole_float_accepted(tmp_path: Path) -> None:
    assert problems(config(tmp_path, 'name = "grid"')) == [
        "strategy.lower is required (a number > 0 (USDT))",
        "strategy.upper is required (a number > 0 (USDT))",
    ]
    cfg = load_config(config(tmp_path, 'name = "grid"\nlower = 1e5\nupper = 1.2e5\ngrids = 20.0'))
    assert cfg.strategy.kwargs["grids"] == 20 and isinstance(cfg.strategy.kwargs["grids"], int)


def test_dca_bad_values(tmp_path: Path) -> None:
    path = config(tmp_path, """
        name = "dca"
        direction = "sideways"
        base_order = 0
        max_safety_orders = 2.5
        take_profit = -1
        entry_filter = "macd"
    """)
    assert problems(path) == [
        "strategy.direction = 'sideways' is not one of long, short",
        "strategy.base_order = 0 must be > 0",
        "strategy.max_safety_orders = 2.5 must be a whole number",
        "strategy.take_profit = -1 must be > 0",
        "strategy.entry_filter = 'macd' is not one of none, rsi, bollinger",
    ]


def test_dca_impossible_ladder_is_a_config_error(tmp_path: Path) -> None:
    path = config(tmp_path, 'name = "dca"\nprice_deviation = 50\nstep_scale = 2\n'
                            "max_safety_orders = 3\n")
    (line,) = problems(path)
    assert line.startswith("strategy.price_deviation = 50, step_scale = 2: safety order 2")


def test_hold_bad_values_and_account_cross_checks(tmp_path: Path) -> None:
    assert problems(config(tmp_path, 'name = "hold"\ndirection = "up"\nmargin = -5\n'
                                     "price_buffer = 1\n")) == [
        "strategy.direction = 'up' is not one of long, short",
        "strategy.margin = -5 must be > 0",
        "strategy.price_buffer = 1 must be >= 0 and < 1",
    ]
    # cross-checks with the account and the exchange tiers (margin core), after the values
    assert problems(config(tmp_path, 'name = "hold"\nmargin = 5000\n')) == [
        "strategy.margin = 5000 (total 5000) is above account.balance = 1000",
    ]
    (line,) = problems(config(tmp_path, 'name = "hold"\nmargin = 500\n', leverage=125))
    assert line == ("strategy.margin for BTCUSDT = 500 × leverage is a position of 62,500 USDT "
                    "at 125x; BTCUSDT's tiers allow at most 50,000 USDT at that leverage "
                    "(lower the leverage or the amount)")
    (line,) = problems(config(tmp_path, 'name = "hold"\nmargin = { ETHUSDT = 100 }\n'))
    assert line == "strategy.margin must name every market exactly (missing ['BTCUSDT'], " \
                   "unknown ['ETHUSDT'])"


def test_grid_investment_above_balance(tmp_path: Path) -> None:
    path = config(tmp_path, 'name = "grid"\nlower = 1e5\nupper = 1.2e5\ninvestment = 2000\n')
    assert problems(path) == ["strategy.investment = 2000 is above account.balance = 1000"]


def test_bot_constructed_in_python_uses_the_same_declaration() -> None:
    import backtrader as bt
    from liqbt.strategies import GridStrategy

    cerebro = bt.Cerebro()
    cerebro.addstrategy(GridStrategy, lower=2, upper=1, grids="x")
    cerebro.adddata(bt.feeds.PandasData(dataname=__import__("pandas").DataFrame(
        {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]},
        index=__import__("pandas").date_range("2024-01-01", periods=1))))
    with pytest.raises(ValueError, match=r"GridStrategy: grids = 'x' must be a whole number"):
        cerebro.run()


def test_sweep_set_bad_value_named_once_before_any_run(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["sweep", str(REPO / "configs" / "grid.toml"), "--set",
                                    "strategy.grids=10,abc", "--set", "leverage=2,3",
                                    "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 1
    assert res.output.splitlines() == [
        f"Error: {REPO / 'configs' / 'grid.toml'}: [strategy.grids=abc] strategy.grids = 'abc' "
        "must be a whole number >= 1 and <= 1000",
    ]
    assert not (tmp_path / "c").exists()  # nothing ran, nothing cached


# --- output options checked before any work ------------------------------------------------
def small_config(tmp_path: Path) -> Path:
    from test_runner import write_config

    return write_config(tmp_path, leverage=10)


def test_unwritable_report_is_refused_before_the_run(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, ["run", str(cfg), "--report", str(blocker / "rep")])
    assert res.exit_code == 1
    assert res.output.startswith(f"Error: --report {blocker / 'rep'}: cannot write there")
    assert "final equity" not in res.output and "Traceback" not in res.output


def test_sweep_options_all_checked_before_any_run(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, [
        "sweep", str(cfg), "--set", "leverage=2,3", "--sort", "retrun_pct",
        "--out", str(tmp_path / "rows.xlsx"), "--report", str(blocker / "r"),
        "--scheduler", "nonsense", "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    assert lines[0] == "Error: 4 problems:"
    assert lines[1].startswith("  - --sort 'retrun_pct': no such column (did you mean "
                               "'return_pct'?)")
    assert lines[2] == (f"  - --out {tmp_path / 'rows.xlsx'}: unsupported file type '.xlsx'; "
                        "use FILE.csv or FILE.json")
    assert lines[3].startswith(f"  - --report {blocker / 'r'}: cannot write there")
    assert lines[4].startswith("  - --scheduler 'nonsense': expected tcp://HOST:PORT")
    assert not (tmp_path / "cache").exists()  # nothing ran


def test_unreachable_scheduler_fails_fast(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = small_config(tmp_path)
    t0 = time.monotonic()
    res = CliRunner().invoke(main, ["sweep", str(cfg), "--set", "leverage=2",
                                    "--scheduler", f"tcp://127.0.0.1:{port}"])
    assert time.monotonic() - t0 < 10
    assert res.exit_code == 1
    assert f"--scheduler 'tcp://127.0.0.1:{port}': cannot reach a scheduler there" in res.output


def test_report_into_an_earlier_report_leaves_no_stale_files(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "notes.txt").write_text("mine")  # not liqbt's: kept
    (rep / "index.html").write_text("old")
    (rep / "price_0_SOLUSDT.png").write_bytes(b"old")  # an earlier report's chart
    assert CliRunner().invoke(main, ["run", str(cfg), "--quiet", "--report",
                                     str(rep)]).exit_code == 0
    first = sorted(p.name for p in rep.iterdir())
    assert "price_0_SOLUSDT.png" not in first and "notes.txt" in first
    assert "index.html" in first and not any(n.endswith(".png") for n in first)
    # a compare report writes one page per run ...
    res = CliRunner().invoke(main, ["compare", str(cfg), "--leverage", "2,10", "--quiet",
                                    "--report", str(rep)])
    assert res.exit_code == 0, res.output
    assert {"run-3.html", "run-4.html"} <= {p.name for p in rep.iterdir()}
    # ... and a sweep report into the same folder with fewer run pages removes the rest
    res = CliRunner().invoke(main, ["sweep", str(cfg), "--set", "leverage=2,10", "--set",
                                    "margin_mode=cross,isolated", "--workers", "1",
                                    "--no-cache", "--run-reports", "2", "--report", str(rep)])
    assert res.exit_code == 0, res.output
    second = sorted(p.name for p in rep.iterdir())
    assert "run-3.html" not in second and "notes.txt" in second
    assert {"index.html", "run-1.html", "run-2.html"} <= set(second)


def test_ctrl_c_restores_the_cursor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import liqbt.cli as cli

    strat = tmp_path / "interrupt.py"
    strat.write_text("import backtrader as bt\n"
                     "class Stop(bt.Strategy):\n"
                     "    def next(self):\n"
                     "        raise KeyboardInterrupt\n")
    cfg = small_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('name = "strat.py:BuyOnce"',
                                           'name = "interrupt.py:Stop"')
                   .replace("fraction = 0.5", ""))
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    res = CliRunner().invoke(main, ["run", str(cfg)])
    assert res.exit_code == 130
    assert cli.SHOW_CURSOR in res.stderr and "interrupted" in res.stderr


# --- broken data files: one line naming the file -------------------------------------------
def broken_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty": (b"", "the file is empty (0 bytes); expected a freqtrade-feather file"),
        "truncated": (CANDLES.read_bytes()[:3000], "not a readable Arrow/feather file "
                      "(3,000 bytes: truncated, or not Arrow)"),
        "text": (b"date,open\n1,2\n", "not a readable Arrow/feather file (14 bytes"),
    }
    out = {}
    for name, (payload, message) in files.items():
        path = tmp_path / f"{name}.feather"
        path.write_bytes(payload)
        out[message] = path
    return out


def test_broken_feather_files_name_the_file(tmp_path: Path) -> None:
    from liqbt.data import load_candles

    for message, path in broken_files(tmp_path).items():
        with pytest.raises(ValidationError) as info:
            load_candles(path)
        assert str(info.value).startswith(f"{path}: {message}")
        res = CliRunner().invoke(main, ["data", "inspect", str(path)])
        assert res.exit_code == 1 and res.output.startswith(f"Error: {path}: {message}")
        cfg = config(tmp_path, 'name = "hold"', markets=textwrap.dedent(f"""
            [[market]]
            symbol = "BTCUSDT"
            candles = "{path.as_posix()}"
            leverage = 2
        """))
        res = CliRunner().invoke(main, ["run", str(cfg)])
        assert res.exit_code == 1 and f"{path}: {message}" in res.output
        assert "Traceback" not in res.output


def test_data_list_shows_symbols_timeframes_ranges_gaps(tmp_path: Path) -> None:
    from liqbt.data import load_candles, save_candles

    res = CliRunner().invoke(main, ["data", "list", str(REPO / "datasets")])
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert lines[0].split() == ["symbol", "kind", "tf", "rows", "first", "(UTC)", "last",
                                "(UTC)", "gaps", "file"]
    assert len(lines) == 13
    row = next(ln for ln in lines if ln.endswith("2025-10/BTCUSDT-5m.feather"))
    assert row.split()[:8] == ["BTCUSDT", "candles", "5m", "6,048", "2025-10-01T00:00:00Z",
                               "2025-10-21T23:55:00Z", "0", str(REPO / "datasets" / "2025-10" /
                                                               "BTCUSDT-5m.feather")]
    holed = load_candles(CANDLES, end="2025-10-02")
    save_candles(holed.drop(index=holed.index[10:40]),
                 tmp_path / "ETH_USDT_USDT-5m-futures.feather")
    (tmp_path / "bad.feather").write_bytes(b"")
    res = CliRunner().invoke(main, ["data", "list", str(tmp_path), "--json"])
    files = {Path(f["path"]).name: f for f in __import__("json").loads(res.output)["files"]}
    eth = files["ETH_USDT_USDT-5m-futures.feather"]
    assert (eth["symbol"], eth["timeframe"], eth["rows"], eth["gaps"], eth["missing_bars"]) == (
        "ETHUSDT", "5m", 258, 1, 30)
    assert files["bad.feather"]["error"].startswith("the file is empty")


def test_subclass_with_plain_backtrader_params_still_loads(tmp_path: Path) -> None:
    (tmp_path / "mybot.py").write_text(
        "from liqbt.strategies import HoldStrategy\n"
        "class MyHold(HoldStrategy):\n"
        "    params = (('note', 'x'),)\n")
    path = config(tmp_path, f'name = "{(tmp_path / "mybot.py").as_posix()}:MyHold"\n'
                            'note = "mine"\nmargin = 100\n')
    cfg = load_config(path)
    assert cfg.strategy.kwargs == {"note": "mine", "margin": 100}
    # declared parameters of the base bot are still checked
    path = config(tmp_path, f'name = "{(tmp_path / "mybot.py").as_posix()}:MyHold"\n'
                            'margin = -1\nnope = 1\n')
    assert problems(path) == [
        "strategy.nope = 1: unknown parameter of MyHold (known: direction, margin, leverage, "
        "price_buffer, verbose)",
        "strategy.margin = -1 must be > 0",
    ]


def test_atomic_writes_get_an_ordinary_file_mode(tmp_path: Path) -> None:
    """A report or data file written atomically is readable like one written by open()
    (0666 less the umask), and a replaced file keeps its mode."""
    import os

    from liqbt.outputs import atomic_write_text

    mask = os.umask(0o022)
    try:
        new = tmp_path / "index.html"
        atomic_write_text(new, "<html></html>")
        assert new.stat().st_mode & 0o777 == 0o644
        kept = tmp_path / "rows.csv"
        kept.write_text("a\n")
        kept.chmod(0o640)
        atomic_write_text(kept, "b\n")
        assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "b\n"
    finally:
        os.umask(mask)
