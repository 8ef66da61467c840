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
