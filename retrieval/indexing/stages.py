"""The per-photo stages of indexing, each a small object with a name, what it needs and what it adds.

A stage reads what earlier stages put on the ``Photo`` (``needs``, attribute names) and adds
to it: model inputs, or metadata fields (``adds``: a stored record lacking one of them owes
the stage, and the next run gives it). Stages are isolated from each other by ``run_stages``:

- a **required** stage (reading the bytes, decoding, the model's preprocessing) failing means
  the photo can't be used: it is rejected with a reason and nothing more is done with it;
- an **optional** stage (photo facts, the perceptual hash, regions, and later OCR words or
  captions) failing is recorded on the photo (``Photo.failed``, stored as ``failed_stages``) and
  the photo is indexed with what the other stages gave; the next run retries that stage only.

The same stage objects run on this process's threads or on Ray workers (``runner.py``,
``cluster.py``): a stage is written once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..photos.facts import MARKER as FACTS_MARKER
from ..photos.facts import with_file_time
from ..photos.images import ImageRejected, SkipReason, decode_image, read_file_bytes
from ..photos.near_duplicates import HASH_FIELD, perceptual_hash
from .photo import Photo, content_id, failed_stage_names

if TYPE_CHECKING:
    from ..embedder import Embedder
    from ..text.captions import TransformersCaptioner
    from ..text.ocr import OcrReader

log = logging.getLogger(__name__)


class Stage:
    name: str = ""
    needs: tuple[str, ...] = ()  # attributes of the Photo an earlier stage (or the reader) set
    adds: tuple[str, ...] = ()  # metadata fields this stage gives a record
    required: bool = False  # failing rejects the photo (else it is recorded, and the photo kept)
    decode_at: tuple[int, int] | None = None  # the least size it needs the photo decoded at (None: any)

    def run(self, photo: Photo) -> None:
        raise NotImplementedError

    def owed_by(self, metadata: dict[str, Any]) -> bool:
        """Whether a stored record still needs this stage: it lacks a field the stage adds."""
        return any(name not in metadata for name in self.adds)

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


def run_stages(photo: Photo, stages: Sequence[Stage]) -> Photo:
    """Run ``stages`` on ``photo`` in order, each isolated from the others (see the module's notes)."""
    for stage in stages:
        if photo.finished_early:
            break
        missing = next((need for need in stage.needs if getattr(photo, need) is None), None)
        if missing is not None:
            why = f"no {missing} to work from"
            if stage.required:
                photo.rejected = ImageRejected(SkipReason.UNREADABLE, why)
            else:
                photo.failed[stage.name] = why
            continue
        started = time.perf_counter()
        try:
            stage.run(photo)
        except ImageRejected as exc:
            _failed(photo, stage, exc)
        except Exception as exc:  # one odd file (a decoder bug, a model's edge case) must not stop the run
            log.debug("stage %s failed on %s", stage.name, photo.where, exc_info=True)
            _failed(photo, stage, ImageRejected(SkipReason.CORRUPT, f"{type(exc).__name__}: {exc}"))
        photo.timings[stage.name] = photo.timings.get(stage.name, 0.0) + time.perf_counter() - started
    photo.data, photo.decoded = None, None  # what the writer needs is on the photo now
    return photo


def _failed(photo: Photo, stage: Stage, problem: ImageRejected) -> None:
    if stage.required:
        photo.rejected = problem
    else:
        photo.failed[stage.name] = problem.detail or str(problem)


# -- reading -------------------------------------------------------------------------


class ReadFile(Stage):
    """The file's bytes, size, time and content id. ``stored_at``: where bytes with this id are
    stored already (then nothing more is done with them), or None."""

    name, needs, required = "read", ("path",), True

    def __init__(self, max_file_bytes: int, stored_at: Callable[[str], str | None] | None = None):
        self.max_file_bytes, self.stored_at = max_file_bytes, stored_at

    def run(self, photo: Photo) -> None:
        try:
            stat = photo.path.stat()
            data = read_file_bytes(photo.path, self.max_file_bytes)
        except OSError as exc:
            raise ImageRejected(SkipReason.UNREADABLE, exc.strerror or str(exc)) from None
        photo.size, photo.mtime = stat.st_size, stat.st_mtime
        if not data:
            raise ImageRejected(SkipReason.EMPTY)
        photo.data, photo.id = data, content_id(data)
        if self.stored_at is not None:
            photo.duplicate_of = self.stored_at(photo.id)


class Decode(Stage):
    """The photo decoded upright, at about ``draft`` (a JPEG decodes at a reduced scale) or full size."""

    name, needs, required = "decode", ("data",), True

    def __init__(self, max_image_pixels: int, draft: tuple[int, int] | None):
        self.max_image_pixels, self.draft = max_image_pixels, draft

    def run(self, photo: Photo) -> None:
        name = photo.path.name if photo.path is not None else Path(photo.where).name
        decoded = decode_image(photo.data, self.max_image_pixels, draft=self.draft, name=name)
        photo.decoded, photo.width, photo.height = decoded, decoded.width, decoded.height


class Preprocess(Stage):
    """The model's input for the whole photo."""

    name, needs, required = "preprocess", ("decoded",), True

    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def run(self, photo: Photo) -> None:
        photo.pixels = self.embedder.preprocess_image(photo.decoded.image)


# -- optional analyses ---------------------------------------------------------------


class PhotoFacts(Stage):
    """When, where and with what it was taken (EXIF; the file's time when EXIF has no date)."""

    name, needs, adds = "facts", ("decoded",), (FACTS_MARKER,)

    def run(self, photo: Photo) -> None:
        photo.fields.update(with_file_time(photo.decoded.read_facts(), photo.mtime))


class PerceptualHash(Stage):
    """The 64-bit hash near-duplicates are found by."""

    name, needs, adds = "phash", ("decoded",), (HASH_FIELD,)

    def run(self, photo: Photo) -> None:
        photo.fields[HASH_FIELD] = perceptual_hash(photo.decoded.image)


class OcrWords(Stage):
    """The words in the photo, their boxes and confidence (``text/ocr.py``)."""

    name, needs = "ocr", ("decoded",)

    def __init__(self, reader: OcrReader):
        from ..text.ocr import DETECT_SIDE, OCR_COUNT_FIELD

        self.reader, self.adds, self.decode_at = reader, (OCR_COUNT_FIELD,), (DETECT_SIDE, DETECT_SIDE)

    def run(self, photo: Photo) -> None:
        from ..text.ocr import ocr_fields

        decoded = photo.decoded
        photo.fields.update(ocr_fields(self.reader.read(decoded.image, decoded.width, decoded.height),
                                       self.reader.looks))

    def owed_by(self, metadata: dict[str, Any]) -> bool:
        """Also a photo read before with fewer looks than this reader's (OCR_CRAFT turned on later)."""
        from ..text.ocr import looks_of

        return super().owed_by(metadata) or not set(self.reader.looks) <= looks_of(metadata)


class Caption(Stage):
    """A sentence a model writes about the photo (``text/captions.py``)."""

    name, needs = "caption", ("decoded",)

    def __init__(self, captioner: TransformersCaptioner):
        from ..text.captions import CAPTION_SIDE, CAPTIONED_BY_FIELD

        self.captioner, self.adds, self.decode_at = captioner, (CAPTIONED_BY_FIELD,), (CAPTION_SIDE, CAPTION_SIDE)

    def run(self, photo: Photo) -> None:
        from ..text.captions import caption_fields

        [caption] = self.captioner.caption([photo.decoded.image])
        photo.fields.update(caption_fields(caption, self.captioner.name))


# -- the stage lists -----------------------------------------------------------------


def analyses(ocr: OcrReader | None = None, captioner: TransformersCaptioner | None = None) -> list[Stage]:
    """The optional stages every indexed photo gets (``ocr``: read its words too; ``captioner``:
    caption it too)."""
    return [PhotoFacts(), PerceptualHash(), *([OcrWords(ocr)] if ocr is not None else []),
            *([Caption(captioner)] if captioner is not None else [])]


def decode_size(stages: Sequence[Stage], least: tuple[int, int] | None) -> tuple[int, int] | None:
    """The draft size to decode at: ``least``, or larger where a stage needs more (None: full size)."""
    sizes = [stage.decode_at for stage in stages if stage.decode_at is not None]
    if least is None:
        return None
    return max([least, *sizes], key=lambda size: size[0] * size[1])


def photo_stages(embedder: Embedder, *, max_image_pixels: int, max_file_bytes: int,
                 stored_at: Callable[[str], str | None] | None = None, ocr: OcrReader | None = None,
                 captioner: TransformersCaptioner | None = None) -> list[Stage]:
    """What a new photo goes through before its vector is made (here, or on a cluster worker)."""
    optional = analyses(ocr, captioner)
    return [ReadFile(max_file_bytes, stored_at), Decode(max_image_pixels, decode_size(optional, embedder.draft_size)),
            Preprocess(embedder), *optional]


def owed_stages(metadata: dict[str, Any], stages: Sequence[Stage]) -> list[Stage]:
    """Of the optional ``stages``, those a stored record still needs or says failed."""
    failed = failed_stage_names(metadata)
    return [stage for stage in stages if not stage.required
            and (stage.name in failed or stage.owed_by(metadata))]


# -- what a run spent ----------------------------------------------------------------


@dataclass
class StageCount:
    photos: int = 0
    failed: int = 0
    seconds: float = 0.0


class StageTimes:
    """Per stage: photos it ran on, how many it failed on, seconds spent (summed over threads)."""

    def __init__(self) -> None:
        self.by_stage: dict[str, StageCount] = {}

    def count(self, photo: Photo) -> None:
        last = next(reversed(photo.timings), None)
        for name, seconds in photo.timings.items():
            failed = name in photo.failed or (photo.rejected is not None and name == last)
            self.add(name, seconds, photos=1, failed=int(failed))

    def add(self, name: str, seconds: float, *, photos: int, failed: int = 0) -> None:
        entry = self.by_stage.setdefault(name, StageCount())
        entry.photos += photos
        entry.failed += failed
        entry.seconds += seconds

    def to_dict(self) -> dict[str, dict[str, Any]]:
        total = sum(entry.seconds for entry in self.by_stage.values()) or 1.0
        return {name: {"photos": entry.photos, "failed": entry.failed, "seconds": round(entry.seconds, 3),
                       "share": round(entry.seconds / total, 3)}
                for name, entry in self.by_stage.items()}
