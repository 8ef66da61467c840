"""What happened to a run, in one word a trader can act on: survived, liquidated, wiped out,
not tradable, bot stopped.

The rules, first match wins:

1. ``wiped out``: the account's equity fell below what the smallest order needs.
2. ``liquidated``: at least one liquidation (time and price of the first one).
3. ``not tradable``: the position never opened (no trade at all): the config is refused
   (tier cap: position too large for the leverage), the order is below the minimum order
   value, or the broker refused it. A run that never opened its position is **not** a
   survival: nothing was at risk.
4. ``bot stopped``: the bot stopped managing its position before the end of the data for a
   reason other than its own exit rules (a refused order, ``stopped_kind`` says which);
   stop loss, take profit and out-of-range exits are the bot doing its job and count as
   survived.
5. ``survived``: none of the above.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SURVIVED = "survived"
LIQUIDATED = "liquidated"
WIPED_OUT = "wiped out"
NOT_TRADABLE = "not tradable"
STOPPED = "bot stopped"

#: every outcome, best first (the order risk-aware tables sort by)
OUTCOMES: tuple[str, ...] = (SURVIVED, STOPPED, NOT_TRADABLE, LIQUIDATED, WIPED_OUT)

#: stop kinds that are a bot's own planned exit, not a failure to keep managing
PLANNED_EXITS: frozenset[str] = frozenset({"stop_loss", "take_profit", "out_of_range"})


@dataclass(frozen=True)
class Classified:
    """An outcome with its reason (readable) and time (ISO UTC, when there is one)."""

    outcome: str
    reason: str | None = None
    time: str | None = None

    @property
    def survived(self) -> bool:
        """Whether the run survived (opened its position and kept it to the end or a planned
        exit, without liquidation or wipeout)."""
        return self.outcome == SURVIVED


def classify(result: Any) -> Classified:
    """Classify a :class:`liqbt.runner.RunResult` (or its :meth:`summary` row / ``to_dict``).

    Parameters
    ----------
    result
        A run result, or a dict with ``wiped_out``, ``liquidations`` (a count or a list),
        ``trades`` (a count or a list), ``stopped_reason`` and ``stopped_kind``.
    """
    get = result.get if isinstance(result, dict) else lambda k, d=None: getattr(result, k, d)
    liqs = get("liquidations")
    n_liq = liqs if isinstance(liqs, int) else len(liqs or [])
    trades = get("trades")
    n_trades = trades if isinstance(trades, int) else len(trades or [])
    reason = get("stopped_reason")
    kind = get("stopped_kind")
    if get("wiped_out"):
        return Classified(WIPED_OUT, reason, get("wipeout_time"))
    if n_liq:
        first = liqs[0] if isinstance(liqs, list) and liqs else {}
        at = first.get("trigger_price") if isinstance(first, dict) else None
        text = f"liquidated at {at:,.2f}" if isinstance(at, int | float) else "liquidated"
        return Classified(LIQUIDATED, text, get("first_liquidation")
                          or (first.get("time") if isinstance(first, dict) else None))
    if not n_trades:
        return Classified(NOT_TRADABLE, reason or "no position was opened",
                          get("stopped_time"))
    if reason and kind not in PLANNED_EXITS:
        return Classified(STOPPED, f"{kind or 'stop'}: {reason}", get("stopped_time"))
    return Classified(SURVIVED)


def not_tradable(reason: str) -> Classified:
    """The outcome of a config refused before running (e.g. above the tier cap)."""
    return Classified(NOT_TRADABLE, reason)


def _first_liquidation(result: Any, key: str) -> Any:
    return result.liquidations[0][key] if result.liquidations else None


def _stop(result: Any) -> Any:
    if not result.stopped_kind:
        return None
    return f"{result.stopped_kind} {result.stopped_time or ''}".strip()


def _stat(name: str) -> Callable[[Any], Any]:
    return lambda r: getattr(r.statistics, name) if r.statistics else None


#: the rows of a side-by-side comparison of runs (``liqbt compare`` in the terminal and in its
#: report): a label and how to read it off a :class:`~liqbt.runner.RunResult`
COMPARE_METRICS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("outcome", lambda r: classify(r).outcome),
    ("why", lambda r: classify(r).reason),
    ("bot stopped", _stop),
    ("final equity (USDT)", lambda r: r.final_equity),
    ("return %", lambda r: r.return_pct),
    ("max drawdown %", lambda r: r.max_drawdown_pct),
    ("Sharpe", _stat("sharpe")),
    ("win rate % (net)", _stat("win_rate_pct")),
    ("fees (USDT)", lambda r: r.fees_paid),
    ("funding (USDT, + = paid)", lambda r: r.funding_paid),
    ("liquidations", lambda r: r.liquidation_count),
    ("first liquidation (UTC)", lambda r: _first_liquidation(r, "time")),
    ("first liq. price", lambda r: _first_liquidation(r, "trigger_price")),
    ("liquidation loss (USDT)", lambda r: sum(q["loss"] for q in r.liquidations)),
    ("top-ups", lambda r: len(r.top_ups)),
    ("closest to liq. %", lambda r: r.min_liquidation_distance_pct),
    ("trades", lambda r: len(r.trades)),
    ("wiped out", lambda r: r.wiped_out),
)


def compare_rows(results: Sequence[Any]) -> list[list[Any]]:
    """One row per :data:`COMPARE_METRICS` entry: the label, then each run's value."""
    return [[name, *(get(r) for r in results)] for name, get in COMPARE_METRICS]


__all__ = [
    "COMPARE_METRICS",
    "LIQUIDATED",
    "NOT_TRADABLE",
    "OUTCOMES",
    "PLANNED_EXITS",
    "STOPPED",
    "SURVIVED",
    "WIPED_OUT",
    "Classified",
    "classify",
    "compare_rows",
    "not_tradable",
]
