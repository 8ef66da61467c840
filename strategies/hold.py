"""Hold: one leveraged market order per market on the first bar, then nothing (the baseline bot).

With several data feeds (a multi-pair config) the bot opens one position on **every** feed the
broker has a market for, each at that market's own leverage (unless ``leverage`` is given).
``margin`` is then either one number, split equally between the feeds, or a table per symbol
(``margin = { BTCUSDT = 300, ETHUSDT = 300, SOLUSDT = 200 }``); without ``margin`` the available
balance on the first bar is split equally. With one feed the behaviour is the single-market bot's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import backtrader as bt

from liqbt.core import choices
from liqbt.core.params import Param, bt_params

from .base import VERBOSE, MarginAwareStrategy, MarketContext


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

    parameters: ClassVar[tuple[Param, ...]] = (
        Param("direction", "choice", "long", choices=choices.DIRECTIONS,
              doc="side of the positions"),
        Param("margin", "number_or_table", None, (0, None), "USDT or {SYMBOL = USDT}",
              "margin (incl. the taker fee) to commit, split equally between markets when "
              "one number", low_open=True, default_text="all available balance"),
        Param("leverage", "number", None, (1, None), "x", "leverage used for the size",
              default_text="each broker market's leverage"),
        Param("price_buffer", "number", 0.005, (0, 1), "fraction",
              "headroom for the next open above the close", high_open=True),
        VERBOSE,
    )
    params: Any = bt_params(parameters)

    @classmethod
    def account_checks(cls, values: Mapping[str, Any], balance: float,
                       markets: Sequence[MarketContext], prefix: str = "") -> list[str]:
        """A margin table names every market exactly; the margin fits in the balance."""
        problems = super().account_checks(values, balance, markets, prefix)
        margin = values.get("margin")
        if isinstance(margin, Mapping):
            symbols = [m.symbol for m in markets]
            missing = [s for s in symbols if s not in margin]
            unknown = [s for s in margin if s not in symbols]
            if missing or unknown:
                problems.append(f"{prefix}margin must name every market exactly (missing "
                                f"{missing}, unknown {unknown})")
            total = sum(float(v) for v in margin.values())
        else:
            total = None if margin is None else float(margin)
        if total is not None and total > balance:
            problems.append(f"{prefix}margin = {margin!r} (total {total:g}) is above "
                            f"account.balance = {balance:g}")
        leverage = values.get("leverage")
        for m in markets:
            share = (margin.get(m.symbol) if isinstance(margin, Mapping)
                     else (total if total is not None else balance) / len(markets))
            if share is None:
                continue
            lev = float(leverage or m.leverage)
            problems += cls.notional_cap_problem(
                f"{prefix}margin for {m.symbol} = {float(share):g} × leverage",
                float(share) * lev, lev, m)
        return problems

    def __init__(self) -> None:
        super().__init__()
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
            self.stop_bot("; ".join(too_small), kind="below_minimum")
            return
        for data, plan in plans:
            size = plan["size"]
            maker = self.buy if p.direction == "long" else self.sell
            order = maker(data=data, size=size, exectype=bt.Order.Market, hold=True)
            self.live_orders[order.ref] = order
            prefix = f"{self.broker.symbol_of(data)} " if len(plans) > 1 else ""
            self.log(f"{prefix}{p.direction} {size:g} at market, margin {plan['margin']:,.2f} "
                     f"USDT at {plan['leverage']:g}x")
