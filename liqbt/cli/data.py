"""``liqbt data``: download, synthesise and inspect market data."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from liqbt.core import choices
from liqbt.core.errors import ValidationError


@click.group()
def data() -> None:
    """Market data: download Binance archives, generate crash scenarios, inspect files."""


@data.command()
@click.option("--exchange", type=click.Choice(["binance"]), default="binance", show_default=True)
@click.option("--symbol", required=True, help="Exchange symbol, e.g. BTCUSDT.")
@click.option("--timeframe", default="1m", show_default=True, help="Kline interval (1m, 5m, 1h).")
@click.option("--start", required=True, help="First UTC date, e.g. 2021-05-01.")
@click.option("--end", required=True, help="Last UTC date (inclusive), e.g. 2021-05-31.")
@click.option("--mark", is_flag=True, help="Also fetch mark-price klines.")
@click.option("--funding", is_flag=True, help="Also fetch funding-rate history.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--base-url", default=None, help="Archive root (default data.binance.vision USDT-M).")
@click.option("--erase", is_flag=True,
              help="Replace existing merged files instead of merging the new rows into them.")
def download(
    exchange: str,
    symbol: str,
    timeframe: str,
    start: str,
    end: str,
    mark: bool,
    funding: bool,
    out_dir: Path,
    base_url: str | None,
    erase: bool,
) -> None:
    """Download monthly archive zips (cached, checksum-verified) and merge them to feather.

    Existing files are never truncated: the new rows are merged into them (rows outside the
    new range are kept), like freqtrade's download-data; --erase replaces them.
    """
    from liqbt.data.download import DEFAULT_BASE_URL, DownloadError, download_binance, plan
    from liqbt.data.loaders import to_utc

    problems = []
    for option, value in (("--start", start), ("--end", end)):
        try:
            to_utc(value)
        except ValidationError as exc:
            problems.extend(f"{option} {p}" for p in exc.problems)
    if problems:
        raise click.ClickException(str(ValidationError(problems)))
    base = base_url or DEFAULT_BASE_URL
    try:
        items = plan(
            symbol, timeframe, start, end, out_dir, mark=mark, funding=funding, base_url=base
        )
        with click.progressbar(
            length=len(items), label=f"{exchange} {symbol} {timeframe}", file=sys.stderr
        ) as bar:
            written = download_binance(
                symbol,
                timeframe,
                start,
                end,
                out_dir,
                mark=mark,
                funding=funding,
                base_url=base,
                on_file=lambda _item, _net: bar.update(1),
                erase=erase,
            )
    except (DownloadError, ValidationError) as exc:
        raise click.ClickException(str(exc)) from exc
    for series, path in written.items():
        click.echo(f"{series}: {path}")


@data.command()
@click.option(
    "--scenario",
    type=click.Choice(choices.SYNTH_SCENARIOS),
    default="flash-crash",
    show_default=True,
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="FILE.feather|.parquet|.csv; FILE-mark and FILE-funding_rate are written next to it.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--days", type=float, default=28.0, show_default=True)
@click.option("--start", default="2024-03-01", show_default=True, help="First bar (UTC).")
@click.option("--timeframe", default="5m", show_default=True)
@click.option("--start-price", type=float, default=60_000.0, show_default=True)
@click.option("--depth", type=float, default=None, help="Move size as a fraction (0.3 = 30 %).")
@click.option("--duration", default=None, help="Event length, e.g. 4h, 5D.")
@click.option("--at", type=float, default=None, help="Event start as a fraction of the run.")
@click.option("--rebound", type=float, default=0.5, show_default=True)
@click.option("--volatility", type=float, default=0.5, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def synth(
    scenario: str,
    out: Path,
    seed: int,
    days: float,
    start: str,
    timeframe: str,
    start_price: float,
    depth: float | None,
    duration: str | None,
    at: float | None,
    rebound: float,
    volatility: float,
    force: bool,
) -> None:
    """Generate a seeded crash scenario (candles, mark and funding files).

    Refuses to overwrite existing files unless --force.
    """
    from liqbt.data.synth import generate, max_drawdown, write

    try:
        if not force:
            # before generating: say at once that the output is taken
            from liqbt.data.loaders import companion_paths

            taken = [p for p in companion_paths(out) if p.exists()]
            if taken:
                raise ValidationError([f"{p}: already exists; refusing to overwrite it (pass "
                                       "--force)" for p in taken])
        result = generate(
            scenario,
            seed=seed,
            days=days,
            start=start,
            timeframe=timeframe,
            start_price=start_price,
            depth=depth,
            duration=duration,
            at=at,
            rebound=rebound,
            volatility=volatility,
        )
        paths = write(result, out, force=force)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from exc
    c = result.candles
    click.echo(
        f"{scenario}: {len(c)} bars {c.index[0].isoformat()} -> {c.index[-1].isoformat()}, "
        f"max drawdown {max_drawdown(c):.2%}"
    )
    for p in paths:
        click.echo(f"wrote {p}")


@data.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(choices.DATA_KINDS),
    default=None,
    help="Default: from the file name (-mark, -funding_rate, fundingRate).",
)
@click.option(
    "--fmt",
    default=None,
    help="Force a format (freqtrade-feather, freqtrade-json, binance, csv, parquet).",
)
@click.option("--timeframe", default=None, help="Declared bar length (default: inferred).")
def inspect(file: Path, kind: str | None, fmt: str | None, timeframe: str | None) -> None:
    """Load and validate FILE and print a summary (rows, span, timeframe, gaps, worst bar)."""
    from liqbt.data.loaders import load_candles, load_funding, timeframe_label

    name = file.name.lower()
    if kind is None:
        kind = "funding" if ("funding_rate" in name or "fundingrate" in name) else None
    try:
        if kind == "funding":
            frame = load_funding(file, fmt=fmt)
        else:
            frame = load_candles(file, kind=kind, fmt=fmt, timeframe=timeframe)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"file:      {file}")
    click.echo(f"kind:      {kind or frame.attrs.get('kind')}")
    click.echo(f"rows:      {len(frame):,}")
    if frame.empty:
        return
    click.echo(f"first:     {frame.index[0].isoformat()}")
    click.echo(f"last:      {frame.index[-1].isoformat()}")
    from liqbt.data.quality import funding_rate_warnings, outlier_warnings

    if kind == "funding":
        r = frame["funding_rate"]
        click.echo(f"rate:      min {r.min():.6f}  mean {r.mean():.6f}  max {r.max():.6f}")
        for line in funding_rate_warnings("", frame):
            click.echo(f"warning:   {line.split(': ', 1)[-1]}")
        return
    tf = frame.attrs.get("timeframe")
    click.echo(f"timeframe: {timeframe_label(tf) if tf is not None else '?'}")
    gaps = frame.attrs.get("gaps", [])
    click.echo(
        f"gaps:      {len(gaps)}" + (f" ({sum(g.missing for g in gaps)} bars)" if gaps else "")
    )
    for g in gaps[:10]:
        click.echo(f"  - {g}")
    if len(gaps) > 10:
        click.echo(f"  ... and {len(gaps) - 10} more")
    drop = frame["low"] / frame["open"] - 1.0
    worst = drop.idxmin()
    click.echo(f"max drop:  {drop.min():.2%} @ {worst.isoformat()} (single bar, low / open - 1)")
    for line in outlier_warnings("", frame):
        click.echo(f"warning:   {line.split(': ', 1)[-1]}")


@data.command("list")
@click.argument("folders", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_(folders: tuple[Path, ...], as_json: bool) -> None:
    """What data is where: symbol, kind, timeframe, range and gaps of every data file under
    FOLDERS (default: ./datasets if present, else the current folder)."""
    import json

    from liqbt.data.catalog import catalog

    roots = list(folders) or [Path("datasets") if Path("datasets").is_dir() else Path(".")]
    entries = catalog(roots)
    if as_json:
        click.echo(json.dumps({"files": [e.to_dict() for e in entries]}))
        return
    if not entries:
        click.echo(f"no data files under {', '.join(map(str, roots))}")
        return
    rows = [["symbol", "kind", "tf", "rows", "first (UTC)", "last (UTC)", "gaps", "file"]]
    for e in sorted(entries, key=lambda e: (e.symbol, str(e.path))):
        if e.error:
            rows.append([e.symbol, e.kind, "?", "-", "-", "-", "-", f"{e.path}  ERROR: {e.error}"])
            continue
        gaps = f"{e.gaps} ({e.missing_bars} bars)" if e.gaps else "0"
        rows.append([e.symbol, e.kind, e.timeframe or "-", f"{e.rows:,}", e.first or "-",
                     e.last or "-", gaps if e.kind != "funding" else "-", str(e.path)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
