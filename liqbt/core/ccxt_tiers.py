"""Import tier tables from ccxt ``fetch_leverage_tiers`` output and render them as profile TOML.

Users refresh a profile's tiers from the exchange with ccxt::

    tiers = exchange.fetch_leverage_tiers()          # {"BTC/USDT:USDT": [tier, ...], ...}
    json.dump(tiers, open("tiers.json", "w"), default=str)

then ``liqbt calc import-tiers tiers.json --symbol BTCUSDT`` prints the ``[symbols.BTCUSDT]``
tables to paste into ``configs/exchanges/<exchange>.toml`` (or a user profile).

A ccxt tier is ``{"minNotional", "maxNotional", "maintenanceMarginRate", "maxLeverage", "info"}``;
``info`` is the exchange's raw row. Binance's carries ``cum`` (the maintenance amount) and
Bybit's ``mmDeduction``: when present it is passed to :meth:`TierTable.from_rows` as the *given*
amount, so a file whose amounts break the recurrence ``amount_n = floor_n × (mmr_n − mmr_{n−1})
+ amount_{n−1}`` is rejected rather than silently re-derived.

Pure: json and the standard library only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from liqbt.core.errors import ValidationError
from liqbt.core.profile import normalize_symbol
from liqbt.core.tiers import TierTable

# raw ``info`` keys that hold the maintenance amount, by exchange (Binance, Bybit v5)
_AMOUNT_KEYS = ("cum", "mmDeduction")


def load_ccxt_tiers(path_or_mapping: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    """Read a ccxt ``fetch_leverage_tiers`` JSON file (or return the mapping given)."""
    if isinstance(path_or_mapping, Mapping):
        return path_or_mapping
    path = Path(path_or_mapping)
    if not path.is_file():
        raise ValidationError([f"tier file {str(path)!r} does not exist"])
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # a gzipped snapshot (configs/exchanges/*.json.gz)
            import gzip

            raw = gzip.decompress(raw)
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ValidationError([f"cannot parse JSON: {exc}"], source=str(path)) from exc
    if not isinstance(data, Mapping):
        raise ValidationError(
            ["expected an object {market: [tiers]} (ccxt fetch_leverage_tiers)"], source=str(path)
        )
    return data


def find_market(data: Mapping[str, Any], symbol: str) -> str:
    """The key of ``data`` for ``symbol`` (``BTCUSDT``, ``BTC/USDT:USDT``, ``BTC-USDT-SWAP``).

    An exact key wins; otherwise keys are compared after :func:`normalize_symbol`, preferring the
    perpetual (a ccxt swap key ``BASE/QUOTE:SETTLE`` without a ``-YYMMDD`` expiry).
    """
    if symbol in data:
        return symbol
    wanted = normalize_symbol(symbol)
    matches = [key for key in data if normalize_symbol(key) == wanted]
    perpetual = [key for key in matches if "-" not in key.split(":", 1)[-1] or ":" not in key]
    if len(perpetual) == 1:
        return perpetual[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValidationError([f"symbol {symbol!r} is not in the tier file ({len(data)} markets)"])
    raise ValidationError([f"symbol {symbol!r} is ambiguous in the tier file: {sorted(matches)}"])


def _num(value: Any) -> float | None:
    """A finite float from a number or numeric string; ``None`` otherwise (empty strings too)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def tiers_from_ccxt(
    path_or_mapping: str | Path | Mapping[str, Any],
    symbol: str,
    style: str = "bracket",
    basis: str = "notional",
    contract_size: float = 1.0,
) -> TierTable:
    """Build a validated :class:`TierTable` for ``symbol`` from ccxt leverage tiers.

    Parameters
    ----------
    path_or_mapping
        A JSON file path or the already-parsed mapping ``{market: [ccxt tier, ...]}``.
    symbol
        ``BTCUSDT`` or ``BTC/USDT:USDT`` (any spelling :func:`find_market` resolves).
    style
        ``"bracket"`` (Binance, Bybit, Gate) or ``"flat"`` (OKX, Bitget).
    basis
        ``"notional"`` (USDT bounds) or ``"size"`` (OKX: ccxt's min/maxNotional are contracts).
    contract_size
        Base units per contract, multiplied into the bounds when ``basis = "size"`` (OKX
        BTC-USDT-SWAP: 0.01).

    Returns
    -------
    TierTable
        Rows ``floor = minNotional``, ``cap = maxNotional``, ``mmr = maintenanceMarginRate``,
        ``max_leverage = maxLeverage``, ``maintenance_amount = info.cum`` (or
        ``info.mmDeduction``) when present; amounts are otherwise derived.

    Raises
    ------
    ValidationError
        All problems of the market's rows at once (missing fields, broken recurrence, gaps).
    """
    data = load_ccxt_tiers(path_or_mapping)
    source = str(path_or_mapping) if not isinstance(path_or_mapping, Mapping) else "ccxt tiers"
    market = find_market(data, symbol)
    raw = data[market]
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ValidationError([f"{market}: expected a list of tiers"], source=source)
    scale = contract_size if basis == "size" else 1.0
    problems: list[str] = []
    rows: list[dict[str, float]] = []
    fields = {
        "floor": "minNotional",
        "cap": "maxNotional",
        "mmr": "maintenanceMarginRate",
        "max_leverage": "maxLeverage",
    }
    for n, tier in enumerate(raw, start=1):
        if not isinstance(tier, Mapping):
            problems.append(f"{market} tier {n}: expected an object, got {tier!r}")
            continue
        row: dict[str, float] = {}
        for name, key in fields.items():
            value = _num(tier.get(key))
            if value is None:
                problems.append(f"{market} tier {n}: {key} = {tier.get(key)!r} is not a number")
                continue
            row[name] = value * scale if name in ("floor", "cap") else value
        info = tier.get("info") if isinstance(tier.get("info"), Mapping) else {}
        for key in _AMOUNT_KEYS:
            amount = _num(info.get(key))
            if amount is not None:
                row["maintenance_amount"] = amount
                break
        rows.append(row)
    if problems:
        raise ValidationError(problems, source=source)
    try:
        return TierTable.from_rows(
            rows, style=style, symbol=normalize_symbol(market), source=source, basis=basis
        )
    except ValidationError as exc:
        raise ValidationError(exc.problems, source=source) from exc


#: ccxt tier keys kept in a bundled snapshot (the rest of ``info`` is dropped).
SNAPSHOT_KEYS: tuple[str, ...] = ("tier", "minNotional", "maxNotional", "maintenanceMarginRate",
                                  "maxLeverage")


def snapshot_from_ccxt(data: Mapping[str, Any], settle: str = "USDT") -> bytes:
    """A compact, deterministic ccxt-format snapshot of every ``settle``-margined perpetual.

    Keeps the ccxt tier fields of :data:`SNAPSHOT_KEYS` plus the maintenance amount in
    ``info`` (``cum`` / ``mmDeduction``), drops dated futures and other settle currencies,
    and gzips sorted JSON with a zero timestamp, so the same input always gives the same
    bytes (``configs/exchanges/binance-usdm-tiers.json.gz`` is made this way from the
    2024-10-24 Binance table).
    """
    import gzip

    out: dict[str, list[dict[str, Any]]] = {}
    for key, tiers in data.items():
        if not isinstance(key, str) or ":" not in key or key.split(":", 1)[1] != settle:
            continue
        rows = []
        for tier in tiers:
            row = {k: tier[k] for k in SNAPSHOT_KEYS if k in tier}
            info = tier.get("info") if isinstance(tier.get("info"), Mapping) else {}
            kept = {k: info[k] for k in _AMOUNT_KEYS if k in info}
            if kept:
                row["info"] = kept
            rows.append(row)
        out[key] = rows
    text = json.dumps(out, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(text, compresslevel=9, mtime=0)


def _fmt(value: float) -> str:
    """A TOML number: integers without ``.0`` and with ``_`` separators; ``inf`` as ``inf``."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    # derived amounts carry float noise (9.999999999999991); 10 significant digits is plenty
    value = float(f"{value:.10g}")
    if float(value).is_integer() and abs(value) < 1e18:
        return f"{int(value):_}"
    return repr(float(value))


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings


def profile_symbols_to_toml(
    tables: Mapping[str, TierTable],
    specs: Mapping[str, Mapping[str, float]] | None = None,
    tiers_source: str = "",
    tiers_as_of: str = "",
) -> str:
    """Render ``[symbols.X]`` TOML sections for an exchange profile.

    Parameters
    ----------
    tables
        ``{symbol: TierTable}``; symbols are written normalised (``BTCUSDT``).
    specs
        Optional ``{symbol: {"price_tick", "size_step", "min_notional"}}`` (e.g. from the current
        profile). A missing ``price_tick`` / ``size_step`` is written as a commented
        placeholder (both are optional: the profile loads and does not round prices or sizes);
        a missing ``min_notional`` is written as 5 USDT with a comment saying so.
    tiers_source, tiers_as_of
        Written to each section (defaults: the table's ``source`` and empty).

    Returns
    -------
    str
        TOML text whose sections :func:`liqbt.core.profile.profile_from_dict` reads back to the
        same tiers (maintenance amounts included, so the recurrence is re-checked on load).
    """
    chunks: list[str] = []
    for raw_symbol, table in tables.items():
        symbol = normalize_symbol(raw_symbol)
        spec = dict((specs or {}).get(symbol, {}))
        lines = [f"[symbols.{symbol}]"]
        for key in ("price_tick", "size_step", "min_notional"):
            if key in spec and (spec[key] or key == "min_notional"):
                lines.append(f"{key} = {_fmt(float(spec[key]))}")
            elif key == "min_notional":
                # the one filter the broker cannot do without; 5 USDT is Binance's usual
                # minimum order value for USDT-M perpetuals (check the exchange's filters)
                lines.append("min_notional = 5  # not in the tier file: exchange's usual value")
            else:
                lines.append(f"# {key} = ?  (optional, not in the tier file: prices/sizes are "
                             "not rounded without it)")
        if table.style != "bracket":
            lines.append(f"tier_style = {_toml_string(table.style)}")
        if table.basis != "notional":
            lines.append(f"tier_basis = {_toml_string(table.basis)}")
        lines.append(f"tiers_source = {_toml_string(tiers_source or table.source)}")
        lines.append(f"tiers_as_of = {_toml_string(tiers_as_of)}")
        lines.append("tiers = [")
        for t in table.tiers:
            amount = "" if table.style == "flat" else (
                f", maintenance_amount = {_fmt(t.maintenance_amount)}"
            )
            lines.append(
                f"    {{ floor = {_fmt(t.floor)}, cap = {_fmt(t.cap)}, mmr = {_fmt(t.mmr)}, "
                f"max_leverage = {_fmt(t.max_leverage)}{amount} }},"
            )
        lines.append("]")
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + "\n"
