"""Reports: one self-contained Bokeh page per run; sweep and compare pages linking runs."""

from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta

import numpy as np
import pytest
from test_runner import write_config

from liqbt.config import load_config
from liqbt.report import (
    Link,
    bucket_starts,
    html_table,
    liquidation_distance_pct,
    run_link,
    write_compare_report,
    write_run_report,
    write_sweep_report,
    write_trades_csv,
)
from liqbt.runner import run_config


@pytest.fixture(scope="module")
def liquidated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    return run_config(load_config(write_config(tmp, leverage=10)))


def test_run_report_is_one_offline_page(liquidated, tmp_path):
    index = write_run_report(liquidated, tmp_path / "rep")
    assert index == tmp_path / "rep" / "index.html"
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["index.html"]
    page = index.read_text()
    # JavaScript inlined: no script or stylesheet fetched from anywhere
    assert not re.search(r"<script[^>]+src=", page)
    markup = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "<link" not in markup and "http" not in markup
    for name in ("price-BTCUSDT", "position", "equity", "drawdown", "margin-ratio",
                 "liquidation-distance", "trades"):
        assert f'"{name}"' in page
    assert "2024-01-01T00:50:00Z" in page  # the liquidation table
    for section in ("id='summary'", "id='statistics'", "id='exit-reasons'"):
        assert section in page
    # a file name works as well as a folder
    assert write_run_report(liquidated, tmp_path / "one.html").name == "one.html"


def test_report_needs_the_timeline(tmp_path):
    result = run_config(load_config(write_config(tmp_path, leverage=2)), timeline=False)
    with pytest.raises(ValueError, match="timeline=True"):
        write_run_report(result, tmp_path / "rep")


def test_trades_csv(liquidated, tmp_path):
    path = write_trades_csv(liquidated, tmp_path / "t.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(liquidated.trades)
    first = liquidated.trades[0]
    assert float(rows[0]["net"]) == pytest.approx(first["pnl"] - first["fees"])
    assert rows[0]["reason"] == "liquidation"


def test_distance_to_liquidation_reads_the_same_for_longs_and_shorts():
    # long at mark 100 with LP 80: 20 % to fall; short at mark 100 with LP 125: 25 % to rise;
    # flat: undefined; a short's LP 20x above the mark stays a number, not a squashed axis
    d = liquidation_distance_pct([100, 100, 100, 100], [80, 125, np.nan, 2000], [1, -2, 0, -1])
    assert d[:2] == pytest.approx([20.0, 25.0])
    assert np.isnan(d[2]) and d[3] == pytest.approx(1900.0)


def test_downsampling_buckets():
    assert bucket_starts(10_000) is None
    starts = bucket_starts(525_600)  # a year of 1m bars
    assert starts is not None and len(starts) <= 5_000 and starts[0] == 0
    assert np.all(np.diff(starts) == 106)


def test_long_run_is_downsampled(liquidated, tmp_path):
    """A run with 12,000 bars draws at most 5,000 candles whose highs and lows keep the
    extremes of their bars."""
    import copy

    r = copy.deepcopy(liquidated)
    n = 12_000
    t0 = datetime(2024, 1, 1)
    sym = next(iter(r.timeline["symbols"]))
    r.timeline["time"] = [t0 + timedelta(minutes=i) for i in range(n)]
    wave = 100 + 10 * np.sin(np.arange(n) / 500)
    for key in ("equity", "margin_balance", "margin_ratio", "exposed", "wallet", "available"):
        if key in r.timeline:
            r.timeline[key] = list(np.full(n, 1000.0))
    row = r.timeline["symbols"][sym]
    for key in ("open", "close", "mark"):
        row[key] = list(wave)
    row["high"], row["low"] = list(wave + 1), list(wave - 1)
    row["high"][7_777] = 500.0  # one spike must survive the bucketing
    row["liquidation_price"] = list(np.full(n, np.nan))
    row["size"] = list(np.zeros(n))
    row["margin_ratio"] = list(np.zeros(n))
    page = write_run_report(r, tmp_path / "long.html").read_text()
    assert "5,000 candles of 12,000 bars" in page or "4,000 candles of 12,000 bars" in page
    assert len(page) < 4_000_000


def test_html_helpers(tmp_path):
    table = html_table(["run", "return"], [[Link("open", "runs/a.html"), 1.5], ["<b>", None]])
    assert "<a href='runs/a.html'>open</a>" in table and "&lt;b&gt;" in table
    assert "1.50" in table and "–" in table
    (tmp_path / "runs" / "x").mkdir(parents=True)
    assert run_link(tmp_path / "runs" / "x", tmp_path) == "runs/x/index.html"
    assert run_link(tmp_path / "a.html", tmp_path / "runs") == "../a.html"


def test_sweep_report(tmp_path):
    rows = [{"leverage": lev, "margin_mode": mode, "return_pct": float(lev),
             "liquidations": int(lev > 5)} for lev in (1, 5, 10) for mode in ("cross", "isolated")]
    rows[-1]["wiped_out"] = True
    (tmp_path / "run-1.html").write_text("x")
    index = write_sweep_report(rows, tmp_path, keys=["leverage", "margin_mode"],
                               run_reports={0: tmp_path / "run-1.html"})
    text = index.read_text()
    # the leverage at which each mode dies is spelled out next to the heatmap
    assert "cross: first liquidation at 10x; isolated: first liquidation at 10x" in text
    assert '"heatmap"' in text and "<a href='run-1.html'>open</a>" in text
    assert not list(tmp_path.glob("*.png"))


def test_compare_report_links_runs(liquidated, tmp_path):
    page = write_run_report(liquidated, tmp_path / "run-1.html")
    index = write_compare_report([liquidated], tmp_path, [page])
    text = index.read_text()
    assert "<a href='run-1.html'>open</a>" in text and liquidated.label in text
