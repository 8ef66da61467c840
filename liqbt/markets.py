"""Which market each data feed trades: ``MarginBroker.set_market`` declarations and their
binding to the account.

Declarations are kept across runs (backtrader re-initialises the broker at ``start``); the
binding of feeds to symbols is per run. A feed may be declared by object or by name; a feed
declared by name is bound when first used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liqbt.core.account import Account, MarketConfig
from liqbt.core.errors import ValidationError
from liqbt.core.profile import ExchangeProfile, normalize_symbol


@dataclass(frozen=True)
class MarketSpec:
    """What a data feed trades: symbol (for tiers), leverage, margin mode, top-up switch."""

    symbol: str
    leverage: float = 1.0
    margin_mode: str = "cross"
    auto_top_up: bool = False


class Markets:
    """The feed → market declarations of one broker and their per-run binding."""

    def __init__(self) -> None:
        self.specs: dict[Any, MarketSpec] = {}
        self.reset(None)

    def reset(self, account: Account | None) -> None:
        """Start a run on ``account``: no feed is bound yet."""
        self.account = account
        self.data_symbol: dict[Any, str] = {}
        self.symbol_data: dict[str, Any] = {}
        self._datas: list[Any] = []
        self.configured = False

    def declare(
        self, profile: ExchangeProfile, data: Any, symbol: str | None, leverage: float,
        margin_mode: str, auto_top_up: bool,
    ) -> tuple[MarketSpec, MarketConfig]:
        """Record a declaration after validating it against a scratch account (so mistakes
        surface before the run: leverage above the tier maximum, an unknown symbol, a top-up
        the exchange does not offer)."""
        name = symbol or getattr(data, "_name", None) or str(data)
        spec = MarketSpec(normalize_symbol(name), float(leverage), margin_mode, auto_top_up)
        config = Account(profile, 1.0).set_market(
            spec.symbol, spec.leverage, spec.margin_mode, spec.auto_top_up
        )
        self.specs[data] = spec
        return spec, config

    def datas(self) -> list[Any]:
        """The bound feeds in binding order (a list kept until the next binding; do not
        modify it)."""
        if len(self._datas) != len(self.data_symbol):
            self._datas = list(self.data_symbol)
        return self._datas

    def configure(self) -> None:
        """Bind every declared feed object to its market settings."""
        self.configured = True
        for data, spec in self.specs.items():
            self._bind(data, spec)

    def _bind(self, data: Any, spec: MarketSpec) -> None:
        if isinstance(data, str):
            return  # bound lazily by name in symbol_of
        assert self.account is not None
        self.account.set_market(spec.symbol, spec.leverage, spec.margin_mode, spec.auto_top_up)
        self.data_symbol[data] = spec.symbol
        self.symbol_data[spec.symbol] = data

    def symbol_of(self, data: Any) -> str:
        """The normalised symbol a data feed trades (binding its market settings on first use);
        a clear error when ``set_market`` was never called for it."""
        symbol = self.data_symbol.get(data)
        if symbol is not None:
            return symbol
        if not self.configured:
            self.configure()
            symbol = self.data_symbol.get(data)
            if symbol is not None:
                return symbol
        spec = self.specs.get(getattr(data, "_name", None))
        if spec is None:
            raise ValidationError(
                [f"data {getattr(data, '_name', data)!r} has no market settings: call "
                 "broker.set_market(data, symbol=..., leverage=..., margin_mode=...) before run"]
            )
        self.specs[data] = spec
        self._bind(data, spec)
        return spec.symbol
