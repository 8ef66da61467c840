"""Exchange profiles: an exchange's margin rules as data (margin-model §3).

A profile is a TOML file (``configs/exchanges/<name>.toml``, installed as
``liqbt.configs.exchanges``) with fees, switches and per-symbol tier tables. Loading validates
everything and reports every problem at once. Exchange differences are data plus the few named
liquidation-price formulas of :mod:`liqbt.core.margin`; there is no class per exchange.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liqbt.core.choices import MARGIN_MODES
from liqbt.core.errors import ValidationError
from liqbt.core.liquidation import CROSS_LIQUIDATION_ORDERS
from liqbt.core.margin import LP_FORMULAS
from liqbt.core.tiers import TierTable

MM_MODELS: tuple[str, ...] = ("tiers", "used_margin")
LP_ROUNDINGS: tuple[str, ...] = ("decimals", "tick", "tick_directional")
PROFILE_NAMES: tuple[str, ...] = ("binance", "bybit", "okx", "bitget", "gate", "simple")

_QUOTE_SUFFIXES = ("USDT", "USDC", "BUSD", "USD")


def known_symbols_text(symbols: Mapping[str, Any], wanted: str = "") -> str:
    """``"known: BTCUSDT, ETHUSDT"`` for a few symbols; for a large table the count and the
    closest names (``"322 symbols; closest: SOLUSDT"``)."""
    names = sorted(symbols)
    if len(names) <= 12:
        return f"known: {', '.join(names) or 'none'}"
    import difflib

    close = difflib.get_close_matches(normalize_symbol(wanted), names, n=3) if wanted else []
    return f"{len(names)} symbols" + (f"; closest: {', '.join(close)}" if close else "")


class SymbolTable(Mapping[str, "SymbolSpec"]):
    """A profile's symbols: the explicit ``[symbols.X]`` tables, then (lazily) every market of
    a bundled ccxt tier snapshot (``[tier_snapshot]``, e.g. Binance's full USDT-M table).

    The snapshot file is only read when a symbol that is not explicit is looked up or the
    table is iterated; each snapshot symbol's :class:`TierTable` is built (and validated) on
    first use. Snapshot symbols get the ``[tier_snapshot]`` defaults for ``size_step`` and
    ``min_notional`` and no price tick (not in a ccxt tier file).
    """

    def __init__(self, explicit: Mapping[str, SymbolSpec],
                 snapshot: Mapping[str, Any] | None = None) -> None:
        self._explicit = dict(explicit)
        self._snapshot = dict(snapshot or {})
        self._markets: dict[str, str] | None = None  # normalised symbol -> ccxt market key
        self._data: Mapping[str, Any] | None = None
        self._built: dict[str, SymbolSpec] = {}

    @property
    def snapshot_info(self) -> Mapping[str, Any]:
        """The ``[tier_snapshot]`` settings (empty without a snapshot)."""
        return self._snapshot

    def _load(self) -> dict[str, str]:
        if self._markets is None:
            self._markets = {}
            if self._snapshot:
                import gzip

                from liqbt.core.ccxt_tiers import load_ccxt_tiers

                resource = importlib.resources.files("liqbt.configs.exchanges") / str(
                    self._snapshot["file"])
                raw = resource.read_bytes()
                if raw[:2] == b"\x1f\x8b":
                    raw = gzip.decompress(raw)
                self._data = load_ccxt_tiers(json.loads(raw))
                for key in self._data:
                    settle = key.split(":", 1)[1] if ":" in key else ""
                    # linear perpetuals only (no dated futures such as BTC/USDT:USDT-250328)
                    if settle == str(self._snapshot.get("settle", "USDT")):
                        self._markets.setdefault(normalize_symbol(key), key)
        return self._markets

    def __getitem__(self, key: str) -> SymbolSpec:
        if key in self._explicit:
            return self._explicit[key]
        if key in self._built:
            return self._built[key]
        market = self._load().get(key) if self._snapshot else None
        if market is None:
            raise KeyError(key)
        from liqbt.core.ccxt_tiers import tiers_from_ccxt

        assert self._data is not None
        info = self._snapshot
        spec = SymbolSpec(
            symbol=key,
            tiers=tiers_from_ccxt({market: self._data[market]}, market),
            price_tick=0.0,
            size_step=float(info.get("size_step", 0.0)),
            min_notional=float(info.get("min_notional", 0.0)),
            tiers_source=str(info.get("source", "")),
            tiers_as_of=str(info.get("as_of", "")),
        )
        self._built[key] = spec
        return spec

    def __contains__(self, key: object) -> bool:
        if key in self._explicit:
            return True
        return bool(self._snapshot) and key in self._load()

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield from self._explicit
        if self._snapshot:
            yield from (k for k in self._load() if k not in self._explicit)

    def __len__(self) -> int:
        extra = [k for k in self._load() if k not in self._explicit] if self._snapshot else []
        return len(self._explicit) + len(extra)

    def explicit(self) -> Mapping[str, SymbolSpec]:
        """Only the symbols with their own ``[symbols.X]`` table."""
        return dict(self._explicit)


def normalize_symbol(symbol: str) -> str:
    """``BTC/USDT:USDT``, ``BTC_USDT``, ``BTC-USDT-SWAP``, ``btcusdt`` -> ``BTCUSDT``."""
    text = symbol.strip().upper()
    text = text.split(":", 1)[0]
    text = re.sub(r"-(SWAP|PERP|PERPETUAL)$", "", text)
    return re.sub(r"[^A-Z0-9]", "", text)


@dataclass(frozen=True)
class SymbolSpec:
    """Per-symbol exchange data.

    Attributes
    ----------
    symbol
        Normalised name (``BTCUSDT``).
    tiers
        The maintenance-margin tier table.
    price_tick, size_step
        Smallest price increment (USDT) and size increment (base units); 0 when unknown
        (optional in a profile: prices and sizes are then not rounded; a profile whose
        ``lp_rounding`` needs the tick requires it).
    min_notional
        Smallest order value in USDT.
    tiers_source, tiers_as_of
        Where and when the tier table was published.
    """

    symbol: str
    tiers: TierTable
    price_tick: float
    size_step: float
    min_notional: float
    tiers_source: str = ""
    tiers_as_of: str = ""


@dataclass(frozen=True)
class ExchangeProfile:
    """An exchange's rule book. Build with :func:`load_profile` or :func:`profile_from_dict`.

    Fees are fractions of notional (0.0005 = 0.05 %). ``lp_formula`` is one of
    :data:`liqbt.core.margin.LP_FORMULAS`. ``partial_liquidation_tiers`` is how many tiers one
    partial-liquidation step drops (0 = always full liquidation), applied in the margin modes
    listed in ``partial_liquidation_modes``. ``mm_model = "used_margin"`` is the ``simple``
    profile: MM is ``used_margin_mm_rate`` × the initial margin in use.
    ``cross_liquidation_order`` is which cross position is reduced and closed first
    (:data:`liqbt.core.liquidation.CROSS_LIQUIDATION_ORDERS`, margin-model §9).
    ``order_margin_in_trigger``: the margin frozen by resting orders counts against a cross
    account's equity in the liquidation trigger (the ``simple`` profile, margin-model §5).
    The rules are mapped onto the formulas in one place,
    :func:`liqbt.core.margin_models.margin_model_for`.
    """

    name: str
    maker_fee: float
    taker_fee: float
    symbols: Mapping[str, SymbolSpec]
    display_name: str = ""
    source: str = ""
    as_of: str = ""
    liquidation_fee: float = 0.0
    lp_formula: str = "binance"
    mm_model: str = "tiers"
    used_margin_mm_rate: float = 0.5
    partial_liquidation_tiers: int = 0
    partial_liquidation_modes: tuple[str, ...] = ("cross", "isolated")
    auto_top_up: bool = False
    lp_rounding: str = "decimals"
    lp_decimals: int = 2
    funding_interval_hours: float = 8.0
    cross_liquidation_order: str = "largest_loss"
    order_margin_in_trigger: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def symbol(self, name: str) -> SymbolSpec:
        """The :class:`SymbolSpec` of ``name`` (any common spelling); a clear error otherwise."""
        key = normalize_symbol(name)
        spec = self.symbols.get(key)
        if spec is None:
            known = known_symbols_text(self.symbols, name)
            raise ValidationError(
                [f"symbol {name!r} is not in profile {self.name!r} ({known}); import "
                 "its tiers with `liqbt calc import-tiers` (liqbt.core.ccxt_tiers) or pass --mmr"]
            )
        return spec

    def with_overrides(
        self, overrides: Mapping[str, Any], source: str = "overrides"
    ) -> ExchangeProfile:
        """A copy with top-level fields replaced (fees, switches), re-validated."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)} - {"symbols"}
        if unknown:
            raise ValidationError(
                [f"unknown profile field(s) {sorted(unknown)}"], source=source
            )
        merged = dataclasses.replace(self, **dict(overrides))
        _raise_profile_problems(merged, source)
        return merged


def _raise_profile_problems(profile: ExchangeProfile, source: str) -> None:
    problems = _profile_problems(profile)
    if problems:
        raise ValidationError(problems, source=source)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _profile_problems(profile: ExchangeProfile) -> list[str]:
    """Problems of the fees and switches (type-safe: a wrongly typed value is a problem, not a
    crash)."""
    problems: list[str] = []
    for fee_name in ("maker_fee", "taker_fee", "liquidation_fee"):
        value = getattr(profile, fee_name)
        if not isinstance(value, int | float) or not -0.01 <= value < 0.1:
            problems.append(f"{fee_name} = {value!r} must be a fraction in [-0.01, 0.1)")
    if profile.lp_formula not in LP_FORMULAS:
        problems.append(f"lp_formula = {profile.lp_formula!r} is not one of {LP_FORMULAS}")
    if profile.mm_model not in MM_MODELS:
        problems.append(f"mm_model = {profile.mm_model!r} is not one of {MM_MODELS}")
    if not _is_number(profile.used_margin_mm_rate) or not 0 < profile.used_margin_mm_rate < 1:
        problems.append(
            f"used_margin_mm_rate = {profile.used_margin_mm_rate!r} must be in (0, 1)"
        )
    tiers_per_step = profile.partial_liquidation_tiers
    if not isinstance(tiers_per_step, int) or tiers_per_step < 0:
        problems.append(
            f"partial_liquidation_tiers = {profile.partial_liquidation_tiers!r} must be an "
            "integer >= 0"
        )
    modes = profile.partial_liquidation_modes
    bad_modes = [m for m in modes if m not in MARGIN_MODES] if isinstance(modes, tuple) else modes
    if bad_modes:
        problems.append(f"partial_liquidation_modes {bad_modes} not in {MARGIN_MODES}")
    if profile.lp_rounding not in LP_ROUNDINGS:
        problems.append(f"lp_rounding = {profile.lp_rounding!r} is not one of {LP_ROUNDINGS}")
    if not isinstance(profile.auto_top_up, bool):
        problems.append(f"auto_top_up = {profile.auto_top_up!r} must be true or false")
    if not isinstance(profile.order_margin_in_trigger, bool):
        problems.append(f"order_margin_in_trigger = {profile.order_margin_in_trigger!r} must be "
                        "true or false")
    if profile.mm_model == "used_margin" and profile.lp_formula not in ("binance", "taker_at_mark"):
        problems.append(f"mm_model = 'used_margin' needs lp_formula 'binance' or 'taker_at_mark', "
                        f"not {profile.lp_formula!r}")
    if not isinstance(profile.lp_decimals, int) or not 0 <= profile.lp_decimals <= 12:
        problems.append(f"lp_decimals = {profile.lp_decimals!r} must be an integer in [0, 12]")
    hours = profile.funding_interval_hours
    if not _is_number(hours) or not hours > 0:
        problems.append(
            f"funding_interval_hours = {profile.funding_interval_hours!r} must be > 0"
        )
    if profile.cross_liquidation_order not in CROSS_LIQUIDATION_ORDERS:
        problems.append(
            f"cross_liquidation_order = {profile.cross_liquidation_order!r} is not one of "
            f"{CROSS_LIQUIDATION_ORDERS}"
        )
    table = profile.symbols
    explicit = table.explicit() if isinstance(table, SymbolTable) else table
    has_snapshot = isinstance(table, SymbolTable) and bool(table.snapshot_info)
    if profile.mm_model == "tiers" and not explicit and not has_snapshot:
        problems.append("no [symbols.*] tables: a tiered profile needs at least one symbol")
    if profile.lp_rounding in ("tick", "tick_directional"):
        for name, spec in explicit.items():
            if not spec.price_tick:
                problems.append(f"symbols.{name}.price_tick is required: lp_rounding = "
                                f"{profile.lp_rounding!r} rounds liquidation prices to it")
    return problems


_TOP_LEVEL = {
    "name", "display_name", "source", "as_of", "fees", "rules", "symbols", "notes",
    "tier_snapshot",
}
_SNAPSHOT_FIELDS = {"file", "as_of", "source", "settle", "size_step", "min_notional"}
_FEES = {"maker": "maker_fee", "taker": "taker_fee", "liquidation": "liquidation_fee"}
_RULES = {
    "lp_formula", "mm_model", "used_margin_mm_rate", "partial_liquidation_tiers",
    "partial_liquidation_modes", "auto_top_up", "lp_rounding", "lp_decimals",
    "funding_interval_hours", "tier_style", "tier_basis", "cross_liquidation_order",
    "order_margin_in_trigger",
}
_SYMBOL_FIELDS = {
    "price_tick", "size_step", "min_notional", "tiers", "tiers_source", "tiers_as_of",
    "tier_style", "tier_basis",
}


def profile_from_dict(data: Mapping[str, Any], source: str = "<profile>") -> ExchangeProfile:
    """Validate a parsed profile document and build the :class:`ExchangeProfile`.

    Every problem in the document (unknown keys, bad fees, bad switches, broken tier tables) is
    collected and raised together as one :class:`ValidationError` naming ``source``.
    """
    problems: list[str] = []
    unknown = set(data) - _TOP_LEVEL
    if unknown:
        problems.append(f"unknown top-level key(s) {sorted(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        problems.append("field 'name' is missing or not a string")
        name = "?"
    fees = data.get("fees", {})
    rules = dict(data.get("rules", {}))
    kwargs: dict[str, Any] = {}
    for key, value in fees.items():
        if key not in _FEES:
            problems.append(f"fees: unknown key {key!r} (known: {sorted(_FEES)})")
            continue
        kwargs[_FEES[key]] = value
    for required in ("maker", "taker"):
        if required not in fees:
            problems.append(f"fees.{required} is missing")
    for key in set(rules) - _RULES:
        problems.append(f"rules: unknown key {key!r} (known: {sorted(_RULES)})")
    default_style = rules.pop("tier_style", "bracket")
    default_basis = rules.pop("tier_basis", "notional")
    for key in _RULES - {"tier_style", "tier_basis"}:
        if key in rules:
            value = rules[key]
            is_list = key == "partial_liquidation_modes" and isinstance(value, list | tuple)
            kwargs[key] = tuple(value) if is_list else value

    symbols: dict[str, SymbolSpec] = {}
    for raw_symbol, spec in dict(data.get("symbols", {})).items():
        symbol = normalize_symbol(raw_symbol)
        where = f"symbols.{raw_symbol}"
        extra = set(spec) - _SYMBOL_FIELDS
        if extra:
            problems.append(f"{where}: unknown key(s) {sorted(extra)}")
        numbers: dict[str, float] = {}
        for key in ("price_tick", "size_step", "min_notional"):
            value = spec.get(key)
            if value is None and key in ("price_tick", "size_step"):
                # optional (a ccxt tier file has no filters): unknown = no rounding
                numbers[key] = 0.0
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{where}.{key} = {value!r} must be a number")
            elif not (value > 0 or (key == "min_notional" and value == 0)) or not math.isfinite(
                value
            ):
                problems.append(f"{where}.{key} = {value!r} must be > 0")
            else:
                numbers[key] = float(value)
        try:
            tiers = TierTable.from_rows(
                spec.get("tiers", []),
                style=spec.get("tier_style", default_style),
                symbol=symbol,
                basis=spec.get("tier_basis", default_basis),
            )
        except ValidationError as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
            continue
        if len(numbers) == 3:
            symbols[symbol] = SymbolSpec(
                symbol=symbol,
                tiers=tiers,
                price_tick=numbers["price_tick"],
                size_step=numbers["size_step"],
                min_notional=numbers["min_notional"],
                tiers_source=str(spec.get("tiers_source", "")),
                tiers_as_of=str(spec.get("tiers_as_of", "")),
            )
    snapshot = data.get("tier_snapshot")
    if snapshot is not None:
        if not isinstance(snapshot, Mapping) or "file" not in snapshot:
            problems.append("tier_snapshot must be a table with at least 'file'")
            snapshot = None
        else:
            extra = set(snapshot) - _SNAPSHOT_FIELDS
            if extra:
                problems.append(f"tier_snapshot: unknown key(s) {sorted(extra)}")
            resource = importlib.resources.files("liqbt.configs.exchanges") / str(snapshot["file"])
            if not resource.is_file():
                problems.append(f"tier_snapshot.file = {snapshot['file']!r}: not found")
                snapshot = None
    symbols_table = SymbolTable(symbols, snapshot)
    # fee and switch problems are reported together with the structural ones above
    symbol_problems = bool(problems)
    try:
        profile = ExchangeProfile(
            name=name,
            symbols=symbols_table,
            display_name=str(data.get("display_name", name)),
            source=str(data.get("source", "")),
            as_of=str(data.get("as_of", "")),
            notes=tuple(data.get("notes", ())),
            **kwargs,
        )
    except TypeError as exc:  # a wrongly typed switch that dataclass construction refuses
        raise ValidationError([*problems, str(exc)], source=source) from exc
    problems.extend(
        p for p in _profile_problems(profile)
        # a symbol that failed validation is missing from `symbols`: not a second problem
        if not (symbol_problems and p.startswith("no [symbols"))
    )
    if problems:
        raise ValidationError(problems, source=source)
    return profile


def load_profile(name_or_path: str | Path) -> ExchangeProfile:
    """Load a bundled profile by name (``binance``, ``bybit``, ``okx``, ``bitget``, ``gate``,
    ``simple``) or a profile file (``.toml`` or ``.json``) by path, validated."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix.lower() in (".toml", ".json") or path.exists():
        if not path.is_file():
            raise ValidationError([f"profile file {text_name!r} does not exist"])
        raw = path.read_bytes()
        source = str(path)
    else:
        resource = importlib.resources.files("liqbt.configs.exchanges") / f"{text_name}.toml"
        if not resource.is_file():
            available = sorted(
                p.name[:-5]
                for p in importlib.resources.files("liqbt.configs.exchanges").iterdir()
                if p.name.endswith(".toml")
            )
            raise ValidationError(
                [f"unknown exchange {text_name!r} (available: {', '.join(available)})"]
            )
        raw = resource.read_bytes()
        source = f"configs/exchanges/{text_name}.toml"
    return _parsed_profile(source, raw)


@functools.lru_cache(maxsize=64)
def _parsed_profile(source: str, raw: bytes) -> ExchangeProfile:
    """The validated profile of a file's bytes, parsed once per content: a sweep validates
    and runs hundreds of configs on the same profile (profiles are frozen, so sharing one is
    safe; a file edited on disk has new bytes and is parsed again)."""
    try:
        if source.endswith(".json"):
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError([f"cannot parse: {exc}"], source=source) from exc
    return profile_from_dict(data, source=source)
