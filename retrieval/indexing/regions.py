"""Giving indexed photos their regions: boxes proposed, their crops embedded by the photo
model, stored beside the photo, and only then the photo stamped with how many it has.

Batch by batch, like the photos themselves: a run killed mid-batch loses that batch
only; its photos carry no stamp yet, so the next run gives them their regions again
(clearing any half-written ones first), and a photo is never deleted before its
regions (``PhotoStore.delete``), so no region outlives its photo.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from ..photos.images import DEFAULT_MAX_FILE_BYTES, ImageRejected, decode_image, read_file_bytes
from ..store import PhotoStore, StoredRecord
from ..regions.proposals import Box, Proposer
from ..regions.records import REGION_COUNT_FIELD, needs_regions, region_id, region_metadata

if TYPE_CHECKING:
    from ..embedder import Embedder

log = logging.getLogger(__name__)

# Regions are cut from the photo decoded at about this size: a region a quarter of the photo
# wide still gives the model more pixels than it reads (224), at a fraction of a full decode.
REGION_DECODE = (896, 896)
MAX_WHOLE_SHARE = 0.9  # a box covering more of the photo than this adds nothing to its own vector
MIN_SIDE = 8  # pixels of the decoded photo: smaller boxes are noise
MIN_SIDE_SHARE = 0.04  # of the photo's shorter side: thinner boxes are edges and lines, not objects


@dataclass
class RegionReport:
    photos: int = 0  # photos given their regions in this run
    regions: int = 0  # region vectors embedded
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of photos left without


@dataclass
class _Cut:
    record: StoredRecord
    boxes: list[Box] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    problem: str = ""


def usable_boxes(boxes: Sequence[Box], width: int, height: int, limit: int) -> list[Box]:
    """The proposals worth a vector of their own: inside the photo, not (nearly) all of it."""
    kept, thinnest = [], MIN_SIDE_SHARE * min(width, height)
    for box in boxes:
        box = Box(max(0, box.left), max(0, box.top), min(width, box.right), min(height, box.bottom))
        thin = min(box.right - box.left, box.bottom - box.top) < thinnest
        if box.area and not thin and box.area <= MAX_WHOLE_SHARE * width * height and box not in kept:
            kept.append(box)
    return kept[:limit]


def cut_regions(image: Image.Image, width: int, height: int, proposer: Proposer, limit: int) -> tuple[list[Box], list[Image.Image]]:
    """Boxes (pixels of the ``width`` x ``height`` upright photo) and their crops from ``image``,
    the photo decoded at its own (maybe reduced) size."""
    scale = image.width / width
    proposed = proposer.propose(image, limit * 2)
    full = [Box(int(b.left / scale), int(b.top / scale), min(width, round(b.right / scale)),
                min(height, round(b.bottom / scale))) for b in proposed]
    boxes, crops = [], []
    for box in usable_boxes(full, width, height, limit * 2):
        area = (int(box.left * scale), int(box.top * scale), round(box.right * scale), round(box.bottom * scale))
        if area[2] - area[0] < MIN_SIDE or area[3] - area[1] < MIN_SIDE:
            continue
        boxes.append(box)
        crops.append(image.crop(area))
        if len(boxes) >= limit:
            break
    return boxes, crops


class RegionIndexer:
    def __init__(self, store: PhotoStore, embedder: "Embedder", proposer: Proposer, *, per_photo: int,
                 batch_size: int, decode_workers: int, max_image_pixels: int,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        self.store, self.embedder, self.proposer = store, embedder, proposer
        self.per_photo = per_photo
        self.photos_per_batch = max(1, batch_size // max(1, per_photo // 2))
        self.decode_workers = decode_workers
        self.max_image_pixels, self.max_file_bytes = max_image_pixels, max_file_bytes

    def run(self, records: Sequence[StoredRecord], progress: Callable[[int, int, str], None] | None = None) -> RegionReport:
        from .ingest import ordered_prefetch

        report = RegionReport()
        records = [r for r in records if needs_regions(r)]
        if not records:
            return report
        self.store.regions.bind(self.embedder.signature)
        batch: list[_Cut] = []
        prefetch = ordered_prefetch(self._cut, records, self.decode_workers, self.photos_per_batch * 2)
        with contextlib.closing(prefetch):
            for done, cut in enumerate(prefetch, start=1):
                if cut.problem:
                    report.failed.append((str(cut.record.metadata.get("path", cut.record.id)), cut.problem))
                else:
                    batch.append(cut)
                if len(batch) >= self.photos_per_batch:
                    self._commit(batch, report)
                    batch = []
                if progress is not None:
                    progress(done, len(records), str(cut.record.metadata.get("path", "")))
        self._commit(batch, report)
        return report

    def _cut(self, record: StoredRecord) -> _Cut:
        cut = _Cut(record)
        path = record.metadata.get("path")
        if not path:
            cut.problem = "no local file"
            return cut
        try:
            decoded = decode_image(read_file_bytes(Path(path), self.max_file_bytes), self.max_image_pixels,
                                   draft=REGION_DECODE, name=Path(path).name)
            cut.boxes, crops = cut_regions(decoded.image, decoded.width, decoded.height, self.proposer,
                                           self.per_photo)
            cut.pixels = [self.embedder.preprocess_image(crop) for crop in crops]
        except (OSError, ImageRejected) as exc:
            cut.problem = str(getattr(exc, "strerror", None) or exc)
        except Exception as exc:  # a proposer failing on one odd photo must not stop the run
            log.debug("no regions for %s", path, exc_info=True)
            cut.problem = f"{type(exc).__name__}: {exc}"
        return cut

    def _commit(self, batch: list[_Cut], report: RegionReport) -> None:
        if not batch:
            return
        pixels = [p for cut in batch for p in cut.pixels]
        vectors = self.embedder.embed_pixels(pixels) if pixels else np.zeros((0, self.embedder.dim), np.float32)
        ids, metadatas = [], []
        for cut in batch:
            for number, box in enumerate(cut.boxes):
                ids.append(region_id(cut.record.id, number))
                metadatas.append(region_metadata(cut.record.id, number, box))
        regions = self.store.regions
        regions.delete_regions_of([cut.record.id for cut in batch])  # what a killed run left half-written
        if ids:
            regions.upsert(ids, vectors, metadatas)
        for cut in batch:
            cut.record.metadata[REGION_COUNT_FIELD] = len(cut.boxes)
        self.store.update_metadata([cut.record.id for cut in batch], [cut.record.metadata for cut in batch])
        report.photos += len(batch)
        report.regions += len(ids)
        log.info("committed the regions of %d photos (%d regions this run)", len(batch), report.regions)
