"""``liqbt calc``: the liquidation-price calculator and the ccxt tier importer.

Parsing and printing only: every number comes from :func:`liqbt.core.snapshot.evaluate` (which
calls :mod:`liqbt.core.margin`) and tier tables from :mod:`liqbt.core.ccxt_tiers`, so the
calculator shows exactly what the backtest broker uses.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from liqbt.core import choices
from liqbt.core.ccxt_tiers import profile_symbols_to_toml, tiers_from_ccxt
from liqbt.core.errors import ValidationError
from liqbt.core.profile import ExchangeProfile, load_profile, normalize_symbol
from liqbt.core.snapshot import PositionInput, Snapshot, evaluate
from liqbt.core.tiers import TIER_BASES, TIER_STYLES, TierTable

_ACCOUNT_KEYS = {
    "exchange", "mode", "position_mode", "wallet_balance", "taker_fee", "positions",
    "order_margin",
}
_POSITION_KEYS = {
    "symbol", "side", "size", "entry_price", "mark_price", "margin", "leverage", "mmr",
    "maintenance_amount", "margin_mode",
}
_POSITION_REQUIRED = ("symbol", "side", "size", "entry_price")


@click.group("calc")
def calc() -> None:
    """Calculators: liquidation price of a position or account, tier import from ccxt."""


def _fail(problems: Sequence[str], usage: bool = False) -> None:
    """Raise one click error listing every problem (exit 2 for usage, 1 for bad values)."""
    message = str(ValidationError(problems))
    if usage:
        raise click.UsageError(message)
    raise click.ClickException(message)


def _flat_override(
    profile: ExchangeProfile | None,
    symbol: str,
    mmr: float,
    amount: float | None,
    problems: list[str],
    where: str,
) -> TierTable | None:
    """``TierTable.flat_rate`` for ``--mmr``; keeps the profile's leverage cap when it knows the
    symbol (the exchange still limits leverage), else 125×."""
    max_lev = 125.0
    if profile is not None and normalize_symbol(symbol) in profile.symbols:
        max_lev = profile.symbols[normalize_symbol(symbol)].tiers.tiers[0].max_leverage
    try:
        return TierTable.flat_rate(
            mmr, 0.0 if amount is None else amount, max_leverage=max_lev, symbol=symbol
        )
    except ValidationError as exc:
        problems.extend(f"{where}: {p}" for p in exc.problems)
        return None


def _read_account(path: str, problems: list[str]) -> dict[str, Any]:
    """Parse an account file (JSON by suffix, else TOML); problems are appended."""
    file = Path(path)
    if not file.is_file():
        problems.append(f"account file {path!r} does not exist")
        return {}
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(file.read_text(encoding="utf-8"))
        else:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot parse: {exc}")
        return {}
    if not isinstance(data, Mapping):
        problems.append(f"{path}: expected a table/object at the top level")
        return {}
    unknown = set(data) - _ACCOUNT_KEYS
    if unknown:
        problems.append(
            f"{path}: unknown key(s) {sorted(unknown)} (known: {sorted(_ACCOUNT_KEYS)})"
        )
    return dict(data)


def _account_positions(
    data: Mapping[str, Any],
    profile: ExchangeProfile | None,
    default_mode: str,
    source: str,
    problems: list[str],
) -> list[PositionInput]:
    """PositionInputs from an account file's ``positions`` list (problems appended)."""
    raw_positions = data.get("positions")
    if not isinstance(raw_positions, list) or not raw_positions:
        problems.append(f"{source}: 'positions' must be a non-empty list of position tables")
        return []
    result: list[PositionInput] = []
    for n, raw in enumerate(raw_positions, start=1):
        where = f"{source}: position {n}"
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: expected a table/object")
            continue
        unknown = set(raw) - _POSITION_KEYS
        if unknown:
            problems.append(f"{where}: unknown key(s) {sorted(unknown)}")
        missing = [key for key in _POSITION_REQUIRED if key not in raw]
        if missing:
            problems.append(f"{where}: missing field(s) {missing}")
            continue
        if "maintenance_amount" in raw and "mmr" not in raw:
            problems.append(f"{where}: maintenance_amount needs mmr")
        tiers = None
        if "mmr" in raw:
            tiers = _flat_override(
                profile, str(raw["symbol"]), raw["mmr"], raw.get("maintenance_amount"),
                problems, where,
            )
        result.append(
            PositionInput(
                symbol=str(raw["symbol"]),
                side=raw["side"],
                size=raw["size"],
                entry_price=raw["entry_price"],
                mark_price=raw.get("mark_price", raw["entry_price"]),
                margin_mode=str(raw.get("margin_mode", default_mode)),
                margin=raw.get("margin"),
                leverage=raw.get("leverage"),
                tiers=tiers,
            )
        )
    return result


@calc.command("liq-price")
@click.option("--exchange", help="Profile (binance, bybit, okx, bitget, gate, simple) or file.")
@click.option("--symbol", help="Symbol, e.g. BTCUSDT or BTC/USDT:USDT.")
@click.option("--side", type=click.Choice(choices.DIRECTIONS, case_sensitive=False))
@click.option("--entry", type=float, help="Entry price, USDT.")
@click.option("--size", type=float, help="Position size in base units (> 0), e.g. BTC.")
@click.option("--margin", type=float, help="Isolated position margin, USDT.")
@click.option("--mode", type=click.Choice(choices.MARGIN_MODES), help="Margin mode.")
@click.option(
    "--position-mode", type=click.Choice(choices.POSITION_MODES), help="Account position mode."
)
@click.option("--wallet", type=float, help="Cross wallet balance, USDT.")
@click.option("--mark", type=float, help="Mark price (default: the entry price).")
@click.option("--leverage", type=float, help="Leverage; default margin = entry × size / leverage.")
@click.option("--mmr", type=float, help="Flat maintenance margin rate replacing the tier lookup.")
@click.option("--maintenance-amount", type=float, help="Maintenance amount with --mmr, USDT.")
@click.option("--taker-fee", type=float, help="Taker fee rate overriding the profile's.")
@click.option(
    "--order-margin", type=float,
    help="Margin reserved by resting orders, USDT; lowers the cross trigger equity where the "
    "profile counts it (order_margin_in_trigger: simple).",
)
@click.option(
    "--account", type=str, help="Account file (TOML or JSON) with wallet_balance and [[positions]]."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (unrounded floats).")
def liq_price(
    exchange: str | None,
    symbol: str | None,
    side: str | None,
    entry: float | None,
    size: float | None,
    margin: float | None,
    mode: str | None,
    position_mode: str | None,
    wallet: float | None,
    mark: float | None,
    leverage: float | None,
    mmr: float | None,
    maintenance_amount: float | None,
    taker_fee: float | None,
    order_margin: float | None,
    account: str | None,
    as_json: bool,
) -> None:
    """Liquidation price, bankruptcy price, maintenance margin and margin ratio.

    One position from the options, or a whole account with --account FILE. Cross positions of
    one symbol share an LP (hedge mode: LONG and SHORT legs together); other cross symbols are
    held at their marks.
    """
    usage: list[str] = []
    problems: list[str] = []
    position_flags = {
        "--symbol": symbol, "--side": side, "--entry": entry, "--size": size,
        "--margin": margin, "--mark": mark, "--leverage": leverage, "--mmr": mmr,
        "--maintenance-amount": maintenance_amount, "--wallet": wallet, "--mode": mode,
    }
    data: dict[str, Any] = {}
    if account is not None:
        given = [flag for flag, value in position_flags.items() if value is not None]
        if given:
            usage.append(f"--account cannot be combined with {', '.join(given)}")
        data = _read_account(account, problems)
        exchange = exchange or data.get("exchange")
    else:
        required = {"--exchange": exchange, "--symbol": symbol, "--side": side,
                    "--entry": entry, "--size": size}
        usage.extend(f"missing option {flag}" for flag, value in required.items() if value is None)
        mode = mode or "isolated"
        if mode == "isolated" and margin is None and leverage is None:
            usage.append("an isolated position needs --margin or --leverage")
        if mode == "cross" and wallet is None:
            usage.append("cross mode needs --wallet (the cross wallet balance)")
        if maintenance_amount is not None and mmr is None:
            usage.append("--maintenance-amount needs --mmr")
    if exchange is None and account is not None:
        usage.append("no exchange: give --exchange or 'exchange' in the account file")

    profile: ExchangeProfile | None = None
    if exchange is not None:
        try:
            profile = load_profile(str(exchange))
            fee = taker_fee if taker_fee is not None else data.get("taker_fee")
            if fee is not None:
                profile = profile.with_overrides({"taker_fee": fee}, source="--taker-fee")
        except ValidationError as exc:
            problems.append(str(exc))

    if profile is None and account is None:
        # without a profile evaluate() cannot run; still report the bad numbers in this pass
        for flag, value in (("--size", size), ("--entry", entry), ("--mark", mark),
                            ("--margin", margin), ("--leverage", leverage)):
            if value is not None and not (math.isfinite(value) and value > 0):
                problems.append(f"{flag} = {value:g} must be > 0")

    positions: list[PositionInput] = []
    wallet_balance: Any = 0.0
    pmode: Any = position_mode or "one-way"
    if account is not None and data:
        wallet_balance = data.get("wallet_balance", 0.0)
        pmode = position_mode or data.get("position_mode", "one-way")
        positions = _account_positions(
            data, profile, str(data.get("mode", "cross")), account, problems
        )
    elif account is None and not usage:
        assert symbol is not None and side is not None
        tiers = None
        if mmr is not None:
            tiers = _flat_override(profile, symbol, mmr, maintenance_amount, problems, "--mmr")
        wallet_balance = wallet if wallet is not None else 0.0
        positions = [
            PositionInput(
                symbol=symbol,
                side=side.lower(),
                size=size,  # type: ignore[arg-type]
                entry_price=entry,  # type: ignore[arg-type]
                mark_price=mark if mark is not None else entry,  # type: ignore[arg-type]
                margin_mode=mode or "isolated",
                margin=margin,
                leverage=leverage,
                tiers=tiers,
            )
        ]
    if usage:
        _fail(usage + problems, usage=True)
    if problems:
        _fail(problems)
    assert profile is not None
    try:
        reserved = order_margin if order_margin is not None else data.get("order_margin", 0.0)
        snapshot = evaluate(profile, wallet_balance, positions, pmode, order_margin=reserved)
    except ValidationError as exc:
        _fail(exc.problems)
        return
    if as_json:
        click.echo(json.dumps(snapshot_to_json(snapshot)))
    else:
        click.echo(format_table(profile, snapshot, pmode))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def snapshot_to_json(snapshot: Snapshot) -> dict[str, Any]:
    """The ``--json`` object: positions with unrounded floats (``null`` when no LP exists)."""
    return {
        "positions": [
            {
                "symbol": r.symbol,
                "side": "long" if r.side > 0 else "short",
                "liquidation_price": r.liquidation_price,
                "bankruptcy_price": r.bankruptcy_price,
                "maintenance_margin": r.maintenance_margin,
                "closing_fee": r.closing_fee,
                "tier": r.tier,
                "mmr": r.mmr,
                "maintenance_amount": r.maintenance_amount,
                "display_liquidation_price": r.display_liquidation_price,
                "past_liquidation": r.past_liquidation,
            }
            for r in snapshot.positions
        ],
        "margin_balance": snapshot.margin_balance,
        "maintenance_margin": snapshot.maintenance_margin,
        "closing_fee": snapshot.closing_fee,
        "order_margin": snapshot.order_margin,
        "trigger_margin": snapshot.trigger_margin,
        # JSON has no infinity: a non-positive margin balance (already liquidated) is null
        "margin_ratio": _finite(snapshot.margin_ratio),
    }


def _money(value: float | None) -> str:
    return "none" if value is None else f"{value:,.2f}"


def format_table(profile: ExchangeProfile, snapshot: Snapshot, position_mode: str) -> str:
    """A small aligned text table of the snapshot (prices shown as the exchange rounds LPs)."""
    header = ["symbol", "side", "mode", "size", "entry", "mark", "liq. price", "bankr. price",
              "maint. margin", "tier", "mmr"]
    rows = [header]
    for r in snapshot.positions:
        shown = r.display_liquidation_price
        rows.append([
            r.symbol,
            "long" if r.side > 0 else "short",
            r.margin_mode,
            f"{r.size:g}",
            f"{r.entry_price:,.2f}",
            f"{r.mark_price:,.2f}",
            "none" if shown is None else f"{shown:,.{_decimals(shown)}f}",
            _money(r.bankruptcy_price),
            _money(r.maintenance_margin),
            "-" if r.tier is None else str(r.tier),
            "-" if r.mmr is None else f"{r.mmr * 100:g} %",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"{profile.display_name or profile.name} · {position_mode} · taker "
        f"{profile.taker_fee * 100:g} % · LP formula {profile.lp_formula}"
    ]
    for row in rows:
        lines.append("  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip())
    ratio = snapshot.margin_ratio
    lines.append(
        f"margin balance {_money(snapshot.margin_balance)}  ·  maintenance margin "
        f"{_money(snapshot.maintenance_margin)}  ·  margin ratio "
        + ("inf" if not math.isfinite(ratio) else f"{ratio * 100:.2f} %")
    )
    if snapshot.closing_fee or snapshot.order_margin:
        # the trigger's other terms: margin ratio = trigger margin / margin balance
        lines.append(
            f"trigger margin {_money(snapshot.trigger_margin)} = maintenance margin + closing "
            f"fee {_money(snapshot.closing_fee)} + order margin {_money(snapshot.order_margin)}"
        )
    for r in snapshot.past_liquidation:
        side = "long" if r.side > 0 else "short"
        where = "below" if r.side > 0 else "above"
        lines.append(
            f"PAST LIQUIDATION: the {r.symbol} {side} is already liquidated at this mark: mark "
            f"{r.mark_price:,.2f} is {where} its liquidation price "
            f"{r.liquidation_price:,.2f}"
            + ((" (margin ratio " + ("inf" if not math.isfinite(ratio) else f"{ratio * 100:.2f} %")
                + " >= 100 %)") if len(snapshot.positions) == 1 else "")
            + "; the exchange would not let it open (add margin or reduce the size)"
        )
    return "\n".join(lines)


def _decimals(value: float) -> int:
    """Decimals to print a rounded price without hiding its tick (at least 2)."""
    text = f"{value:.8f}".rstrip("0")
    return max(2, len(text.split(".")[1]) if "." in text else 0)


@calc.command("import-tiers")
@click.argument("file", type=str)
@click.option("--symbol", "symbols", multiple=True, required=True,
              help="Market to import (BTCUSDT or BTC/USDT:USDT); repeatable.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the TOML here (else stdout).")
@click.option("--exchange", help="Profile to take price_tick/size_step/min_notional from.")
@click.option("--style", type=click.Choice(TIER_STYLES), default="bracket",
              show_default=True, help="Tier style of the exchange.")
@click.option("--basis", type=click.Choice(TIER_BASES), default="notional",
              show_default=True, help="'size' when the file's bounds are contracts (OKX).")
@click.option("--contract-size", type=float, default=1.0, show_default=True,
              help="Base units per contract, with --basis size.")
@click.option("--as-of", "as_of", default="", help="Date of the snapshot, written as tiers_as_of.")
def import_tiers(
    file: str,
    symbols: tuple[str, ...],
    out: str | None,
    exchange: str | None,
    style: str,
    basis: str,
    contract_size: float,
    as_of: str,
) -> None:
    """Convert a ccxt fetch_leverage_tiers JSON FILE into [symbols.X] profile TOML.

    Every table is validated (given maintenance amounts must follow the recurrence).
    """
    problems: list[str] = []
    specs: dict[str, dict[str, float]] = {}
    if exchange is not None:
        try:
            profile = load_profile(exchange)
            specs = {
                name: {"price_tick": s.price_tick, "size_step": s.size_step,
                       "min_notional": s.min_notional}
                for name, s in (profile.symbols.explicit().items()
                                if hasattr(profile.symbols, "explicit")
                                else profile.symbols.items())
            }
        except ValidationError as exc:
            problems.append(str(exc))
    tables: dict[str, TierTable] = {}
    for symbol in symbols:
        try:
            tables[normalize_symbol(symbol)] = tiers_from_ccxt(
                file, symbol, style=style, basis=basis, contract_size=contract_size
            )
        except ValidationError as exc:
            problems.append(str(exc))
    if problems:
        _fail(problems)
    text = profile_symbols_to_toml(
        tables, specs, tiers_source=f"ccxt fetch_leverage_tiers ({Path(file).name})",
        tiers_as_of=as_of,
    )
    if out is None:
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(tables)} symbol table(s) to {out}", err=True)
