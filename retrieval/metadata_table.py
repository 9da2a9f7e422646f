"""Photo metadata tables (CSV, TSV, JSON, JSONL) joined to image files.

Column names follow the Unsplash Lite data set; common alternatives are accepted.
Rows are matched to files by file name, by file stem, or by a ``photo_id`` column.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from .errors import RetrievalError

_KEY_COLUMNS = ("filename", "file_name", "file", "image", "image_path", "path", "photo_id", "id")
_DESCRIPTION_COLUMNS = ("photo_description", "description", "caption", "ai_description", "title", "alt")
_URL_COLUMNS = ("photo_url", "url", "page_url", "source_url")
_IMAGE_URL_COLUMNS = ("photo_image_url", "image_url")
_TAG_COLUMNS = ("tags", "keywords")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".jsonl" in suffixes or ".ndjson" in suffixes:
            with path.open(encoding="utf-8") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        if ".json" in suffixes:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):  # {"photo_id": {...}, ...} or {"photos": [...]}
                lists = [v for v in data.values() if isinstance(v, list)]
                data = lists[0] if len(lists) == 1 else [
                    {"photo_id": key, **value} for key, value in data.items() if isinstance(value, dict)
                ]
            if not isinstance(data, list):
                raise RetrievalError(f"{path}: expected a JSON list of records.")
            return [row for row in data if isinstance(row, dict)]
        delimiter = "\t" if ".tsv" in suffixes or ".tsv000" in suffixes else ","
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle, delimiter=delimiter))
    except FileNotFoundError:
        raise RetrievalError(f"Metadata file {path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise RetrievalError(f"Could not read metadata file {path}: {exc}") from None


def _first(row: dict[str, Any], columns: Iterable[str]) -> Any:
    for column in columns:
        value = row.get(column)
        if value not in (None, ""):
            return value
    return None


def parse_tags(value: Any) -> list[str]:
    """A list, a JSON list, or a comma-separated string -> lower-case unique tags."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text.strip("[]").replace("'", "").split(",")
        else:
            value = text.split(",")
    tags: list[str] = []
    for item in value:
        tag = " ".join(str(item).split()).lower()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    """Map a table row to the product's metadata fields."""
    photographer = _first(row, ("photographer", "author", "artist"))
    if photographer is None:
        names = [row.get("photographer_first_name"), row.get("photographer_last_name")]
        photographer = " ".join(str(n).strip() for n in names if n not in (None, "")) or None
    location = _first(row, ("location", "photo_location_name"))
    if location is None:
        places = [row.get("photo_location_city"), row.get("photo_location_country")]
        location = ", ".join(str(p).strip() for p in places if p not in (None, "")) or None
    metadata = {
        "photo_id": _first(row, ("photo_id",)),
        "location": location,
        "description": _first(row, _DESCRIPTION_COLUMNS),
        "photographer": photographer,
        "url": _first(row, _URL_COLUMNS),
        "image_url": _first(row, _IMAGE_URL_COLUMNS),
        "tags": parse_tags(_first(row, _TAG_COLUMNS)),
    }
    return {key: value for key, value in metadata.items() if value not in (None, "", [])}


class MetadataTable:
    """Look up a file's metadata by its name, its stem or its photo id."""

    def __init__(self, rows: Iterable[dict[str, Any]]):
        self._by_key: dict[str, dict[str, Any]] = {}
        for row in rows:
            metadata = normalise_row(row)
            for column in _KEY_COLUMNS:
                key = row.get(column)
                if key not in (None, ""):
                    name = Path(str(key)).name.lower()
                    self._by_key.setdefault(name, metadata)
                    self._by_key.setdefault(Path(name).stem, metadata)

    @classmethod
    def from_file(cls, path: Path) -> "MetadataTable":
        rows = _read_rows(Path(path).expanduser())
        if not rows:
            raise RetrievalError(f"Metadata file {path} has no rows.")
        return cls(rows)

    def lookup(self, path: Path) -> dict[str, Any]:
        name = path.name.lower()
        return self._by_key.get(name) or self._by_key.get(Path(name).stem) or {}
