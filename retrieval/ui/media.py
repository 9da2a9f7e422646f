"""The app's own media folder: uploads, thumbnails, previews and starter photos.

The web server is allowed to serve this folder and nothing else, so every file a
page shows is a copy made here under a generated name (a content hash). An
original photo is never served from where it was indexed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from ..errors import RetrievalError
from ..photos.images import ImageRejected, SkipReason, decode_image, open_image_file, read_file_bytes
from ..indexing.photo import content_id

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = (320, 320)
MAP_THUMBNAIL_SIZE = (96, 96)  # a map draws many: a few kB each
PREVIEW_SIZE = (1024, 1024)
# The region that matched a search in amber, the lines of words that matched it in cyan.
BOX_COLOURS = {"region": (255, 196, 0), "words": (0, 210, 255)}
_SAVE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
                 "HEIF": ".heic", "AVIF": ".avif"}


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
        for folder in (self.uploads, self.starter, self.root / "thumbs", self.root / "previews", self.root / "map-thumbs",
                       self.root / "boxed"):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self.placeholder()  # made now, while there is room: later a full disk can't stop a search
        except OSError as exc:
            log.warning("could not make the 'file missing' picture: %s", exc)

    def thumbnail(self, record_id: str, source: SourceLookup) -> Path | None:
        return self._scaled(record_id, source, "thumbs", THUMBNAIL_SIZE)

    def map_thumbnail(self, record_id: str, source: SourceLookup) -> Path | None:
        return self._scaled(record_id, source, "map-thumbs", MAP_THUMBNAIL_SIZE)

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
        except (ImageRejected, OSError) as exc:
            log.warning("no %s for %s: %s", kind[:-1], source, exc)
            return None
        image.thumbnail(size)
        # A name of its own per writer: two searches may make the same thumbnail at once.
        partial = target.with_name(f"{target.stem}.{threading.get_ident()}.part")
        try:
            image.save(partial, "JPEG", quality=85)
            partial.replace(target)  # a half-written file is never served
        except OSError as exc:  # a full disk, a read-only folder: thumbnails are optional
            log.warning("could not write the %s of %s (%s); showing the photo without it",
                        kind[:-1], record_id[:12], exc.strerror or exc)
            with contextlib.suppress(OSError):
                partial.unlink()
            return None
        return target

    def with_boxes(self, picture: Path, boxes: list[tuple[list[int], str]], photo_width: int,
                   photo_height: int) -> Path:
        """A copy of a thumbnail or preview with boxes drawn on it: ``(box, kind)``, the box in the
        photo's pixels (the picture is the photo scaled down), the kind a key of ``BOX_COLOURS``.
        The picture itself on failure."""
        from PIL import Image, ImageDraw

        picture = Path(picture)
        if not boxes or not picture.is_relative_to(self.root) or photo_width <= 0 or photo_height <= 0:
            return picture
        drawn = hashlib.sha1(repr(sorted((kind, [int(v) for v in box]) for box, kind in boxes)).encode()).hexdigest()[:12]
        # Named by the folder too: a thumbnail and a preview of one photo share their stem.
        target = self.root / "boxed" / f"{picture.parent.name}-{picture.stem}-{drawn}{picture.suffix}"
        if target.is_file():
            return target
        try:
            with Image.open(picture) as opened:
                image = opened.convert("RGB")
            sx, sy = image.width / photo_width, image.height / photo_height
            line = max(2, round(min(image.size) / 100))
            draw = ImageDraw.Draw(image)
            for box, kind in boxes:
                left, top, right, bottom = box[0] * sx, box[1] * sy, box[2] * sx - 1, box[3] * sy - 1
                # A dark edge around a bright one: visible on light and dark photos alike.
                draw.rectangle((left - line, top - line, right + line, bottom + line), outline=(20, 20, 20), width=line)
                draw.rectangle((left, top, right, bottom), outline=BOX_COLOURS[kind], width=line)
            partial = target.with_name(f"{target.stem}.{threading.get_ident()}.part")
            image.save(partial, "JPEG", quality=88)
            partial.replace(target)
        except OSError as exc:
            log.warning("could not draw the matched boxes on %s (%s)", picture.name, exc)
            return picture
        return target

    def placeholder(self) -> Path:
        """A grey "file missing" picture for results whose photo can't be shown (made once)."""
        target = self.root / "missing.png"
        if not target.is_file():
            from PIL import Image, ImageDraw

            picture = Image.new("RGB", THUMBNAIL_SIZE, (225, 225, 225))
            ImageDraw.Draw(picture).text((THUMBNAIL_SIZE[0] // 2, THUMBNAIL_SIZE[1] // 2), "file missing",
                                         fill=(90, 90, 90), anchor="mm", font_size=28)
            partial = target.with_name(f"missing.{threading.get_ident()}.part")
            picture.save(partial, "PNG")
            partial.replace(target)
        return target

    def store_upload(self, source: Path, original_name: str, max_bytes: int) -> StoredUpload:
        """Check an uploaded file and keep a copy named by its content hash.

        Raises ImageRejected (with the reason) for files that are too big, not
        images, or over the pixel cap.
        """
        try:
            if source.stat().st_size > max_bytes:
                raise ImageRejected(SkipReason.FILE_TOO_BIG, f"over the {max_bytes // 1_000_000} MB upload limit")
        except OSError as exc:
            raise ImageRejected(SkipReason.UNREADABLE, exc.strerror or str(exc)) from None
        data = read_file_bytes(source, max_bytes)
        decoded = decode_image(data, self.max_image_pixels, name=original_name)
        suffix = _SAVE_FORMATS.get(decoded.format or "", ".img")
        target = self.uploads / f"{content_id(data)}{suffix}"  # the record id the indexer will give it
        if not target.exists():
            partial = target.with_name(f"{target.name}.{threading.get_ident()}.part")
            try:
                partial.write_bytes(data)
                partial.replace(target)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    partial.unlink()
                raise RetrievalError(f"Uploads can't be kept in {self.uploads} ({exc.strerror or exc}); "
                                     "free some disk space or set MEDIA_PATH to another folder.") from None
        return StoredUpload(target, Path(original_name).name)


def _is_safe_id(record_id: str) -> bool:
    """Record ids are hex digests; anything else must not become part of a path."""
    return bool(record_id) and all(c in "0123456789abcdef" for c in record_id)
