"""Every real file in ../shared/data loads with the row count and span the README table states.

Skipped cleanly when the shared directory is absent (e.g. a fresh clone).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import backtrader as bt
import pandas as pd
import pytest

from liqbt.data import infer_timeframe, load_candles, load_funding, parse_timeframe
from liqbt.feeds import add_resampled, make_feed

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not (SHARED / "README.md").exists(), reason=f"shared data not present at {SHARED}"
)


def readme_table() -> list[dict[str, str]]:
    """Rows of the README's file table: file, tf, first, last, rows, max_drop."""
    if not (SHARED / "README.md").exists():
        return []
    rows = []
    for line in (SHARED / "README.md").read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        if "/" not in name:  # the crash-bar table repeats names without folders
            continue
        span = cells[4].split("→")
        rows.append(
            {
                "file": name,
                "tf": cells[3],
                "first": span[0].strip(),
                "last": span[-1].strip(),
                "rows": cells[5].replace(",", "").split()[0],
                "max_drop": cells[7],
            }
        )
    return rows


TABLE = readme_table()
DATA_ROWS = [r for r in TABLE if not r["file"].endswith("leverage_tiers.json")]


def test_table_covers_every_file() -> None:
    on_disk = {str(p.relative_to(SHARED)) for p in SHARED.glob("*/*") if p.is_file()}
    assert on_disk == {r["file"] for r in TABLE}
    assert len(DATA_ROWS) == 17


@pytest.mark.parametrize("row", DATA_ROWS, ids=[r["file"] for r in DATA_ROWS])
def test_shared_file_loads_as_documented(row: dict[str, str]) -> None:
    path = SHARED / row["file"]
    funding = "funding_rate" in path.name
    frame = load_funding(path) if funding else load_candles(path)
    assert len(frame) == int(row["rows"])
    # the README gives minutes; funding times keep their (rounded) seconds
    assert frame.index[0].floor("min") == pd.Timestamp(row["first"], tz="UTC")
    assert frame.index[-1].floor("min") == pd.Timestamp(row["last"], tz="UTC")
    assert infer_timeframe(frame) == parse_timeframe(row["tf"])
    if funding:
        assert list(frame.columns) == ["funding_rate"]
        assert frame["funding_rate"].abs().max() <= 0.0075
        return
    assert frame.attrs["kind"] == ("mark" if "-mark" in path.name else "candles")
    gaps = frame.attrs["gaps"]
    if "tooyipjee" in row["file"]:
        # the documented Binance spot maintenance hole on 2021-04-25
        assert len(gaps) == 1 and gaps[0].start.date().isoformat() == "2021-04-25"
    else:
        assert gaps == []
    m = re.match(r"(-?\d+\.\d+)% @ (.+)", row["max_drop"])
    assert m, row["max_drop"]
    drop = frame["low"] / frame["open"] - 1
    assert round(drop.min() * 100, 2) == pytest.approx(float(m.group(1)), abs=0.006)
    assert drop.idxmin() == pd.Timestamp(m.group(2), tz="UTC")


def test_leverage_tiers_file() -> None:
    tiers = json.loads((SHARED / "freqtrade_freqtrade" / "binance_leverage_tiers.json").read_text())
    assert len(tiers) == 349
    assert len(tiers["BTC/USDT:USDT"]) == 12


def test_harthor_feed_with_mark_and_funding_runs() -> None:
    base = SHARED / "harthor_marketlab"
    candles = load_candles(
        base / "BTC_USDT_USDT-5m-futures.feather", start="2025-10-10", end="2025-10-12"
    )
    mark = load_candles(base / "BTC_USDT_USDT-1h-mark.feather")
    funding = load_funding(base / "BTC_USDT_USDT-1h-funding_rate.feather")
    feed = make_feed(candles, mark=mark, funding=funding, name="BTCUSDT")
    assert feed.mark_fallback_bars == 0

    class Probe(bt.Strategy):
        def __init__(self) -> None:
            self.bars = 0
            self.funding: list[tuple[str, float]] = []
            self.worst_mark_low = math.inf
            self.hours: set[int] = set()

        def prenext(self) -> None:
            self.next()

        def next(self) -> None:
            d = self.datas[0]
            self.bars += 1
            self.worst_mark_low = min(self.worst_mark_low, d.mark_low[0])
            if not math.isnan(d.funding_rate[0]):
                self.funding.append((d.datetime.datetime(0).isoformat(), d.funding_rate[0]))
            if len(self.datas[1]):
                self.hours.add(len(self.datas[1]))

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed)
    add_resampled(cerebro, feed, "1h")
    cerebro.addstrategy(Probe)
    strat = cerebro.run()[0]
    assert strat.bars >= 2 * 288
    assert max(strat.hours) == 48
    assert [t for t, _ in strat.funding] == [
        f"2025-10-{d}T{h:02d}:00:00" for d in (10, 11) for h in (0, 8, 16)
    ]
    want = funding.loc["2025-10-10":"2025-10-11", "funding_rate"].tolist()
    assert [r for _, r in strat.funding] == want
    # the 2025-10-10 crash shows on the mark lines (the 1h mark low was 10.8 % below its open;
    # the no-look-ahead rule follows the 5m trade wick scaled by the last known basis)
    assert strat.worst_mark_low < 105_000
