"""Issue 7, done-when: the rules together on real Binance 5m perpetual candles with 1h mark
prices and funding (2025-10-10 crash), with events that add up to the cent. Skips cleanly when
``../shared/data`` is not beside the repository."""

from __future__ import annotations

from pathlib import Path

import backtrader as bt
import pytest

import liqbt

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "harthor_marketlab"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")


class Ladder(bt.Strategy):
    """A long with two resting safety orders and a short hedge leg opened on the first bar."""

    def nextstart(self) -> None:
        price = self.data.close[0]
        self.buy(size=0.02)
        self.buy(size=0.02, price=price * 0.97, exectype=bt.Order.Limit)
        self.buy(size=0.02, price=price * 0.94, exectype=bt.Order.Limit)


@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_top_up_funding_and_liquidation_reconcile_on_real_crash(mode):
    from liqbt.data.loaders import load_candles, load_funding
    from liqbt.feeds import make_feed

    candles = load_candles(SHARED / "BTC_USDT_USDT-5m-futures.feather",
                           start="2025-10-08", end="2025-10-12")
    mark = load_candles(SHARED / "BTC_USDT_USDT-1h-mark.feather", kind="mark")
    funding = load_funding(SHARED / "BTC_USDT_USDT-1h-funding_rate.feather")
    feed = make_feed(candles, mark=mark, funding=funding, name="BTCUSDT")
    cerebro = bt.Cerebro(stdstats=False)
    data = cerebro.adddata(feed, name="BTCUSDT")
    broker = liqbt.MarginBroker(exchange="bybit", cash=1500)
    cerebro.broker = broker
    broker.set_market(data, symbol="BTCUSDT", leverage=25, margin_mode=mode,
                      auto_top_up=mode == "isolated")
    cerebro.addstrategy(Ladder)
    cerebro.run()

    account = broker.account
    kinds = {e.kind for e in broker.events}
    assert "funding" in kinds and "fill" in kinds
    funding_events = [e for e in broker.events if e.kind == "funding"]
    assert sum(e.payment for e in funding_events) == pytest.approx(account.funding_paid, abs=1e-9)
    fees = sum(e.fee for e in broker.events if e.kind == "fill")
    assert fees == pytest.approx(account.fees_paid, abs=1e-9)
    fund = sum(e.insurance_fund_delta for e in broker.events if e.kind == "liquidation")
    assert fund == pytest.approx(account.insurance_fund, abs=1e-6)
    realized = sum(e.realized_pnl for e in broker.events if e.kind == "fill")
    unrealized = sum(p.unrealized_pnl for p in account.open_positions())
    expected = 1500 + realized + unrealized - fees - account.funding_paid - fund
    assert round(broker.getvalue(), 2) == round(expected, 2)
    assert broker.getvalue() >= 0
    if mode == "isolated":
        assert "top_up" in kinds  # the 10-10 crash reaches the LP: margin is added first
