"""Python side of the fast engine on several symbols (:mod:`liqbt.fast.multi`): the hold bot's
first-bar plan, the stacked arrays, and the :class:`liqbt.runner.RunResult` from the kernel's
records (fills, liquidations, top-ups, refusals, funding per symbol)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from liqbt.config import RunConfig
from liqbt.core import events as ev
from liqbt.fast import engine as fe
from liqbt.fast import kernel as kn
from liqbt.fast import margin as fm
from liqbt.fast import multi as mk

_RULES = {"largest_loss": mk.LARGEST_LOSS, "largest_maintenance_margin": mk.LARGEST_MM}


def load_markets(config: RunConfig, data: Any = None) -> list[fe.MarketArrays] | str:
    """Every market of ``config`` as arrays (:func:`liqbt.fast.engine.load_market`), or why
    the kernel cannot walk them: their bars must share one clock (the same bar times; mixed
    timeframes or gaps in one symbol are the backtrader engine's)."""
    arrays = [fe.load_market(config, data, i) for i in range(len(config.markets))]
    first = arrays[0].times
    for m, a in zip(config.markets[1:], arrays[1:], strict=True):
        if len(a.times) != len(first) or not np.array_equal(a.times, first):
            return (f"{m.symbol}'s bars ({len(a.times)}) do not share "
                    f"{config.markets[0].symbol}'s bar times ({len(first)})")
    return arrays


def run_multi(config: RunConfig, datas: list[fe.MarketArrays], detail: bool = True) -> Any:
    """Run a several-market hold config; see :func:`liqbt.fast.engine.run_one`."""
    from liqbt.analyzers import round_trips

    profile = fe._profile(config)
    kwargs = config.strategy.kwargs
    balance = float(config.account.balance)
    markets = list(config.markets)
    specs = [profile.symbol(m.symbol) for m in markets]
    symbols = [s.symbol for s in specs]
    order = sorted(range(len(markets)), key=lambda j: symbols[j])  # kernel index -> config
    pos_of = {j: i for i, j in enumerate(order)}  # config -> kernel index
    params = [fe.market_params(config, profile, m) for m in markets]
    ntiers = max(len(p[0]) for p in params)
    ns, n = len(markets), datas[0].bars
    tt = np.zeros((ns, ntiers, 4))
    ntt = np.zeros(ns, np.int64)
    fps = np.zeros((ns, fm.N_FP))
    ips = np.zeros((ns, fm.N_IP), np.int64)
    for i, j in enumerate(order):
        tiers, fp, ip = params[j]
        tt[i, : len(tiers)] = tiers
        ntt[i] = len(tiers)
        fps[i] = fp
        ips[i] = ip

    def stack(name: str) -> np.ndarray:
        return np.ascontiguousarray(np.stack([getattr(datas[j], name) for j in order]))

    # strategies/hold.py on the first bar: one plan per market, in feed order
    margins = fe.hold_margins(kwargs, symbols, balance)
    plans = [fe.hold_plan(kwargs, margins[s], float(m.leverage), float(d.close[0]), profile,
                          spec)
             for m, s, d, spec in zip(markets, symbols, datas, specs, strict=True)]
    too_small = [
        f"{s}: {p['size']:g} × {p['close']:g} is below the minimum order value "
        f"{spec.min_notional:g} USDT (margin {p['margin']:,.2f} USDT at {p['leverage']:g}x)"
        for s, p, spec in zip(symbols, plans, specs, strict=True) if not p["ok"]]
    sign = 1.0 if kwargs.get("direction", "long") == "long" else -1.0
    if too_small or not n:
        o_sym, o_qty, o_px = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    else:
        o_sym = np.array([pos_of[j] for j in range(ns)], np.int64)
        o_qty = np.array([sign * p["size"] for p in plans])
        o_px = np.array([p["close"] for p in plans])
    acct, fills, liqs, topups, rejects, wipe, eq, mr, ex, fund = mk.run(
        stack("open"), stack("high"), stack("low"), stack("close"), stack("mark_open"),
        stack("mark_high"), stack("mark_low"), stack("mark_close"), stack("funding_rate"),
        tt, ntt, fps, ips, balance, _RULES[profile.cross_liquidation_order], o_sym, o_qty, o_px)
    when, dt = fe.bar_clock(datas[0].times)

    def sym(i: float) -> str:
        return symbols[order[int(i)]]

    def mode(i: float) -> str:
        return markets[order[int(i)]].margin_mode

    liquidations = [{
        "time": when(r[kn.L_BAR]), "symbol": sym(r[kn.L_SYM]),
        "side": "long" if r[kn.L_SIDE] > 0 else "short", "size": float(r[kn.L_SIZE]),
        "trigger_price": float(r[kn.L_TRIG]), "settlement_price": float(r[kn.L_SETTLE]),
        "loss": float(r[kn.L_LOSS]), "partial": bool(r[kn.L_PARTIAL]),
        "margin_mode": mode(r[kn.L_SYM]), "insurance_fund_delta": float(r[kn.L_INS]),
    } for r in liqs]
    top_ups = [{
        "time": when(r[kn.U_BAR]), "symbol": sym(r[kn.U_SYM]), "amount": float(r[kn.U_AMOUNT]),
        "liquidation_price_after": None if math.isnan(r[kn.U_LP]) else float(r[kn.U_LP]),
    } for r in topups]
    events: list[ev.Event] = []
    info: dict[int, dict[str, Any]] = {}
    fill_rows = []
    li = 0
    for r in fills:
        ref, is_liq = int(r[kn.F_REF]), bool(r[kn.F_LIQ])
        if is_liq:
            info[ref] = {"liquidation": True}
        events.append(ev.Fill(dt(r[kn.F_BAR]), sym(r[kn.F_SYM]), "net", float(r[kn.F_QTY]),
                              float(r[kn.F_PRICE]), float(r[kn.F_FEE]), liquidation=is_liq,
                              order_ref=ref))
        fill_rows.append({"time": dt(r[kn.F_BAR]), "symbol": sym(r[kn.F_SYM]),
                          "size": float(r[kn.F_QTY]), "price": float(r[kn.F_PRICE]),
                          "liquidation": is_liq})
        if is_liq:
            lq = liqs[li]
            li += 1
            events.append(ev.Liquidation(
                dt(lq[kn.L_BAR]), sym(lq[kn.L_SYM]), "net",
                "long" if lq[kn.L_SIDE] > 0 else "short", float(lq[kn.L_SIZE]),
                float(lq[kn.L_TRIG]), float(lq[kn.L_SETTLE]), float(lq[kn.L_LOSS]),
                float(lq[kn.L_INS]), mode(lq[kn.L_SYM]), bool(lq[kn.L_PARTIAL]),
                float(lq[kn.L_FEE]), float(lq[kn.L_LIQFEE])))
    marks = {(symbols[j], "net"): float(datas[j].mark_close[-1]) for j in range(ns)}
    trades = round_trips(events, info, marks)
    final = float(eq[-1]) if n else balance
    reason, kind, stop_bar = _stop(config, symbols, order, specs, params, liqs, rejects, wipe,
                                   too_small)
    return fe.build_result(
        config, acct, datas[0], eq, mr, ex, final, trades, liquidations, top_ups,
        funding_by_symbol={symbols[j]: float(fund[pos_of[j]]) for j in range(ns)},
        wipeout_time=when(wipe[0]) if wipe[0] >= 0 else None,
        stopped=(reason, kind, None if stop_bar is None else when(stop_bar)),
        rejected_orders=len(rejects),
        bot={"realized_pnl": float(acct[fm.REAL]), "fees": float(acct[fm.FEES]),
             "equity": final},
        fill_rows=fill_rows, detail=detail, when=when)


def _stop(config: RunConfig, symbols: list[str], order: list[int], specs: list[Any],
          params: list[Any], liqs: np.ndarray, rejects: np.ndarray, wipe: np.ndarray,
          too_small: list[str]) -> tuple[str | None, str | None, int | None]:
    """The hold bot's stop (strategies/base.py): its margin hook hears, in event order, a
    liquidation of its own (first) symbol, a wipeout or a refusal of its own symbol; then its
    order notifications, a refusal of any symbol. The first stop wins."""
    if too_small:
        return "; ".join(too_small), "below_minimum", 0
    own = order.index(0)  # the first market's kernel index
    # (bar, seq, kind, row): kind 0 liquidation, 1 wipeout, 2 refusal
    items = [(int(r[kn.L_BAR]), int(r[kn.L_SEQ]), 0, r) for r in liqs]
    items += [(int(r[0]), int(r[5]), 2, r) for r in rejects]
    if wipe[0] >= 0:
        items.append((int(wipe[0]), int(wipe[1]), 1, wipe))
    items.sort(key=lambda x: (x[0], x[1]))
    for bar in sorted({x[0] for x in items}):
        now = [x for x in items if x[0] == bar]
        for _, _, kind, r in now:
            if kind == 0 and int(r[kn.L_SYM]) == own:
                side = "long" if r[kn.L_SIDE] > 0 else "short"
                size, trig, loss = (float(r[kn.L_SIZE]), float(r[kn.L_TRIG]),
                                    float(r[kn.L_LOSS]))
                return (f"liquidated: {side} {size:g} at {trig:,.2f} (loss {loss:,.2f} USDT)",
                        "liquidated", bar)
            if kind == 1:
                return (f"account wiped out: equity {float(r[2]):.2f} USDT cannot open the "
                        "smallest order"), "wiped_out", bar
            if kind == 2 and int(r[1]) == own:
                return _refusal(r, symbols, order, specs, params), "order_refused", bar
        for _, _, kind, r in now:
            if kind == 2:
                return _refusal(r, symbols, order, specs, params), "order_refused", bar
    return None, None, None


def _refusal(r: np.ndarray, symbols: list[str], order: list[int], specs: list[Any],
             params: list[Any]) -> str:
    j = order[int(r[1])]
    _, fp, ip = params[j]
    p = SimpleNamespace(fp=fp, ip=ip, leverage=float(fp[fm.LEV]),
                        min_notional=specs[j].min_notional)
    return "order rejected: " + fe._reject_text(int(r[2]), float(r[3]), float(r[4]),
                                                symbols[j], p)
