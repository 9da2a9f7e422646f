"""The product's own filter types: what a search may ask of a record's metadata.

Callers (the CLI, the page, scripts) describe filters with these types or with
plain values; only the store translates them into its engine's syntax. A filter
value is always a value: a dict or any other structure is refused, so nobody can
smuggle an engine operator in through a text box or an API call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from ..errors import RetrievalError

Value = Union[str, int, float, bool]
OPERATORS = ("=", "!=", ">", ">=", "<", "<=")


@dataclass(frozen=True)
class Compare:
    """``field <op> value``. ``text`` is how a number was typed, so that ``=`` also
    matches a field stored as text (a photo id "640" as well as a width 640)."""

    op: str
    value: Value
    text: str | None = None

    def __post_init__(self):
        if self.op not in OPERATORS:
            raise RetrievalError(f"Unknown comparison '{self.op}': use one of {' '.join(OPERATORS)}.")
        _check_value(self.value)
        if self.op not in ("=", "!=") and (isinstance(self.value, bool) or not isinstance(self.value, (int, float))):
            raise RetrievalError(f"'{self.op}' compares numbers; {self.value!r} is not a number.")


@dataclass(frozen=True)
class OneOf:
    """The field equals any of ``values``."""

    values: tuple[Value, ...]

    def __post_init__(self):
        if not self.values:
            raise RetrievalError("A filter with a list of values needs at least one value.")
        for value in self.values:
            _check_value(value)


@dataclass(frozen=True)
class TagRule:
    """Records carrying at least ``at_least`` of ``tags`` (all of them by default)."""

    tags: tuple[str, ...]
    at_least: int

    @classmethod
    def all_of(cls, tags) -> "TagRule":
        return cls(tuple(tags), len(tuple(tags)))

    @classmethod
    def any_of(cls, tags) -> "TagRule":
        return cls(tuple(tags), 1)


@dataclass(frozen=True)
class AllOf:
    """The field meets every one of ``comparisons`` (a range: ``>= a`` and ``< b``)."""

    comparisons: tuple[Compare, ...]

    def __post_init__(self):
        if not self.comparisons or not all(isinstance(c, Compare) for c in self.comparisons):
            raise RetrievalError("A range filter needs at least one comparison.")

    @classmethod
    def between(cls, low: float | None = None, high: float | None = None) -> "AllOf":
        """``low <= field < high``; either end may be open."""
        parts = ([Compare(">=", low)] if low is not None else []) + ([Compare("<", high)] if high is not None else [])
        return cls(tuple(parts))


Condition = Union[Compare, OneOf, AllOf]


def _check_value(value: Any) -> None:
    if not isinstance(value, (str, int, float, bool)):
        raise RetrievalError(
            f"A filter value must be text or a number, not {type(value).__name__} ({str(value)[:60]})."
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise RetrievalError(f"A filter value must be a finite number, got {value}.")


def condition(value: Any) -> Condition:
    """A filter's condition from what a caller gave: a condition, a value or a list of values."""
    if isinstance(value, (Compare, OneOf, AllOf)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return OneOf(tuple(value))
    _check_value(value)
    return Compare("=", value)


def normalise(filters: dict[str, Any] | None) -> dict[str, Condition]:
    """Validate a ``{field: condition or value}`` mapping (field names are text)."""
    normalised: dict[str, Condition] = {}
    for field, value in (filters or {}).items():
        if not isinstance(field, str) or not field.strip() or field.startswith("$"):
            raise RetrievalError(f"'{field}' is not a field name.")
        normalised[field] = condition(value)
    return normalised
