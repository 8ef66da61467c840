"""Load candles, mark-price candles and funding rates into validated pandas frames.

Every loader returns a frame indexed by a UTC :class:`pandas.DatetimeIndex` named ``date`` holding
the candle **open** time (nanosecond resolution), with float64 columns:

* candles / mark: ``open, high, low, close, volume``;
* funding: ``funding_rate`` (one row per funding event).

Supported sources (detected from the file name, override with ``fmt=``):

``freqtrade-feather``  ``*.feather`` written by freqtrade ``download-data`` (``date`` + OHLCV)
``freqtrade-json``     ``*.json`` / ``*.json.gz``: array of ``[ms, o, h, l, c, v]`` rows
``binance``            data.binance.vision ``.zip`` (one ``.csv`` inside) or that ``.csv``:
                       klines / markPriceKlines (12 columns) or fundingRate
                       (``calc_time, funding_interval_hours, last_funding_rate``), with or without
                       a header row, open times in ms or µs (2025+ spot files)
``csv`` / ``parquet``  any table plus a ``columns`` mapping {our name: file column}; timestamps
                       as ISO-8601 strings or epoch s / ms / µs (detected by magnitude)

freqtrade funding files keep the rate in ``open`` (``-funding_rate`` name suffix) and mark files
carry a ``-mark`` suffix. Candle frames carry ``attrs["timeframe"]`` (:class:`pandas.Timedelta`),
``attrs["gaps"]`` (list of :class:`Gap`) and ``attrs["source"]``.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from liqbt.core.errors import ValidationError
from liqbt.data.validate import (
    CANDLE_COLUMNS,
    MAX_PER_KIND,
    Problems,
    validate_candles,
    validate_funding,
)

Kind = Literal["candles", "mark"]
GapMode = Literal["report", "fill", "refuse"]
TimeLike = str | datetime | pd.Timestamp | None

#: Accepted ``fmt=`` values.
FORMATS = ("freqtrade-feather", "freqtrade-json", "binance", "csv", "parquet")

BINANCE_KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
BINANCE_FUNDING_COLUMNS = ("calc_time", "funding_interval_hours", "last_funding_rate")

# fallbacks tried (case-insensitively) when a generic file has no mapping for our column name
_DATE_ALIASES = ("date", "timestamp", "time", "datetime", "open_time", "ts")
_FUNDING_ALIASES = ("funding_rate", "fundingrate", "rate", "last_funding_rate", "open")


@dataclass(frozen=True)
class Gap:
    """A run of missing bars.

    Attributes
    ----------
    start
        Open time of the first missing bar.
    end
        Open time of the next bar present in the data (exclusive end of the hole).
    missing
        Number of missing bars.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    missing: int

    def __str__(self) -> str:
        return f"{self.missing} bar(s) missing from {self.start.isoformat()} (next bar {self.end})"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

_TF_RE = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_TF_UNITS = {"s": "s", "m": "min", "h": "h", "d": "D", "w": "W"}


def parse_timeframe(value: str | pd.Timedelta) -> pd.Timedelta:
    """Turn ``"5m"``, ``"1h"``, ``"1d"`` (exchange style) or any pandas offset into a Timedelta.

    ``"m"`` means minutes here (as on every exchange); months are not a fixed length and are
    refused.
    """
    if isinstance(value, pd.Timedelta):
        td = value
    else:
        text = str(value).strip()
        m = _TF_RE.match(text)
        if m:
            td = pd.Timedelta(int(m.group(1)), unit=_TF_UNITS[m.group(2)])
        else:
            try:
                td = pd.Timedelta(text)
            except ValueError as exc:
                raise ValidationError([f"timeframe {value!r} is not understood ({exc})"]) from exc
    if td <= pd.Timedelta(0):
        raise ValidationError([f"timeframe {value!r} must be positive"])
    return td


def timeframe_label(td: pd.Timedelta) -> str:
    """``Timedelta('5min') -> "5m"`` (exchange style label, the inverse of parse_timeframe)."""
    seconds = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def to_utc(value: TimeLike) -> pd.Timestamp | None:
    """Parse a date/time as UTC (naive values are taken as UTC, aware ones converted).

    Raises
    ------
    ValidationError
        For text that is not a date (``"yesterday"``, ``"2021-13-01"``).
    """
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            [f"{value!r} is not a date/time (use YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC): {exc}"]
        ) from None
    if ts is pd.NaT:
        raise ValidationError([f"{value!r} is not a date/time (use YYYY-MM-DD, UTC)"])
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def epoch_to_datetime(values: np.ndarray) -> pd.DatetimeIndex:
    """Epoch numbers in s, ms, µs or ns (detected per value by magnitude) to UTC datetimes.

    Present-day epochs are ~1.7e9 s, 1.7e12 ms, 1.7e15 µs: thresholds at 1e11 / 1e14 / 1e17
    separate the units for any date between 1973 and 5138. The conversion goes through integer
    microseconds so millisecond epochs stay exact (float64 ns would round to 256 ns).
    """
    v = np.asarray(values, dtype="float64")
    a = np.abs(v)
    to_us = np.select([a < 1e11, a < 1e14, a < 1e17], [1e6, 1e3, 1.0], 1e-3)
    us = np.rint(v * to_us)
    bad = ~np.isfinite(us) | (np.abs(us) > 9.2e15)
    ns = np.where(bad, 0, us).astype("int64") * 1000
    out = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")
    if bad.any():
        out = out.where(~bad, pd.NaT)
    return out


def _to_index(raw: pd.Series) -> pd.DatetimeIndex:
    """Parse a timestamp column of any flavour (datetime, epoch number, ISO text) to UTC ns."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        idx = pd.DatetimeIndex(raw)
        idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
        return idx.as_unit("ns")
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return epoch_to_datetime(raw.to_numpy(dtype="float64", na_value=np.nan))
    num = pd.to_numeric(raw, errors="coerce")
    present = raw.notna()
    # mostly numbers: an epoch column with a few broken cells (those become NaT and are reported)
    if present.any() and num[present].notna().sum() * 2 >= present.sum():
        return epoch_to_datetime(num.to_numpy(dtype="float64", na_value=np.nan))
    parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    return pd.DatetimeIndex(parsed).as_unit("ns")


def _numeric(raw: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _columns_problem(source: str, found: list[str], wanted: list[str], hint: str = "") -> None:
    raise ValidationError(
        [f"column set {found} lacks required column(s) {wanted}" + (f" ({hint})" if hint else "")],
        source=source,
    )


# --------------------------------------------------------------------------------------------
# format detection and raw readers: every reader returns a DataFrame of raw columns named with
# OUR names (date, open, ..., funding_rate) in file row order, not yet validated.
# --------------------------------------------------------------------------------------------


def _is_funding_name(path: Path) -> bool:
    name = path.name.lower()
    return "funding_rate" in name or "fundingrate" in name


def _open_text(path: Path) -> io.TextIOBase:
    """The text of a ``.csv``, ``.csv.gz`` or the single ``.csv`` inside a Binance ``.zip``."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(b"PK"):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise ValidationError(
                    [f"zip holds {len(names)} .csv files {names}, expected exactly one"],
                    source=str(path),
                )
            data = zf.read(names[0])
        return io.StringIO(data.decode("utf-8"))
    if magic.startswith(b"\x1f\x8b"):
        return io.StringIO(gzip.decompress(path.read_bytes()).decode("utf-8"))
    return io.StringIO(path.read_text(encoding="utf-8"))


def _looks_like_binance(first_line: str) -> bool:
    head = first_line.strip().lower()
    if "open_time" in head or "calc_time" in head:
        return True
    fields = head.split(",")
    numeric = all(re.fullmatch(r"-?[0-9.eE+-]+", f.strip() or "x") for f in fields)
    return numeric and len(fields) in (len(BINANCE_KLINE_COLUMNS), len(BINANCE_FUNDING_COLUMNS))


def detect_format(path: str | Path) -> str:
    """Guess the file format from its name (and first line for ``.csv``); see :data:`FORMATS`."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".feather", ".arrow", ".ipc")):
        return "freqtrade-feather"
    if name.endswith((".json", ".json.gz")):
        return "freqtrade-json"
    if name.endswith(".zip"):
        return "binance"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        first = _open_text(p).readline()
        return "binance" if _looks_like_binance(first) else "csv"
    raise ValidationError(
        [f"cannot tell the format from the file name; pass fmt= one of {FORMATS}"],
        source=str(path),
    )


def _read_freqtrade_feather(path: Path) -> pd.DataFrame:
    df = pd.read_feather(path)
    wanted = ["date", *CANDLE_COLUMNS]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        _columns_problem(str(path), list(df.columns), missing, "freqtrade feather layout")
    return df[wanted]


def _read_freqtrade_json(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows = json.loads(raw)
    if not isinstance(rows, list):
        raise ValidationError(
            [f"expected a JSON array of rows, got {type(rows).__name__}"], source=str(path)
        )
    # one pass to find malformed rows so the vectorised path below can trust the shape
    problems = Problems()
    widths = [len(r) if isinstance(r, list) else -1 for r in rows]
    bad = np.flatnonzero(np.asarray(widths, dtype="int64") != 6)
    problems.add_rows(
        "column set",
        bad,
        lambda i: (
            f"row {i}: has {widths[i]} fields {rows[i]!r:.80}, expected 6 "
            "(rule: [open_time_ms, open, high, low, close, volume])"
        ),
    )
    problems.raise_if_any(str(path))
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype="float64") for c in ["date", *CANDLE_COLUMNS]})
    # object array keeps non-numbers (e.g. "abc", null) so they are reported, not crashed on
    frame = pd.DataFrame(rows, columns=["date", *CANDLE_COLUMNS])
    return frame


def _read_binance(path: Path) -> tuple[pd.DataFrame, bool]:
    """Raw frame with our names and whether the file is a fundingRate file."""
    text = _open_text(path)
    first = text.readline()
    text.seek(0)
    header = 0 if re.search(r"[a-df-zA-DF-Z_]", first) else None
    ncols = len(first.split(","))
    funding = "calc_time" in first or (header is None and ncols == len(BINANCE_FUNDING_COLUMNS))
    names = BINANCE_FUNDING_COLUMNS if funding else BINANCE_KLINE_COLUMNS
    if ncols != len(names):
        raise ValidationError(
            [f"first line has {ncols} columns, expected {len(names)} {list(names)}"],
            source=str(path),
        )
    df = pd.read_csv(text, header=header, names=list(names), usecols=range(len(names)))
    if funding:
        return df.rename(columns={"calc_time": "date", "last_funding_rate": "funding_rate"})[
            ["date", "funding_rate"]
        ], True
    return df.rename(columns={"open_time": "date"})[["date", *CANDLE_COLUMNS]], False


def _read_generic(
    path: Path, fmt: str, columns: Mapping[str, str] | None, funding: bool
) -> pd.DataFrame:
    df = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(_open_text(path))
    wanted = ["date", "funding_rate"] if funding else ["date", *CANDLE_COLUMNS]
    lower = {str(c).lower(): c for c in df.columns}
    mapping = dict(columns or {})
    unknown = [k for k in mapping if k not in wanted]
    if unknown:
        raise ValidationError(
            [f"columns mapping has unknown key(s) {unknown}; keys must be among {wanted}"],
            source=str(path),
        )
    selected: dict[str, pd.Series] = {}
    missing: list[str] = []
    for ours in wanted:
        if ours in mapping:
            theirs = mapping[ours]
            if theirs not in df.columns:
                missing.append(f"{ours}->{theirs}")
                continue
            selected[ours] = df[theirs]
            continue
        aliases = _DATE_ALIASES if ours == "date" else _FUNDING_ALIASES if funding else (ours,)
        hit = next((lower[a] for a in aliases if a in lower), None)
        if hit is None:
            missing.append(ours)
        else:
            selected[ours] = df[hit]
    if missing:
        _columns_problem(
            str(path), [str(c) for c in df.columns], missing, "pass columns={ours: theirs}"
        )
    return pd.DataFrame(selected)


def _read_raw(
    path: Path, fmt: str | None, columns: Mapping[str, str] | None, funding: bool
) -> pd.DataFrame:
    """The raw table of any supported file; any reader failure (empty, truncated, wrong
    format, undecodable text...) becomes a :class:`ValidationError` naming the file."""
    if not path.exists():
        raise ValidationError(["file does not exist"], source=str(path))
    if path.is_dir():
        raise ValidationError(["is a folder, expected a data file"], source=str(path))
    try:
        return _read_raw_unchecked(path, fmt, columns, funding)
    except ValidationError:
        raise
    except Exception as exc:  # pyarrow, json, zip, csv and decoding errors all land here
        raise ValidationError([_read_problem(path, fmt, exc)], source=str(path)) from None


def _read_problem(path: Path, fmt: str | None, exc: Exception) -> str:
    """One line saying why a file could not be read at all."""
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    kind = fmt or (detect_format(path) if path.suffix else "data")
    if size == 0:
        return f"the file is empty (0 bytes); expected a {kind} file"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if kind == "freqtrade-feather":
        return (f"not a readable Arrow/feather file ({size:,} bytes: truncated, or not "
                f"Arrow): {detail}")
    return f"cannot read it as {kind} ({size:,} bytes): {type(exc).__name__}: {detail}"


def _read_raw_unchecked(
    path: Path, fmt: str | None, columns: Mapping[str, str] | None, funding: bool
) -> pd.DataFrame:
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValidationError([f"unknown fmt {fmt!r}; expected one of {FORMATS}"], str(path))
    if fmt in ("csv", "parquet"):
        return _read_generic(path, fmt, columns, funding)
    if fmt == "binance":
        df, is_funding = _read_binance(path)
        if is_funding != funding:
            what = "a fundingRate file" if is_funding else "a klines file"
            use = "load_funding" if is_funding else "load_candles"
            raise ValidationError([f"this is {what}; use {use}()"], source=str(path))
        return df
    df = _read_freqtrade_feather(path) if fmt == "freqtrade-feather" else _read_freqtrade_json(path)
    if funding:
        # freqtrade keeps the funding rate in the 'open' column
        return pd.DataFrame({"date": df["date"], "funding_rate": df["open"]})
    return df


# --------------------------------------------------------------------------------------------
# timeframe, gaps, range, resample
# --------------------------------------------------------------------------------------------


def infer_timeframe(frame: pd.DataFrame | pd.DatetimeIndex) -> pd.Timedelta:
    """The bar length: the most common spacing between consecutive open times.

    The mode (not the minimum) is used so a single misplaced bar or a hole does not decide it.

    Raises
    ------
    ValidationError
        With fewer than two rows.
    """
    index = frame if isinstance(frame, pd.DatetimeIndex) else frame.index
    if len(index) < 2:
        raise ValidationError(["need at least 2 rows to infer the timeframe"])
    diffs = np.diff(index.as_unit("ns").asi8)
    diffs = diffs[diffs > 0]
    if len(diffs) == 0:
        raise ValidationError(["all timestamps are equal; cannot infer the timeframe"])
    values, counts = np.unique(diffs, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


def find_gaps(index: pd.DatetimeIndex, timeframe: pd.Timedelta) -> list[Gap]:
    """Every hole longer than one bar in a sorted index, as :class:`Gap` records."""
    if len(index) < 2:
        return []
    step = timeframe.value
    values = index.as_unit("ns").asi8
    diffs = np.diff(values)
    where = np.flatnonzero(diffs > step)
    return [
        Gap(
            start=index[i] + timeframe,
            end=index[i + 1],
            missing=int((diffs[i] - 1) // step),
        )
        for i in where
    ]


def fill_gaps(frame: pd.DataFrame, timeframe: pd.Timedelta | None = None) -> pd.DataFrame:
    """Insert flat bars (open = high = low = close = previous close, volume 0) into holes.

    Flat zero-volume bars are what an exchange shows during a halt: no trading, the last price
    holds. Bars whose timestamps are off the grid are kept as they are.
    """
    tf = timeframe or infer_timeframe(frame)
    if frame.empty:
        return frame
    grid = pd.date_range(frame.index[0], frame.index[-1], freq=tf, name="date")
    full = frame.reindex(grid.union(frame.index))
    full.index.name = "date"
    close = full["close"].ffill()
    missing = full["open"].isna()
    for col in ("open", "high", "low", "close"):
        full[col] = full[col].where(~missing, close)
    full["volume"] = full["volume"].where(~missing, 0.0)
    full.attrs = dict(frame.attrs)
    return full


def select_range(frame: pd.DataFrame, start: TimeLike = None, end: TimeLike = None) -> pd.DataFrame:
    """Rows with ``start <= date < end`` (UTC strings or datetimes; either bound optional)."""
    lo, hi = to_utc(start), to_utc(end)
    mask = np.ones(len(frame), dtype=bool)
    if lo is not None:
        mask &= frame.index >= lo
    if hi is not None:
        mask &= frame.index < hi
    out = frame[mask]
    out.attrs = dict(frame.attrs)
    return out


def resample(
    frame: pd.DataFrame,
    timeframe: str | pd.Timedelta,
    source_timeframe: pd.Timedelta | None = None,
    drop_incomplete: bool = False,
) -> pd.DataFrame:
    """Aggregate OHLCV bars to a coarser timeframe (open first, high max, low min, close last,
    volume sum), labelled by the coarse bar's open time. Coarse bins with no source bar are
    dropped (they stay gaps).

    Parameters
    ----------
    frame
        Candle frame as returned by :func:`load_candles`.
    timeframe
        Target bar length, e.g. ``"1h"``; must be a whole multiple of the source timeframe.
    source_timeframe
        Source bar length; inferred when omitted.
    drop_incomplete
        Drop coarse bars that do not contain every source bar (e.g. a partial last hour).

    Raises
    ------
    ValidationError
        When the target is finer than, or not a multiple of, the source timeframe.
    """
    target = parse_timeframe(timeframe)
    src = source_timeframe or frame.attrs.get("timeframe") or infer_timeframe(frame)
    if target < src:
        raise ValidationError(
            [f"cannot resample {timeframe_label(src)} bars to finer {timeframe_label(target)}"]
        )
    if target.value % src.value:
        raise ValidationError(
            [
                f"target timeframe {timeframe_label(target)} is not a whole multiple of the "
                f"source {timeframe_label(src)}"
            ]
        )
    # bins anchored at the Unix epoch so 1h/4h/1d bars start on round UTC hours/days
    grouped = frame.resample(target, origin="epoch", label="left", closed="left")
    out = grouped.agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    counts = grouped["close"].count()
    keep = counts > 0
    if drop_incomplete:
        keep &= counts == target.value // src.value
    out = out[keep.to_numpy()].astype("float64")
    out.index.name = "date"
    out.attrs = {**frame.attrs, "timeframe": target, "gaps": find_gaps(out.index, target)}
    return out


# --------------------------------------------------------------------------------------------
# public loaders
# --------------------------------------------------------------------------------------------


def load_candles(
    path: str | Path,
    kind: Kind | None = None,
    *,
    fmt: str | None = None,
    columns: Mapping[str, str] | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    timeframe: str | pd.Timedelta | None = None,
    gaps: GapMode = "report",
) -> pd.DataFrame:
    """Load and validate OHLCV candles (trade or mark price) from any supported file.

    Parameters
    ----------
    path
        The file (see the module docstring for formats).
    kind
        ``"candles"`` or ``"mark"``; inferred from a ``-mark`` / ``markPriceKlines`` name when
        omitted. Both are validated the same way (mark files have zero volume); the kind is
        recorded in ``attrs["kind"]``.
    fmt
        Force a format from :data:`FORMATS` instead of detecting it.
    columns
        For ``csv`` / ``parquet``: mapping from our names (``date, open, high, low, close,
        volume``) to the file's column names; unmapped names are matched case-insensitively.
    start, end
        Keep ``start <= date < end`` (UTC). The whole file is validated regardless.
    timeframe
        Declared bar length (``"5m"``); inferred from the data when omitted.
    gaps
        ``"report"``: list holes in ``attrs["gaps"]``; ``"fill"``: insert flat zero-volume bars
        at the previous close; ``"refuse"``: raise :class:`ValidationError` naming each hole.

    Returns
    -------
    pandas.DataFrame
        Index ``date`` (UTC open time), float64 ``open, high, low, close, volume``.

    Raises
    ------
    ValidationError
        Listing every problem found in the file (capped per kind), see
        :func:`liqbt.data.validate.validate_candles`.
    """
    p = Path(path)
    source = str(p)
    if kind is None:
        lname = p.name.lower()
        kind = "mark" if ("-mark" in lname or "markprice" in lname) else "candles"
    if kind not in ("candles", "mark"):
        raise ValidationError([f"kind must be 'candles' or 'mark', got {kind!r}"], source)
    if gaps not in ("report", "fill", "refuse"):
        raise ValidationError([f"gaps must be 'report', 'fill' or 'refuse', got {gaps!r}"], source)
    if fmt in (None, "freqtrade-feather", "freqtrade-json") and _is_funding_name(p):
        raise ValidationError(["this is a funding-rate file; use load_funding()"], source)
    raw = _read_raw(p, fmt, columns, funding=False)
    index = _to_index(raw["date"])
    arrays = {c: _numeric(raw[c]) for c in CANDLE_COLUMNS}
    validate_candles(
        index, arrays, source=source, raw={c: raw[c] for c in CANDLE_COLUMNS}, raw_dates=raw["date"]
    )
    frame = pd.DataFrame(arrays, index=index.rename("date"))
    frame = select_range(frame, start, end)
    tf = parse_timeframe(timeframe) if timeframe is not None else None
    if tf is None:
        tf = infer_timeframe(frame) if len(frame) >= 2 else None
    holes = find_gaps(frame.index, tf) if tf is not None else []
    if holes and gaps == "refuse":
        problems = Problems(cap=MAX_PER_KIND)
        for g in holes:
            problems.add("gap", f"gap: {g} (rule: contiguous {timeframe_label(tf)} bars)")
        problems.raise_if_any(source)
    if holes and gaps == "fill":
        frame = fill_gaps(frame, tf)
    frame.attrs = {
        "source": source,
        "kind": kind,
        "timeframe": tf,
        "gaps": holes,
        "filled": gaps == "fill" and bool(holes),
    }
    return frame


def load_funding(
    path: str | Path,
    *,
    fmt: str | None = None,
    columns: Mapping[str, str] | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    max_abs: float = 0.05,
) -> pd.DataFrame:
    """Load and validate funding-rate events.

    Funding times are rounded to the nearest second: exchanges (and freqtrade files) stamp the
    events with a few milliseconds of jitter (``00:00:00.007``). Rounding keeps the real funding
    time (events are not snapped to 00/08/16 UTC, since some markets settle every 4 h or 1 h)
    while making them align exactly with bar open times.

    Parameters
    ----------
    path
        freqtrade ``*-funding_rate.*`` file (rate in ``open``), Binance ``fundingRate`` zip/csv,
        or a generic csv/parquet (``columns={"date": ..., "funding_rate": ...}``).
    fmt, columns, start, end
        As in :func:`load_candles`.
    max_abs
        Largest plausible |rate| per event (default 0.05 = 5 %); larger ones are errors.

    Returns
    -------
    pandas.DataFrame
        Index ``date`` (UTC funding time), one float64 column ``funding_rate``.
    """
    p = Path(path)
    source = str(p)
    raw = _read_raw(p, fmt, columns, funding=True)
    index = _to_index(raw["date"])
    rate = _numeric(raw["funding_rate"])
    validate_funding(
        index, rate, source=source, raw=raw["funding_rate"], raw_dates=raw["date"], max_abs=max_abs
    )
    index = index.round("s")
    dup = np.flatnonzero(index.duplicated())
    if len(dup):
        problems = Problems()
        problems.add_rows(
            "duplicate",
            dup,
            lambda i: (
                f"row {i} ({index[i].isoformat()}): column 'date' duplicates another event "
                "after rounding to the second (rule: one event per time)"
            ),
        )
        problems.raise_if_any(source)
    frame = pd.DataFrame({"funding_rate": rate}, index=index.rename("date"))
    frame = select_range(frame, start, end)
    frame.attrs = {"source": source, "kind": "funding"}
    return frame


def load_market_window(
    market: Any, start: TimeLike = None, end: TimeLike = None, data: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """The candles, mark and funding of one configured market between ``start`` and ``end``.

    ``market`` is a run config's market (``symbol``, ``candles``, ``mark``, ``funding``
    paths); ``data`` is an already loaded store with ``get(kind, path, start, end)`` (the
    executor's, so a batch reads each file once) or ``None`` to read the files. Both engines
    load their markets here, so they see the same windows. An empty candle window is an
    error naming the market, its file and the window.
    """

    def get(kind: str, path: Any) -> pd.DataFrame:
        if data is not None:
            return data.get(kind, path, start, end)
        if kind == "funding":
            return load_funding(path, start=start, end=end)
        return load_candles(path, kind=kind, start=start, end=end)

    candles = get("candles", market.candles)
    if candles.empty:
        raise ValidationError(
            [f"{market.symbol}: no candles in {market.candles} between "
             f"{start or 'the start'} and {end or 'the end'}"]
        )
    mark = get("mark", market.mark) if market.mark is not None else None
    funding = get("funding", market.funding) if market.funding is not None else None
    return candles, mark, funding


# --------------------------------------------------------------------------------------------
# writers (freqtrade layout, which every loader above reads back)
# --------------------------------------------------------------------------------------------


def _write(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # pandas 3 stores DataFrame.attrs in feather/parquet metadata; keep files free of it so the
    # bytes depend on the data only (the bundled dataset is checked byte for byte)
    table.attrs = {}
    name = path.name.lower()
    if not name.endswith((".feather", ".parquet", ".csv")):
        raise ValidationError(["output must end in .feather, .parquet or .csv"], source=str(path))
    from liqbt.outputs import atomic_replace

    # temp file + rename: an interrupted write never leaves a truncated data file behind
    with atomic_replace(path) as tmp:
        if name.endswith(".feather"):
            table.to_feather(tmp, compression="zstd")
        elif name.endswith(".parquet"):
            table.to_parquet(tmp, index=False, compression="zstd")
        else:
            out = table.copy()
            out["date"] = out["date"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n")


def save_candles(frame: pd.DataFrame, path: str | Path) -> None:
    """Write candles in freqtrade layout (``date`` column + OHLCV; feather zstd, parquet, csv)."""
    table = frame[list(CANDLE_COLUMNS)].astype("float64").reset_index()
    table["date"] = table["date"].dt.tz_convert("UTC").dt.as_unit("ms")
    _write(table, Path(path))


def save_funding(frame: pd.DataFrame, path: str | Path) -> None:
    """Write funding events in freqtrade layout (rate in ``open``; other price columns 0)."""
    rate = frame["funding_rate"].to_numpy(dtype="float64")
    zeros = np.zeros(len(rate))
    table = pd.DataFrame(
        {
            "date": frame.index.tz_convert("UTC").as_unit("ms"),
            "open": rate,
            "high": zeros,
            "low": zeros,
            "close": zeros,
            "volume": zeros,
        }
    )
    _write(table, Path(path))


def companion_paths(path: str | Path) -> tuple[Path, Path, Path]:
    """``FILE`` -> (``FILE``, ``FILE-mark``, ``FILE-funding_rate``), freqtrade naming.

    >>> [p.name for p in companion_paths("btcusdt-5m.feather")]
    ['btcusdt-5m.feather', 'btcusdt-5m-mark.feather', 'btcusdt-5m-funding_rate.feather']
    """
    p = Path(path)
    suffix = "".join(p.suffixes[-1:])
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    return p, p.with_name(f"{stem}-mark{suffix}"), p.with_name(f"{stem}-funding_rate{suffix}")
