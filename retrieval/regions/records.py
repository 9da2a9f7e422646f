"""How a region is kept in the store: its own record, beside its photo's.

A region record's id is its photo's id and its place in the photo's list; its
metadata holds the photo's id and the box in pixels of the upright photo. The
photo's record says how many regions it was given (``REGION_COUNT_FIELD``),
written only once they are all stored, so a photo never promises regions it does
not have.
"""

from __future__ import annotations

from typing import Any

from ..store.contract import REGION_PHOTO_FIELD
from .proposals import Box

REGION_COUNT_FIELD = "regions"
_BOX_FIELDS = ("left", "top", "right", "bottom")


def needs_regions(record) -> bool:
    """Whether a photo's record (a ``StoredRecord``) is still to be given its regions."""
    return REGION_COUNT_FIELD not in record.metadata


def region_id(photo_id: str, number: int) -> str:
    return f"{photo_id}:r{number}"


def region_metadata(photo_id: str, number: int, box: Box) -> dict[str, Any]:
    return {REGION_PHOTO_FIELD: photo_id, "number": number, **dict(zip(_BOX_FIELDS, box.to_list()))}


def box_of(metadata: dict[str, Any]) -> Box:
    return Box(*(int(metadata[name]) for name in _BOX_FIELDS))
