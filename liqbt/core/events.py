"""Immutable margin events: every fact the broker establishes, stamped with its bar time.

Reports, analyzers and the CLI's JSON are derived from these records; nothing else is the
source of truth. Money is USDT; sizes are base units; ``side`` is ``"long"`` or ``"short"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """Base: ``time`` is the bar time (UTC, naive as backtrader keeps it)."""

    time: datetime | None

    @property
    def kind(self) -> str:
        """Short name of the event type (``fill``, ``liquidation``, ...)."""
        return _KINDS[type(self)]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict with ``kind`` and an ISO-8601 UTC ``time``."""
        data = asdict(self)
        data["kind"] = self.kind
        data["time"] = None if self.time is None else self.time.isoformat() + "Z"
        return data


@dataclass(frozen=True, slots=True)
class Fill(Event):
    """An order fill. ``size`` is signed (+ buy, − sell); ``fee`` is what the trader paid;
    ``realized_pnl`` is at the fill price; ``liquidation`` marks forced closes."""

    symbol: str = ""
    leg: str = "net"
    size: float = 0.0
    price: float = 0.0
    fee: float = 0.0
    realized_pnl: float = 0.0
    maker: bool = False
    liquidation: bool = False
    order_ref: int | None = None
    position_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Funding(Event):
    """A funding settlement: ``payment > 0`` paid by the position, ``< 0`` received."""

    symbol: str = ""
    leg: str = "net"
    rate: float = 0.0
    mark_price: float = 0.0
    size: float = 0.0
    payment: float = 0.0
    margin_mode: str = "cross"


@dataclass(frozen=True, slots=True)
class TopUp(Event):
    """Automatic margin top-up of an isolated position at its liquidation price."""

    symbol: str = ""
    leg: str = "net"
    amount: float = 0.0
    margin_after: float = 0.0
    liquidation_price_after: float | None = None
    available_balance_after: float = 0.0


@dataclass(frozen=True, slots=True)
class OrderCancelled(Event):
    """An open order cancelled because of a liquidation."""

    symbol: str = ""
    order_ref: int | None = None
    size: float = 0.0
    price: float | None = None
    reason: str = "liquidation"


@dataclass(frozen=True, slots=True)
class Liquidation(Event):
    """A forced close. ``trigger_price`` is where the trigger held (the open on a gap),
    ``settlement_price`` what the trader got; ``loss`` is the trader's realized loss on the
    closed part at settlement (>= 0 for a loss); ``insurance_fund_delta`` is what the insurance
    fund gained (negative when it covered a gap past bankruptcy). ``partial`` marks a
    tier-reduction step (margin-model §9 step 3). ``fee`` is the forced fill's trading fee (as
    on its :class:`Fill`); ``liquidation_fee`` the clearance fee charged under
    ``settlement = "liquidation_price"`` (0 otherwise), counted in the account's ``fees_paid``.
    ``loss`` includes both fees."""

    symbol: str = ""
    leg: str = "net"
    side: str = "long"
    size: float = 0.0
    trigger_price: float = 0.0
    settlement_price: float = 0.0
    loss: float = 0.0
    insurance_fund_delta: float = 0.0
    margin_mode: str = "isolated"
    partial: bool = False
    fee: float = 0.0
    liquidation_fee: float = 0.0


@dataclass(frozen=True, slots=True)
class MarginWarning(Event):
    """Margin ratio (MM / margin balance) crossed the warning threshold."""

    symbol: str = ""
    leg: str = "net"
    margin_ratio: float = 0.0
    threshold: float = 0.8


@dataclass(frozen=True, slots=True)
class Wipeout(Event):
    """Equity can no longer open the smallest order: the account is finished."""

    equity: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rejected(Event):
    """An order refused for margin (or another rule); ``reason`` is readable by strategies."""

    symbol: str = ""
    order_ref: int | None = None
    size: float = 0.0
    price: float | None = None
    reason: str = ""


_KINDS: dict[type, str] = {
    Fill: "fill",
    Funding: "funding",
    TopUp: "top_up",
    OrderCancelled: "order_cancelled",
    Liquidation: "liquidation",
    MarginWarning: "warning",
    Wipeout: "wipeout",
    Rejected: "rejected",
}

