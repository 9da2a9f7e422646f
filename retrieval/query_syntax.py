"""Parsing what people type: rclip-style composed queries and filter expressions.

    '2:golden retriever' + ./pool.jpg - fruit

Terms are separated by a lone ``+`` or ``-`` (spaces around it); ``-`` makes
the term's weight negative. ``W:term`` sets a weight. A term that names an
existing file is an image; anything else is text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import RetrievalError
from .search import QueryTerm

_OPERATOR = re.compile(r"(?:^|\s)([+-])(?=\s|$)")
_WEIGHT = re.compile(r"^\s*(-?\d+(?:\.\d+)?|-?\.\d+)\s*:(.*)$", re.DOTALL)
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$")
_CHROMA_OPERATOR = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


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
    candidate = Path(piece.strip("'\"")).expanduser()
    if candidate.is_file():
        return QueryTerm("image", candidate, sign * weight)
    return QueryTerm("text", piece.strip("'\""), sign * weight)


def parse_filter(expression: str) -> tuple[str, Any]:
    """``photographer=Jane Doe`` or ``width>=1000`` -> (field, Chroma condition)."""
    match = _FILTER.match(expression)
    if not match or not match.group(3):
        raise RetrievalError(
            f"Filter '{expression}' is not of the form FIELD=VALUE (also !=, >, >=, <, <=), "
            "for example photographer='Jane Doe' or width>=1000."
        )
    key, operator, raw = match.groups()
    value: Any = raw.strip("'\"")
    if operator not in ("=", "!="):
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            raise RetrievalError(f"Filter '{expression}': {operator} needs a number.") from None
    return key, value if operator == "=" else {_CHROMA_OPERATOR[operator]: value}


def parse_filters(expressions: list[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for expression in expressions:
        key, condition = parse_filter(expression)
        if key in filters:
            raise RetrievalError(f"Filter field '{key}' is given twice.")
        filters[key] = condition
    return filters
