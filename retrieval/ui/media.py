"""The app's own media folder: uploads, thumbnails, previews and starter photos.

The web server is allowed to serve this folder and nothing else, so every file a
page shows is a copy made here under a generated name (a content hash). An
original photo is never served from where it was indexed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from ..images import ImageRejected, SkipReason, decode_image, open_image_file
from ..ingest import content_id

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = (320, 320)
PREVIEW_SIZE = (1024, 1024)
_SAVE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


SourceLookup = Callable[[], "str | None"]


@dataclass
class StoredUpload:
    path: Path
    original_name: str


class MediaFolder:
    def __init__(self, root: Path, max_image_pixels: int):
        self.root = Path(root).resolve()
        self.max_image_pixels = max_image_pixels
        self.uploads = self.root / "uploads"
        self.starter = self.root / "starter"
        for folder in (self.uploads, self.starter, self.root / "thumbs", self.root / "previews"):
            folder.mkdir(parents=True, exist_ok=True)

    def thumbnail(self, record_id: str, source: SourceLookup) -> Path | None:
        return self._scaled(record_id, source, "thumbs", THUMBNAIL_SIZE)

    def preview(self, record_id: str, source: SourceLookup) -> Path | None:
        return self._scaled(record_id, source, "previews", PREVIEW_SIZE)

    def _scaled(self, record_id: str, find_source: SourceLookup, kind: str, size: tuple[int, int]) -> Path | None:
        """A JPEG copy of the record's photo no larger than ``size``, made once and kept.

        ``find_source`` gives the original file's path; it is only asked when no
        copy exists yet. None when the photo can't be read any more (moved or
        deleted since it was indexed): the caller shows the record without it.
        """
        if not _is_safe_id(record_id):
            return None
        target = self.root / kind / f"{record_id}.jpg"
        if target.is_file():
            return target
        source = find_source()
        if not source:
            return None
        try:
            image = open_image_file(Path(source), self.max_image_pixels, draft=size).image
        except ImageRejected as exc:
            log.warning("no %s for %s: %s", kind[:-1], source, exc)
            return None
        image.thumbnail(size)
        partial = target.with_suffix(".part")
        image.save(partial, "JPEG", quality=85)
        partial.replace(target)  # a half-written file is never served
        return target

    def store_upload(self, source: Path, original_name: str, max_bytes: int) -> StoredUpload:
        """Check an uploaded file and keep a copy named by its content hash.

        Raises ImageRejected (with the reason) for files that are too big, not
        images, or over the pixel cap.
        """
        size = source.stat().st_size
        if size > max_bytes:
            raise ImageRejected(SkipReason.FILE_TOO_BIG, f"over the {max_bytes // 1_000_000} MB upload limit")
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ImageRejected(SkipReason.UNREADABLE, str(exc)) from None
        decoded = decode_image(data, self.max_image_pixels)
        suffix = _SAVE_FORMATS.get(decoded.format or "", ".img")
        target = self.uploads / f"{content_id(data)}{suffix}"  # the record id the indexer will give it
        if not target.exists():
            partial = target.with_suffix(".part")
            partial.write_bytes(data)
            partial.replace(target)
        return StoredUpload(target, Path(original_name).name)


def _is_safe_id(record_id: str) -> bool:
    """Record ids are hex digests; anything else must not become part of a path."""
    return bool(record_id) and all(c in "0123456789abcdef" for c in record_id)
