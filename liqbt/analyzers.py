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
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import backtrader as bt

from liqbt.core import events as ev


def iso(dt: datetime | None) -> str | None:
    """Naive-UTC datetime (backtrader's convention) to ISO-8601 with ``Z``."""
    if dt is None:
        return None
    return (dt if dt.tzinfo is None else dt.replace(tzinfo=None)).isoformat() + "Z"


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
    ``equity``, ``exposed`` (any position open), ``margin_ratio`` (the worst of the cross
    account and isolated legs; these three in both modes), ``wallet``, ``margin_balance``
    (cross wallet + cross unrealized PnL), ``available`` and ``symbols``:
    ``{symbol: {"open", "high", "low", "close", "mark", "liquidation_price", "margin_ratio",
    "size"}}``
    (``liquidation_price`` is NaN when flat).
    """

    params = (("detail", True),)

    def start(self) -> None:
        self.rets["time"] = []
        self.rets["equity"] = []
        self.rets["exposed"] = []
        self.rets["margin_ratio"] = []
        if self.p.detail:
            for key in ("wallet", "margin_balance", "available"):
                self.rets[key] = []
            self.rets["symbols"] = {}
        self._datas: list[tuple[Any, str]] = []
        self._rows: list[tuple[Any, ...]] = []
        # per row: the buffer positions of the bars whose prices are still to be copied, or
        # None when they are read on every bar
        self._positions: list[list[int] | None] = []
        # bar times as backtrader's float dates, turned into datetimes once in stop()
        self._times: list[float] = []

    def stop(self) -> None:
        line = self.strategy.datetime
        tz = line._tz
        self.rets["time"] = [bt.num2date(x, tz=tz, naive=True) for x in self._times]
        self._flush()

    def get_analysis(self) -> Any:
        """The series so far (complete once the run has stopped)."""
        self._flush()
        return self.rets

    def _flush(self) -> None:
        """Append the prices of the bars noted by buffer position (see :meth:`_bind`)."""
        for (_, open_line, high_line, low_line, close_line, mark_line, opens, highs, lows,
             closes, marks, *_), at in zip(self._rows, self._positions, strict=True):
            if not at:
                continue
            closes_now = [float(close_line.array[i]) for i in at]
            opens.extend([float(open_line.array[i]) for i in at])
            highs.extend([float(high_line.array[i]) for i in at])
            lows.extend([float(low_line.array[i]) for i in at])
            closes.extend(closes_now)
            if mark_line is None:
                marks.extend(closes_now)
            else:
                mark_values = [float(mark_line.array[i]) for i in at]
                # a NaN mark: the close
                marks.extend([m if m == m else c for m, c in zip(mark_values, closes_now,
                                                                  strict=True)])
            at.clear()

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
                    row = self.rets["symbols"][symbol] = {
                        k: [] for k in ("open", "high", "low", "close", "mark",
                                        "liquidation_price", "margin_ratio", "size")
                    }
                    # the lines and the row's lists, resolved once: backtrader's attribute
                    # lookup on every bar was a measurable share of the run (issue 11)
                    lines = data.lines
                    price_lines = (lines.open, lines.high, lines.low, lines.close,
                                   getattr(lines, "mark_close", None))
                    self._rows.append((
                        data, *price_lines, row["open"], row["high"],
                        row["low"], row["close"], row["mark"], row["liquidation_price"],
                        row["size"], row["margin_ratio"],
                    ))
                    # a feed whose buffers keep every bar as it was delivered (unbounded, no
                    # filter rewriting bars: no replay or resampling): each bar is noted by
                    # its buffer position and its prices copied in bulk when read
                    static = not getattr(data, "_filters", None) and all(
                        line.mode == bt.linebuffer.LineBuffer.UnBounded
                        for line in price_lines if line is not None)
                    self._positions.append([] if static else None)

    def next(self) -> None:
        broker = self.strategy.broker
        account = broker.account
        if not self._datas:
            self._bind()
            self._datetime = self.strategy.lines.datetime
            rets = self.rets
            self._series = (self._times, rets["equity"], rets["exposed"], rets["margin_ratio"])
            if self.p.detail:
                self._detail = (rets["wallet"], rets["margin_balance"], rets["available"])
            self._state: tuple[int, int] | None = None
        times, equity, exposed, margin_ratio = self._series
        times.append(self._datetime[0])
        # the broker's equity, evaluated once per bar for backtrader and every analyzer
        equity.append(broker.get_value())
        state = (account.version, len(account.positions))
        if state != self._state:
            # which legs are open (and whose ratio each takes) changes only with the account
            self._state = state
            self._legs = list(account.open_positions())
            self._has_cross = any(p.margin_mode == "cross" for p in self._legs)
            self._row_legs = []
            for row in self._rows:
                legs = broker.legs_of(row[0])
                # each leg's position in the open legs (by identity): its ratio's index
                at = [next(i for i, q in enumerate(self._legs) if q is p) for p in legs]
                self._row_legs.append((legs, at))
        open_legs = self._legs
        exposed.append(bool(open_legs))
        ratio = 0.0
        cross_ratio = cross_balance = None
        ratios: list[float] = []
        if open_legs:
            # cheap when flat (the common case in sweeps): only computed with a position;
            # each leg's ratio is the cross account's (computed once) or its isolated one
            if self._has_cross:
                cross_ratio, cross_balance = account.ratio_and_balance()
            ratios = [cross_ratio if p.margin_mode == "cross" else account.margin_ratio(p)
                      for p in open_legs]
            ratio = max(ratios)
        margin_ratio.append(ratio)
        if not self.p.detail:
            return
        wallets, balances, available = self._detail
        wallets.append(account.wallet_balance)
        # the figures' margin balance is the cross margin balance (same terms, same order)
        balances.append(
            account.cross_margin_balance() if cross_balance is None else cross_balance)
        available.append(broker.get_cash())
        walker = broker.walker
        for (_data, open_line, high_line, low_line, close_line, mark_line, opens, highs, lows,
             closes, marks, liquidation_prices, sizes, row_ratios), (legs, at), positions in zip(
                 self._rows, self._row_legs, self._positions, strict=True):
            if positions is not None:
                positions.append(close_line.idx)
            else:
                close = float(close_line[0])
                mark = float(mark_line[0]) if mark_line is not None else close
                opens.append(float(open_line[0]))
                highs.append(float(high_line[0]))
                lows.append(float(low_line[0]))
                closes.append(close)
                marks.append(mark if mark == mark else close)  # NaN mark: the close
            if legs:
                # broker.liquidation_price(data): the LP of the data's first leg
                lp = walker.liquidation_price(legs[0])[0]
                liquidation_prices.append(math.nan if lp is None else float(lp))
                sizes.append(sum(p.size for p in legs))
                row_ratios.append(max(ratios[i] for i in at))
            else:
                liquidation_prices.append(math.nan)
                sizes.append(0)
                row_ratios.append(0.0)


def _reason(info: Any) -> str:
    if info.get("liquidation"):
        return "liquidation"
    for key in ("reason", "tag", "role", "dca"):
        value = info.get(key)
        if value:
            return str(value)
    if info.get("grid_level") is not None:
        return "grid"
    return "close"


class Trades(bt.Analyzer):
    """Round trips rebuilt from the broker's fills by FIFO matching, per symbol and leg.

    Rule: fills open *lots*; every fill that reduces a position (a **closing fill**) is matched
    against the open lots of its symbol and leg and reported as **one** round trip of the
    closing fill's size: first the lot opened by the order named in its ``info.pair_ref`` (a
    grid counter-order names the fill it answers, so grid round trips are the grid's matched
    pairs), then first-in-first-out. So

    * a bot that builds a position and goes flat with one order (hold, DCA take-profit, stop,
      liquidation) gets one entry per cycle: size = the whole position, entry = its average
      entry and first entry time (what backtrader's trade gave before);
    * a grid that never goes flat gets one entry per closing grid fill (each completed
      buy→sell pair of a long grid, sell→buy of a short grid), matched to its pair's lot
      (closing orders placed at launch take the launch market order's lots, oldest first);
    * a fill that reverses a one-way position closes the matched lots and opens a new lot with
      the rest.

    Each entry: ``symbol, side`` (of the closed lots), ``size``, ``entry_time, entry_price``
    (oldest matched lot's time; size-weighted entry price), ``exit_time, exit_price`` (the
    closing fill; for liquidations the settlement price), ``pnl`` (gross, ``size × (exit −
    entry)`` signed by side, at settlement for liquidations), ``fees`` (the matched lots'
    share of their opening fees plus the closing fill's share) and ``reason``:
    ``liquidation`` for forced closes, else the closing order's ``info.reason``/``tag``/
    ``role``/``dca``, ``grid`` for grid-level orders, or ``close``. Lots still open at the end
    are one entry per symbol and leg with ``exit_time = exit_price = None``, ``reason =
    "open"`` and ``pnl`` unrealized at the last mark.
    """

    def start(self) -> None:
        self._info: dict[int, dict[str, Any]] = {}
        self.rets["trades"] = []

    def notify_order(self, order: bt.Order) -> None:
        if order.executed.size:
            self._info[order.ref] = dict(order.info)

    def stop(self) -> None:
        broker = self.strategy.broker
        account = getattr(broker, "account", None)
        marks = {} if account is None else {
            key: float(pos.mark_price) for key, pos in account.positions.items()
        }
        self.rets["trades"] = round_trips(getattr(broker, "events", []), self._info, marks)


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


def round_trips(
    events: Iterable[ev.Event],
    info_by_ref: Mapping[int, Mapping[str, Any]],
    marks: Mapping[tuple[str, str], float],
) -> list[dict[str, Any]]:
    """Round trips of a run's fill and liquidation events, by the rule of :class:`Trades`.

    ``info_by_ref`` is the ``order.info`` of each order ref (reason, grid ``pair_ref``),
    ``marks`` the last mark per ``(symbol, leg)`` (for lots still open). Shared by the
    :class:`Trades` analyzer and the fast engine (:mod:`liqbt.fast`).
    """
    trades: list[dict[str, Any]] = []
    # (symbol, leg) -> FIFO of [time, signed size left, price, fee per unit, order ref]
    lots: dict[tuple[str, str], list[list[Any]]] = {}
    # (symbol, leg) -> order ref -> that ref's lots in book order: the grid's pair lookup
    # without scanning the book (a busy grid holds hundreds of lots)
    by_ref: dict[tuple[str, str], dict[Any, list[list[Any]]]] = {}
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        if isinstance(e, ev.Liquidation):
            trip = last.get((e.symbol, e.leg))
            if trip is not None and trip["reason"] == "liquidation":
                sign = 1.0 if trip["side"] == "long" else -1.0
                trip["exit_price"] = float(e.settlement_price)
                trip["pnl"] = sign * trip["size"] * (e.settlement_price - trip["entry_price"])
            continue
        if not isinstance(e, ev.Fill) or not e.size:
            continue
        key = (e.symbol, e.leg)
        book = lots.setdefault(key, [])
        refs = by_ref.setdefault(key, {})
        qty = float(e.size)
        fee_unit = float(e.fee) / abs(qty)
        closing = bool(book) and (book[0][1] > 0) != (qty > 0)
        info = {} if e.order_ref is None else info_by_ref.get(e.order_ref, {})
        if closing and info.get("pair_ref") is not None:
            # a grid counter-order closes the lot of the fill it answers first, so its
            # round trip is the grid's matched pair (not the oldest lot)
            # (the first lot of that ref; the oldest lot when none is left)
            paired = refs.get(info["pair_ref"])
            at = book.index(paired[0]) if paired else 0
            book.insert(0, book.pop(at))
        if closing:
            want = abs(qty)
            matched = notional = fees = 0.0
            first_time = book[0][0]
            side = "long" if book[0][1] > 0 else "short"
            while book and want > 1e-12:
                lot = book[0]
                take = min(want, abs(lot[1]))
                matched += take
                notional += take * lot[2]
                fees += take * lot[3]
                want -= take
                lot[1] -= take if lot[1] > 0 else -take
                if abs(lot[1]) <= 1e-12:
                    book.pop(0)
                    same = refs[lot[4]]
                    same.pop(0)  # the book's first lot is the first of its ref
                    if not same:
                        del refs[lot[4]]
            entry = notional / matched
            sign = 1.0 if side == "long" else -1.0
            trip = {
                "symbol": e.symbol,
                "side": side,
                "size": round(matched, 12),
                "entry_time": iso(first_time),
                "entry_price": entry,
                "exit_time": iso(e.time),
                "exit_price": float(e.price),
                "pnl": sign * matched * (float(e.price) - entry),
                "fees": fees + matched * fee_unit,
                "reason": "liquidation" if e.liquidation else _reason(info),
            }
            trades.append(trip)
            last[key] = trip
            rest = want if qty > 0 else -want
        else:
            rest = qty
        if abs(rest) > 1e-12:
            lot = [e.time, rest, float(e.price), fee_unit, e.order_ref]
            book.append(lot)
            refs.setdefault(e.order_ref, []).append(lot)
    for (symbol, leg), book in lots.items():
        if not book:
            continue
        size = sum(abs(lot[1]) for lot in book)
        mark = marks.get((symbol, leg)) or math.nan
        sign = 1.0 if book[0][1] > 0 else -1.0
        entry = sum(abs(lot[1]) * lot[2] for lot in book) / size
        trades.append({
            "symbol": symbol,
            "side": "long" if sign > 0 else "short",
            "size": round(size, 12),
            "entry_time": iso(book[0][0]),
            "entry_price": entry,
            "exit_time": None,
            "exit_price": None,
            "pnl": sign * size * (mark - entry) if math.isfinite(mark) else 0.0,
            "fees": sum(abs(lot[1]) * lot[3] for lot in book),
            "reason": "open",
        })
    return trades
