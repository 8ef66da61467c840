"""Hold: one leveraged market order on the first bar, then nothing (the baseline bot)."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import MarginAwareStrategy


class HoldStrategy(MarginAwareStrategy):
    """Buy (or sell) once and hold.

    Size: ``notional = margin / (1 / leverage + taker_fee)`` so that the initial margin plus the
    taker fee equals ``margin``; valued at ``close × (1 + price_buffer)`` because the market
    order fills at the next open, which the close cannot know (a higher open would otherwise
    make an all-in order fail the margin re-check at fill). ``size = notional / price``,
    rounded down to the symbol's size step. An order below the exchange's minimum notional is
    not sent; ``stopped_reason`` says so.

    Attributes
    ----------
    launch_report
        ``direction, margin, leverage, size, reference_price, notional``.
    """

    params: Any = (
        ("direction", "long"),
        ("margin", None),
        ("leverage", None),
        ("price_buffer", 0.005),
        ("verbose", False),
    )
    param_docs: ClassVar[dict[str, str]] = {
        "direction": "long|short; long; side of the position",
        "margin": "USDT; all available balance; margin (incl. the taker fee) to commit",
        "leverage": "x; the broker market's leverage; leverage used for the size",
        "price_buffer": "fraction; 0.005; headroom for the next open above the close",
        "verbose": "bool; False; print the bot's log lines",
    }

    def __init__(self) -> None:
        super().__init__()
        if self.p.direction not in ("long", "short"):
            raise ValueError(f"HoldStrategy: direction = {self.p.direction!r} is not long|short")
        self.entered = False

    def next(self) -> None:
        if self.entered or self.stopped_reason is not None:
            return
        self.entered = True
        p = self.p
        leverage = self.broker_leverage(p.leverage)
        margin = float(p.margin) if p.margin is not None else self.broker.get_cash()
        price = float(self.data.close[0]) * (1 + float(p.price_buffer))
        notional = margin / (1 / leverage + self.broker.profile.taker_fee)
        step = self.market.spec.size_step
        size = notional / price
        if step:
            size = round(int(size / step + 1e-9) * step, 12)
        min_notional = self.market.spec.min_notional
        self.launch_report = {
            "direction": p.direction, "margin": margin, "leverage": leverage, "size": size,
            "reference_price": float(self.data.close[0]), "notional": size * price,
        }
        if size * float(self.data.close[0]) < min_notional:
            self.stop_bot(
                f"{size:g} × {self.data.close[0]:g} is below the minimum order value "
                f"{min_notional:g} USDT (margin {margin:,.2f} USDT at {leverage:g}x)"
            )
            return
        self.place(size if p.direction == "long" else -size, None, hold=True)
        self.log(f"{p.direction} {size:g} at market, margin {margin:,.2f} USDT at {leverage:g}x")
