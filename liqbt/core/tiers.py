"""Tiered maintenance-margin tables (leverage brackets / risk limits).

A tier covers ``floor < notional <= cap`` (USDT). Two styles exist (margin-model §2):

* ``bracket`` (Binance, Bybit, Gate since 2025-07-29): ``MM = notional * mmr - maintenance_amount``,
  where the amount is derived so that MM is continuous at every boundary:
  ``amount_n = floor_n * (mmr_n - mmr_{n-1}) + amount_{n-1}``, ``amount_0 = 0``.
* ``flat`` (OKX, Bitget): the rate of the position's tier applies to the whole notional,
  ``MM = notional * mmr``, no amount.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from liqbt.core.errors import ValidationError

TierStyle = Literal["bracket", "flat"]
TIER_STYLES: tuple[str, ...] = ("bracket", "flat")
TierBasis = Literal["notional", "size"]
TIER_BASES: tuple[str, ...] = ("notional", "size")

# relative tolerance when checking a published maintenance amount against the recurrence
_AMOUNT_RTOL = 1e-6
_AMOUNT_ATOL = 0.01


@dataclass(frozen=True, slots=True)
class Tier:
    """One bracket: ``floor < notional <= cap`` (USDT).

    Attributes
    ----------
    floor, cap
        Notional bounds in USDT (quote).
    mmr
        Maintenance margin rate, a fraction (0.004 = 0.4 %).
    max_leverage
        Highest leverage allowed while the position's notional is in this tier.
    maintenance_amount
        Deduction in USDT (Binance ``cum``, Bybit "deduction"); 0 for flat tables.
    """

    floor: float
    cap: float
    mmr: float
    max_leverage: float
    maintenance_amount: float = 0.0


@dataclass(frozen=True)
class TierTable:
    """A validated tier table for one symbol.

    Build it with :meth:`from_rows` (validates and derives missing maintenance amounts) or
    :meth:`flat_rate` (one tier, e.g. the calculator's ``--mmr`` override).
    """

    tiers: tuple[Tier, ...]
    style: TierStyle = "bracket"
    symbol: str = ""
    source: str = ""
    basis: TierBasis = "notional"
    _caps: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_caps", tuple(t.cap for t in self.tiers))

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, Any]],
        style: str = "bracket",
        symbol: str = "",
        source: str = "",
        basis: str = "notional",
    ) -> TierTable:
        """Validate rows (``floor``, ``cap``, ``mmr``, ``max_leverage``, optional
        ``maintenance_amount``) and build the table. ``basis = "size"`` means floors and caps
        are position sizes in base units (OKX counts contracts), not notional in USDT.

        Every problem is reported at once in one :class:`ValidationError` naming the symbol,
        tier number, field, value and bound. Missing amounts are derived (bracket style);
        given amounts that break the recurrence are rejected.
        """
        where = f"{source + ': ' if source else ''}{symbol or 'tiers'}"
        problems: list[str] = []
        if style not in TIER_STYLES:
            problems.append(f"{where}: tier_style {style!r} is not one of {TIER_STYLES}")
        if basis not in TIER_BASES:
            problems.append(f"{where}: tier_basis {basis!r} is not one of {TIER_BASES}")
        elif basis == "size" and style != "flat":
            problems.append(f"{where}: tier_basis 'size' needs tier_style 'flat'")
        rows = list(rows)
        if not rows:
            problems.append(f"{where}: the tier table is empty")
        parsed: list[dict[str, float | None]] = []
        for n, row in enumerate(rows, start=1):
            entry: dict[str, float | None] = {}
            for name in ("floor", "cap", "mmr", "max_leverage", "maintenance_amount"):
                value = row.get(name)
                if value is None:
                    if name != "maintenance_amount":
                        problems.append(f"{where} tier {n}: field {name!r} is missing")
                    entry[name] = None
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float):
                    problems.append(f"{where} tier {n}: {name} = {value!r} is not a number")
                    entry[name] = None
                    continue
                if not math.isfinite(float(value)):
                    problems.append(f"{where} tier {n}: {name} = {value!r} is not finite")
                    entry[name] = None
                    continue
                entry[name] = float(value)
            unknown = set(row) - {"floor", "cap", "mmr", "max_leverage", "maintenance_amount"}
            if unknown:
                problems.append(f"{where} tier {n}: unknown field(s) {sorted(unknown)}")
            parsed.append(entry)

        previous: dict[str, float | None] | None = None
        for n, entry in enumerate(parsed, start=1):
            floor, cap, mmr, lev = entry["floor"], entry["cap"], entry["mmr"], entry["max_leverage"]
            if n == 1 and floor is not None and floor != 0:
                problems.append(f"{where} tier 1: floor = {floor:g} must be 0")
            if floor is not None and cap is not None and not cap > floor:
                problems.append(f"{where} tier {n}: cap = {cap:g} must be above floor = {floor:g}")
            if mmr is not None and not 0 < mmr < 1:
                problems.append(f"{where} tier {n}: mmr = {mmr:g} must be in (0, 1)")
            if lev is not None and not lev >= 1:
                problems.append(f"{where} tier {n}: max_leverage = {lev:g} must be >= 1")
            if lev is not None and mmr is not None and mmr * lev > 1 + 1e-12:
                problems.append(
                    f"{where} tier {n}: mmr = {mmr:g} exceeds the initial margin rate "
                    f"1/max_leverage = {1 / lev:g}"
                )
            if previous is not None:
                pcap, pmmr, plev = previous["cap"], previous["mmr"], previous["max_leverage"]
                if floor is not None and pcap is not None and floor != pcap:
                    problems.append(
                        f"{where} tier {n}: floor = {floor:g} must equal the previous "
                        f"cap = {pcap:g}"
                    )
                if mmr is not None and pmmr is not None and mmr < pmmr:
                    problems.append(
                        f"{where} tier {n}: mmr = {mmr:g} is below the previous tier's {pmmr:g}"
                    )
                if lev is not None and plev is not None and lev > plev:
                    problems.append(
                        f"{where} tier {n}: max_leverage = {lev:g} is above the previous "
                        f"tier's {plev:g}"
                    )
            previous = entry
        if problems:
            raise ValidationError(problems)

        tiers: list[Tier] = []
        amount = 0.0
        prev_mmr = 0.0
        for n, entry in enumerate(parsed, start=1):
            floor = float(entry["floor"])  # type: ignore[arg-type]
            mmr = float(entry["mmr"])  # type: ignore[arg-type]
            if style == "flat":
                expected = 0.0
            else:
                expected = 0.0 if n == 1 else floor * (mmr - prev_mmr) + amount
            given = entry["maintenance_amount"]
            if given is not None and not math.isclose(
                given, expected, rel_tol=_AMOUNT_RTOL, abs_tol=_AMOUNT_ATOL
            ):
                rule = (
                    "flat tables have no maintenance amount"
                    if style == "flat"
                    else "floor × (mmr − previous mmr) + previous amount"
                )
                problems.append(
                    f"{where} tier {n}: maintenance_amount = {given:g} breaks the rule "
                    f"({rule}) = {expected:g}"
                )
            amount = expected
            prev_mmr = mmr
            tiers.append(
                Tier(
                    floor=floor,
                    cap=float(entry["cap"]),  # type: ignore[arg-type]
                    mmr=mmr,
                    max_leverage=float(entry["max_leverage"]),  # type: ignore[arg-type]
                    maintenance_amount=expected,
                )
            )
        if problems:
            raise ValidationError(problems)
        return cls(
            tuple(tiers), style=style, symbol=symbol, source=source, basis=basis  # type: ignore[arg-type]
        )

    @classmethod
    def flat_rate(
        cls,
        mmr: float,
        maintenance_amount: float = 0.0,
        max_leverage: float = 125.0,
        symbol: str = "",
    ) -> TierTable:
        """One tier covering every notional: the calculator's ``--mmr/--maintenance-amount``."""
        problems = []
        if not 0 < mmr < 1:
            problems.append(f"mmr = {mmr:g} must be in (0, 1)")
        if not max_leverage >= 1:
            problems.append(f"max_leverage = {max_leverage:g} must be >= 1")
        if not math.isfinite(maintenance_amount) or maintenance_amount < 0:
            problems.append(f"maintenance_amount = {maintenance_amount:g} must be >= 0")
        if problems:
            raise ValidationError(problems)
        tier = Tier(0.0, math.inf, mmr, max_leverage, maintenance_amount)
        return cls((tier,), style="bracket", symbol=symbol, source="flat override")

    # --- lookup -------------------------------------------------------------------------
    def tier_index(self, notional: float) -> int:
        """Index of the tier with ``floor < notional <= cap`` (0 for a zero notional).

        A notional above the last cap uses the last tier (the order check rejects such
        positions; a liquidation-price search may still look there).
        """
        index = bisect.bisect_left(self._caps, notional)
        return min(index, len(self.tiers) - 1)

    def tier_for(self, notional: float) -> Tier:
        """The :class:`Tier` that covers ``notional`` (USDT)."""
        return self.tiers[self.tier_index(notional)]

    def lookup_value(self, size: float, price: float) -> float:
        """The quantity the tiers are keyed on: ``|size| × price`` (notional) or ``|size|``."""
        return abs(size) if self.basis == "size" else abs(size) * price

    def tier_at(self, size: float, price: float) -> Tier:
        """The tier of a position of ``size`` base units valued at ``price``."""
        return self.tiers[self.tier_index(self.lookup_value(size, price))]

    def maintenance_margin_at(self, size: float, price: float) -> float:
        """Maintenance margin (USDT) of ``size`` base units at ``price`` (see
        :meth:`maintenance_margin`)."""
        tier = self.tier_at(size, price)
        return abs(size) * price * tier.mmr - tier.maintenance_amount

    def maintenance_margin(self, notional: float) -> float:
        """Maintenance margin in USDT of a position of ``notional`` USDT (>= 0).

        ``MM = notional × mmr − maintenance_amount`` (bracket) or ``notional × mmr`` (flat),
        with the tier chosen by ``floor < notional <= cap`` (margin-model §2; Binance "Leverage and
        Margin of USDⓈ-M Futures"; Bybit "Risk Limit"). Units: USDT.
        """
        tier = self.tier_for(notional)
        return notional * tier.mmr - tier.maintenance_amount

    def max_leverage(self, notional: float) -> float:
        """Highest leverage allowed for a position of ``notional`` USDT."""
        return self.tier_for(notional).max_leverage

    def max_notional(self, leverage: float) -> float:
        """Largest cap whose tier still allows ``leverage``; 0 when none does. The cap is in
        the table's units: USDT for notional-keyed tables, base units for size-keyed ones
        (prefer :meth:`cap_for_leverage`, which says so in its name)."""
        best = 0.0
        for tier in self.tiers:
            if tier.max_leverage + 1e-12 >= leverage:
                best = tier.cap
        return best

    def cap_for_leverage(self, leverage: float) -> float:
        """Largest position the table allows at ``leverage``, in the table's own units: USDT
        notional (``basis = "notional"``) or base units (``basis = "size"``, OKX); 0 when no
        tier allows the leverage. Compare it with :meth:`lookup_value`."""
        return self.max_notional(leverage)

    @property
    def last_cap(self) -> float:
        """The cap of the highest tier: no position may be larger."""
        return self.tiers[-1].cap

    def as_rows(self) -> list[dict[str, float]]:
        """Rows as plain dicts (for TOML/JSON output)."""
        return [
            {
                "floor": t.floor,
                "cap": t.cap,
                "mmr": t.mmr,
                "max_leverage": t.max_leverage,
                "maintenance_amount": t.maintenance_amount,
            }
            for t in self.tiers
        ]
