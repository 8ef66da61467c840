"""The liquidation procedure as pure plan steps (margin-model §9).

The broker executes each step as a real, tagged order and re-checks the trigger between steps;
this module only decides *what* the next step is, from floats:

1. cancel every order of the position (isolated) or of the account (cross);
2. hedge mode, cross: net the overlapping LONG and SHORT quantity of each symbol;
3. partial steps: reduce a position above the first tier to the cap of the tier
   ``partial_liquidation_tiers`` lower (:func:`partial_reduction`), cross positions in the
   order of :func:`cross_order`;
4. close the rest at the bankruptcy price, all cross positions together (:func:`cross_order`
   gives the order of the forced orders).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from liqbt.core.tiers import TierTable

CROSS_LIQUIDATION_ORDERS: tuple[str, ...] = ("largest_loss", "largest_maintenance_margin")


@dataclass(frozen=True, slots=True)
class LegState:
    """What the ordering rule needs to know about one cross position leg.

    Attributes
    ----------
    symbol, leg
        The leg's key.
    unrealized_pnl
        ``size × (mark − entry)`` in USDT at the trigger instant (negative = loss).
    maintenance_margin
        The leg's MM in USDT at the trigger instant.
    """

    symbol: str
    leg: str
    unrealized_pnl: float
    maintenance_margin: float


def cross_order(legs: Sequence[LegState], rule: str) -> list[tuple[str, str]]:
    """The order in which a cross account's legs are reduced and closed.

    ``largest_loss`` (default): the most negative unrealized PnL first. ``largest_maintenance
    _margin``: the largest MM (the biggest contribution to the shortfall) first. Ties are broken
    by symbol and leg name, so the result never depends on the order markets were declared in.
    """
    if rule not in CROSS_LIQUIDATION_ORDERS:
        raise ValueError(f"cross liquidation order {rule!r} is not one of "
                         f"{CROSS_LIQUIDATION_ORDERS}")
    if rule == "largest_loss":
        ranked = sorted(legs, key=lambda s: (s.unrealized_pnl, s.symbol, s.leg))
    else:
        ranked = sorted(legs, key=lambda s: (-s.maintenance_margin, s.symbol, s.leg))
    return [(s.symbol, s.leg) for s in ranked]


def partial_reduction(
    size: float,
    price: float,
    tiers: TierTable,
    tiers_per_step: int,
    margin_balance: float,
    taker_fee: float,
) -> float:
    """Unsigned quantity one partial-liquidation step closes (0 = no step; margin-model §9.3).

    A position of ``size`` (base units, signed or not) at ``price`` (USDT) above the first tier is
    reduced to the cap of the tier ``tiers_per_step`` lower. No step is taken once the margin
    balance (USDT; the isolated ``M + upnl`` or the cross margin balance) cannot pay the taker
    fee for closing the whole position: past bankruptcy the full close settles instead.
    Sources: OKX "Liquidation and auto-deleveraging" (tier reduction); Gate "Partial
    liquidation".
    """
    if tiers_per_step <= 0 or not size:
        return 0.0
    if margin_balance <= abs(size) * price * taker_fee:
        return 0.0
    index = tiers.tier_index(tiers.lookup_value(size, price))
    if index == 0:
        return 0.0
    target_cap = tiers.tiers[max(index - tiers_per_step, 0)].cap
    target_size = target_cap if tiers.basis == "size" else target_cap / price
    return max(abs(size) - target_size, 0.0)
