"""Photo metadata tables (CSV, TSV, JSON, JSONL) joined to image files.

Column names follow the Unsplash Lite data set; common alternatives are accepted.
Rows are matched to files by file name, by file stem, or by a ``photo_id`` column.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Iterable

from ..errors import RetrievalError
from ..store.field_limits import fit_to_limits
from .facts import FACTS_FIELDS
from .tags import parse_tags

log = logging.getLogger(__name__)

_KEY_COLUMNS = ("filename", "file_name", "file", "image", "image_path", "path", "photo_id", "id")
_DESCRIPTION_COLUMNS = ("photo_description", "description", "caption", "ai_description", "title", "alt")
_URL_COLUMNS = ("photo_url", "url", "page_url", "source_url", "flickr_url", "coco_url")  # the source link
_IMAGE_URL_COLUMNS = ("photo_image_url", "image_url")
_TAG_COLUMNS = ("tags", "keywords")


_DELIMITERS = ",;\t|"


def printable(text: Any, limit: int = 40) -> str:
    """A column name or value fit for a message: binary garbage shown as "?", long text cut."""
    shown = "".join(c if c.isprintable() else "?" for c in str(text))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _decode(path: Path, name: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RetrievalError(f"Metadata file {name} does not exist.") from None
    except IsADirectoryError:
        raise RetrievalError(f"Metadata file {name} is a folder: give a CSV, TSV, JSON or JSONL file.") from None
    except OSError as exc:
        raise RetrievalError(f"Metadata file {name} can't be read ({exc.strerror or exc}). "
                             "Check its permissions, or copy it somewhere readable.") from None
    try:
        return raw.decode("utf-8-sig")  # the BOM Excel writes in "CSV UTF-8" is not part of a column name
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")  # Excel's other CSV; stray bytes become "?"


def _sniff_delimiter(text: str, suffixes: list[str]) -> str:
    if ".tsv" in suffixes or ".tsv000" in suffixes:
        return "\t"
    header = text.split("\n", 1)[0]
    try:
        return csv.Sniffer().sniff(header, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return max(_DELIMITERS, key=header.count) if any(d in header for d in _DELIMITERS) else ","


def _read_table(text: str, delimiter: str, problems: list[str]) -> list[dict[str, Any]]:
    """CSV/TSV rows as dicts; a row whose quoting or column count is off is reported by line."""
    previous_limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)  # a long description is not an error
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if not header:
            return []
        header = [name.strip() for name in header]
        rows: list[dict[str, Any]] = []
        line = reader.line_num
        for values in reader:
            first_line, line = line + 1, reader.line_num
            if not any(v.strip() for v in values):
                continue
            swallowed = line > first_line and any(
                part.count(delimiter) >= len(header) - 1 for v in values for part in v.split("\n")[1:])
            if swallowed:
                problems.append(f"lines {first_line}-{line}: an unclosed quote runs over several rows; "
                                "they were left out (check the quotes on the first of those lines)")
            elif len(values) != len(header):
                problems.append(f"line {first_line}: {len(values)} columns where the header has {len(header)}; "
                                "the row was left out")
            else:
                rows.append(dict(zip(header, values)))
        return rows
    except csv.Error as exc:
        raise RetrievalError(f"Could not read the table: {exc} (line {reader.line_num}).") from None
    finally:
        csv.field_size_limit(previous_limit)


def _read_rows(path: Path, problems: list[str], name: str) -> list[dict[str, Any]]:
    suffixes = [s.lower() for s in path.suffixes]
    text = _decode(path, name)
    try:
        if ".jsonl" in suffixes or ".ndjson" in suffixes:
            rows = []
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        problems.append(f"line {number}: not JSON ({exc.msg}); the row was left out")
            return [row for row in rows if isinstance(row, dict)]
        if ".json" in suffixes:
            data = json.loads(text)
            if isinstance(data, dict):  # {"photo_id": {...}, ...} or {"photos": [...]}
                lists = [v for v in data.values() if isinstance(v, list)]
                data = lists[0] if len(lists) == 1 else [
                    {"photo_id": key, **value} for key, value in data.items() if isinstance(value, dict)
                ]
            if not isinstance(data, list):
                raise RetrievalError("expected a JSON list of records.")
            return [row for row in data if isinstance(row, dict)]
        return _read_table(text, _sniff_delimiter(text, suffixes), problems)
    except json.JSONDecodeError as exc:
        raise RetrievalError(f"Could not read metadata file {name}: {exc}") from None
    except RetrievalError as exc:
        raise RetrievalError(f"Metadata file {name}: {exc}") from None


def _first(row: dict[str, Any], columns: Iterable[str]) -> Any:
    for column in columns:
        value = row.get(column)
        if value not in (None, ""):
            return value
    return None


_READ_COLUMNS = {*_KEY_COLUMNS, *_DESCRIPTION_COLUMNS, *_URL_COLUMNS, *_IMAGE_URL_COLUMNS, *_TAG_COLUMNS,
                 "photographer", "author", "artist", "photographer_first_name", "photographer_last_name",
                 "location", "photo_location_name", "photo_location_city", "photo_location_country"}
# What indexing and the photo itself say: a table's column of the same name never overwrites it.
PRODUCT_FIELDS = frozenset({"path", "filename", "width", "height", "size", "mtime", "source", "added_at", "phash",
                            "regions", "captions", "caption", "reembedded_at", "id", "score", *FACTS_FIELDS})


def field_name(column: str) -> str:
    """A column's name as a metadata field: lower case, words joined by "_" (``Image License`` ->
    ``image_license``), so every backend can filter on it."""
    return "_".join(re.findall(r"[a-z0-9]+", str(column).lower()))


def other_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The row's columns the product has no field for (``image_license``, ``date_captured``), kept as
    they are: plain values only, under a name every backend takes, never over a product field."""
    kept: dict[str, Any] = {}
    for column, value in row.items():
        name = field_name(column)
        if column in _READ_COLUMNS or not name or name in PRODUCT_FIELDS or name in _READ_COLUMNS:
            continue
        if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
            kept[name] = value
        elif isinstance(value, str) and value.strip():
            kept[name] = value.strip()
    return kept


def normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    """Map a table row to the product's metadata fields; other columns are kept as they are."""
    photographer = _first(row, ("photographer", "author", "artist"))
    if photographer is None:
        names = [row.get("photographer_first_name"), row.get("photographer_last_name")]
        photographer = " ".join(str(n).strip() for n in names if n not in (None, "")) or None
    location = _first(row, ("location", "photo_location_name"))
    if location is None:
        places = [row.get("photo_location_city"), row.get("photo_location_country")]
        location = ", ".join(str(p).strip() for p in places if p not in (None, "")) or None
    description = _first(row, _DESCRIPTION_COLUMNS)
    ai_description = _first(row, ("ai_description",))  # Unsplash's machine-written one, kept beside a human's
    metadata = {
        "photo_id": _first(row, ("photo_id",)),
        "location": location,
        "description": description,
        "ai_description": ai_description if ai_description != description else None,
        "photographer": photographer,
        "url": _first(row, _URL_COLUMNS),
        "image_url": _first(row, _IMAGE_URL_COLUMNS),
        "tags": parse_tags(_first(row, _TAG_COLUMNS)),
    }
    return {**other_columns(row), **{key: value for key, value in metadata.items() if value not in (None, "", [])}}


def merge_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rows about one photo (a COCO-style caption table has five) as one record: the
    first row's value of each field, every tag of every row, and, when the rows describe the
    photo differently, all those descriptions as ``captions`` (the first stays ``description``)."""
    if len(rows) == 1:
        return rows[0]
    merged: dict[str, Any] = {}
    descriptions: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key == "tags":
                merged["tags"] = list(dict.fromkeys([*merged.get("tags", []), *value]))
            elif key == "description":
                if value not in descriptions:
                    descriptions.append(value)
            else:
                merged.setdefault(key, value)
    if descriptions:
        merged["description"] = descriptions[0]
    if len(descriptions) > 1:
        merged["captions"] = descriptions
    return merged


class MetadataTable:
    """Look up a file's metadata by its name, its stem or its photo id.

    ``problems`` lists rows that could not be read (by line); :meth:`warnings`
    adds how many rows matched no photo, once the lookups are done.
    """

    def __init__(self, rows: Iterable[dict[str, Any]], problems: list[str] | None = None):
        self.problems = list(problems or [])
        self._by_key: dict[str, list[int]] = {}  # a photo's rows: all of them are merged
        self._rows: list[dict[str, Any]] = []
        self._keys: list[set[str]] = []  # each row's keys
        self.repeated = 0  # rows naming a photo an earlier row already named (merged into it)
        seen: dict[str, None] = {}  # every column, in the order first met
        kept: dict[str, None] = {}  # the columns kept as they are (a plain value at least once)
        for row in rows:
            seen.update(dict.fromkeys(row))
            number = len(self._rows)
            normalised = normalise_row(row)
            kept.update(dict.fromkeys(c for c in row if c not in _READ_COLUMNS and field_name(c) not in _READ_COLUMNS
                                      and field_name(c) in normalised))
            fitted, cut = fit_to_limits(normalised)
            if cut:
                name = next((str(row[c]) for c in _KEY_COLUMNS if row.get(c) not in (None, "")), "?")
                self.problems.append(f"row {number + 1} ({name[:80]}): {'; '.join(cut)}")
            self._rows.append(fitted)
            keys = set()
            for column in _KEY_COLUMNS:
                key = row.get(column)
                if key not in (None, ""):
                    name = Path(str(key)).name.lower()
                    keys.update((name, Path(name).stem))
            self.repeated += bool(keys) and all(key in self._by_key for key in keys)
            for key in keys:
                self._by_key.setdefault(key, []).append(number)
            self._keys.append(keys)
        self._matched: set[str] = set()  # keys that found a photo
        columns = list(seen)
        self.kept_columns = list(kept)
        self.left_out_columns = [c for c in columns if c not in _READ_COLUMNS and field_name(c) in PRODUCT_FIELDS]
        self.link_columns = [c for c in columns if c in ("flickr_url", "coco_url")]

    @classmethod
    def from_file(cls, path: Path, shown_as: str | None = None) -> "MetadataTable":
        """``shown_as``: the name messages give the file (an upload's own name, not the server's
        temporary copy of it)."""
        path = Path(path).expanduser()
        name = printable(shown_as, 120) if shown_as else str(path)
        problems: list[str] = []
        rows = _read_rows(path, problems, name)
        if not rows:
            detail = f" ({problems[0]})" if problems else ""
            raise RetrievalError(f"Metadata file {name} has no rows{detail}.")
        if not any(column in row for row in rows[:50] for column in _KEY_COLUMNS):
            columns = ", ".join(printable(column) for column in list(rows[0])[:8])
            raise RetrievalError(
                f"Metadata file {name} has no column naming the photo (one of {', '.join(_KEY_COLUMNS)}); "
                f"its columns are: {columns}. Is it separated by another character than the one detected?"
            )
        for problem in problems:
            log.warning("%s: %s", path.name, problem)
        return cls(rows, problems)

    def lookup(self, path: Path) -> dict[str, Any]:
        for key in (path.name.lower(), Path(path.name.lower()).stem):
            if key in self._by_key:
                self._matched.add(key)
                return merge_rows([self._rows[n] for n in self._by_key[key]])
        return {}

    def warnings(self) -> list[str]:
        unmatched = sum(1 for keys in self._keys if not keys & self._matched)
        notes = list(self.problems)
        if unmatched:
            notes.append(f"{unmatched} of {len(self._rows)} rows matched no photo (by file name, stem or photo id)")
        if self.repeated:
            notes.append(f"{self.repeated} rows name a photo that an earlier row already named; "
                         "they were merged (every description kept in captions, every tag kept)")
        if self.kept_columns:
            notes.append("columns kept as they are: " + ", ".join(
                f"{printable(c)}" + (f" (as {field_name(c)})" if field_name(c) != c else "") for c in self.kept_columns[:20])
                + (f" and {len(self.kept_columns) - 20} more" if len(self.kept_columns) > 20 else ""))
        if self.link_columns:
            notes.append(f"read as the source link: {', '.join(self.link_columns)}")
        if self.left_out_columns:
            notes.append("columns left out, named like what the photo itself says: "
                         + ", ".join(printable(c) for c in self.left_out_columns[:20]))
        return notes
