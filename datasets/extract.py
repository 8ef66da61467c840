"""Reproduce the bundled real-data windows from the full freqtrade files they were cut from.

The files in ``datasets/`` are short windows of Binance USDT-M perpetual market data (trade
candles, mark-price candles, funding rates) cut out of larger freqtrade ``download-data`` files.
This script is the exact recipe: it reads each source file, keeps the rows with
``start <= date < end`` and writes them in the freqtrade feather layout (``date`` as UTC
milliseconds + ``open high low close volume``, zstd) under the names ``liqbt data download``
gives the same series. Run from the repository root::

    python datasets/extract.py --source PATH/TO/FREQTRADE/DATA [--out datasets]

``--source`` is the folder holding the source files under the relative paths listed in
:data:`WINDOWS` (the repository and commit each came from are in ``datasets/README.md``).
``tests/test_datasets.py`` runs this script and checks that it reproduces every bundled file
byte for byte (skipped when the source folder is absent).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Window:
    """One bundled file: where it comes from and which rows it keeps.

    Attributes
    ----------
    target
        Path of the bundled file, relative to ``datasets/``.
    source
        Path of the source file, relative to the ``--source`` folder.
    start, end
        UTC bounds, ``start <= date < end``.
    """

    target: str
    source: str
    start: str
    end: str


_HARTHOR = "harthor_marketlab"
_ROSHAN = "roshan7869_algotrading"
# 2025-10-10: BTC and ETH 5m trades, 1h mark, 8h funding, three weeks around the crash
_OCT_2025 = ("2025-10-01", "2025-10-22")
# 2020-03-12 (Black Thursday) and 2021-05-19: BTC 1h trades, 1h mark, 8h funding, whole month
_MAR_2020 = ("2020-03-01", "2020-04-01")
_MAY_2021 = ("2021-05-01", "2021-06-01")


def _trio(folder: str, symbol: str, timeframe: str, mark_timeframe: str, source: str,
          window: tuple[str, str]) -> tuple[Window, ...]:
    """Candles, mark and funding of one symbol and window (named as ``liqbt data download``
    names them; funding is cut from the source's 1h funding file)."""
    base = f"{source}/{symbol[:-4]}_USDT_USDT"
    return (
        Window(f"{folder}/{symbol}-{timeframe}.feather", f"{base}-{timeframe}-futures.feather",
               *window),
        Window(f"{folder}/{symbol}-{mark_timeframe}-mark.feather",
               f"{base}-{mark_timeframe}-mark.feather", *window),
        Window(f"{folder}/{symbol}-{timeframe}-funding_rate.feather",
               f"{base}-1h-funding_rate.feather", *window),
    )


WINDOWS: tuple[Window, ...] = (
    *_trio("2025-10", "BTCUSDT", "5m", "1h", _HARTHOR, _OCT_2025),
    *_trio("2025-10", "ETHUSDT", "5m", "1h", _HARTHOR, _OCT_2025),
    *_trio("2020-03", "BTCUSDT", "1h", "1h", _ROSHAN, _MAR_2020),
    *_trio("2021-05", "BTCUSDT", "1h", "1h", _ROSHAN, _MAY_2021),
)


def cut(source: Path, start: str, end: str) -> pd.DataFrame:
    """Rows of a freqtrade feather file with ``start <= date < end`` (UTC), dates in ms."""
    frame = pd.read_feather(source)
    dates = pd.to_datetime(frame["date"], utc=True)
    keep = (dates >= pd.Timestamp(start, tz="UTC")) & (dates < pd.Timestamp(end, tz="UTC"))
    out = frame.loc[keep, ["date", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    out["date"] = pd.to_datetime(out["date"], utc=True).dt.as_unit("ms")
    out = out.astype({c: "float64" for c in ("open", "high", "low", "close", "volume")})
    out.attrs = {}
    return out


def extract(source_dir: Path, out_dir: Path) -> list[Path]:
    """Write every :data:`WINDOWS` file under ``out_dir``; returns the paths written.

    Each file is written to a temporary name and renamed into place, so an interrupted run
    never leaves a truncated file behind.
    """
    missing = [w.source for w in WINDOWS if not (source_dir / w.source).is_file()]
    if missing:
        raise FileNotFoundError(f"{source_dir}: source file(s) missing: {', '.join(missing)}")
    written = []
    for w in WINDOWS:
        target = out_dir / w.target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        cut(source_dir / w.source, w.start, w.end).to_feather(tmp, compression="zstd")
        os.replace(tmp, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of the source files")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    try:
        paths = extract(args.source, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
