"""What is wrong with a spec: :class:`Problem` (one finding, with where and what) and
:class:`SpecError` (all of them, one per line)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["UNSET", "Problem", "SpecError"]

class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


#: "No value was given" (distinct from an explicit null).
UNSET: Any = _Unset()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _show(value: Any) -> str:
    """``-1 (int)``, ``'fast' (str)``, ``null``: a value as a problem report shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({_type_name(value)})"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec.

    ``path`` is the key path (``""`` for the file as a whole), ``message`` what is wrong,
    ``value`` what was given (:data:`UNSET` when nothing was), ``allowed`` what would be
    accepted, ``suggestions`` close matches for a misspelling, ``line`` the 1-based line
    in the file and ``origin`` the command-line override that set the value, if any."""

    path: str
    message: str
    value: Any = UNSET
    allowed: str | None = None
    suggestions: tuple[str, ...] = ()
    line: int | None = None
    origin: str | None = None

    def __str__(self) -> str:
        parts = [f"{self.path}: {self.message}" if self.path else self.message]
        if self.value is not UNSET:
            parts.append(f"got {_show(self.value)}")
        if self.allowed:
            parts.append(f"allowed: {self.allowed}")
        text = "; ".join(parts)
        if self.suggestions:
            text += "; did you mean " + " or ".join(f"'{s}'" for s in self.suggestions) + "?"
        where = []
        if self.origin:
            where.append(f"from override '{self.origin}'")
        elif self.line is not None:
            where.append(f"line {self.line}")
        return text + (f" ({', '.join(where)})" if where else "")


class SpecError(ValueError):
    """A spec (or override) that can't be used. ``problems`` lists every problem found;
    ``str()`` shows them all, one per line."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return f"{where}invalid spec: {self.problems[0]}"
        lines = [f"{where}{len(self.problems)} problems in the spec:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._format()
