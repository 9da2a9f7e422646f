"""How much one record may hold, checked before anything is written to any backend.

Why: one photo's metadata that the engine can't apply breaks more than that photo.
Embedded Chroma writes a record to its log first and applies the log to its SQLite
metadata tables later; a record with more than about 5,400 list items or fields
(SQLite's limit of bound variables in one statement) can never be applied, and
every later read and write fails behind it. Milvus keeps a record's fields in one
JSON value of at most 64 KiB. So every record is cut to these limits, whatever
door it came in by (a metadata table, an upload, an import), and what was cut is
reported.
"""

from __future__ import annotations

import json
from typing import Any

MAX_FIELDS = 64  # metadata fields per record
MAX_LIST_ITEMS = 256  # tags, captions... per field
MAX_TEXT_CHARS = 4000  # characters of one text value (a description, one caption)
MAX_TAG_CHARS = 100  # characters of one tag
MAX_RECORD_BYTES = 48 * 1024  # the whole record as JSON, under Milvus' 64 KiB

_SHORT_ITEM_FIELDS = {"tags"}


def _cut_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit_to_limits(metadata: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The record cut to the limits, and what was cut, in words (empty when nothing was)."""
    notes: list[str] = []
    fitted: dict[str, Any] = {}
    keys = list(metadata)
    if len(keys) > MAX_FIELDS:
        notes.append(f"{len(keys)} fields, kept the first {MAX_FIELDS}")
        keys = keys[:MAX_FIELDS]
    for key in keys:
        value = metadata[key]
        if isinstance(value, str):
            if len(value) > MAX_TEXT_CHARS:
                notes.append(f"'{key}' has {len(value):,} characters, kept {MAX_TEXT_CHARS:,}")
            fitted[key] = _cut_text(value, MAX_TEXT_CHARS)
        elif isinstance(value, list):
            items = value
            if len(items) > MAX_LIST_ITEMS:
                notes.append(f"{len(items):,} {key}, kept the first {MAX_LIST_ITEMS}")
                items = items[:MAX_LIST_ITEMS]
            limit = MAX_TAG_CHARS if key in _SHORT_ITEM_FIELDS else MAX_TEXT_CHARS
            if any(len(str(item)) > limit for item in items):
                notes.append(f"{key} longer than {limit} characters were shortened")
            fitted[key] = [_cut_text(str(item), limit) for item in items]
        else:
            fitted[key] = value
    size = _json_size(fitted)
    if size > MAX_RECORD_BYTES:
        notes.append(f"the record was {size:,} bytes; the longest values were shortened to fit "
                     f"{MAX_RECORD_BYTES:,}")
        _shrink(fitted)
    return fitted, notes


def _json_size(metadata: dict[str, Any]) -> int:
    return len(json.dumps(metadata, ensure_ascii=False, default=str).encode())


def _shrink(metadata: dict[str, Any]) -> None:
    """Halve the largest value (a list loses its last items, a text its end) until the record fits."""
    while _json_size(metadata) > MAX_RECORD_BYTES:
        key = max(metadata, key=lambda k: _json_size({k: metadata[k]}))
        value = metadata[key]
        if isinstance(value, list) and len(value) > 1:
            metadata[key] = value[: len(value) // 2]
        elif isinstance(value, list):
            metadata[key] = [_cut_text(value[0], max(1, len(value[0]) // 2))] if value else []
        elif isinstance(value, str) and len(value) > 1:
            metadata[key] = _cut_text(value, len(value) // 2)
        else:
            del metadata[key]
