"""Order-ladder math for trading bots: grid levels and quantities, DCA safety-order ladders and
the liquidation price of a ladder "if every order fills".

Pure functions on floats (no backtrader, pandas or numpy), so the CLI, reports and strategies
share one definition; liquidation prices are asked of a scratch
:class:`liqbt.core.account.Account`, the broker's own evaluator. Conventions as in
:mod:`liqbt.core.margin`: prices and money in USDT, sizes in base units (BTC), ``direction``
is ``"long"`` or ``"short"``.

Sources
-------
* Grid: Binance futures grid bot ("What Is Futures Grid Trading", Binance FAQ): ``grids`` is
  the number of *intervals*, so a grid has ``grids + 1`` price lines; the arithmetic grid has
  equal price differences, the geometric one equal ratios; every grid order has the same base
  quantity.
* DCA: 3Commas DCA bot documentation ("Safety order step scale", "Safety order volume scale"):
  safety order ``n`` (1-based) sits at the cumulative deviation
  ``price_deviation × (1 + s + s² + … + s^(n−1))`` from the base order's price and has the
  notional ``safety_order × v^(n−1)`` (USDT).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from liqbt.core.account import Account, MarketConfig
from liqbt.core.choices import DIRECTIONS, GRID_DIRECTIONS, QUANTITY_RULES, SPACINGS
from liqbt.core.profile import ExchangeProfile


def _side(direction: str) -> int:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction = {direction!r} is not one of {DIRECTIONS}")
    return 1 if direction == "long" else -1


# --- grid ----------------------------------------------------------------------------------
def grid_levels(
    lower: float, upper: float, grids: int, spacing: str = "arithmetic"
) -> tuple[float, ...]:
    """The ``grids + 1`` price lines of a grid from ``lower`` to ``upper`` (USDT), ascending.

    Arithmetic: ``p_i = lower + i × (upper − lower) / grids``.
    Geometric: ``p_i = lower × (upper / lower)^(i / grids)`` (equal percentage steps).

    Parameters
    ----------
    lower, upper
        Lowest and highest grid line, USDT; ``0 < lower < upper``.
    grids
        Number of grid intervals (Binance's "number of grids"), an integer >= 1.
    spacing
        ``"arithmetic"`` (default) or ``"geometric"``.

    Returns
    -------
    tuple of float
        ``grids + 1`` prices, ``lower`` first and ``upper`` last (exactly).
    """
    if spacing not in SPACINGS:
        raise ValueError(f"spacing = {spacing!r} is not one of {SPACINGS}")
    if not (isinstance(grids, int) and grids >= 1):
        raise ValueError(f"grids = {grids!r} must be an integer >= 1")
    if not (0 < lower < upper) or not math.isfinite(upper):
        raise ValueError(f"need 0 < lower < upper, got lower = {lower!r}, upper = {upper!r}")
    if spacing == "arithmetic":
        step = (upper - lower) / grids
        inner = [lower + i * step for i in range(1, grids)]
    else:
        ratio = upper / lower
        inner = [lower * ratio ** (i / grids) for i in range(1, grids)]
    return (float(lower), *inner, float(upper))


def grid_quantity(
    investment: float,
    leverage: float,
    levels: Sequence[float],
    reference_price: float | None = None,
    rule: str = "levels",
    fee_rate: float = 0.0,
) -> float:
    """Equal base quantity per grid order from the investment (margin) and leverage.

    A grid with ``n = len(levels) − 1`` intervals holds at most one order per interval, so
    when every order on one side has filled the position is ``n × Q`` base units. The rules:

    ``levels`` (default)
        ``Q = investment × leverage / (Σ_{i<n} p_i × (1 + leverage × fee_rate))``: the margin
        plus opening fees of a fully deployed grid, each interval opened at its lower line
        ``p_i``, equals the investment. This is the Binance futures grid rule (the investment
        covers the grid when the price has walked through every line), and it never
        over-commits margin whatever the current price is.
    ``reference``
        ``Q = investment × leverage / (n × reference_price × (1 + leverage × fee_rate))``:
        every grid valued at the current price (OKX's "quantity per grid" display).

    Parameters
    ----------
    investment
        Margin committed to the bot, USDT (> 0).
    leverage
        Leverage (>= 1).
    levels
        The grid lines from :func:`grid_levels`, ascending.
    reference_price
        Current price, USDT; required by the ``reference`` rule only.
    rule
        ``"levels"`` or ``"reference"``.
    fee_rate
        Opening fee rate (fraction, e.g. taker 0.0005) reserved out of the investment;
        default 0 (no reserve).

    Returns
    -------
    float
        Quantity per grid order, base units (not rounded to the exchange's size step).
    """
    if rule not in QUANTITY_RULES:
        raise ValueError(f"rule = {rule!r} is not one of {QUANTITY_RULES}")
    if investment <= 0 or leverage < 1:
        raise ValueError(f"need investment > 0 and leverage >= 1, got {investment!r}, {leverage!r}")
    n = len(levels) - 1
    if n < 1:
        raise ValueError("a grid needs at least two levels")
    # the notional that investment × leverage buys once each opening fee is also paid from it:
    # Σ notional × (1/leverage + fee) = investment
    buying_power = investment * leverage / (1 + leverage * fee_rate)
    if rule == "reference":
        if reference_price is None or reference_price <= 0:
            raise ValueError("rule 'reference' needs a reference_price > 0")
        return buying_power / (n * reference_price)
    return buying_power / sum(levels[:-1])


@dataclass(frozen=True)
class GridOrder:
    """One order of a grid at launch.

    Attributes
    ----------
    level
        Index of the grid line in ``levels`` (0 = lowest).
    price
        Order price, USDT (for the launch market order: the reference price).
    size
        Signed base quantity: ``+`` buy, ``−`` sell.
    opening
        Whether the order opens/increases the position (False: it closes grid inventory).
    market
        The launch market order (bought/sold at the reference price) rather than a limit.
    """

    level: int
    price: float
    size: float
    opening: bool
    market: bool = False


@dataclass(frozen=True)
class GridPlan:
    """A grid's launch: lines, quantity per grid and the orders to place.

    Attributes
    ----------
    direction
        ``long``, ``short`` or ``neutral``.
    levels
        The grid lines, ascending (USDT).
    quantity
        Base quantity per grid.
    reference_price
        The launch price, USDT.
    orders
        The launch market order (if any) then one limit per line except the line nearest the
        reference price (it is the "current" line with no order, as on Binance).
    """

    direction: str
    levels: tuple[float, ...]
    quantity: float
    reference_price: float
    orders: tuple[GridOrder, ...]

    @property
    def initial_position(self) -> float:
        """Signed position (base units) right after the launch market order."""
        return sum(o.size for o in self.orders if o.market)

    @property
    def full_position(self) -> float:
        """Signed position (base units) when every opening limit on the adverse side has
        filled (long: price at ``lower``; short: price at ``upper``; neutral: the larger of
        both ends)."""
        init = self.initial_position
        buys = sum(o.size for o in self.orders if not o.market and o.size > 0)
        sells = sum(o.size for o in self.orders if not o.market and o.size < 0)
        if self.direction == "long":
            return init + buys
        if self.direction == "short":
            return init + sells
        return init + buys if buys >= -sells else init + sells


def nearest_level(levels: Sequence[float], price: float) -> int:
    """Index of the grid line closest to ``price`` (ties: the lower line)."""
    return min(range(len(levels)), key=lambda i: (abs(levels[i] - price), i))


def grid_plan(
    direction: str, levels: Sequence[float], quantity: float, reference_price: float
) -> GridPlan:
    """The orders a futures grid places at launch (Binance/OKX futures grid behaviour).

    With ``k`` the line nearest the reference price (no order there):

    * ``long``: a market buy of ``Q × (#lines above k)``, buy limits at every line below ``k``
      (opening), sell limits at every line above ``k`` (closing the bought inventory).
    * ``short``: the mirror image: a market sell of ``Q × (#lines below k)``, sell limits above
      (opening), buy limits below (closing).
    * ``neutral``: no market order; buy limits below (opening long), sell limits above
      (opening short).

    Each filled order is later replaced by its counter-order one line away (strategy side).
    """
    if direction not in GRID_DIRECTIONS:
        raise ValueError(f"direction = {direction!r} is not one of {GRID_DIRECTIONS}")
    k = nearest_level(levels, reference_price)
    below = range(k)
    above = range(k + 1, len(levels))
    orders: list[GridOrder] = []
    if direction == "long" and len(above):
        orders.append(GridOrder(k, reference_price, quantity * len(above), True, market=True))
    if direction == "short" and len(below):
        orders.append(GridOrder(k, reference_price, -quantity * len(below), True, market=True))
    for i in below:
        orders.append(GridOrder(i, levels[i], quantity, direction != "short"))
    for i in above:
        orders.append(GridOrder(i, levels[i], -quantity, direction != "long"))
    return GridPlan(direction, tuple(levels), quantity, reference_price, tuple(orders))


# --- DCA -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LadderOrder:
    """One order of a DCA ladder and the position if it and all earlier ones have filled.

    Attributes
    ----------
    index
        0 for the base order, ``n`` for safety order ``n``.
    deviation
        Cumulative price deviation from the entry, percent (0 for the base order).
    price
        Order price, USDT: ``entry × (1 − side × deviation / 100)``.
    notional
        Order value, USDT.
    size
        Base quantity (unsigned): ``notional / price``.
    total_notional
        Σ notional of orders ``0..index``, USDT.
    total_size
        Σ size of orders ``0..index`` (unsigned base units).
    average_price
        Average entry after this order fills: ``total_notional / total_size`` (USDT).
    """

    index: int
    deviation: float
    price: float
    notional: float
    size: float
    total_notional: float
    total_size: float
    average_price: float


def dca_ladder(
    base_order: float,
    safety_order: float,
    max_safety_orders: int,
    price_deviation: float,
    step_scale: float,
    volume_scale: float,
    entry_price: float,
    direction: str = "long",
) -> tuple[LadderOrder, ...]:
    """A 3Commas-style DCA ladder: the base order then ``max_safety_orders`` safety orders.

    Safety order ``n`` (1-based):

    * deviation ``d_n = price_deviation × (1 + s + … + s^(n−1))`` percent, ``s = step_scale``;
    * price ``entry × (1 − side × d_n / 100)`` (long below the entry, short above);
    * notional ``safety_order × volume_scale^(n−1)`` USDT; size = notional / price.

    3Commas' example: deviation 1 %, step scale 2 → safety orders at −1 %, −3 %, −7 %;
    safety 20 USDT, volume scale 2 → 20, 40, 80 USDT.

    Parameters
    ----------
    base_order
        Base order notional, USDT (> 0).
    safety_order
        First safety order notional, USDT (>= 0).
    max_safety_orders
        Number of safety orders (>= 0).
    price_deviation
        Deviation of the first safety order, percent (1.0 = 1 %).
    step_scale
        Multiplier of each next deviation step (>= 0; 1 = equal steps).
    volume_scale
        Multiplier of each next safety order's notional (> 0).
    entry_price
        Base order price, USDT.
    direction
        ``"long"`` (default) or ``"short"``.

    Returns
    -------
    tuple of LadderOrder
        ``max_safety_orders + 1`` orders, the base order first.
    """
    side = _side(direction)
    if base_order <= 0 or safety_order < 0 or entry_price <= 0:
        raise ValueError("need base_order > 0, safety_order >= 0 and entry_price > 0")
    if max_safety_orders < 0 or price_deviation < 0 or step_scale < 0 or volume_scale <= 0:
        raise ValueError(
            "need max_safety_orders >= 0, price_deviation >= 0, step_scale >= 0, "
            "volume_scale > 0"
        )
    orders = [
        LadderOrder(0, 0.0, entry_price, base_order, base_order / entry_price, base_order,
                    base_order / entry_price, entry_price)
    ]
    deviation = 0.0
    total_notional, total_size = base_order, base_order / entry_price
    for n in range(1, max_safety_orders + 1):
        deviation += price_deviation * step_scale ** (n - 1)
        price = entry_price * (1 - side * deviation / 100)
        if price <= 0:
            raise ValueError(
                f"safety order {n} deviates {deviation:g} % from {entry_price:g}: price <= 0"
            )
        notional = safety_order * volume_scale ** (n - 1)
        size = notional / price
        total_notional += notional
        total_size += size
        orders.append(
            LadderOrder(n, deviation, price, notional, size, total_notional, total_size,
                        total_notional / total_size)
        )
    return tuple(orders)


# --- liquidation price of a ladder -----------------------------------------------------------
def ladder_liquidation_price(
    fills: Iterable[tuple[float, float]] | Iterable[LadderOrder],
    direction: str,
    market: MarketConfig,
    profile: ExchangeProfile,
    wallet_balance: float | None = None,
) -> float | None:
    """Estimated LP (USDT) of the position made by ``fills`` "if every order fills".

    The fills are booked, without fees, in a scratch :class:`liqbt.core.account.Account` with the
    broker's profile and market, and the LP is the account's answer
    (:meth:`~liqbt.core.account.Account.liquidation_price`), so the estimate is where the broker
    would liquidate that position. Assumptions (what OKX's "estimated liquidation price" also
    assumes): every order fills at its price, no funding, no fees taken out of the margin, the
    mark at the last fill's price.

    * isolated (``market.margin_mode``): position margin ``M = Σ notional_i / leverage`` (each
      fill brings its own IM, as the broker books it);
    * cross: the whole ``wallet_balance`` (USDT, required) backs the position, no other
      positions and no resting orders.

    Parameters
    ----------
    fills
        ``(price, size)`` pairs (size unsigned, base units) or :class:`LadderOrder` records.
    direction
        ``"long"`` or ``"short"``.
    market
        The broker's market settings of the symbol (``broker.account.market(symbol)``):
        leverage, margin mode and tier table.
    profile
        The exchange profile (``broker.profile``).
    wallet_balance
        Cross wallet balance, USDT (cross only).

    Returns
    -------
    float or None
        The LP, or ``None`` when no positive price liquidates the position.
    """
    side = _side(direction)
    pairs = [
        (f.price, f.size) if isinstance(f, LadderOrder) else (float(f[0]), abs(float(f[1])))
        for f in fills
    ]
    if sum(q for _, q in pairs) <= 0:
        return None
    if market.margin_mode == "cross" and wallet_balance is None:
        raise ValueError("cross margin needs the wallet_balance backing the position")
    account = Account(profile, 0.0)
    account.add_market(market)
    if market.margin_mode == "cross":
        account.wallet_balance = float(wallet_balance or 0.0)
    for price, q in pairs:
        account.fill(market.symbol, side * q, price, 0.0)
    account.set_mark(market.symbol, pairs[-1][0])
    return account.liquidation_price(account.position(market.symbol))[0]


def grid_liquidation_price(
    plan: GridPlan,
    market: MarketConfig,
    profile: ExchangeProfile,
    wallet_balance: float | None = None,
) -> float | None:
    """Estimated LP of a grid at launch: the position after the launch market order and every
    opening limit on the adverse side has filled (long: all buys below; short: all sells
    above; neutral: the side with more quantity), see :func:`ladder_liquidation_price` for the
    margin assumptions. ``None`` when that position is flat or cannot be liquidated."""
    full = plan.full_position
    if not full:
        return None
    want_buy = full > 0
    fills = [
        (o.price, abs(o.size)) for o in plan.orders
        if o.opening and (o.size > 0) == want_buy
    ]
    return ladder_liquidation_price(
        fills, "long" if want_buy else "short", market, profile, wallet_balance
    )


def ladder_liquidation_prices(
    ladder: Sequence[LadderOrder],
    direction: str,
    market: MarketConfig,
    profile: ExchangeProfile,
    wallet_balance: float | None = None,
) -> tuple[float | None, ...]:
    """LP after each order of the ladder has filled (entry ``n`` = base plus safety orders
    ``1..n``), same assumptions as :func:`ladder_liquidation_price`."""
    return tuple(
        ladder_liquidation_price(ladder[: n + 1], direction, market, profile, wallet_balance)
        for n in range(len(ladder))
    )


def first_unreachable_order(
    ladder: Sequence[LadderOrder], liquidation_prices: Sequence[float | None], direction: str
) -> int | None:
    """Index of the first safety order the position is liquidated before reaching: the
    first ``n`` whose price is at or beyond the LP after orders ``0..n−1`` (long: price <= LP,
    short: price >= LP). ``None`` when every order can fill; then the "all filled" LP is
    meaningful, otherwise it is too optimistic."""
    side = _side(direction)
    for n in range(1, len(ladder)):
        lp = liquidation_prices[n - 1]
        if lp is not None and (ladder[n].price - lp) * side <= 0:
            return n
    return None
