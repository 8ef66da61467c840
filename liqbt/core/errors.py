"""One error type for every bad input: it carries all problems found, not just the first."""

from __future__ import annotations

from collections.abc import Iterable


class ValidationError(ValueError):
    """Bad input (config, tier table, data file, order).

    Parameters
    ----------
    problems
        One human-readable line per problem, each naming the source (file), the field, the value
        and the bound it breaks. All problems are collected before raising, so a user fixes a
        file in one pass.
    source
        Optional prefix (usually a file path) printed before the problems.
    """

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = head + self.problems[0]
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{head}{len(self.problems)} problems:\n{lines}"
        super().__init__(message)


def raise_if(problems: list[str], source: str | None = None) -> None:
    """Raise :class:`ValidationError` when ``problems`` is not empty."""
    if problems:
        raise ValidationError(problems, source)
