"""What flows through the indexing pipeline: one photo, and what the stages found about it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..photos.images import ImageRejected

if TYPE_CHECKING:
    from ..photos.images import DecodedImage
    from ..regions.proposals import Box
    from ..store import StoredRecord

FAILED_STAGES_FIELD = "failed_stages"  # on a record: "stage: why" for each optional stage that failed


def content_id(data: bytes) -> str:
    """A record id is the SHA-256 of the file's bytes: same photo, same id."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Photo:
    """One photo on its way from a reader, through the stages and the embed step, to a writer.

    A reader fills in where it comes from (``path``, or ``record`` for photos read back from the
    store); each stage adds what it is there for. ``data`` and ``decoded`` are dropped once the
    stages ran, so a window of photos in flight holds model inputs, not whole decoded photos."""

    path: Path | None = None
    record: StoredRecord | None = None
    size: int = 0
    mtime: float = 0.0
    id: str = ""
    data: bytes | None = None
    decoded: DecodedImage | None = None
    width: int = 0
    height: int = 0
    pixels: np.ndarray | None = None  # the model's input for the whole photo
    fields: dict[str, Any] = field(default_factory=dict)  # what the stages add to the record's metadata
    boxes: list[Box] = field(default_factory=list)  # regions, in pixels of the upright photo
    region_pixels: list[np.ndarray] = field(default_factory=list)  # the model's input for each region
    rejected: ImageRejected | None = None  # a required stage failed: the photo can't be used
    failed: dict[str, str] = field(default_factory=dict)  # optional stage -> why it failed
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds spent on this photo
    duplicate_of: str | None = None  # a path (or URL): these bytes are stored or claimed already
    vector: np.ndarray | None = None  # embedded already (by a cluster worker)
    written: bool = False  # stored already, by the cluster worker that embedded it
    metadata: dict[str, Any] = field(default_factory=dict)  # what that worker stored with it

    @property
    def where(self) -> str:
        """The file (or, for a record without one, its URL or id) this photo is read from."""
        if self.path is not None:
            return str(self.path)
        metadata = self.record.metadata if self.record is not None else {}
        return str(metadata.get("path") or metadata.get("image_url") or metadata.get("url")
                   or (self.record.id if self.record is not None else ""))

    @property
    def finished_early(self) -> bool:
        """Nothing more to do for it: unusable, or its bytes are stored already."""
        return self.rejected is not None or self.duplicate_of is not None


def failure_notes(failed: dict[str, str]) -> list[str]:
    """``failed_stages`` as stored: "stage: why", one per failed stage."""
    return [f"{stage}: {why}" for stage, why in failed.items()]


def failure_notes_of(metadata: dict[str, Any]) -> list[str]:
    """A record's ``failed_stages`` as stored (one note, or none, as a list too)."""
    notes = metadata.get(FAILED_STAGES_FIELD) or []
    return [notes] if isinstance(notes, str) else list(notes)


def stage_of(note: str) -> str:
    """The stage a "stage: why" note is about."""
    return str(note).split(":", 1)[0].strip()


def failed_stage_names(metadata: dict[str, Any]) -> set[str]:
    """The stages a record says failed on it (retried by the next run)."""
    return {stage_of(note) for note in failure_notes_of(metadata)}
