"""``liqbt run / compare / sweep / max-leverage`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from test_runner import write_config

from liqbt.cli import main

RUN_KEYS = {
    "initial_balance", "final_equity", "return_pct", "max_drawdown_pct", "fees_paid",
    "funding_paid", "funding_by_symbol", "insurance_fund_delta", "wiped_out", "wipeout_time",
    "liquidations", "top_ups", "trades", "funding_note", "min_liquidation_distance_pct",
}


def test_run_json_is_one_object(tmp_path):
    cfg = write_config(tmp_path, leverage=10)
    res = CliRunner().invoke(main, ["run", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert RUN_KEYS <= set(data)
    liq = data["liquidations"][0]
    assert set(liq) >= {"time", "symbol", "side", "size", "trigger_price", "settlement_price",
                        "loss", "partial"}
    assert liq["time"].endswith("Z")
    assert set(data["trades"][0]) >= {"symbol", "side", "size", "entry_time", "entry_price",
                                      "exit_time", "exit_price", "pnl", "fees", "reason"}
    assert data["trades"][0]["reason"] == "liquidation"


def test_run_table_and_report(tmp_path):
    cfg = write_config(tmp_path, leverage=10)
    res = CliRunner().invoke(main, ["run", str(cfg), "--quiet", "--report",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "liquidations      1" in res.output and "2024-01-01T00:50:00Z" in res.output
    assert (tmp_path / "rep" / "index.html").exists()
    assert "statistics" in res.output and "exit reasons           liquidation 1" in res.output


def test_output_paths_are_checked_before_the_run(tmp_path):
    cfg = write_config(tmp_path, leverage=10)
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(main, ["run", str(cfg), "--report", str(tmp_path / "file" / "rep"),
                                    "--trades-csv", str(tmp_path / "t.txt")])
    assert res.exit_code == 1
    assert "--report" in res.output and "--trades-csv" in res.output
    assert "statistics" not in res.output  # nothing ran
    res = CliRunner().invoke(main, ["run", str(cfg), "--quiet", "--trades-csv",
                                    str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t.csv").read_text().startswith("symbol,side,size,")


def test_compare_table(tmp_path):
    cfg = write_config(tmp_path, leverage=10)
    res = CliRunner().invoke(main, ["compare", str(cfg), "--margin-modes", "cross,isolated",
                                    "--leverage", "3,10"])
    assert res.exit_code == 0, res.output
    header = res.output.splitlines()[0]
    for label in ("cross 3x", "isolated 3x", "cross 10x", "isolated 10x"):
        assert label in header
    assert "liquidations" in res.output
    res = CliRunner().invoke(main, ["compare", str(cfg), "--json"])
    assert len(json.loads(res.output)["runs"]) == 2


def test_sweep_cli_out_and_cache(tmp_path):
    cfg = write_config(tmp_path)
    args = ["sweep", str(cfg), "--set", "leverage=2,10", "--set", "margin_mode=cross,isolated",
            "--workers", "1", "--cache-dir", str(tmp_path / "c"), "--out",
            str(tmp_path / "out.csv"), "--json", "--report", str(tmp_path / "rep")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["computed"] == 4 and len(data["rows"]) == 4
    assert data["rows"][0]["return_pct"] >= data["rows"][-1]["return_pct"]
    assert (tmp_path / "out.csv").read_text().count("\n") == 5
    page = (tmp_path / "rep" / "index.html").read_text()
    assert '"heatmap"' in page and "<a href='run-1.html'>open</a>" in page
    assert (tmp_path / "rep" / "run-4.html").exists()
    again = json.loads(CliRunner().invoke(main, args).output)
    assert again["cached"] == 4 and again["rows"] == data["rows"]


def test_max_leverage_cli(tmp_path):
    cfg = write_config(tmp_path)
    res = CliRunner().invoke(main, ["max-leverage", str(cfg), "--margin-modes", "isolated",
                                    "--max", "10"])
    assert res.exit_code == 0, res.output
    assert "4x" in res.output and "5x" in res.output
    res = CliRunner().invoke(main, ["max-leverage", str(cfg), "--margin-modes", "isolated",
                                    "--max", "10", "--report", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<a href='run-isolated-4x.html'>4x</a>" in page
    assert "<a href='run-isolated-5x.html'>5x</a>" in page
    assert "liquidations" in (tmp_path / "rep" / "run-isolated-5x.html").read_text()


def test_errors_are_click_errors(tmp_path):
    cfg = write_config(tmp_path, leverage=500)
    res = CliRunner().invoke(main, ["run", str(cfg)])
    assert res.exit_code != 0
    assert "leverage = 500" in res.output
    res = CliRunner().invoke(main, ["sweep", str(cfg), "--set", "leverage"])
    assert res.exit_code != 0


def test_sweep_table_is_risk_aware_and_heatmap_takes_any_two_keys(tmp_path):
    grid = Path(__file__).parents[1] / "configs" / "grid.toml"
    args = ["sweep", str(grid), "--set", "leverage=5,20", "--set", "strategy.grids=20,40",
            "--set", "end=2025-10-11T00:00:00", "--workers", "1", "--no-cache",
            "--heatmap", "strategy.grids,leverage", "--report", str(tmp_path / "rep"),
            "--run-reports", "0"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "outcome" in res.output.splitlines()[0]
    assert "min_liquidation_distance_pct" in res.output and "stopped_kind" in res.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Return by strategy.grids and leverage" in page
    data = json.loads(CliRunner().invoke(main, [*args[:-4], "--json"]).output)
    from liqbt.outcome import OUTCOMES

    ranks = [OUTCOMES.index(r["outcome"]) for r in data["rows"]]
    assert ranks == sorted(ranks)
    bad = CliRunner().invoke(main, ["sweep", str(grid), "--set", "leverage=5", "--heatmap",
                                    "leverage,colour", "--sort", "nope"])
    assert bad.exit_code != 0 and "not swept" in bad.output and "--sort 'nope'" in bad.output
