"""Declared bot parameters: one record per parameter, validated all at once before any run.

Each bot lists its parameters as :class:`Param` records (``parameters`` class attribute). The
same declaration

* builds the backtrader ``params`` tuple (:func:`bt_params`),
* validates a config's ``[strategy]`` table (and every ``sweep --set strategy.X=...`` value) at
  load time with every problem in one list (:func:`validate`),
* validates again when the bot is constructed directly from Python,
* renders the README's parameter tables (:func:`markdown_table`; a test compares them).

Pure: no backtrader, pandas or click import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Accepted ``Param.type`` values.
TYPES: tuple[str, ...] = ("number", "int", "bool", "choice", "number_or_table")


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    Attributes
    ----------
    name
        Parameter name (the ``[strategy]`` key).
    type
        ``"number"`` (finite int or float), ``"int"`` (whole number; ``20.5`` is refused),
        ``"bool"``, ``"choice"`` (one of ``choices``) or ``"number_or_table"`` (a number or a
        ``{SYMBOL = number}`` table, every number checked against ``bounds``).
    default
        Value when absent. ``None`` means "not set" (the bot derives it, see ``default_text``).
    bounds
        ``(low, high)``, either ``None`` for unbounded; inclusive unless ``low_open`` /
        ``high_open``.
    unit
        Unit for the docs (``USDT``, ``%``, ``count``...).
    doc
        One-line meaning.
    choices
        Allowed values for ``type = "choice"``.
    required
        ``None`` is refused ("is required").
    default_text
        How the README shows the default when it is not a plain value.
    """

    name: str
    type: str
    default: Any = None
    bounds: tuple[float | None, float | None] = (None, None)
    unit: str = ""
    doc: str = ""
    choices: tuple[str, ...] = ()
    required: bool = False
    low_open: bool = False
    high_open: bool = False
    default_text: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"Param {self.name!r}: type {self.type!r} is not one of {TYPES}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"Param {self.name!r}: a choice needs choices")

    # --- rendering ----------------------------------------------------------------------
    def bound_text(self) -> str:
        """``">= 1"``, ``"> 0 and <= 100"`` or ``""``."""
        low, high = self.bounds
        parts = []
        if low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {high:g}")
        return " and ".join(parts)

    def unit_text(self) -> str:
        """The README's unit cell: the choices for a choice, else the unit."""
        if self.type == "choice":
            return " / ".join(self.choices)
        if self.type == "bool":
            return "bool"
        return self.unit

    def default_cell(self) -> str:
        """The README's default cell."""
        if self.default_text is not None:
            return self.default_text
        if self.required:
            return "required"
        if self.default is None:
            return "none"
        return str(self.default)

    # --- checking -----------------------------------------------------------------------
    def check(self, value: Any, prefix: str = "") -> list[str]:
        """Problems with ``value`` (empty when fine), each naming parameter, value and rule."""
        label = f"{prefix}{self.name} = {value!r}"
        if value is None:
            return [f"{prefix}{self.name} is required ({self.rule_text()})"] if self.required \
                else []
        if self.type == "bool":
            return [] if isinstance(value, bool) else [f"{label} must be true or false"]
        if self.type == "choice":
            if value in self.choices:
                return []
            return [f"{label} is not one of {', '.join(self.choices)}"]
        if self.type == "number_or_table" and isinstance(value, Mapping):
            if not value:
                return [f"{label} must be a number or a {{SYMBOL = number}} table, not empty"]
            out = []
            for key, item in value.items():
                out += self._check_number(item, f"{prefix}{self.name}.{key} = {item!r}")
            return out
        return self._check_number(value, label)

    def rule_text(self) -> str:
        """The rule a value must satisfy, for messages."""
        what = {"number": "a number", "int": "a whole number", "bool": "true or false",
                "choice": "one of " + ", ".join(self.choices),
                "number_or_table": "a number or a {SYMBOL = number} table"}[self.type]
        bound = self.bound_text()
        return f"{what} {bound}".strip() + (f" ({self.unit})" if self.unit else "")

    def _check_number(self, value: Any, label: str) -> list[str]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a whole number" if self.type == "int" else "a number"
            return [f"{label} must be {kind}" + (f" {self.bound_text()}" if self.bounds !=
                                                  (None, None) else "")]
        if not math.isfinite(value):
            return [f"{label} must be a finite number"]
        if self.type == "int" and float(value) != int(value):
            return [f"{label} must be a whole number"]
        low, high = self.bounds
        too_low = low is not None and (value <= low if self.low_open else value < low)
        too_high = high is not None and (value >= high if self.high_open else value > high)
        if too_low or too_high:
            return [f"{label} must be {self.bound_text()}"]
        return []

    def coerce(self, value: Any) -> Any:
        """A checked value in the bot's type (whole floats to ``int`` for ``"int"``)."""
        if self.type == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        return value


#: ``relations(values, prefix) -> problems``; ``values`` holds only the individually valid
#: parameters (defaults filled in, coerced), so a relation checks that its inputs are present.
Relations = Callable[[Mapping[str, Any], str], list[str]]


def validate(
    parameters: Sequence[Param],
    values: Mapping[str, Any],
    *,
    prefix: str = "",
    owner: str = "",
    relations: Relations | None = None,
) -> list[str]:
    """Every problem with ``values`` against ``parameters``, in declaration order.

    Parameters
    ----------
    parameters
        The declaration.
    values
        Given values (absent names take their default).
    prefix
        Put before each parameter name (``"strategy."`` in configs).
    owner
        Named in the unknown-parameter message (``GridStrategy``).
    relations
        Checks between parameters (``lower < upper``), see :data:`Relations`; they run even
        when other parameters are bad, so every problem is reported at once.
    """
    known = {p.name: p for p in parameters}
    problems = [
        f"{prefix}{key} = {value!r}: unknown parameter of {owner or 'the strategy'} "
        f"(known: {', '.join(known)})"
        for key, value in values.items() if key not in known
    ]
    valid: dict[str, Any] = {}
    for param in parameters:
        value = values.get(param.name, param.default)
        found = param.check(value, prefix)
        problems += found
        if not found:
            valid[param.name] = param.coerce(value)
    if relations is not None:
        problems += relations(valid, prefix)
    return problems


def resolved(parameters: Sequence[Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in and values coerced (``grids = 20.0`` -> ``20``)."""
    return {p.name: p.coerce(values.get(p.name, p.default)) for p in parameters}


def bt_params(parameters: Sequence[Param]) -> tuple[tuple[str, Any], ...]:
    """The backtrader ``params`` tuple of a declaration."""
    return tuple((p.name, p.default) for p in parameters)


def markdown_table(parameters: Sequence[Param]) -> str:
    """The README table: ``| parameter | unit | default | bounds | meaning |``."""
    lines = ["| parameter | unit | default | valid values | meaning |", "|---|---|---|---|---|"]
    for p in parameters:
        valid = {"choice": "listed", "bool": "true / false"}.get(p.type) or p.bound_text()
        lines.append(
            f"| `{p.name}` | {p.unit_text()} | {p.default_cell()} | {valid or 'any'} | {p.doc} |"
        )
    return "\n".join(lines)


__all__ = ["TYPES", "Param", "Relations", "bt_params", "markdown_table", "resolved", "validate"]
