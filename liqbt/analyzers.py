"""Backtrader analyzers reading ``MarginBroker`` state: liquidations, margin timeline, trades.

Add them like any analyzer::

    cerebro.addanalyzer(liqbt.analyzers.Liquidations, _name="liquidations")
    cerebro.addanalyzer(liqbt.analyzers.MarginTimeline, _name="timeline")
    ...
    strat.analyzers.liquidations.get_analysis()

Everything reported comes from the broker's immutable :mod:`liqbt.core.events` and from
backtrader's own orders and trades; the analyzers hold no margin logic.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime
from typing import Any

import backtrader as bt

from liqbt.core import events as ev


def iso(dt: datetime | None) -> str | None:
    """Naive-UTC datetime (backtrader's convention) to ISO-8601 with ``Z``."""
    return None if dt is None else dt.replace(tzinfo=None).isoformat() + "Z"


class Liquidations(bt.Analyzer):
    """The broker's liquidation events and a summary.

    ``get_analysis()`` returns a dict with

    ``events``
        :class:`liqbt.core.events.Liquidation` records, oldest first.
    ``count``
        Number of liquidation events (partial steps included).
    ``first_time``
        ISO-8601 UTC time of the first one (``None`` when there was none).
    ``total_loss``
        Sum of the trader's realized losses at settlement (USDT).
    ``min_distance_pct``
        Smallest distance between the mark and a position's liquidation price seen during the
        run, in % of the mark (``None`` when no position was ever open).
    """

    def stop(self) -> None:
        broker = self.strategy.broker
        liqs = [e for e in getattr(broker, "events", []) if isinstance(e, ev.Liquidation)]
        distance = getattr(broker, "min_liquidation_distance", math.inf)
        self.rets["events"] = liqs
        self.rets["count"] = len(liqs)
        self.rets["first_time"] = iso(liqs[0].time) if liqs else None
        self.rets["total_loss"] = sum(e.loss for e in liqs)
        self.rets["min_distance_pct"] = distance * 100 if math.isfinite(distance) else None


class MarginTimeline(bt.Analyzer):
    """Per-bar account and per-data margin state, for drawdowns and report charts.

    Params
    ------
    detail
        ``True`` (default): per data also close, mark, liquidation price, margin ratio and
        position size. ``False``: only time and equity (cheap; enough for the drawdown).

    ``get_analysis()`` returns a dict of equal-length lists: ``time`` (naive UTC datetimes),
    ``equity``, ``wallet``, ``margin_balance`` (cross wallet + cross unrealized PnL),
    ``available``, ``margin_ratio`` (the worst of the cross account and isolated legs), and
    ``symbols``: ``{symbol: {"close", "mark", "liquidation_price", "margin_ratio", "size"}}``
    (``liquidation_price`` is NaN when flat).
    """

    params = (("detail", True),)

    def start(self) -> None:
        self.rets["time"] = []
        self.rets["equity"] = []
        if self.p.detail:
            for key in ("wallet", "margin_balance", "available", "margin_ratio"):
                self.rets[key] = []
            self.rets["symbols"] = {}
        self._datas: list[tuple[Any, str]] = []

    def _bind(self) -> None:
        broker = self.strategy.broker
        for data in self.strategy.datas:
            try:
                symbol = broker.symbol_of(data)
            except Exception:  # a resampled view has no market of its own
                continue
            if symbol not in {s for _, s in self._datas}:
                self._datas.append((data, symbol))
                if self.p.detail:
                    self.rets["symbols"][symbol] = {
                        k: [] for k in ("close", "mark", "liquidation_price", "margin_ratio",
                                        "size")
                    }

    def next(self) -> None:
        broker = self.strategy.broker
        account = broker.account
        if not self._datas:
            self._bind()
        self.rets["time"].append(self.strategy.datetime.datetime(0))
        self.rets["equity"].append(account.equity())
        if not self.p.detail:
            return
        self.rets["wallet"].append(account.wallet_balance)
        self.rets["margin_balance"].append(account.cross_margin_balance())
        self.rets["available"].append(broker.get_cash())
        ratios = [account.margin_ratio()] if account.cross_positions() else []
        ratios += [
            account.margin_ratio(p) for p in account.open_positions()
            if p.margin_mode == "isolated"
        ]
        self.rets["margin_ratio"].append(max(ratios, default=0.0))
        for data, symbol in self._datas:
            row = self.rets["symbols"][symbol]
            mark_line = getattr(data.lines, "mark_close", None)
            close = float(data.close[0])
            mark = float(mark_line[0]) if mark_line is not None else close
            row["close"].append(close)
            row["mark"].append(mark if not math.isnan(mark) else close)
            lp = broker.liquidation_price(data)
            row["liquidation_price"].append(math.nan if lp is None else float(lp))
            legs = broker.positions_of(data)
            row["size"].append(sum(p.size for p in legs))
            row["margin_ratio"].append(
                max((account.margin_ratio(p) for p in legs), default=0.0)
            )


def _reason(order: bt.Order) -> str:
    info = order.info
    if info.get("liquidation"):
        return "liquidation"
    for key in ("reason", "tag", "role"):
        value = info.get(key)
        if value:
            return str(value)
    if info.get("grid_level") is not None:
        return "grid"
    return "close"


class Trades(bt.Analyzer):
    """Closed round trips from backtrader's trades, with the closing order's reason.

    Each entry: ``symbol, side, size`` (largest absolute size during the trade),
    ``entry_time, entry_price`` (average entry), ``exit_time, exit_price`` (price of the
    closing fill), ``pnl`` (gross, at settlement for liquidations), ``fees`` and ``reason``:
    ``liquidation`` for forced closes (``order.info.liquidation``), else the closing order's
    ``info.reason``/``tag``/``role``, ``grid`` for grid-level orders, or ``close``.
    Trades still open at the end are listed with ``exit_time = None``.
    """

    def start(self) -> None:
        self._last_order: dict[Any, bt.Order] = {}
        self._max_size: dict[int, float] = {}
        self._open: dict[int, bt.Trade] = {}
        self.rets["trades"] = []

    def notify_order(self, order: bt.Order) -> None:
        if order.executed.size:
            self._last_order[order.data] = order

    def _symbol(self, data: Any) -> str:
        try:
            return self.strategy.broker.symbol_of(data)
        except Exception:
            return getattr(data, "_name", "") or ""

    def notify_trade(self, trade: bt.Trade) -> None:
        ref = trade.ref
        if trade.isopen:
            self._max_size[ref] = max(self._max_size.get(ref, 0.0), abs(trade.size))
            self._open[ref] = trade
            return
        if not trade.isclosed:
            return
        self._open.pop(ref, None)
        order = self._last_order.get(trade.data)
        exit_price = float(order.executed.price) if order is not None else math.nan
        self.rets["trades"].append(
            {
                "symbol": self._symbol(trade.data),
                "side": "long" if trade.long else "short",
                "size": self._max_size.pop(ref, 0.0),
                "entry_time": iso(bt.num2date(trade.dtopen)),
                "entry_price": float(trade.price),
                "exit_time": iso(bt.num2date(trade.dtclose)),
                "exit_price": exit_price,
                "pnl": float(trade.pnl),
                "fees": float(trade.commission),
                "reason": _reason(order) if order is not None else "close",
            }
        )

    def stop(self) -> None:
        for ref, trade in self._open.items():
            self.rets["trades"].append(
                {
                    "symbol": self._symbol(trade.data),
                    "side": "long" if trade.long else "short",
                    "size": self._max_size.get(ref, abs(trade.size)),
                    "entry_time": iso(bt.num2date(trade.dtopen)),
                    "entry_price": float(trade.price),
                    "exit_time": None,
                    "exit_price": None,
                    "pnl": float(trade.pnl),
                    "fees": float(trade.commission),
                    "reason": "open",
                }
            )


class Progress(bt.Analyzer):
    """A ``click.progressbar`` on stderr ticking every ``every`` bars.

    Silent (no output at all) unless ``enabled`` and stderr is a terminal.
    """

    params = (("enabled", True), ("every", 500), ("label", "backtest"))

    def start(self) -> None:
        self._bar: Any = None
        self._count = 0
        if not self.p.enabled or not sys.stderr.isatty():
            return
        import click

        total = max((d.buflen() for d in self.strategy.datas), default=0)
        if total <= 0:
            return
        self._bar = click.progressbar(length=total, label=self.p.label, file=sys.stderr)
        self._bar.__enter__()

    def next(self) -> None:
        if self._bar is None:
            return
        self._count += 1
        if self._count % self.p.every == 0:
            self._bar.update(self.p.every)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.update(self._count % self.p.every)
            self._bar.__exit__(None, None, None)
            self._bar = None


__all__ = ["Liquidations", "MarginTimeline", "Progress", "Trades", "iso"]
