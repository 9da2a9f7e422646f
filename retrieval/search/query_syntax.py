"""Parsing what people type: rclip-style composed queries and filter expressions.

    '2:golden retriever' + ./pool.jpg - fruit

Terms are separated by a lone ``+`` or ``-`` (spaces around it); ``-`` makes
the term's weight negative. ``W:term`` sets a weight. A term that names an
existing file is an image; anything else is text.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path

from ..errors import RetrievalError
from ..store.filters import Compare
from ..photos.formats import IMAGE_EXTENSIONS
from .searcher import QueryTerm

_OPERATOR = re.compile(r"(?:^|\s)([+-])(?=\s|$)")
_WEIGHT = re.compile(r"^\s*(-?\d+(?:\.\d+)?|-?\.\d+)\s*:(.*)$", re.DOTALL)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$")


def parse_query(text: str | list[str]) -> list[QueryTerm]:
    """Turn a composed query into weighted text and image terms."""
    if isinstance(text, list):
        text = " ".join(text)
    text = text.strip()
    if not text:
        raise RetrievalError("The query is empty: type a few words, or give an image.")
    pieces = _OPERATOR.split(" " + text)
    # split() alternates: text, operator, text, operator, text...
    terms: list[QueryTerm] = []
    sign = 1.0
    for index, piece in enumerate(pieces):
        if index % 2 == 1:
            sign = -1.0 if piece == "-" else 1.0
            continue
        piece = piece.strip()
        if not piece:
            if index == 0:  # the query starts with an operator
                continue
            raise RetrievalError(f"'{text}': an operator (+ or -) must be followed by a term.")
        terms.append(_term(piece, sign))
        sign = 1.0
    if not terms:
        raise RetrievalError(f"'{text}' has no search terms.")
    return terms


def _term(piece: str, sign: float) -> QueryTerm:
    weight = 1.0
    match = _WEIGHT.match(piece)
    if match:
        weight, piece = float(match.group(1)), match.group(2).strip()
        if not piece:
            raise RetrievalError(f"'{match.group(0)}': a weight needs a term after the colon.")
    value = piece.strip("'\"")
    if _is_file(value):
        return QueryTerm("image", Path(value).expanduser(), sign * weight)
    if _looks_like_a_path(value):
        raise RetrievalError(f"The image {value} does not exist.{_did_you_mean(value)}")
    return QueryTerm("text", value, sign * weight)


def _looks_like_a_path(text: str) -> bool:
    """A single word ending in an image extension, or starting like a path (./ ../ / ~/)."""
    if " " in text.strip():
        return False
    return Path(text).suffix.lower() in IMAGE_EXTENSIONS or text.startswith(("./", "../", "/", "~/"))


def _did_you_mean(text: str) -> str:
    path = Path(text).expanduser()
    try:
        names = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
    except OSError:
        names = []
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f" Did you mean {path.parent / close[0]}?" if close else ""


def _is_file(text: str) -> bool:
    """Whether a term names an existing file (a long sentence is simply not a path)."""
    if "\n" in text or "\x00" in text:
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):  # e.g. "File name too long"
        return False


def _number(text: str) -> int | float | None:
    """``640``, ``1.5``, ``-2``, ``1e3`` as a number (integral values as int); None if not a number."""
    if not _NUMBER.match(text):
        return None
    value = float(text)
    if not math.isfinite(value):
        raise RetrievalError(f"{text} is not a usable number (too large or not finite).")
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def parse_filter(expression: str) -> tuple[str, Compare]:
    """``photographer=Jane Doe`` or ``width>=1000`` -> (field, condition).

    A value that reads as a number is compared as a number; with ``=`` and ``!=``
    it also matches the same text, so ``photo_id=640`` finds an id stored as text.
    """
    match = _FILTER.match(expression)
    if not match or not match.group(3):
        raise RetrievalError(
            f"Filter '{expression}' is not of the form FIELD=VALUE (also !=, >, >=, <, <=), "
            "for example photographer='Jane Doe' or width>=1000."
        )
    key, operator, raw = match.groups()
    quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\""
    text = raw.strip("'\"")
    number = None if quoted else _number(text)
    if operator not in ("=", "!=") and number is None:
        raise RetrievalError(f"Filter '{expression}': {operator} needs a number.")
    if number is None:
        return key, Compare(operator, text)
    return key, Compare(operator, number, text if operator in ("=", "!=") else None)


def parse_filters(expressions: list[str]) -> dict[str, Compare]:
    filters: dict[str, Compare] = {}
    for expression in expressions:
        key, condition = parse_filter(expression)
        if key in filters:
            raise RetrievalError(f"Filter field '{key}' is given twice.")
        filters[key] = condition
    return filters
