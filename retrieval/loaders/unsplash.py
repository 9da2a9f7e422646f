"""The Unsplash Lite data set: its TSV files and its photo URLs.

Layout (https://github.com/unsplash/datasets): ``photos.tsv*`` (one or more
shards) with one row per photo, and ``keywords.tsv*`` with one row per
(photo, keyword) and how sure each AI service was, or whether a user suggested it.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..errors import RetrievalError

DEFAULT_URL = "https://unsplash.com/data/lite/latest"
DEFAULT_MIN_CONFIDENCE = 50.0  # AI keyword confidence (0-100) needed to become a tag

csv.field_size_limit(sys.maxsize)  # descriptions and EXIF fields can be long


def _shards(folder: Path, name: str) -> list[Path]:
    found = [p for p in folder.rglob(f"{name}.*") if p.is_file() and
             (p.suffix.startswith((".tsv", ".csv")) or ".tsv" in p.name or ".csv" in p.name)]
    return sorted(found, key=lambda p: p.name)


def _rows(paths: list[Path]) -> Iterator[dict[str, str]]:
    for path in paths:
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle, delimiter="\t")


def _is_true(value: Any) -> bool:
    return str(value).strip().lower() in {"t", "true", "1", "yes"}


def _confidence(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def read_keywords(folder: Path, min_confidence: float) -> dict[str, list[str]]:
    """photo_id -> its keywords that a user suggested or an AI service was sure enough of."""
    tags: dict[str, list[str]] = {}
    for row in _rows(_shards(folder, "keywords")):
        keyword = (row.get("keyword") or "").strip().lower()
        if not keyword:
            continue
        confident = max(_confidence(row.get("ai_service_1_confidence")),
                        _confidence(row.get("ai_service_2_confidence"))) >= min_confidence
        if confident or _is_true(row.get("suggested_by_user")):
            photo_tags = tags.setdefault(row["photo_id"], [])
            if keyword not in photo_tags:
                photo_tags.append(keyword)
    return tags


def read_photos(folder: Path, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[dict[str, Any]]:
    """Every photo row of the data set, with a ``tags`` list from the keywords."""
    shards = _shards(folder, "photos")
    if not shards:
        raise RetrievalError(f"No photos.tsv* file in {folder}: is this the Unsplash Lite data set?")
    keywords = read_keywords(folder, min_confidence)
    photos = []
    for row in _rows(shards):
        photo_id = (row.get("photo_id") or "").strip()
        if not photo_id or not row.get("photo_image_url"):
            continue
        photos.append({**row, "photo_id": photo_id, "tags": keywords.get(photo_id, [])})
    return photos


def sized_image_url(url: str, width: int | None) -> str:
    """The photo's imgix URL at a bounded width (``None`` or 0: the original)."""
    if not width:
        return url
    parts = urlsplit(url)
    query = (parts.query + "&" if parts.query else "") + urlencode({"w": width, "fm": "jpg", "q": 85})
    return urlunsplit(parts._replace(query=query))
