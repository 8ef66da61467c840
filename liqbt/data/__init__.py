"""Market data: loaders, validation, synthetic scenarios and the Binance archive downloader.

The names below are the public API; importing this package pulls pandas (not backtrader).
"""

from __future__ import annotations

from liqbt.data.loaders import (
    FORMATS,
    Gap,
    companion_paths,
    detect_format,
    fill_gaps,
    find_gaps,
    infer_timeframe,
    load_candles,
    load_funding,
    parse_timeframe,
    resample,
    save_candles,
    save_funding,
    select_range,
)

__all__ = [
    "FORMATS",
    "Gap",
    "companion_paths",
    "detect_format",
    "fill_gaps",
    "find_gaps",
    "infer_timeframe",
    "load_candles",
    "load_funding",
    "parse_timeframe",
    "resample",
    "save_candles",
    "save_funding",
    "select_range",
]
