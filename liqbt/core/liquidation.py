"""The liquidation procedure as a plan of steps (margin-model §9).

:func:`isolated_plan` and :func:`cross_plan` decide, from the core
:class:`~liqbt.core.account.Account` at the trigger instant, *what* happens and in which order;
they never touch backtrader. Each is a generator: it yields one step, the executor carries it
out (the broker as real orders tagged ``liquidation``, :func:`apply_step` directly on the
account), and the plan then re-checks the trigger against the account before deciding the next
step. :func:`run_plan` drives a plan to the end on an account alone (tests, scratch accounts).

0. isolated with automatic top-up: top up (:class:`TopUp`); a successful top-up ends the
   procedure (the walk continues with the new, lower LP);
1. cancel every order of the position (isolated) or of the account (cross);
2. hedge mode, cross: net the overlapping LONG and SHORT quantity of each symbol;
3. partial steps: reduce a position above the first tier to the cap of the tier
   ``partial_liquidation_tiers`` lower (:func:`partial_reduction`), cross positions in the
   order of :func:`cross_order`;
4. close the rest at the bankruptcy price, all cross positions together (:func:`cross_order`
   gives the order of the forced orders);
5. when no position is left and the equity cannot open the smallest order: wipeout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from liqbt.core import events as ev
from liqbt.core.tiers import TierTable

if TYPE_CHECKING:
    from liqbt.core.account import Account, Position

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
    liquidation". A reduction within ``1e-9 × |size|`` (float residue of a previous step that
    left the position at the cap) is no step.
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
    reduce = abs(size) - target_size
    # a position a previous step left at the cap can sit a float residue above it: that is
    # no step (a close of ~1e-17 BTC would be a fill of nothing)
    return reduce if reduce > 1e-9 * abs(size) else 0.0


# --- the plan -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TopUp:
    """Move margin from the wallet into an isolated leg (``Account.auto_top_up``)."""

    symbol: str
    leg: str


@dataclass(frozen=True, slots=True)
class CancelOrders:
    """Cancel every resting order of ``symbol`` (isolated) or, ``None``, of the account."""

    symbol: str | None


@dataclass(frozen=True, slots=True)
class Close:
    """One forced fill: ``qty`` (signed, reducing the leg) executed at ``execution`` (USDT) and
    settled at ``settlement``; ``trigger`` is the price where the trigger held. ``fee_rate`` is
    the trading fee rate of the fill (0 for the full close, whose costs are in the
    settlement)."""

    symbol: str
    leg: str
    qty: float
    trigger: float
    execution: float
    settlement: float
    fee_rate: float


@dataclass(frozen=True, slots=True)
class CloseStep:
    """Closes executed together before the next re-check. ``kind``: ``net`` (hedge legs
    netted), ``partial`` (a tier-reduction step) or ``full`` (the rest at bankruptcy)."""

    kind: str
    closes: tuple[Close, ...]

    @property
    def partial(self) -> bool:
        """Whether the closes are tagged partial (``net`` and ``partial`` steps)."""
        return self.kind != "full"


@dataclass(frozen=True, slots=True)
class Wipeout:
    """No position is left and ``equity`` (USDT) cannot open the smallest order."""

    equity: float


Step = TopUp | CancelOrders | CloseStep | Wipeout


def cross_tolerance(account: Account) -> float:
    """Money noise of a sum of notionals (USDT): a mark exactly at the LP counts as reached."""
    return tolerance_of(sum(abs(p.size) * p.mark_price for p in account.cross_positions()))


def tolerance_of(notional: float) -> float:
    """:func:`cross_tolerance` of cross legs worth ``notional`` USDT at their marks
    (increasing in ``notional``)."""
    return 1e-9 * max(notional, 1.0)


def cross_triggered(account: Account) -> bool:
    """Whether the cross condition holds: margin balance − trigger margin <= 0 (margin-model
    §5, ``Account.cross_excess``), within :func:`cross_tolerance`."""
    return account.cross_excess() <= cross_tolerance(account)


def isolated_triggered(account: Account, pos: Position, price: float) -> bool:
    """Whether an isolated leg at mark ``price`` is at or past its LP (``Account.liquidation
    _price``, relative tolerance 1e-9)."""
    if not pos.size:
        return False
    lp, direction = account.liquidation_price(pos)
    if lp is None:
        return False
    return price <= lp + 1e-9 * lp if direction < 0 else price >= lp - 1e-9 * lp


def cross_ranking(account: Account) -> list[tuple[str, str]]:
    """The cross legs in the profile's ``cross_liquidation_order`` (:func:`cross_order`)."""
    states = [
        LegState(p.symbol, p.leg, p.unrealized_pnl, account.maintenance_margin(p))
        for p in account.cross_positions()
    ]
    return cross_order(states, account.profile.cross_liquidation_order)


def _partial_close(account: Account, pos: Position, price: float) -> CloseStep | None:
    """One partial step of ``pos`` at ``price`` (:func:`partial_reduction`), or ``None``.

    No step once the margin balance cannot pay the fee to close the position (a gap at or past
    bankruptcy): a partial close there would take the loss out of the wallet, which an
    isolated liquidation never touches; the full close settles at bankruptcy instead.
    """
    profile = account.profile
    if pos.margin_mode not in profile.partial_liquidation_modes:
        return None
    if pos.margin_mode == "isolated":
        balance = pos.margin + pos.unrealized_pnl
    else:
        balance = account.cross_margin_balance()
    reduce = partial_reduction(
        pos.size, price, account.market(pos.symbol).tiers,
        profile.partial_liquidation_tiers, balance, profile.taker_fee,
    )
    if reduce <= 0:
        return None
    close = Close(pos.symbol, pos.leg, -pos.side * reduce, price, price, price, profile.taker_fee)
    return CloseStep("partial", (close,))


def _full_close(account: Account, legs: list[Position], execution: dict[tuple[str, str], float]
                ) -> CloseStep:
    settle = account.settlement_prices(legs, execution)
    closes = []
    for pos in legs:
        key = (pos.symbol, pos.leg)
        closes.append(Close(pos.symbol, pos.leg, -pos.size, execution[key], execution[key],
                            settle[key], 0.0))
    return CloseStep("full", tuple(closes))


def _wipeout(account: Account) -> Iterator[Step]:
    if any(True for _ in account.open_positions()):
        return
    equity = account.equity()
    smallest = min(
        (m.spec.min_notional / m.leverage for m in account.markets.values()), default=0.0
    )
    if equity <= max(smallest, 1e-9):
        yield Wipeout(equity)


def isolated_plan(account: Account, pos: Position, price: float) -> Iterator[Step]:
    """margin-model §9 for an isolated leg whose mark reached its LP at ``price`` (USDT).

    Top up (when on); cancel the symbol's orders; re-check; partial steps while still
    triggered; close the rest at ``price``, settled at bankruptcy; wipeout check.
    """
    if pos.margin_mode == "isolated" and account.market(pos.symbol).auto_top_up:
        version = account.version
        yield TopUp(pos.symbol, pos.leg)
        if account.version != version:
            return  # topped up: the walk continues with the new, lower LP
    yield CancelOrders(pos.symbol)
    if not isolated_triggered(account, pos, price):
        return
    while (step := _partial_close(account, pos, price)) is not None:
        yield step
        if not isolated_triggered(account, pos, price):
            return
    yield _full_close(account, [pos], {(pos.symbol, pos.leg): price})
    yield from _wipeout(account)


def cross_plan(account: Account) -> Iterator[Step]:
    """margin-model §9 for the cross account at the instant its condition holds, every symbol
    at its mark of that instant: cancel every order, net hedged legs, partial steps in the
    profile's ``cross_liquidation_order``, then close every cross leg at its mark, settled at
    bankruptcy; wipeout check. The trigger is re-checked after every step."""
    yield CancelOrders(None)
    if not cross_triggered(account):
        return
    ranked = cross_ranking(account)
    if account.position_mode == "hedge":
        for symbol in dict.fromkeys(s for s, _ in ranked):
            long_pos = account.positions.get((symbol, "long"))
            short_pos = account.positions.get((symbol, "short"))
            if not long_pos or not short_pos or not long_pos.size or not short_pos.size:
                continue
            price = next(p.mark_price for p in account.cross_positions() if p.symbol == symbol)
            overlap = min(long_pos.size, -short_pos.size)
            fee = account.profile.taker_fee
            yield CloseStep("net", (
                Close(symbol, "long", -overlap, price, price, price, fee),
                Close(symbol, "short", overlap, price, price, price, fee),
            ))
            if not cross_triggered(account):
                return
        ranked = cross_ranking(account)
    for key in ranked:
        pos = account.positions[key]
        while pos.size and (step := _partial_close(account, pos, pos.mark_price)) is not None:
            yield step
            if not cross_triggered(account):
                return
    legs = [account.positions[key] for key in cross_ranking(account)]
    if not legs:
        return
    yield _full_close(account, legs, {(p.symbol, p.leg): p.mark_price for p in legs})
    yield from _wipeout(account)


def apply_step(account: Account, step: Step, order_ref: int | None = None) -> None:
    """Carry out ``step`` on the account alone (no orders to cancel, no backtrader): the
    executor of :func:`run_plan`. The broker runs the same bookkeeping through real orders."""
    if isinstance(step, TopUp):
        account.auto_top_up(account.positions[(step.symbol, step.leg)], account.order_margin())
    elif isinstance(step, CloseStep):
        for close in step.closes:
            account.book_liquidation(
                account.positions[(close.symbol, close.leg)], close.qty, close.trigger,
                close.execution, close.settlement, close.fee_rate, step.partial, order_ref,
            )
    elif isinstance(step, Wipeout):
        account.events.append(wipeout_event(account, step))


def wipeout_event(account: Account, step: Wipeout) -> ev.Wipeout:
    """The :class:`~liqbt.core.events.Wipeout` event of a wipeout step."""
    return ev.Wipeout(account.clock, step.equity,
                      f"equity {step.equity:.2f} USDT cannot open the smallest order")


def run_plan(account: Account, plan: Iterator[Step]) -> list[Step]:
    """Execute every step of ``plan`` on ``account`` with :func:`apply_step`; the steps taken."""
    steps = []
    for step in plan:
        apply_step(account, step)
        steps.append(step)
    return steps
