"""Real-data check (issue 3): a 20x isolated long into a real crash is liquidated at the bar and
price the margin core predicts; the same run at 2x is not.

Uses ``../shared/data`` beside the repository (Binance BTCUSDT perpetual 5m candles, 1h mark
prices and funding around 2025-10-10, or the 1h futures around 2021-05-19). Prints, for each
leverage, the core's LP, the first bar whose mark path crosses it, and what the broker did.

    python benchmarks/real_crash_check.py [--event 2025-10-10|2021-05-19]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import backtrader as bt
import numpy as np

import liqbt
from liqbt.core import margin as mg
from liqbt.core.profile import load_profile
from liqbt.data.loaders import load_candles, load_funding
from liqbt.feeds import align_mark, make_feed

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EVENTS = {
    "2025-10-10": ("harthor_marketlab/BTC_USDT_USDT-5m-futures.feather",
                   "harthor_marketlab/BTC_USDT_USDT-1h-mark.feather",
                   "harthor_marketlab/BTC_USDT_USDT-1h-funding_rate.feather",
                   "2025-10-10 12:00", "2025-10-11 06:00"),
    "2021-05-19": ("roshan7869_algotrading/BTC_USDT_USDT-1h-futures.feather",
                   "roshan7869_algotrading/BTC_USDT_USDT-1h-mark.feather",
                   "roshan7869_algotrading/BTC_USDT_USDT-1h-funding_rate.feather",
                   "2021-05-18 00:00", "2021-05-21 00:00"),
}


class Hold(bt.Strategy):
    params = (("notional", 10_000.0),)

    def nextstart(self) -> None:
        self.buy(size=self.p.notional / self.data.close[0])


def run(event: str, leverage: float, notional: float = 10_000.0) -> None:
    candles_file, mark_file, funding_file, start, end = EVENTS[event]
    candles = load_candles(SHARED / candles_file, start=start, end=end)
    mark = load_candles(SHARED / mark_file, kind="mark")
    funding = load_funding(SHARED / funding_file)
    feed = make_feed(candles, mark=mark, funding=funding, name="BTCUSDT")
    cerebro = bt.Cerebro(stdstats=False)
    data = cerebro.adddata(feed, name="BTCUSDT")
    broker = liqbt.MarginBroker(exchange="binance", cash=notional / leverage * 1.05 + 10)
    cerebro.broker = broker
    broker.set_market(data, symbol="BTCUSDT", leverage=leverage, margin_mode="isolated")
    cerebro.addstrategy(Hold, notional=notional)
    cerebro.run()

    entry = float(candles["open"].iloc[1])
    size = notional / float(candles["close"].iloc[0])
    tiers = load_profile("binance").symbol("BTCUSDT").tiers
    funding_moves = [e for e in broker.events if e.kind == "funding"]
    lp = mg.isolated_liquidation_price(1, size, entry, size * entry / leverage, tiers)
    tf = candles.index[1] - candles.index[0]
    marks, _ = align_mark(candles, mark, tf)
    lows = marks["mark_low"].to_numpy()
    crossing = np.nonzero(lows[1:] <= (lp or 0))[0]
    predicted = marks.index[crossing[0] + 1] if len(crossing) else None
    liqs = [e for e in broker.events if e.kind == "liquidation"]
    print(f"{event} {leverage:>4g}x: entry {entry:,.1f} size {size:.6f} core LP {lp:,.2f} "
          f"(before funding; {len(funding_moves)} funding events)")
    print(f"    predicted first crossing bar: {predicted}")
    for e in liqs:
        print(f"    broker liquidation at {e.time} trigger {e.trigger_price:,.2f} "
              f"settlement {e.settlement_price:,.2f} loss {e.loss:,.2f}")
    if not liqs:
        print(f"    no liquidation; equity {broker.getvalue():,.2f}; min distance to LP "
              f"{broker.min_liquidation_distance:.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--event", choices=sorted(EVENTS), default="2025-10-10")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} not found: this check needs ../shared/data")
    for leverage in (20, 2):
        run(args.event, leverage)


if __name__ == "__main__":
    main()
