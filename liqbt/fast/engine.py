"""Python side of the fast engine: which configs it covers, data loading, parameter arrays,
and the :class:`liqbt.runner.RunResult` built from the kernel's arrays.

Everything that does not depend on the account (grid lines, launch bar and quantity, the hold
size) is computed here with the same functions the bots call; the kernel only runs the bars.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from liqbt.config import RunConfig
from liqbt.core import events as ev
from liqbt.core import ladders
from liqbt.core.profile import ExchangeProfile, load_profile
from liqbt.fast import dca as fd
from liqbt.fast import kernel as kn
from liqbt.fast import margin as fm

_BOTS = {"hold": kn.BOT_HOLD, "grid": kn.BOT_GRID, "dca": kn.BOT_DCA}
_FORMULAS = {"binance": fm.F_BINANCE, "taker_at_mark": fm.F_TAKER, "bybit": fm.F_BYBIT}
_INTRABAR = {"heuristic": 0, "pessimistic": 1, "optimistic": 2}


@dataclass(frozen=True)
class MarketArrays:
    """One symbol's bars as the broker sees them: trade and mark OHLC, funding per bar."""

    times: np.ndarray  # datetime64[ns], naive UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    mark_open: np.ndarray
    mark_high: np.ndarray
    mark_low: np.ndarray
    mark_close: np.ndarray
    funding_rate: np.ndarray

    @property
    def bars(self) -> int:
        """Number of bars."""
        return len(self.open)


def load_market(config: RunConfig, data: Any = None, index: int = 0) -> MarketArrays:
    """Load the config's market ``index`` (the first by default) exactly as
    :func:`liqbt.runner.build_cerebro` and :func:`liqbt.feeds.make_feed` do (mark alignment,
    NaN fallback, funding per bar)."""
    import pandas as pd

    from liqbt.data.loaders import infer_timeframe, load_market_window
    from liqbt.feeds import align_funding, align_mark

    market = config.markets[index]
    start, end = config.backtest.start, config.backtest.end
    candles, mark, funding = load_market_window(market, start, end, data)
    tf = candles.attrs.get("timeframe") or infer_timeframe(candles)
    index = candles.index
    if index.tz is None:
        index = index.tz_localize("UTC")
    frame = candles.set_axis(index)
    marks, _ = align_mark(frame, mark, tf)
    arrays = arrays_from_frames(frame, marks, align_funding(index, tf, funding), pd)
    if data is None:
        del candles, mark, funding, frame, marks
        _release_arrow_memory()
    return arrays


def _release_arrow_memory() -> None:
    """Give the memory of the frames just read back to the system: pyarrow's allocator keeps
    freed blocks for reuse, which on 4 years of 1m bars holds hundreds of MB for nothing."""
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass


def arrays_from_frames(frame: Any, marks: Any, funding: np.ndarray, pd: Any) -> MarketArrays:
    """:class:`MarketArrays` from a candle frame, its aligned mark frame and funding array;
    a mark row with a NaN falls back to the trade OHLC (as the broker's ``_mark_ohlc``).

    One contiguous float64 copy per column and no 2-D intermediates: on 4 years of 1m bars
    (2.1 M) every column is 17 MB, so temporaries decide the peak memory."""
    names = ("open", "high", "low", "close")
    trade = [np.array(frame[k].to_numpy(dtype="float64"), dtype="float64", order="C")
             for k in names]
    mk = [np.array(marks[f"mark_{k}"].to_numpy(dtype="float64"), dtype="float64", order="C")
          for k in names]
    bad = np.zeros(len(frame), dtype=bool)
    for col in mk:
        bad |= np.isnan(col)
    if bad.any():
        for col, fallback in zip(mk, trade, strict=True):
            col[bad] = fallback[bad]
    times = frame.index.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return MarketArrays(times, *trade, *mk, np.ascontiguousarray(funding, dtype="float64"))


def supports(config: RunConfig) -> str | None:
    """``None`` when the fast engine reproduces ``MarginBroker`` for ``config``, else the
    reason it does not (the caller then uses backtrader)."""
    if config.strategy.name not in _BOTS:
        return (f"strategy {config.strategy.name!r}: the fast engine runs the bundled "
                f"{'/'.join(sorted(_BOTS))} bots only")
    if len(config.markets) != 1 and config.strategy.name != "hold":
        return (f"several markets with {config.strategy.name!r}: the fast engine runs several "
                "symbols for the hold bot only")
    acct = config.account
    kwargs = config.strategy.kwargs
    if acct.position_mode != "one-way" and config.strategy.name == "grid" and kwargs.get(
            "direction", "long") == "neutral":
        # its opening sells above the start price open a SHORT leg beside the LONG one (one-way
        # nets them); the bundled bots hold one leg per symbol otherwise, where hedge mode
        # books exactly as one-way (the leg's name aside)
        return "hedge mode with a neutral grid (LONG and SHORT legs at once) is not covered"
    try:
        profile = _profile(config)
    except Exception as exc:  # reported by the backtrader path with its full message
        return f"profile: {exc}"
    if profile.lp_formula not in _FORMULAS:
        return f"lp_formula {profile.lp_formula!r} is not covered by the fast engine"
    if config.strategy.name == "grid" and kwargs.get("lower") is None:
        return "grid without lower/upper"
    if kwargs.get("verbose"):
        return "verbose: the bot's log lines are printed by the backtrader engine only"
    return None


def _profile(config: RunConfig) -> ExchangeProfile:
    profile = load_profile(config.account.exchange)
    if config.account.profile_overrides:
        profile = profile.with_overrides(dict(config.account.profile_overrides))
    return profile


@dataclass
class _Prepared:
    tiers: np.ndarray
    fp: np.ndarray
    ip: np.ndarray
    bi: np.ndarray
    bp: np.ndarray
    levels: np.ndarray
    capacity: int
    profile: ExchangeProfile
    min_notional: float
    leverage: float
    extra: dict[str, Any]
    # the DCA bot's state, cycle records and entry filter (liqbt.fast.dca); empty otherwise
    dca_state: np.ndarray
    dca_cycles: np.ndarray
    entry_signal: np.ndarray


def market_params(config: RunConfig, profile: ExchangeProfile,
                  market: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One market's tier table and parameter vectors ``(tiers, fp, ip)`` (layout in
    :mod:`liqbt.fast.margin`)."""
    spec = profile.symbol(market.symbol)
    table = spec.tiers
    tiers = np.array([[t.cap, t.mmr, t.maintenance_amount, t.max_leverage]
                      for t in table.tiers], dtype="float64")
    lev = float(market.leverage)
    fp = np.zeros(fm.N_FP)
    fp[fm.LEV] = lev
    fp[fm.TAKER] = profile.taker_fee
    fp[fm.MAKER] = profile.maker_fee
    fp[fm.LIQFEE] = profile.liquidation_fee
    fp[fm.UMRATE] = profile.used_margin_mm_rate
    fp[fm.MINNOT] = spec.min_notional
    fp[fm.CAPNOT] = table.cap_for_leverage(lev)
    ip = np.zeros(fm.N_IP, np.int64)
    ip[fm.ISO] = market.margin_mode == "isolated"
    ip[fm.LPF] = _FORMULAS[profile.lp_formula]
    ip[fm.USED] = profile.mm_model == "used_margin"
    ip[fm.PDROP] = profile.partial_liquidation_tiers
    ip[fm.PISO] = "isolated" in profile.partial_liquidation_modes
    ip[fm.PCROSS] = "cross" in profile.partial_liquidation_modes
    ip[fm.TOPUP] = bool(market.auto_top_up)
    ip[fm.SETTLE_LP] = config.account.settlement == "liquidation_price"
    ip[fm.DEBIT] = bool(config.account.debit)
    ip[fm.BASIS_SIZE] = table.basis == "size"
    ip[fm.INTRABAR] = _INTRABAR[config.backtest.intrabar]
    ip[fm.OMTRIG] = bool(profile.order_margin_in_trigger)
    return tiers, fp, ip


def prepare(config: RunConfig, data: MarketArrays) -> _Prepared:
    """Parameter arrays of one config (see :mod:`liqbt.fast.margin` for the layout)."""
    profile = _profile(config)
    market = config.markets[0]
    spec = profile.symbol(market.symbol)
    tiers, fp, ip = market_params(config, profile, market)
    lev = float(market.leverage)
    kwargs = config.strategy.kwargs
    balance = float(config.account.balance)
    extra: dict[str, Any] = {}
    levels = np.zeros(1)
    capacity = 8
    if config.strategy.name == "hold":
        # strategies/hold.py, next() on the first bar
        direction = kwargs.get("direction", "long")
        margin = hold_margins(kwargs, [spec.symbol], balance)[spec.symbol]
        plan = hold_plan(kwargs, margin, lev, float(data.close[0]), profile, spec)
        bi = np.array([kn.BOT_HOLD, 1 if direction == "long" else -1, int(plan["ok"])],
                      np.int64)
        bp = np.array([plan["size"]])
        extra.update(plan)
    elif config.strategy.name == "dca":
        bi, bp, extra = _dca_params(kwargs, spec)
        m = int(bi[fd.I_MAXSO])
        # live rows in one bar's step 4: the previous bar's (m safety orders, m + 1 take
        # profits cancelled once accepted, stop, base) and this bar's (ladder, take profits,
        # retries, stop, base)
        capacity = 6 * (m + 1) + 16
        signal = np.ones(data.bars, np.bool_)
        if extra["entry_filter"] != "none":
            signal = np.array(_entry_signal(data.close, extra), dtype=np.bool_)
        return _Prepared(tiers, fp, ip, bi, bp, levels, capacity, profile, spec.min_notional,
                         lev, extra, fd.new_state(m),
                         np.zeros((min(data.bars // 2 + 2, 1024), fd.N_C)), signal)
    else:
        bi, bp, levels, extra = _grid_params(kwargs, data, lev, balance, profile, spec)
        capacity = 3 * len(levels) + 16
    # the DCA arguments of the kernel, unused by other bots (same types: one signature)
    return _Prepared(tiers, fp, ip, bi, bp, levels, capacity, profile, spec.min_notional, lev,
                     extra, np.zeros(1), np.zeros((1, fd.N_C)), np.zeros(0, np.bool_))


def hold_margins(kwargs: dict[str, Any], symbols: list[str],
                 balance: float) -> dict[str, float]:
    """strategies/hold.py ``_margins``: the table's amount per symbol, else one number (or the
    balance, all available on the first bar) split equally."""
    margin = kwargs.get("margin")
    if isinstance(margin, dict):
        return {s: float(margin[s]) for s in symbols}
    total = float(margin) if margin is not None else balance
    return {s: total / len(symbols) for s in symbols}


def hold_plan(kwargs: dict[str, Any], margin: float, market_leverage: float, close: float,
              profile: ExchangeProfile, spec: Any) -> dict[str, Any]:
    """strategies/hold.py ``next()`` on the first bar for one market: the size from
    ``notional = margin / (1 / leverage + taker)`` at ``close × (1 + price_buffer)``, rounded
    down to the size step; ``ok`` False below the minimum order value."""
    leverage = float(market_leverage if kwargs.get("leverage") is None else kwargs["leverage"])
    price = close * (1 + float(kwargs.get("price_buffer", 0.005)))
    notional = margin / (1 / leverage + profile.taker_fee)
    step = spec.size_step
    size = notional / price
    if step:
        size = round(int(size / step + 1e-9) * step, 12)
    ok = not (size <= 0 or size * close < spec.min_notional)
    return {"size": size, "close": close, "margin": margin, "leverage": leverage,
            "direction": kwargs.get("direction", "long"), "notional": size * price, "ok": ok}


def _dca_params(kwargs: dict[str, Any], spec: Any) -> tuple[Any, ...]:
    """strategies/dca.py: every parameter with its default, and the ladder's deviations and
    notionals (:func:`liqbt.core.ladders.dca_ladder`; the entry only scales the prices)."""
    from liqbt.core.params import resolved
    from liqbt.strategies.dca import DcaStrategy

    p = resolved(DcaStrategy.parameters, kwargs)
    m = int(p["max_safety_orders"])
    ladder = ladders.dca_ladder(p["base_order"], p["safety_order"], m, p["price_deviation"],
                                p["step_scale"], p["volume_scale"], 1.0, p["direction"])
    side = 1 if p["direction"] == "long" else -1
    bi = np.array([kn.BOT_DCA, side, m, int(p["cooldown"]), int(p["max_cycles"]),
                   int(p["stop_loss"] is not None), int(p["entry_filter"] != "none")], np.int64)
    head = [float(p["base_order"]), float(p["take_profit"]), float(p["stop_loss"] or 0.0),
            float(spec.size_step or 0.0), float(spec.min_notional)]
    bp = np.array(head + [r.deviation for r in ladder[1:]] + [r.notional for r in ladder[1:]],
                  dtype="float64")
    return bi, bp, dict(p, side=side)


def _entry_signal(close: np.ndarray, p: dict[str, Any]) -> list[bool]:
    """The bot's entry filter over the closes (:func:`strategies.dca.entry_signal`)."""
    from liqbt.strategies.dca import entry_signal

    return entry_signal(close.tolist(), p["entry_filter"], p["side"], int(p["rsi_period"]),
                        float(p["rsi_below"]), int(p["bb_period"]), float(p["bb_dev"]))


def _grid_params(kwargs: dict[str, Any], data: MarketArrays, lev: float, balance: float,
                 profile: ExchangeProfile, spec: Any) -> tuple[Any, ...]:
    """strategies/grid.py: lines, the launch bar (trigger), quantity and plan."""
    direction = kwargs.get("direction", "long")
    levels = ladders.grid_levels(float(kwargs["lower"]), float(kwargs["upper"]),
                                 int(kwargs.get("grids", 10)), kwargs.get("spacing", "arithmetic"))
    trigger = kwargs.get("trigger_price")
    launch = -1
    if trigger is None:
        launch = 0
    else:
        trigger = float(trigger)
        lo, hi, cl = data.low, data.high, data.close
        hit = (lo <= trigger) & (trigger <= hi)
        prev = np.concatenate([[np.nan], cl[:-1]])
        gap = (prev - trigger) * (cl - trigger) <= 0
        gap[0] = False
        idx = np.flatnonzero(hit | gap)
        launch = int(idx[0]) if len(idx) else -1
    leverage = float(lev if kwargs.get("leverage") is None else kwargs["leverage"])
    investment = float(kwargs["investment"]) if kwargs.get("investment") is not None else balance
    price = float(data.close[launch]) if launch >= 0 else math.nan
    quantity = 0.0
    start_level = 0
    ok = True
    if launch >= 0:
        quantity = ladders.grid_quantity(investment, leverage, levels, price,
                                         kwargs.get("quantity_rule", "levels"), profile.taker_fee)
        step = spec.size_step
        if step:
            quantity = int(quantity / step + 1e-9) * step
        quantity = round(quantity, 12)
        start_level = ladders.nearest_level(levels, price)
        ok = not (quantity <= 0 or quantity * levels[0] < spec.min_notional)
    sl, tp = kwargs.get("stop_loss"), kwargs.get("take_profit")
    bi = np.array([
        kn.BOT_GRID, {"long": 0, "short": 1, "neutral": 2}[direction], launch, start_level,
        int(kwargs.get("out_of_range", "stay") == "stop"), int(ok), int(sl is not None),
        int(tp is not None),
    ], np.int64)
    bp = np.array([quantity, price, float(sl or 0.0), float(tp or 0.0)])
    extra = {"quantity": quantity, "levels": levels, "reference_price": price,
             "investment": investment, "leverage": leverage, "direction": direction,
             "stop_loss": sl, "take_profit": tp}
    return bi, bp, np.array(levels, dtype="float64"), extra


def run_arrays(config: RunConfig, data: MarketArrays) -> tuple[Any, ...]:
    """Run the kernel for one config; returns ``(prepared, state, stats, fills, liqs,
    topups, equity)`` as arrays."""
    p = prepare(config, data)
    out = _run(config, data, p)
    cycles = int(p.dca_state[fd.D_CYCLES]) if p.bi[0] == kn.BOT_DCA else 0
    if cycles > len(p.dca_cycles):  # more DCA cycles than record rows: again, with room
        p.dca_state[:] = fd.new_state(int(p.bi[fd.I_MAXSO]))
        p.dca_cycles = np.zeros((cycles, fd.N_C))
        out = _run(config, data, p)
    return (p, *out)


def _run(config: RunConfig, data: MarketArrays, p: _Prepared) -> tuple[Any, ...]:
    return kn.run(
        data.open, data.high, data.low, data.close, data.mark_open, data.mark_high,
        data.mark_low, data.mark_close, data.funding_rate, p.tiers, p.fp, p.ip,
        float(config.account.balance), p.bi, p.bp, p.levels, p.capacity, p.dca_state,
        p.dca_cycles, p.entry_signal,
    )


def _iso(t: np.datetime64) -> str:
    from liqbt.analyzers import iso

    return iso(t.astype("datetime64[us]").item())


def run_one(config: RunConfig, data: Any = None, detail: bool = True) -> Any:
    """Run one config and build its :class:`liqbt.runner.RunResult` (``engine="fast"``);
    ``data``: its :class:`MarketArrays` (a list of them with several markets) or ``None``.

    ``detail=False`` leaves out the report-only fields (``timeline``, ``fills``), as the
    executor's batches do (the summary, trades and statistics are the same)."""
    from liqbt.analyzers import round_trips

    reason = supports(config)
    if reason is not None:
        from liqbt.core.errors import ValidationError

        raise ValidationError([f"fast engine: {reason}"])
    if len(config.markets) > 1:
        from liqbt.fast.multi_engine import run_multi

        arrays = data if data is not None else _load(config)
        if isinstance(arrays, str):
            # bars on different clocks: the backtrader engine runs it (and says so)
            from liqbt.runner import run_config

            return run_config(config, timeline=detail)
        return run_multi(config, arrays, detail)
    if data is None:
        data = load_market(config)
    p, st, stats, fills, liqs, topups, eq, mr, ex = run_arrays(config, data)
    market = config.markets[0]
    symbol = p.profile.symbol(market.symbol).symbol
    times = data.times
    when, dt = bar_clock(times)

    def dts(rows: np.ndarray, col: int) -> list[Any]:
        # one conversion for all rows (naive UTC datetimes, as backtrader's)
        return times[rows[:, col].astype(np.int64)].astype("datetime64[us]").tolist()

    liquidations = [{
        "time": when(r[kn.L_BAR]), "symbol": symbol, "side": "long" if r[kn.L_SIDE] > 0
        else "short", "size": float(r[kn.L_SIZE]), "trigger_price": float(r[kn.L_TRIG]),
        "settlement_price": float(r[kn.L_SETTLE]), "loss": float(r[kn.L_LOSS]),
        "partial": bool(r[kn.L_PARTIAL]), "margin_mode": market.margin_mode,
        "insurance_fund_delta": float(r[kn.L_INS]),
    } for r in liqs]
    top_ups = [{
        "time": when(r[kn.U_BAR]), "symbol": symbol, "amount": float(r[kn.U_AMOUNT]),
        "liquidation_price_after": None if math.isnan(r[kn.U_LP]) else float(r[kn.U_LP]),
    } for r in topups]
    # fills and liquidations as core events, in booking order, for the shared trade matcher
    events: list[ev.Event] = []
    info: dict[int, dict[str, Any]] = {}
    li = 0
    fill_rows = []
    exit_reason = _EXIT_REASONS.get(int(stats[0]), "stop")
    fill_times = dts(fills, kn.F_BAR)
    liq_times = dts(liqs, kn.L_BAR)
    fill_event = ev.Fill
    # column by column (a row list of every fill would be the run's largest temporary)
    ints = fills[:, [kn.F_REF, kn.F_LIQ, kn.F_TAG, kn.F_LVL, kn.F_PAIR]].astype(np.int64)
    for when_filled, (ref, liq, tag, lvl, pair), qty, price, fee in zip(
            fill_times, ints.tolist(), fills[:, kn.F_QTY].tolist(),
            fills[:, kn.F_PRICE].tolist(), fills[:, kn.F_FEE].tolist(), strict=True):
        is_liq = bool(liq)
        if is_liq:
            info[ref] = {"liquidation": True}
        elif tag == kn.T_GRID:
            info[ref] = {"grid_level": lvl}
            if pair:
                info[ref]["pair_ref"] = pair
        elif tag == kn.T_CLOSE:
            info[ref] = {"reason": exit_reason}
        elif tag in _DCA_TAGS:
            # strategies/dca.py's order.info["dca"]: the trade list's exit reason
            info[ref] = {"dca": _DCA_TAGS[tag] + (str(lvl) if tag == kn.T_SAFETY else "")}
        events.append(fill_event(when_filled, symbol, "net", qty, price, fee,
                                 liquidation=is_liq, order_ref=ref))
        if detail:
            fill_rows.append({"time": when_filled, "symbol": symbol, "size": qty,
                              "price": price, "liquidation": is_liq})
        if is_liq:
            lq = liqs[li]
            events.append(ev.Liquidation(
                liq_times[li], symbol, "net", "long" if lq[kn.L_SIDE] > 0 else "short",
                float(lq[kn.L_SIZE]), float(lq[kn.L_TRIG]), float(lq[kn.L_SETTLE]),
                float(lq[kn.L_LOSS]), float(lq[kn.L_INS]), market.margin_mode,
                bool(lq[kn.L_PARTIAL]), float(lq[kn.L_FEE]), float(lq[kn.L_LIQFEE]),
            ))
            li += 1
    mark_last = float(data.mark_close[-1])
    trades = round_trips(events, info, {(symbol, "net"): mark_last})
    final = float(fm.equity(st, p.ip))
    code = int(stats[0])
    return build_result(
        config, st, data, eq, mr, ex, final, trades, liquidations, top_ups,
        funding_by_symbol={market.symbol: float(st[fm.FUND])},
        wipeout_time=when(stats[3]) if stats[2] else None,
        stopped=(_stopped_reason(config, p, stats, liquidations, symbol), _STOP_KINDS.get(code),
                 _iso(times[int(stats[1])]) if code else None),
        rejected_orders=int(stats[6]),
        bot=_bot_view(config, stats, final, float(st[fm.FEES]), float(st[fm.REAL]), p, dt,
                      trades, st),
        fill_rows=fill_rows, detail=detail, when=when)


def bar_clock(times: np.ndarray) -> tuple[Callable[[float], str], Callable[[float], Any]]:
    """``(when, dt)`` of a run's bar times: ``when(bar)`` the ISO text of bar ``bar`` (cached:
    records repeat bars), ``dt(bar)`` its naive UTC datetime (as backtrader's)."""
    iso_cache: dict[int, str] = {}

    def when(bar: float) -> str:
        b = int(bar)
        if b not in iso_cache:
            iso_cache[b] = _iso(times[b])
        return iso_cache[b]

    def dt(bar: float) -> Any:
        return times[int(bar)].astype("datetime64[us]").item()

    return when, dt


def build_result(config: RunConfig, state: np.ndarray, first: MarketArrays, eq: np.ndarray,
                 mr: np.ndarray, ex: np.ndarray, final: float, trades: list[dict[str, Any]],
                 liquidations: list[dict[str, Any]], top_ups: list[dict[str, Any]], *,
                 funding_by_symbol: dict[str, float], wipeout_time: str | None,
                 stopped: tuple[str | None, str | None, str | None], rejected_orders: int,
                 bot: dict[str, Any], fill_rows: list[dict[str, Any]], detail: bool,
                 when: Callable[[float], str]) -> Any:
    """The :class:`liqbt.runner.RunResult` of a fast run (one symbol or several): its
    statistics and summary from the account vector ``state`` (:mod:`liqbt.fast.margin`
    layout: fees, funding, insurance fund, least liquidation distance), the equity, margin
    ratio and exposure per bar, the final equity and the records already turned into the
    report's rows. ``first`` is the first market's arrays (the clock and the benchmark);
    ``stopped`` is the bot's ``(reason, kind, time)``; ``wipeout_time`` is ``None`` unless the
    account was wiped out. ``detail=False`` leaves out the report-only fields."""
    from liqbt.runner import RunResult
    from liqbt.stats import compute_statistics

    bars = first.bars
    initial = float(config.account.balance)
    distance = float(state[fm.MIND])
    distance_pct = distance * 100 if math.isfinite(distance) else None
    statistics = compute_statistics(
        first.times, eq, initial, final, trades,
        benchmark_close=[float(first.close[0]), float(first.close[-1])] if bars else None,
        exposed=ex,
        margin_ratio=mr,
        warning_threshold=config.account.warning_threshold,
        fees_paid=float(state[fm.FEES]), funding_paid=float(state[fm.FUND]),
        liquidations=len(liquidations), top_ups=len(top_ups),
        min_liquidation_distance_pct=distance_pct,
    )
    reason, kind, stop_time = stopped
    return RunResult(
        label=config.label(),
        start=when(0) if bars else None,
        end=when(bars - 1) if bars else None,
        bars=bars,
        initial_balance=initial,
        final_equity=final,
        return_pct=(final / initial - 1) * 100 if initial else 0.0,
        max_drawdown_pct=statistics.max_drawdown_pct,
        fees_paid=float(state[fm.FEES]),
        funding_paid=float(state[fm.FUND]),
        funding_by_symbol=funding_by_symbol,
        insurance_fund_delta=float(state[fm.INS]),
        wiped_out=wipeout_time is not None,
        wipeout_time=wipeout_time,
        liquidation_count=len(liquidations),
        liquidations=liquidations,
        top_ups=top_ups,
        trades=trades,
        funding_note=("" if any(m.funding is not None for m in config.markets)
                      else "no funding data"),
        min_liquidation_distance_pct=distance_pct,
        markets=[{"symbol": m.symbol, "leverage": m.leverage, "margin_mode": m.margin_mode,
                  "auto_top_up": m.auto_top_up} for m in config.markets],
        strategy=config.strategy.name,
        stopped_reason=reason,
        stopped_kind=kind,
        stopped_time=stop_time,
        rejected_orders=rejected_orders,
        warning_threshold=config.account.warning_threshold,
        statistics=statistics,
        bot=bot,
        timeline={"time": first.times.astype("datetime64[us]").tolist(), "equity": eq.tolist()}
        if detail else {},
        fills=fill_rows if detail else [],
        launch_report={},
        engine="fast",
    )


_STOP_KINDS = {kn.S_LIQ: "liquidated", kn.S_WIPE: "wiped_out", kn.S_REJECT: "order_refused",
               kn.S_SMALL: "below_minimum", kn.S_SL: "stop_loss", kn.S_TP: "take_profit",
               kn.S_RANGE: "out_of_range"}
_EXIT_REASONS = {kn.S_SL: "stop_loss", kn.S_TP: "take_profit", kn.S_RANGE: "out_of_range"}
_DCA_TAGS = {kn.T_BASE: "base", kn.T_SAFETY: "safety", kn.T_TP: "take_profit",
             kn.T_SL: "stop_loss"}


def _bot_view(config: RunConfig, stats: np.ndarray, equity: float, fees: float,
              realized: float, p: _Prepared, dt: Any,
              trades: list[dict[str, Any]], st: np.ndarray) -> dict[str, Any]:
    """The bot's own counters (grid profit and pairs; DCA cycles and deals) for reports."""
    view: dict[str, Any] = {"realized_pnl": realized, "fees": fees, "equity": equity}
    if config.strategy.name == "grid":
        view.update(grid_profit=float(stats[17]), pairs=int(stats[13]),
                    refused_orders=int(stats[18]), missing_lines=int(stats[19]))
    elif config.strategy.name == "dca":
        # strategies.base.MarginAwareStrategy.account_summary: the leg at the last mark
        view.update(_dca_view(p, dt, trades), position=float(st[fm.SZ]),
                    unrealized_pnl=float(fm.upnl(st)))
    return view


def _dca_view(p: _Prepared, dt: Any, trades: list[dict[str, Any]]) -> dict[str, Any]:
    """:meth:`strategies.dca.DcaStrategy.summary`'s counters and
    :func:`liqbt.runner.bot_view`'s ``deals`` from the kernel's DCA state and records."""
    from liqbt.analyzers import iso
    from liqbt.runner import _unfinished_deal

    s = p.dca_state

    def num(v: float) -> float | None:
        return None if math.isnan(v) else float(v)

    deals = []
    for i, r in enumerate(p.dca_cycles[: int(s[fd.D_CYCLES])]):
        start = None if math.isnan(r[fd.C_START]) else dt(r[fd.C_START])
        end = dt(r[fd.C_END])
        deals.append({
            "deal": i + 1, "start": iso(start), "end": iso(end),
            "duration_hours": (end - start).total_seconds() / 3600 if start else None,
            "safety_orders": int(r[fd.C_SAFETY]), "entry": num(r[fd.C_ENTRY]),
            "average": num(r[fd.C_AVG]), "exit": float(r[fd.C_EXIT]), "size": num(r[fd.C_SIZE]),
            "pnl": float(r[fd.C_PNL]),
            "reason": "take_profit" if r[fd.C_REASON] == fd.REASON_TP else "stop_loss",
        })
    if s[fd.D_IN_CYCLE] and s[fd.D_HAS_CYCLE]:
        cycle: dict[str, Any] = {"start": dt(s[fd.D_START]), "entry": float(s[fd.D_ENTRY]),
                                 "safety_filled": int(s[fd.D_SAFETY_FILLED])}
        if s[fd.D_HAS_AVG]:
            cycle.update(average=float(s[fd.D_AVG]), size=float(s[fd.D_SIZE]))
        deals.append(_unfinished_deal(len(deals) + 1, cycle, trades))
    return {"cycles": int(s[fd.D_CYCLES]), "cycle_pnl": float(s[fd.D_PNL]),
            "refused_orders": int(s[fd.D_REFUSED]), "finished": bool(s[fd.D_FINISHED]),
            "deals": deals}


def _stopped_reason(config: RunConfig, p: _Prepared, stats: np.ndarray,
                    liquidations: list[dict[str, Any]], symbol: str) -> str | None:
    """The bot's ``stopped_reason`` text (strategies/base.py, grid.py, hold.py)."""
    code = int(stats[0])
    x = p.extra
    if code == kn.S_NONE:
        return None
    if code == kn.S_LIQ:
        e = liquidations[int(stats[11])]
        return (f"liquidated: {e['side']} {e['size']:g} at {e['trigger_price']:,.2f} "
                f"(loss {e['loss']:,.2f} USDT)")
    if code == kn.S_WIPE:
        return (f"account wiped out: equity {float(stats[12]):.2f} USDT cannot open the "
                "smallest order")
    if code == kn.S_REJECT:
        return "order rejected: " + _reject_text(int(stats[7]), float(stats[8]),
                                                 float(stats[9]), symbol, p)
    close = float(stats[10])
    if code == kn.S_SL:
        return f"stop loss {x['stop_loss']:g} reached (close {close:g})"
    if code == kn.S_TP:
        return f"take profit {x['take_profit']:g} reached (close {close:g})"
    if code == kn.S_RANGE:
        return f"price {close:g} left the grid range"
    if code == kn.S_SMALL:
        if config.strategy.name == "dca":
            from liqbt.strategies.dca import base_order_too_small

            return base_order_too_small(x["base_order"], close, float(p.bp[fd.P_STEP]))
        if config.strategy.name == "hold":
            return (f"{x['size']:g} × {x['close']:g} is below the minimum order value "
                    f"{p.min_notional:g} USDT (margin {x['margin']:,.2f} USDT at "
                    f"{x['leverage']:g}x)")
        return (f"quantity per grid {x['quantity']:g} × lowest line {x['levels'][0]:g} is "
                f"below the minimum order value {p.min_notional:g} USDT: raise investment or "
                "leverage, or use fewer grids")
    return None


def _reject_text(kind: int, v1: float, v2: float, symbol: str, p: _Prepared) -> str:
    """The broker's rejection reasons (:func:`liqbt.acceptance.rejection`, ``fill_rejection``)."""
    if kind == kn.R_WIPED:
        return "account wiped out"
    if kind == kn.R_MIN:
        return (f"{symbol}: order value {v1:.2f} USDT is below the exchange minimum "
                f"{p.min_notional:g} USDT")
    if kind == kn.R_CAP:
        cap = float(p.fp[fm.CAPNOT])
        if p.ip[fm.BASIS_SIZE]:
            from liqbt.core.orders import base_unit

            unit = base_unit(symbol)
            return (f"{symbol}: position size {v1:,.6g} {unit} would exceed {cap:,.6g} {unit}, "
                    f"the largest tier allowing {p.leverage:g}x")
        return (f"{symbol}: position value {v1:,.2f} USDT would exceed {cap:,.0f} USDT, "
                f"the largest tier allowing {p.leverage:g}x")
    if kind == kn.R_MARGIN:
        return (f"{symbol}: order needs {v1:,.2f} USDT margin (incl. fee) but only "
                f"{v2:,.2f} USDT is available")
    if kind == kn.R_FILL_ISO:
        return (f"{symbol}: at fill the isolated margin and fee {v1:,.2f} USDT exceed "
                f"the wallet balance {v2:,.2f} USDT")
    return (f"{symbol}: at fill the order needs {v1:,.2f} USDT more margin but only "
            f"{v2:,.2f} USDT is available")


def run_batch(configs: Any, data: Any = None) -> list[Any]:
    """Run configs, one RunResult each (the :mod:`liqbt.executor` engine contract): ``data``
    is a :class:`liqbt.executor.MarketData` with the windows loaded, or ``None``. Each
    distinct data window becomes arrays once (per ``data``: memoized in ``data.derived``, so
    a worker running one batch after another converts it once)."""
    cache: dict[Any, Any] = {} if data is None else data.derived.setdefault("fast", {})
    results = []
    for cfg in configs:
        key = data_key(cfg)
        if key not in cache:
            cache[key] = _load(cfg, data)
        if isinstance(cache[key], str):  # several symbols on different clocks
            from liqbt.runner import run_config

            results.append(run_config(cfg, timeline=data is None, data=data))
            continue
        # executor batches ship no report-only fields back
        results.append(run_one(cfg, cache[key], detail=data is None))
    return results


def data_key(config: RunConfig) -> tuple[Any, ...]:
    """What identifies a config's data: every market's files, and the window."""
    files = tuple((str(m.candles), str(m.mark), str(m.funding)) for m in config.markets)
    return (*files, config.backtest.start, config.backtest.end)


def _load(config: RunConfig, data: Any = None) -> Any:
    """The config's arrays: one :class:`MarketArrays`, or a list with several markets (or,
    when their bars do not share one clock, the reason: the config then runs on backtrader,
    its result saying ``engine = "backtrader"``)."""
    if len(config.markets) > 1:
        from liqbt.fast.multi_engine import load_markets

        return load_markets(config, data)
    return load_market(config, data)
