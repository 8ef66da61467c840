"""Leverage-aware commission info: how backtrader sizes orders on a leveraged futures market.

backtrader asks a data feed's ``CommissionInfo`` how large an order a given amount of cash buys
(``getsize``), what an operation costs (``getoperationcost``) and what a position is worth
(``getvaluesize`` / ``getvalue``); ``Strategy.order_target_value`` / ``order_target_percent`` and
sizers rely on it. The stock object truncates sizes to whole units and knows nothing of
leverage, so on a crypto perpetual 0.0166 BTC became 0 and no order was placed.

:class:`LeveragedCommInfo` answers in margin terms: cash ``c`` at price ``p`` buys
``c × leverage / p`` base units, rounded down to the symbol's size step; a position of ``s`` base
units at ``p`` is worth (and costs) ``s × p / leverage`` USDT of margin. At 1x these are
backtrader's stock-like figures, with fractional sizes. ``MarginBroker.set_market`` installs one
per market; fees and margin themselves are computed by :class:`liqbt.core.account.Account`.
"""

from __future__ import annotations

import math
from typing import Any

import backtrader as bt


def floor_to_step(size: float, step: float) -> float:
    """``size`` rounded down (towards zero) to a multiple of ``step`` (no rounding when the
    step is 0). Float residue of the division (``0.3 / 0.1 = 2.9999999999999996``) is not a
    step short."""
    if step <= 0:
        return size
    steps = math.floor(abs(size) / step + 1e-9)
    decimals = max(0, -math.floor(math.log10(step)) + 1)
    return math.copysign(round(steps * step, decimals), size) if steps else 0.0


class LeveragedCommInfo(bt.CommInfoBase):
    """Commission info of one leveraged USDT-margined market (the backtrader way).

    Params
    ------
    leverage
        The market's leverage (backtrader's own ``leverage`` parameter).
    size_step
        The symbol's order size step in base units (0: no rounding).
    commission
        Taker fee rate (fraction), reported for information; the broker charges the profile's
        maker or taker fee itself.
    """

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_PERC),
        ("percabs", True),
        ("commission", 0.0),
        ("leverage", 1.0),
        ("size_step", 0.0),
    )

    def getsize(self, price: float, cash: float) -> float:
        """Base units that ``cash`` USDT of margin opens at ``price``:
        ``floor_step(cash × leverage / price)`` (≥ 0)."""
        if price <= 0 or cash <= 0:
            return 0.0
        return floor_to_step(cash * self.p.leverage / price, self.p.size_step)

    def get_margin(self, price: float) -> float:
        """Initial margin of one base unit at ``price``: ``price / leverage`` (USDT)."""
        return price / self.p.leverage

    def getoperationcost(self, size: float, price: float) -> float:
        """Margin an operation of ``size`` at ``price`` needs: ``|size| × price / leverage``."""
        return abs(size) * self.get_margin(price)

    def getvaluesize(self, size: float, price: float) -> float:
        """Value of ``size`` (signed) at ``price`` in margin terms: ``size × price / leverage``."""
        return size * self.get_margin(price)

    def getvalue(self, position: Any, price: float) -> float:
        """Value of a backtrader position at ``price`` in margin terms (signed)."""
        return self.getvaluesize(position.size, price)


def lever_sizer(broker: Any, strategy: Any) -> None:
    """Make backtrader's stock ``PercentSizer`` / ``AllInSizer`` (and subclasses) of
    ``strategy`` size by margin × leverage: they compute ``cash / close × percents``, so they
    are handed the buying power ``available × leverage`` of the data's market, and the size is
    rounded down to the size step. Other sizers are left alone (a risk-based sizer must see the
    real cash)."""
    sizer = strategy.getsizer()
    if not isinstance(sizer, bt.sizers.PercentSizer) or getattr(sizer, "_liqbt", False):
        return

    def getsizing(data: Any, isbuy: bool) -> float:
        comminfo = broker.getcommissioninfo(data)
        leverage = comminfo.p.leverage if isinstance(comminfo, LeveragedCommInfo) else 1.0
        size = sizer._getsizing(comminfo, broker.getcash() * leverage, data, isbuy)
        if broker.getposition(data).size:
            return size  # PercentSizer closes the position it sees: keep its size
        step = comminfo.p.size_step if isinstance(comminfo, LeveragedCommInfo) else 0.0
        return floor_to_step(size, step)

    sizer.getsizing = getsizing
    sizer._liqbt = True
