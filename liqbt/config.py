"""Run configuration: a TOML file describing account, markets, strategy and backtest window.

Example::

    [account]
    exchange = "binance"
    balance = 1000
    position_mode = "one-way"     # or "hedge"
    taker_fee = 0.0004            # any other key overrides the exchange profile

    [[market]]
    symbol = "BTCUSDT"
    candles = "../datasets/2025-10/BTCUSDT-5m.feather"    # relative to this file
    mark = "../datasets/2025-10/BTCUSDT-1h-mark.feather"
    funding = "../datasets/2025-10/BTCUSDT-5m-funding_rate.feather"
    leverage = 10
    margin_mode = "isolated"

    [strategy]
    name = "grid"                 # or "path/to/file.py:Class"
    grids = 20                    # strategy params (or in a [strategy.params] table)

    [backtest]
    start = "2025-10-05"
    end = "2025-10-15"
    intrabar = "heuristic"

Every problem found is collected and raised together as one
:class:`liqbt.core.errors.ValidationError`, each line naming the field and the value.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from liqbt.core.choices import INTRABAR_PATHS, MARGIN_MODES, POSITION_MODES, SETTLEMENTS
from liqbt.core.errors import ValidationError

_ACCOUNT_KEYS = ("exchange", "balance", "position_mode", "settlement", "debit",
                 "warning_threshold")
_MARKET_KEYS = ("symbol", "candles", "mark", "funding", "leverage", "margin_mode", "auto_top_up")
_BACKTEST_KEYS = ("start", "end", "intrabar", "strict_data")
_SECTIONS = ("account", "market", "strategy", "backtest")
# bump when the meaning of a cached result changes (RunResult fields, accounting)
_HASH_VERSION = "liqbt-run-2"


@dataclass(frozen=True)
class AccountSettings:
    """``[account]``: exchange profile, starting balance and account-wide switches.

    ``profile_overrides`` are (field, value) pairs replacing exchange-profile fields
    (``maker_fee``, ``taker_fee``, ``liquidation_fee``...), sorted by field name.
    """

    exchange: str = "binance"
    balance: float = 1000.0
    position_mode: str = "one-way"
    settlement: str = "bankruptcy"
    debit: bool = False
    warning_threshold: float = 0.8
    profile_overrides: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class MarketSettings:
    """One ``[[market]]``: a symbol, its data files (absolute paths) and margin settings."""

    symbol: str
    candles: Path
    mark: Path | None = None
    funding: Path | None = None
    leverage: float = 1.0
    margin_mode: str = "cross"
    auto_top_up: bool = False


@dataclass(frozen=True)
class StrategySettings:
    """``[strategy]``: a registered name (``grid``) or ``/abs/path.py:Class``, and params."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """The params as keyword arguments for ``cerebro.addstrategy``."""
        return dict(self.params)


@dataclass(frozen=True)
class BacktestSettings:
    """``[backtest]``: window (ISO-8601 UTC strings, end exclusive) and intrabar path."""

    start: str | None = None
    end: str | None = None
    intrabar: str = "heuristic"
    #: turn data-quality warnings (gaps, coverage, outliers, funding) into an error
    strict_data: bool = False


@dataclass(frozen=True)
class RunConfig:
    """A validated, immutable run configuration (build with :func:`load_config`)."""

    account: AccountSettings
    markets: tuple[MarketSettings, ...]
    strategy: StrategySettings
    backtest: BacktestSettings = field(default_factory=BacktestSettings)
    source: str | None = field(default=None, compare=False)

    # --- derived views ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Normalized plain form (absolute paths, sorted params), the input of hashing."""
        return {
            "account": {
                **{k: getattr(self.account, k) for k in _ACCOUNT_KEYS},
                **dict(self.account.profile_overrides),
            },
            "market": [
                {
                    k: (str(v) if isinstance(v, Path) else v)
                    for k, v in ((f, getattr(m, f)) for f in _MARKET_KEYS)
                }
                for m in self.markets
            ],
            "strategy": {"name": self.strategy.name, "params": dict(self.strategy.params)},
            "backtest": {k: getattr(self.backtest, k) for k in _BACKTEST_KEYS},
        }

    def data_files(self) -> list[Path]:
        """Every file the run reads (data, and a strategy given by path)."""
        files: list[Path] = []
        for m in self.markets:
            files.extend(p for p in (m.candles, m.mark, m.funding) if p is not None)
        path, _, _ = _split_strategy_path(self.strategy.name)
        if path is not None:
            files.append(Path(path))
        return files

    def config_hash(self) -> str:
        """Stable sha256 of the normalized config plus size and mtime of every file read.

        Two configs with the same hash produce the same result, so a sweep can reuse a cached
        result; touching a data file invalidates it.
        """
        stats = []
        for path in self.data_files():
            try:
                st = path.stat()
                stats.append([str(path), st.st_size, st.st_mtime_ns])
            except OSError:
                stats.append([str(path), None, None])
        payload = json.dumps(
            {"v": _HASH_VERSION, "config": self.to_dict(), "files": stats},
            sort_keys=True, default=str, separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def leverage(self) -> float:
        """Leverage of the first market (sweeps set the same leverage on every market)."""
        return self.markets[0].leverage

    @property
    def margin_mode(self) -> str:
        """Margin mode of the first market ("mixed" when markets differ)."""
        modes = {m.margin_mode for m in self.markets}
        return self.markets[0].margin_mode if len(modes) == 1 else "mixed"

    def with_overrides(self, overrides: Mapping[str, Any]) -> RunConfig:
        """A re-validated copy with some values replaced.

        Keys: market fields (``leverage``, ``margin_mode``, ``auto_top_up``) apply to every
        market; ``strategy.NAME`` sets a strategy param; ``account.NAME`` / ``backtest.NAME``
        set those sections (bare ``balance``, ``exchange``, ``intrabar``, ``start``, ``end``...
        work too).

        Examples
        --------
        >>> cfg.with_overrides({"leverage": 10, "margin_mode": "cross", "strategy.grids": 20})
        """
        data = self.to_dict()
        problems: list[str] = []
        for key, value in overrides.items():
            section, _, name = key.rpartition(".")
            if not section:
                section = ("market" if name in _MARKET_KEYS
                           else "account" if name in _ACCOUNT_KEYS
                           else "backtest" if name in _BACKTEST_KEYS else "")
            if section == "market":
                if name not in _MARKET_KEYS:
                    problems.append(f"override {key!r}: unknown market field")
                for market in data["market"]:
                    market[name] = value
            elif section == "strategy":
                data["strategy"]["params"][name] = value
            elif section in ("account", "backtest"):
                data[section][name] = value
            else:
                problems.append(
                    f"override {key!r} = {value!r}: unknown key (use a market field, "
                    "strategy.NAME, account.NAME or backtest.NAME)"
                )
        if problems:
            raise ValidationError(problems, self.source)
        return config_from_dict(data, base_dir=None, source=self.source)

    def label(self) -> str:
        """Short description for tables: ``isolated 10x`` (per market when they differ)."""
        kinds = {(m.margin_mode, m.leverage) for m in self.markets}
        if len(kinds) == 1:
            mode, lev = kinds.pop()
            return f"{mode} {lev:g}x"
        return ", ".join(f"{m.symbol} {m.margin_mode} {m.leverage:g}x" for m in self.markets)


# --------------------------------------------------------------------------------------------
# loading and validation
# --------------------------------------------------------------------------------------------


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config TOML file.

    Parameters
    ----------
    path
        The TOML file; data and strategy paths in it are relative to its directory.

    Returns
    -------
    RunConfig

    Raises
    ------
    ValidationError
        Listing every problem (unknown keys, bad values, missing files, unknown strategy
        params, leverage above the tier maximum...).
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ValidationError([f"config file not found: {p}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError([f"not valid TOML: {exc}"], str(p)) from None
    return config_from_dict(data, base_dir=p.resolve().parent, source=str(p))


def config_from_dict(
    data: Mapping[str, Any], base_dir: str | Path | None = None, source: str | None = None
) -> RunConfig:
    """Validate a parsed config mapping (the TOML layout) into a :class:`RunConfig`.

    Parameters
    ----------
    data
        Sections ``account``, ``market`` (list), ``strategy``, ``backtest``.
    base_dir
        Directory relative paths are resolved against (default: the working directory).
    source
        Name used as the prefix of error messages (the file path).
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    problems: list[str] = []
    for key in data:
        if key not in _SECTIONS:
            problems.append(f"unknown section [{key}] (known: {', '.join(_SECTIONS)})")
    account = _account(_table(data, "account", problems), problems)
    raw_markets = data.get("market", [])
    if isinstance(raw_markets, Mapping):
        raw_markets = [raw_markets]
    if not isinstance(raw_markets, list) or not raw_markets:
        problems.append("[[market]]: at least one market is required")
        raw_markets = []
    markets = tuple(
        m for i, raw in enumerate(raw_markets)
        if (m := _market(i, raw, base, problems)) is not None
    )
    symbols = [m.symbol for m in markets]
    for sym in sorted({s for s in symbols if symbols.count(s) > 1}):
        problems.append(f"market.symbol = {sym!r} appears more than once")
    # one cross-check pass against the exchange rules (profile, tiers, minimum order values)
    profile = _check_markets(account, markets, problems)
    n_before = len(problems)
    strategy, strategy_cls = _strategy(_table(data, "strategy", problems), base, problems)
    strategy_ok = len(problems) == n_before
    if profile is not None and strategy_ok and hasattr(strategy_cls, "account_checks"):
        _check_strategy(strategy_cls, strategy, account, markets, profile, problems)
    backtest = _backtest(_table(data, "backtest", problems), problems)
    if problems:
        raise ValidationError(problems, source)
    return RunConfig(account, markets, strategy, backtest, source)  # type: ignore[arg-type]


def _table(data: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        problems.append(f"[{name}] must be a table, got {value!r}")
        return {}
    return dict(value)


def _number(name: str, value: Any, problems: list[str], low: float | None = None,
            high: float | None = None, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{name} = {value!r} must be a number")
        return math.nan
    bad = (low is not None and (value <= low if low_open else value < low)) or (
        high is not None and value > high
    )
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        problems.append(f"{name} = {value!r} must be {' and '.join(x for x in (lo, hi) if x)}")
    return float(value)


def _choice(name: str, value: Any, options: tuple[str, ...], problems: list[str]) -> str:
    if value not in options:
        problems.append(f"{name} = {value!r} is not one of {', '.join(options)}")
    return str(value)


def _bool(name: str, value: Any, problems: list[str]) -> bool:
    if not isinstance(value, bool):
        problems.append(f"{name} = {value!r} must be true or false")
    return bool(value)


def _account(raw: dict[str, Any], problems: list[str]) -> AccountSettings:
    exchange = raw.get("exchange", "binance")
    if not isinstance(exchange, str) or not exchange:
        problems.append(f"account.exchange = {exchange!r} must be a profile name or path")
        exchange = "binance"
    balance = _number("account.balance", raw.get("balance", 1000.0), problems, 0, low_open=True)
    position_mode = _choice("account.position_mode", raw.get("position_mode", "one-way"),
                            POSITION_MODES, problems)
    settlement = _choice("account.settlement", raw.get("settlement", "bankruptcy"),
                         SETTLEMENTS, problems)
    debit = _bool("account.debit", raw.get("debit", False), problems)
    threshold = _number("account.warning_threshold", raw.get("warning_threshold", 0.8),
                        problems, 0, 1, low_open=True)
    overrides = {k: v for k, v in raw.items() if k not in _ACCOUNT_KEYS}
    if "fees" in overrides and isinstance(overrides["fees"], Mapping):
        # accept the exchange-profile layout too: [account.fees] maker/taker/liquidation
        fees = overrides.pop("fees")
        for short, full in (("maker", "maker_fee"), ("taker", "taker_fee"),
                            ("liquidation", "liquidation_fee")):
            if short in fees:
                overrides[full] = fees[short]
    return AccountSettings(
        exchange, balance, position_mode, settlement, debit, threshold,
        tuple(sorted(overrides.items())),
    )


def _resolve(base: Path, value: Any, name: str, problems: list[str],
             required: bool) -> Path | None:
    if value is None:
        if required:
            problems.append(f"{name} is required (a data file path)")
        return None
    if not isinstance(value, str | Path) or not str(value):
        problems.append(f"{name} = {value!r} must be a file path")
        return None
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    path = Path(str(path.resolve()))
    if not path.exists():
        problems.append(f"{name} = {str(value)!r}: file not found ({path})")
    return path


def _market(i: int, raw: Any, base: Path, problems: list[str]) -> MarketSettings | None:
    if not isinstance(raw, Mapping):
        problems.append(f"market[{i}] must be a table, got {raw!r}")
        return None
    prefix = f"market[{i}]"
    for key in raw:
        if key not in _MARKET_KEYS:
            problems.append(f"{prefix}.{key}: unknown field (known: {', '.join(_MARKET_KEYS)})")
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        problems.append(f"{prefix}.symbol = {symbol!r} must be a symbol name like 'BTCUSDT'")
        symbol = f"?{i}"
    prefix = f"market[{i}] ({symbol})"
    candles = _resolve(base, raw.get("candles"), f"{prefix}.candles", problems, True)
    mark = _resolve(base, raw.get("mark"), f"{prefix}.mark", problems, False)
    funding = _resolve(base, raw.get("funding"), f"{prefix}.funding", problems, False)
    leverage = _number(f"{prefix}.leverage", raw.get("leverage", 1.0), problems, 1)
    margin_mode = _choice(f"{prefix}.margin_mode", raw.get("margin_mode", "cross"),
                          MARGIN_MODES, problems)
    top_up = _bool(f"{prefix}.auto_top_up", raw.get("auto_top_up", False), problems)
    if top_up and margin_mode != "isolated":
        problems.append(f"{prefix}.auto_top_up = true needs margin_mode = 'isolated'")
    return MarketSettings(
        symbol, candles or Path(), mark, funding, leverage, margin_mode, top_up
    )


def _check_strategy(
    cls: Any, strategy: StrategySettings, account: AccountSettings,
    markets: tuple[MarketSettings, ...], profile: Any, problems: list[str],
) -> None:
    """The bot's own cross-checks against the account and each market's exchange rules."""
    from liqbt.core.profile import normalize_symbol
    from liqbt.strategies import MarketContext

    contexts = []
    for m in markets:
        spec = profile.symbols.get(normalize_symbol(m.symbol))
        if spec is None:
            return  # already reported by _check_markets
        contexts.append(MarketContext(m.symbol, m.leverage, m.margin_mode, spec))
    problems.extend(cls.account_checks(strategy.kwargs, account.balance, contexts, "strategy."))


def _check_markets(
    account: AccountSettings, markets: tuple[MarketSettings, ...], problems: list[str]
) -> Any:
    """Check symbols, leverage and top-up against the exchange profile (with overrides);
    returns the profile (``None`` when it cannot be loaded)."""
    from liqbt.core.profile import known_symbols_text, load_profile, normalize_symbol

    try:
        profile = load_profile(account.exchange)
    except ValidationError as exc:
        problems.extend(f"account.exchange = {account.exchange!r}: {p}" for p in exc.problems)
        return None
    if account.profile_overrides:
        known = {f.name for f in fields(profile)} - {"symbols", "name"}
        unknown = [k for k, _ in account.profile_overrides if k not in known]
        for key in unknown:
            problems.append(
                f"account.{key}: unknown field (account fields: {', '.join(_ACCOUNT_KEYS)}; "
                f"profile overrides: {', '.join(sorted(known))})"
            )
        if not unknown:
            try:
                profile = profile.with_overrides(dict(account.profile_overrides), "account")
            except ValidationError as exc:
                problems.extend(f"account overrides: {p}" for p in exc.problems)
            except TypeError as exc:
                problems.append(f"account overrides: {exc}")
    for i, m in enumerate(markets):
        prefix = f"market[{i}] ({m.symbol})"
        spec = profile.symbols.get(normalize_symbol(m.symbol))
        if spec is None:
            problems.append(
                f"{prefix}.symbol = {m.symbol!r} is not in profile {profile.name!r} "
                f"({known_symbols_text(profile.symbols, m.symbol)})"
            )
            continue
        top = spec.tiers.tiers[0].max_leverage
        if math.isfinite(m.leverage) and m.leverage > top:
            problems.append(
                f"{prefix}.leverage = {m.leverage:g} is above {top:g}, the tier maximum of "
                f"{profile.name} {spec.symbol}"
            )
        if m.auto_top_up and not profile.auto_top_up:
            problems.append(f"{prefix}.auto_top_up = true is not offered by {profile.name}")
    return profile


def _backtest(raw: dict[str, Any], problems: list[str]) -> BacktestSettings:
    for key in raw:
        if key not in _BACKTEST_KEYS:
            problems.append(f"backtest.{key}: unknown field (known: {', '.join(_BACKTEST_KEYS)})")
    start = _time("backtest.start", raw.get("start"), problems)
    end = _time("backtest.end", raw.get("end"), problems)
    if start and end and start >= end:
        problems.append(f"backtest.end = {end!r} must be after backtest.start = {start!r}")
    intrabar = _choice("backtest.intrabar", raw.get("intrabar", "heuristic"),
                       INTRABAR_PATHS, problems)
    strict = _bool("backtest.strict_data", raw.get("strict_data", False), problems)
    return BacktestSettings(start, end, intrabar, strict)


def _time(name: str, value: Any, problems: list[str]) -> str | None:
    """Normalize a date/time to ``YYYY-MM-DDTHH:MM:SSZ`` (UTC; naive values are UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            problems.append(f"{name} = {value!r} is not an ISO-8601 date or time")
            return None
    else:
        problems.append(f"{name} = {value!r} must be a date like '2024-03-01'")
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------


def _split_strategy_path(name: str) -> tuple[str | None, str, str]:
    """``path.py:Class`` -> (path, Class, ""), anything else -> (None, "", name)."""
    head, sep, cls = name.rpartition(":")
    if sep and head.endswith(".py"):
        return head, cls, ""
    return None, "", name


def load_strategy_class(name: str) -> type:
    """The ``bt.Strategy`` subclass named by a config (``grid``/``dca``/``hold``,
    ``/path/file.py:Class`` or ``module:Class``), through liqbt's one strategy loader
    :func:`liqbt.strategies.load_strategy`.

    Raises
    ------
    ValidationError
        When it cannot be found (the loader's message, prefixed with the config field).
    """
    from liqbt.strategies import StrategyLoadError, load_strategy

    try:
        return load_strategy(name)
    except StrategyLoadError as exc:
        raise ValidationError([f"strategy.name = {name!r}: {exc}"]) from None


def strategy_param_names(cls: type) -> list[str]:
    """Names of a backtrader strategy's params."""
    return list(cls.params._getkeys())  # type: ignore[attr-defined]


def _strategy(
    raw: dict[str, Any], base: Path, problems: list[str]
) -> tuple[StrategySettings, type | None]:
    """The strategy settings and class (``None`` when it cannot be loaded)."""
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"strategy.name = {name!r} must be 'grid', 'dca', 'hold' or "
                        "'path/to/file.py:Class'")
        return StrategySettings("?"), None
    path, cls_name, _ = _split_strategy_path(name)
    if path is not None:
        file = Path(path)
        if not file.is_absolute():
            file = (base / file).resolve()
        name = f"{file}:{cls_name}"
    params = {k: v for k, v in raw.items() if k not in ("name", "params")}
    extra = raw.get("params", {})
    if not isinstance(extra, Mapping):
        problems.append(f"strategy.params = {extra!r} must be a table")
        extra = {}
    params.update(extra)
    try:
        cls = load_strategy_class(name)
    except ValidationError as exc:
        problems.extend(exc.problems)
        return StrategySettings(name, tuple(sorted(params.items()))), None
    declared = getattr(cls, "parameters", None)
    if declared is not None:
        # a liqbt bot: types, bounds, choices and relations from its declaration; params a
        # subclass added the plain backtrader way (undeclared) are passed through unchecked
        names = {p.name for p in declared}
        extra = set(strategy_param_names(cls)) - names
        checked = {k: v for k, v in params.items() if k not in extra}
        found = cls.parameter_problems(checked, "strategy.")
        problems.extend(found)
        if not found:
            from liqbt.core.params import resolved

            full = resolved(declared, checked)
            params = {k: (full[k] if k in names else v) for k, v in params.items()}
    else:
        known = strategy_param_names(cls)
        for key in params:
            if key not in known:
                problems.append(
                    f"strategy.{key} = {params[key]!r}: unknown param of {cls.__name__} "
                    f"(known: {', '.join(known) or 'none'})"
                )
    return StrategySettings(name, tuple(sorted(params.items()))), cls


def parse_value(text: str) -> Any:
    """A CLI override value: ``10`` -> 10, ``2.5`` -> 2.5, ``true`` -> True, else the text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip()


__all__ = [
    "AccountSettings",
    "BacktestSettings",
    "MarketSettings",
    "RunConfig",
    "StrategySettings",
    "config_from_dict",
    "load_config",
    "load_strategy_class",
    "parse_value",
    "strategy_param_names",
]
