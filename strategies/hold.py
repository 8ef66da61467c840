"""Hold: one leveraged market order per market on the first bar, then nothing (the baseline bot).

With several data feeds (a multi-pair config) the bot opens one position on **every** feed the
broker has a market for, each at that market's own leverage (unless ``leverage`` is given).
``margin`` is then either one number, split equally between the feeds, or a table per symbol
(``margin = { BTCUSDT = 300, ETHUSDT = 300, SOLUSDT = 200 }``); without ``margin`` the available
balance on the first bar is split equally. With one feed the behaviour is the single-market bot's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import backtrader as bt

from .base import MarginAwareStrategy


class HoldStrategy(MarginAwareStrategy):
    """Buy (or sell) once per market and hold.

    Size: ``notional = margin / (1 / leverage + taker_fee)`` so that the initial margin plus the
    taker fee equals ``margin``; valued at ``close × (1 + price_buffer)`` because the market
    order fills at the next open, which the close cannot know (a higher open would otherwise
    make an all-in order fail the margin re-check at fill). ``size = notional / price``,
    rounded down to the symbol's size step. If an order of any market is below the exchange's
    minimum notional, no order is sent and ``stopped_reason`` says which.

    Attributes
    ----------
    launch_report
        ``direction, margin, leverage, size, reference_price, notional`` of the first market;
        with several markets also ``markets``: the same keys per symbol (and ``margin`` is the
        total).
    """

    params: Any = (
        ("direction", "long"),
        ("margin", None),
        ("leverage", None),
        ("price_buffer", 0.005),
        ("verbose", False),
    )
    param_docs: ClassVar[dict[str, str]] = {
        "direction": "long|short; long; side of the positions",
        "margin": "USDT or {SYMBOL = USDT}; all available balance; margin (incl. the taker "
                  "fee) to commit, split equally between markets when one number",
        "leverage": "x; each broker market's leverage; leverage used for the size",
        "price_buffer": "fraction; 0.005; headroom for the next open above the close",
        "verbose": "bool; False; print the bot's log lines",
    }

    def __init__(self) -> None:
        super().__init__()
        if self.p.direction not in ("long", "short"):
            raise ValueError(f"HoldStrategy: direction = {self.p.direction!r} is not long|short")
        self.entered = False

    def _feeds(self) -> list[tuple[Any, str]]:
        """(data, symbol) of every feed with a broker market, first feed first."""
        feeds: list[tuple[Any, str]] = []
        for data in self.datas:
            try:
                symbol = self.broker.symbol_of(data)
            except Exception:  # a resampled/filtered view without a market of its own
                continue
            if symbol not in {s for _, s in feeds}:
                feeds.append((data, symbol))
        return feeds

    def _margins(self, symbols: list[str]) -> dict[str, float]:
        margin = self.p.margin
        if isinstance(margin, Mapping):
            missing = [s for s in symbols if s not in margin]
            unknown = [s for s in margin if s not in symbols]
            if missing or unknown:
                raise ValueError(
                    f"HoldStrategy: margin table must name every market exactly "
                    f"(missing {missing}, unknown {unknown})"
                )
            return {s: float(margin[s]) for s in symbols}
        total = float(margin) if margin is not None else self.broker.get_cash()
        return {s: total / len(symbols) for s in symbols}

    def next(self) -> None:
        if self.entered or self.stopped_reason is not None:
            return
        self.entered = True
        p = self.p
        feeds = self._feeds()
        margins = self._margins([s for _, s in feeds])
        plans: list[tuple[Any, dict[str, Any]]] = []
        too_small: list[str] = []
        for data, symbol in feeds:
            market = self.broker.account.market(symbol)
            leverage = float(market.leverage if p.leverage is None else p.leverage)
            margin = margins[symbol]
            close = float(data.close[0])
            price = close * (1 + float(p.price_buffer))
            notional = margin / (1 / leverage + self.broker.profile.taker_fee)
            step = market.spec.size_step
            size = notional / price
            if step:
                size = round(int(size / step + 1e-9) * step, 12)
            plan = {
                "direction": p.direction, "margin": margin, "leverage": leverage, "size": size,
                "reference_price": close, "notional": size * price,
            }
            plans.append((data, plan))
            min_notional = market.spec.min_notional
            # a size that rounds to nothing cannot be sent (backtrader returns no order)
            if size <= 0 or size * close < min_notional:
                prefix = f"{symbol}: " if len(feeds) > 1 else ""
                too_small.append(
                    f"{prefix}{size:g} × {close:g} is below the minimum order value "
                    f"{min_notional:g} USDT (margin {margin:,.2f} USDT at {leverage:g}x)"
                )
        if not plans:
            return
        self.launch_report = dict(plans[0][1])
        if len(plans) > 1:
            self.launch_report["margin"] = sum(pl["margin"] for _, pl in plans)
            self.launch_report["markets"] = {
                self.broker.symbol_of(d): pl for d, pl in plans
            }
        if too_small:
            self.stop_bot("; ".join(too_small))
            return
        for data, plan in plans:
            size = plan["size"]
            maker = self.buy if p.direction == "long" else self.sell
            order = maker(data=data, size=size, exectype=bt.Order.Market, hold=True)
            self.live_orders[order.ref] = order
            prefix = f"{self.broker.symbol_of(data)} " if len(plans) > 1 else ""
            self.log(f"{prefix}{p.direction} {size:g} at market, margin {plan['margin']:,.2f} "
                     f"USDT at {plan['leverage']:g}x")
