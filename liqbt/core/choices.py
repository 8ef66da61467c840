"""Every enumerated option of liqbt, defined once; config, CLI, core and bots import from here.

Pure: no imports beyond the standard library.
"""

from __future__ import annotations

#: Account position modes (one net position per symbol, or a long and a short leg).
POSITION_MODES: tuple[str, ...] = ("one-way", "hedge")
#: Margin modes of a position.
MARGIN_MODES: tuple[str, ...] = ("cross", "isolated")
#: Price path through a bar used to order fills, top-ups and liquidations.
INTRABAR_PATHS: tuple[str, ...] = ("heuristic", "pessimistic", "optimistic")
#: Price a liquidated trader is settled at.
SETTLEMENTS: tuple[str, ...] = ("bankruptcy", "liquidation_price")
#: Side of a DCA / hold bot.
DIRECTIONS: tuple[str, ...] = ("long", "short")
#: Side of a grid bot.
GRID_DIRECTIONS: tuple[str, ...] = ("long", "short", "neutral")
#: Grid line spacing.
SPACINGS: tuple[str, ...] = ("arithmetic", "geometric")
#: How a grid sizes its per-line quantity.
QUANTITY_RULES: tuple[str, ...] = ("levels", "reference")
#: What a grid does on a close outside its range.
OUT_OF_RANGE: tuple[str, ...] = ("stay", "stop")
#: DCA entry filters.
ENTRY_FILTERS: tuple[str, ...] = ("none", "rsi", "bollinger")
#: Synthetic scenarios of ``liqbt data synth`` (flash crash, slow grind, short squeeze, range).
SYNTH_SCENARIOS: tuple[str, ...] = ("flash-crash", "slow-grind", "short-squeeze", "range-chop")
#: Kinds of market-data file.
DATA_KINDS: tuple[str, ...] = ("candles", "mark", "funding")

__all__ = [
    "DATA_KINDS",
    "DIRECTIONS",
    "ENTRY_FILTERS",
    "GRID_DIRECTIONS",
    "INTRABAR_PATHS",
    "MARGIN_MODES",
    "OUT_OF_RANGE",
    "POSITION_MODES",
    "QUANTITY_RULES",
    "SETTLEMENTS",
    "SPACINGS",
    "SYNTH_SCENARIOS",
]
