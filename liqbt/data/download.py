"""Download Binance's public market-data archive (data.binance.vision) with the stdlib only.

Files are fetched per month::

    {base}monthly/klines/{SYMBOL}/{tf}/{SYMBOL}-{tf}-{YYYY-MM}.zip
    {base}monthly/markPriceKlines/{SYMBOL}/{tf}/{SYMBOL}-{tf}-{YYYY-MM}.zip
    {base}monthly/fundingRate/{SYMBOL}/{SYMBOL}-fundingRate-{YYYY-MM}.zip

each with a ``.CHECKSUM`` sibling (``sha256  filename``). A zip is kept in the output directory
with its ``.CHECKSUM``; a later run that finds both and a matching hash does not touch the
network (the cache). After downloading, each series is merged, trimmed to the requested dates and
written as freqtrade-layout feather next to the zips, ready for :func:`liqbt.data.load_candles` /
:func:`liqbt.data.load_funding`::

    {SYMBOL}-{tf}.feather, {SYMBOL}-{tf}-mark.feather, {SYMBOL}-{tf}-funding_rate.feather
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from liqbt.data.loaders import (
    companion_paths,
    load_candles,
    load_funding,
    parse_timeframe,
    save_candles,
    save_funding,
    select_range,
    timeframe_label,
    to_utc,
)

DEFAULT_BASE_URL = "https://data.binance.vision/data/futures/um/"
SERIES = {"candles": "klines", "mark": "markPriceKlines", "funding": "fundingRate"}
_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed; the message names the URL / file and what went wrong."""


@dataclass(frozen=True)
class ArchiveFile:
    """One monthly archive file to fetch."""

    series: str  # "candles" | "mark" | "funding"
    month: str  # "YYYY-MM"
    url: str
    path: Path  # where the zip goes

    @property
    def checksum_path(self) -> Path:
        return self.path.with_name(self.path.name + ".CHECKSUM")


def _bounds(start: str, end: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Inclusive start; ``end`` is inclusive when it is a bare date (the whole day)."""
    lo, hi = to_utc(start), to_utc(end)
    assert lo is not None and hi is not None
    if len(str(end).strip()) <= 10:  # "2021-05-31": include that day
        hi = hi + pd.Timedelta("1D")
    if hi <= lo:
        raise DownloadError(f"--end {end} is not after --start {start}")
    return lo, hi


def months_between(start: str, end: str) -> list[str]:
    """``YYYY-MM`` of every month touched by ``[start, end]`` (end date inclusive)."""
    lo, hi = _bounds(start, end)
    last = hi - pd.Timedelta("1ns")
    periods = pd.period_range(lo.tz_localize(None), last.tz_localize(None), freq="M")
    return [str(p) for p in periods]


def plan(
    symbol: str,
    timeframe: str,
    start: str,
    end: str,
    out_dir: str | Path,
    *,
    mark: bool = False,
    funding: bool = False,
    base_url: str = DEFAULT_BASE_URL,
) -> list[ArchiveFile]:
    """Every archive file a download needs (candles always; mark / funding on request)."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    tf = timeframe_label(parse_timeframe(timeframe))
    out = Path(out_dir)
    wanted = ["candles"] + (["mark"] if mark else []) + (["funding"] if funding else [])
    files = []
    for series in wanted:
        for month in months_between(start, end):
            name = SERIES[series]
            if series == "funding":
                fname = f"{symbol}-fundingRate-{month}.zip"
                url = f"{base}monthly/{name}/{symbol}/{fname}"
            else:
                fname = f"{symbol}-{tf}-{month}.zip"
                url = f"{base}monthly/{name}/{symbol}/{tf}/{fname}"
                if series == "mark":
                    fname = f"{symbol}-{tf}-mark-{month}.zip"  # klines and mark share a name
            files.append(ArchiveFile(series, month, url, out / fname))
    return files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected_hash(checksum_text: str, source: str) -> str:
    parts = checksum_text.split()
    if not parts or len(parts[0]) != 64:
        raise DownloadError(f"unreadable checksum file {source}: {checksum_text[:80]!r}")
    return parts[0].lower()


def _fetch(url: str, what: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise DownloadError(
                f"HTTP 404 Not Found: {url} ({what} is not published: month not finished yet, "
                "symbol not listed then, or wrong symbol/timeframe)"
            ) from exc
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url} ({what})") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"no network or host unreachable while fetching {url} ({what}): {exc.reason}"
        ) from exc
    except (TimeoutError, ConnectionError) as exc:
        raise DownloadError(f"connection to {url} failed ({what}): {exc}") from exc


def fetch_file(item: ArchiveFile, *, timeout: float = 60.0) -> bool:
    """Fetch one archive zip unless a verified copy is cached.

    Returns
    -------
    bool
        ``True`` when the network was used, ``False`` on a cache hit.

    Raises
    ------
    DownloadError
        404 (names URL and month), checksum mismatch (names file, expected and actual hash;
        the bad file is deleted), unreachable host.
    """
    if item.path.exists() and item.checksum_path.exists():
        expected = _expected_hash(item.checksum_path.read_text(), str(item.checksum_path))
        if _sha256(item.path) == expected:
            return False
    what = f"{item.series} {item.month}"
    checksum_text = _fetch(item.url + ".CHECKSUM", f"checksum of {what}", timeout).decode()
    expected = _expected_hash(checksum_text, item.url + ".CHECKSUM")
    payload = _fetch(item.url, what, timeout)
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        item.path.unlink(missing_ok=True)
        item.checksum_path.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {item.path.name} ({item.url}): expected sha256 {expected}, "
            f"got {actual}"
        )
    item.path.parent.mkdir(parents=True, exist_ok=True)
    # write to a temporary name first so an interrupted run never leaves a half file as "cached"
    tmp = item.path.with_name(item.path.name + ".part")
    tmp.write_bytes(payload)
    tmp.replace(item.path)
    item.checksum_path.write_text(checksum_text)
    return True


def _merge_existing(
    target: Path, series: str, new: pd.DataFrame, timeframe: str
) -> pd.DataFrame:
    """``new`` merged into the rows of the existing ``target`` (new rows win on overlap)."""
    try:
        if series == "funding":
            old = load_funding(target)
        else:
            old = load_candles(target, kind=series)  # type: ignore[arg-type]
    except Exception as exc:
        raise DownloadError(
            f"{target} exists but cannot be read to merge into ({exc}); fix or move it, or "
            "pass --erase to replace it"
        ) from None
    if series != "funding" and len(old) > 1:
        old_tf = old.attrs.get("timeframe")
        if old_tf is not None and old_tf != parse_timeframe(timeframe):
            raise DownloadError(
                f"{target} holds {timeframe_label(old_tf)} bars, not {timeframe}; pass --erase "
                "to replace it"
            )
    combined = pd.concat([old, new])
    combined = combined[~combined.index.duplicated(keep="last")].sort_index()
    return combined


def download_binance(
    symbol: str,
    timeframe: str,
    start: str,
    end: str,
    out_dir: str | Path,
    *,
    mark: bool = False,
    funding: bool = False,
    base_url: str = DEFAULT_BASE_URL,
    on_file: Callable[[ArchiveFile, bool], None] | None = None,
    timeout: float = 60.0,
    erase: bool = False,
) -> dict[str, Path]:
    """Download, verify and merge Binance USDT-M archive files for ``[start, end]``.

    Parameters
    ----------
    symbol
        Exchange symbol, e.g. ``"BTCUSDT"``.
    timeframe
        Kline interval, e.g. ``"1m"``, ``"5m"``, ``"1h"``.
    start, end
        UTC dates; ``end`` is inclusive when given as a bare date.
    out_dir
        Where the zips (the cache) and the merged feather files go.
    mark, funding
        Also fetch mark-price klines / funding-rate history.
    base_url
        Archive root (default :data:`DEFAULT_BASE_URL`); tests point it at a local server.
    on_file
        Called after each file with ``(file, downloaded)`` (progress reporting).
    timeout
        Socket timeout per request, seconds.
    erase
        Replace existing merged files. By default (like freqtrade's ``download-data``) the
        new rows are merged into an existing file: rows outside the new range are kept,
        rows inside it are replaced by the downloaded ones, so a shorter second download
        never truncates candles, mark or funding.

    Returns
    -------
    dict
        ``{"candles": path, "mark": path, "funding": path}`` of the merged feather files
        written (only the series requested).
    """
    lo, hi = _bounds(start, end)
    items = plan(
        symbol, timeframe, start, end, out_dir, mark=mark, funding=funding, base_url=base_url
    )
    for item in items:
        used_network = fetch_file(item, timeout=timeout)
        if on_file is not None:
            on_file(item, used_network)
    tf = timeframe_label(parse_timeframe(timeframe))
    merged_paths = dict(
        zip(
            ("candles", "mark", "funding"),
            companion_paths(Path(out_dir) / f"{symbol}-{tf}.feather"),
            strict=True,
        )
    )
    written: dict[str, Path] = {}
    for series in ("candles", "mark", "funding"):
        parts = [i.path for i in items if i.series == series]
        if not parts:
            continue
        if series == "funding":
            frames = [load_funding(p, fmt="binance") for p in parts]
            save = save_funding
        else:
            frames = [
                load_candles(p, kind=series, fmt="binance", timeframe=timeframe)  # type: ignore[arg-type]
                for p in parts
            ]
            save = save_candles
        merged = select_range(pd.concat(frames).sort_index(), lo, hi)
        target = merged_paths[series]
        if target.exists() and not erase:
            merged = _merge_existing(target, series, merged, timeframe)
        save(merged[~merged.index.duplicated(keep="last")], target)
        written[series] = target
    return written
