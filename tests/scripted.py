"""Scripted-bar backtests for the broker tests: bars in, broker and strategy out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import backtrader as bt
import pandas as pd

import liqbt

Bar = tuple[float, float, float, float]


def bars_frame(bars: Sequence[Bar], start: str = "2024-01-01", freq: str = "5min") -> pd.DataFrame:
    """OHLC rows (open, high, low, close) as a frame with a naive-UTC 5-minute index."""
    index = pd.date_range(start, periods=len(bars), freq=freq)
    frame = pd.DataFrame(list(bars), columns=["open", "high", "low", "close"], index=index)
    frame["volume"] = 1.0
    return frame


class Scripted(bt.Strategy):
    """Calls ``actions[bar_number](strategy)`` on the bars that have an action; records
    margin events, order notifications and closed trades."""

    params = (("actions", None),)

    def __init__(self) -> None:
        self.margin_events: list[Any] = []
        self.orders: list[bt.Order] = []
        self.closed_trades: list[bt.Trade] = []
        self.event_bar: list[int] = []

    def next(self) -> None:
        action = (self.p.actions or {}).get(len(self))
        if action is not None:
            action(self)

    def notify_margin(self, event: Any) -> None:
        self.margin_events.append(event)
        self.event_bar.append(len(self))

    def notify_order(self, order: bt.Order) -> None:
        self.orders.append(order)

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.isclosed:
            self.closed_trades.append(trade)


def run(
    markets: dict[str, tuple[Sequence[Bar], dict[str, Any]]],
    actions: dict[int, Callable[[Scripted], None]] | None = None,
    cash: float = 1000.0,
    sizer: tuple[type, dict[str, Any]] | None = None,
    **broker_kwargs: Any,
) -> tuple[liqbt.MarginBroker, Scripted]:
    """Run ``Scripted`` over one feed per symbol: ``{symbol: (bars, market kwargs)}``;
    ``sizer`` is ``(SizerClass, params)`` for ``cerebro.addsizer``."""
    cerebro = bt.Cerebro(stdstats=False)
    if sizer is not None:
        cerebro.addsizer(sizer[0], **sizer[1])
    broker = liqbt.MarginBroker(exchange=broker_kwargs.pop("exchange", "binance"), cash=cash,
                                **broker_kwargs)
    cerebro.broker = broker
    for symbol, (bars, market) in markets.items():
        extra = market.pop("frame_extra", None)
        frame = bars_frame(bars)
        feed_cls = bt.feeds.PandasData
        if extra is not None:
            for name, values in extra.items():
                frame[name] = values
            feed_cls = _extended_feed(tuple(extra))
        data = feed_cls(dataname=frame, timeframe=bt.TimeFrame.Minutes, compression=5)
        cerebro.adddata(data, name=symbol)
        broker.set_market(data, symbol=symbol, **market)
    cerebro.addstrategy(Scripted, actions=actions or {})
    strategy = cerebro.run()[0]
    return broker, strategy


def _extended_feed(names: tuple[str, ...]) -> type:
    return type(
        "ExtendedPandasData",
        (bt.feeds.PandasData,),
        {"lines": names, "params": tuple((n, -1) for n in names)},
    )


def events_of(broker: liqbt.MarginBroker, kind: str) -> list[Any]:
    """The broker's events of one kind (``liquidation``, ``fill``, ...)."""
    return [e for e in broker.events if e.kind == kind]


FLAT = (60000.0, 60050.0, 59950.0, 60000.0)
