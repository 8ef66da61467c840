"""What market data is where: one entry per data file found under some folders.

Used by ``liqbt data list``. File names follow freqtrade / ``liqbt data download`` naming
(``BTCUSDT-5m.feather``, ``BTC_USDT_USDT-5m-futures.feather``, ``…-mark``, ``…-funding_rate``,
Binance ``BTCUSDT-1h-2021-05.zip``); the symbol comes from the name, the timeframe, range and
gaps from the data itself. A file that cannot be read is listed with the reason, never skipped
silently and never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from liqbt.core.errors import ValidationError
from liqbt.data.loaders import load_candles, load_funding, timeframe_label

#: File endings ``liqbt data list`` looks at.
DATA_SUFFIXES: tuple[str, ...] = (".feather", ".parquet", ".json", ".json.gz", ".csv", ".zip")
_TF = re.compile(r"^\d+[smhdw]$")


@dataclass(frozen=True)
class DataFile:
    """One data file and what it holds (``error`` set when it cannot be read)."""

    path: Path
    symbol: str
    kind: str  # candles | mark | funding
    timeframe: str | None = None
    rows: int = 0
    first: str | None = None
    last: str | None = None
    gaps: int = 0
    missing_bars: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"path": str(self.path), "symbol": self.symbol, "kind": self.kind,
                "timeframe": self.timeframe, "rows": self.rows, "first": self.first,
                "last": self.last, "gaps": self.gaps, "missing_bars": self.missing_bars,
                "error": self.error}


def describe_name(path: Path) -> tuple[str, str]:
    """``(symbol, kind)`` from a file name: ``BTC_USDT_USDT-5m-mark.feather`` ->
    ``("BTCUSDT", "mark")``."""
    name = path.name.lower()
    kind = ("funding" if ("funding_rate" in name or "fundingrate" in name)
            else "mark" if ("-mark" in name or "markprice" in name) else "candles")
    head = path.name.split("-")[0].split(".")[0]
    parts = [p for p in head.split("_") if p]
    if len(parts) == 3 and parts[1] == parts[2]:  # BTC_USDT_USDT: base_quote_settle
        parts = parts[:2]
    return "".join(parts).upper(), kind


def _iso(ts: object) -> str:
    return str(getattr(ts, "isoformat", lambda: ts)()).replace("+00:00", "Z")


def describe_file(path: Path) -> DataFile:
    """Load one file and summarise it (errors become ``DataFile.error``)."""
    symbol, kind = describe_name(path)
    try:
        if kind == "funding":
            frame = load_funding(path)
            tf = None
            gaps: list = []
        else:
            frame = load_candles(path, kind=kind)  # type: ignore[arg-type]
            tf_value = frame.attrs.get("timeframe")
            tf = timeframe_label(tf_value) if tf_value is not None else None
            gaps = frame.attrs.get("gaps", [])
    except ValidationError as exc:
        first = exc.problems[0] if exc.problems else str(exc)
        more = f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        return DataFile(path, symbol, kind, error=first + more)
    return DataFile(
        path, symbol, kind, tf, len(frame),
        _iso(frame.index[0]) if len(frame) else None,
        _iso(frame.index[-1]) if len(frame) else None,
        len(gaps), sum(g.missing for g in gaps),
    )


def find_data_files(folders: list[Path]) -> list[Path]:
    """Every data file under ``folders`` (recursively), sorted; hidden files skipped."""
    found: set[Path] = set()
    for folder in folders:
        if folder.is_file():
            found.add(folder)
            continue
        for p in folder.rglob("*"):
            if (p.is_file() and p.name.lower().endswith(DATA_SUFFIXES)
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts)):
                found.add(p)
    return sorted(found)


def catalog(folders: list[Path]) -> list[DataFile]:
    """:func:`describe_file` of every data file under ``folders``."""
    return [describe_file(p) for p in find_data_files(folders)]


__all__ = ["DATA_SUFFIXES", "DataFile", "catalog", "describe_file", "describe_name",
           "find_data_files"]
