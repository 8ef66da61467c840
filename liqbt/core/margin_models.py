"""Margin models: how a profile's rules turn a position into maintenance margin and a trigger.

A :class:`MarginModel` is chosen once from the profile (:func:`margin_model_for`) and held by
:class:`liqbt.core.account.Account`, the only place that maps a profile's rules onto the
formulas of :mod:`liqbt.core.margin`. The calculator (:mod:`liqbt.core.snapshot`) and the bots'
launch estimates (:mod:`liqbt.core.ladders`) ask a scratch account, so every number agrees.
(The shape follows nautilus_trader's ``margin_models``: small plug-in objects behind one call.)

Two MM rules (the ``mm`` part):

:class:`TieredMM` (``mm_model = "tiers"``)
    ``MM = q × P × mmr(tier) − amount(tier)`` from the symbol's tier table (margin-model §2),
    ``P`` the mark; Bybit's standard account values an isolated position at its entry price
    (``lp_formula = "bybit"``; cross positions are valued at mark there too).
:class:`UsedMarginMM` (``mm_model = "used_margin"``, the ``simple`` profile)
    ``MM = used_margin_mm_rate × IM`` with ``IM = q × E / leverage`` (margin-model §3): a
    constant while the position is unchanged; added margin is a buffer, not used margin.

The trigger (margin-model §4–5), the same in the broker and the calculator::

    margin balance <= trigger margin
    trigger margin = MM + closing fee (+ order margin, where the profile counts it)

* ``closing fee = taker × q × mark`` on ``lp_formula = "taker_at_mark"`` profiles (OKX, Bitget,
  Gate, simple), 0 elsewhere. It is **not** part of MM: MM is the exchange's tier figure.
* ``order margin`` (``order_margin_in_trigger = true``, the ``simple`` profile): the margin frozen
  by resting orders counts against a cross account's equity. Isolated positions keep their own
  margin and are unaffected.
* ``margin ratio = trigger margin / margin balance`` (1.0 = liquidation); on profiles without a
  closing-fee term this is Binance's ``MM / margin balance``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from liqbt.core.margin import margin_ratio
from liqbt.core.profile import ExchangeProfile
from liqbt.core.tiers import Tier, TierTable


@dataclass(frozen=True, slots=True)
class TieredMM:
    """MM from the tier table (margin-model §2).

    Attributes
    ----------
    isolated_at_entry
        Value an isolated position at its entry price (Bybit standard account, "Liquidation
        Price (USDT Contract)"); otherwise, and always for cross, at the mark.
    """

    isolated_at_entry: bool = False

    def basis_price(self, entry: float, mark: float, cross: bool) -> float:
        """The price (USDT) the position is valued at for its tier and MM."""
        return entry if self.isolated_at_entry and not cross else mark

    def tier(self, size: float, price: float, tiers: TierTable) -> Tier:
        """The tier of a position of ``size`` valued at ``price``."""
        return tiers.tier_at(size, price)

    def maintenance_margin(
        self, size: float, entry: float, mark: float, leverage: float, tiers: TierTable,
        cross: bool,
    ) -> float:
        """``q × P × mmr − amount`` in USDT (>= 0) at the basis price ``P``."""
        if not size:
            return 0.0
        price = self.basis_price(entry, mark, cross)
        tier = tiers.tier_at(size, price)
        return abs(size) * price * tier.mmr - tier.maintenance_amount

    def solver_tiers(
        self, size: float, entry: float, leverage: float, tiers: TierTable
    ) -> TierTable:
        """The table the LP solvers of :mod:`liqbt.core.margin` re-select tiers in."""
        return tiers


@dataclass(frozen=True, slots=True)
class UsedMarginMM:
    """``MM = rate × IM``, ``IM = q × E / leverage`` (the ``simple`` profile, margin-model §3).

    Attributes
    ----------
    rate
        ``used_margin_mm_rate`` (0.5: MM is half the initial margin).
    """

    rate: float = 0.5

    def tier(self, size: float, price: float, tiers: TierTable) -> Tier | None:
        """No tiers: the model has no tier to report."""
        return None

    def maintenance_margin(
        self, size: float, entry: float, mark: float, leverage: float, tiers: TierTable,
        cross: bool,
    ) -> float:
        """``rate × |size| × entry / leverage`` in USDT (independent of the mark)."""
        return self.rate * abs(size) * entry / leverage if size else 0.0

    def solver_tiers(
        self, size: float, entry: float, leverage: float, tiers: TierTable
    ) -> TierTable:
        """A constant MM as one zero-rate tier with amount ``−MM`` (``q·P·0 − (−MM) = MM``), so
        the same LP solvers apply; the symbol's leverage cap is kept."""
        mm = self.maintenance_margin(size, entry, entry, leverage, tiers, False)
        return TierTable(
            (Tier(0.0, math.inf, 0.0, tiers.tiers[-1].max_leverage, -mm),),
            style="bracket", symbol=tiers.symbol, source="used_margin model",
        )


@dataclass(frozen=True, slots=True)
class MarginModel:
    """A profile's margin rules, resolved once (see the module docstring).

    Attributes
    ----------
    mm
        The MM rule (:class:`TieredMM` or :class:`UsedMarginMM`).
    lp_formula
        The LP family of :mod:`liqbt.core.margin` for isolated positions.
    cross_lp_formula
        The LP family for cross positions (Bybit values cross MM at mark: ``binance``).
    closing_fee_rate
        Rate of the trigger's closing-fee term, ``× q × mark`` (the taker fee on
        ``taker_at_mark`` profiles, else 0).
    taker_fee
        The profile's taker fee (the ``bybit_unified`` formula needs it).
    order_margin_in_trigger
        Whether resting orders' margin counts against a cross account's equity.
    """

    mm: TieredMM | UsedMarginMM
    lp_formula: str
    cross_lp_formula: str
    closing_fee_rate: float
    taker_fee: float
    order_margin_in_trigger: bool

    def closing_fee(self, size: float, mark: float) -> float:
        """The trigger's closing-fee term in USDT: ``closing_fee_rate × |size| × mark``."""
        return self.closing_fee_rate * abs(size) * mark


def margin_model_for(profile: ExchangeProfile) -> MarginModel:
    """The :class:`MarginModel` of ``profile`` (its ``mm_model``, ``lp_formula``, taker fee and
    ``order_margin_in_trigger`` switch)."""
    mm: TieredMM | UsedMarginMM
    if profile.mm_model == "used_margin":
        mm = UsedMarginMM(profile.used_margin_mm_rate)
    else:
        mm = TieredMM(isolated_at_entry=profile.lp_formula == "bybit")
    formula = profile.lp_formula
    return MarginModel(
        mm=mm,
        lp_formula=formula,
        cross_lp_formula="binance" if formula in ("bybit", "bybit_unified") else formula,
        closing_fee_rate=profile.taker_fee if formula == "taker_at_mark" else 0.0,
        taker_fee=profile.taker_fee,
        order_margin_in_trigger=bool(profile.order_margin_in_trigger),
    )


@dataclass(frozen=True, slots=True)
class MarginFigures:
    """The liquidation trigger's figures of an isolated leg or of a cross account (USDT).

    Attributes
    ----------
    margin_balance
        Isolated: ``M + upnl``; cross: ``wallet + Σ cross upnl`` (margin-model §4–5).
    maintenance_margin
        Σ MM (without closing fees).
    closing_fee
        Σ of the trigger's closing-fee terms (``taker × q × mark`` on ``taker_at_mark``
        profiles, else 0).
    order_margin
        Resting orders' margin counted in the trigger (cross, ``order_margin_in_trigger``).
    trigger_margin
        ``maintenance_margin + closing_fee + order_margin``: liquidation when
        ``margin_balance <= trigger_margin``.
    margin_ratio
        ``trigger_margin / margin_balance`` (fraction, 1.0 = liquidation;
        :func:`liqbt.core.margin.margin_ratio`, ``inf`` for a non-positive balance).
    """

    margin_balance: float
    maintenance_margin: float
    closing_fee: float
    order_margin: float
    trigger_margin: float
    margin_ratio: float

    @classmethod
    def of(
        cls, margin_balance: float, maintenance_margin: float, closing_fee: float,
        order_margin: float,
    ) -> MarginFigures:
        """Figures from the three trigger terms (sums and the ratio computed here)."""
        trigger = cls.trigger_of(maintenance_margin, closing_fee, order_margin)
        return cls(margin_balance, maintenance_margin, closing_fee, order_margin, trigger,
                   margin_ratio(trigger, margin_balance))

    @staticmethod
    def trigger_of(maintenance_margin: float, closing_fee: float, order_margin: float) -> float:
        """``trigger margin = MM + closing fee + order margin`` (USDT)."""
        return maintenance_margin + closing_fee + order_margin

    @classmethod
    def ratio_of(
        cls, margin_balance: float, maintenance_margin: float, closing_fee: float,
        order_margin: float,
    ) -> float:
        """``of(...).margin_ratio`` without building the figures (a per-bar query)."""
        return margin_ratio(
            cls.trigger_of(maintenance_margin, closing_fee, order_margin), margin_balance
        )

    @property
    def excess(self) -> float:
        """``margin_balance − trigger_margin`` (USDT): liquidation when <= 0."""
        return self.margin_balance - self.trigger_margin
