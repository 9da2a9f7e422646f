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

from PIL import Image

from ..photos.images import DEFAULT_MAX_FILE_BYTES
from ..regions.proposals import Box, Proposer
from ..regions.records import REGION_COUNT_FIELD, needs_regions, region_id, region_metadata
from ..store import PhotoStore, StoredRecord
from .photo import FAILED_STAGES_FIELD, Photo
from .runner import EmbedStep, ThreadRunner, drive, timed
from .stages import Decode, ReadFile, Stage, StageTimes
from .writer import with_stages_rerun

if TYPE_CHECKING:
    from ..embedder import Embedder

log = logging.getLogger(__name__)

# Regions are cut from the photo decoded at about this size: a region a quarter of the photo
# wide still gives the model more pixels than it reads (224), at a fraction of a full decode.
REGION_DECODE = (896, 896)
MAX_WHOLE_SHARE = 0.9  # a box covering more of the photo than this adds nothing to its own vector
MIN_SIDE = 8  # pixels of the decoded photo: smaller boxes are noise
MIN_SIDE_SHARE = 0.04  # of the photo's shorter side: thinner boxes are edges and lines, not objects
# How many regions a photo gets follows its size: the full count from this many pixels up (a
# 640x480 photo), fewer below in proportion (a 320x240 one: a quarter), at least MIN_REGIONS, and
# none when the shorter side is under MIN_PHOTO_SIDE: a part of so small a photo is a few dozen
# pixels, which the model reads as blur, not as an object.
FULL_COUNT_PIXELS = 640 * 480
MIN_REGIONS = 2
MIN_PHOTO_SIDE = 128


@dataclass
class RegionReport:
    photos: int = 0  # photos given their regions in this run
    regions: int = 0  # region vectors embedded
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of photos left without


def regions_for(width: int, height: int, per_photo: int) -> int:
    """How many regions a ``width`` x ``height`` photo gets, at most ``per_photo`` (see above)."""
    if min(width, height) < MIN_PHOTO_SIDE:
        return 0
    share = min(1.0, width * height / FULL_COUNT_PIXELS)
    return min(per_photo, max(MIN_REGIONS, round(per_photo * share)))


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


class RegionCuts(Stage):
    """The photo's regions: boxes proposed, their crops made the model's input."""

    name, needs, adds = "regions", ("decoded",), (REGION_COUNT_FIELD,)

    def __init__(self, proposer: Proposer, per_photo: int, preprocess: Callable[[Image.Image], object]):
        self.proposer, self.per_photo, self.preprocess = proposer, per_photo, preprocess

    def run(self, photo: Photo) -> None:
        decoded = photo.decoded
        limit = regions_for(decoded.width, decoded.height, self.per_photo)
        photo.boxes, crops = cut_regions(decoded.image, decoded.width, decoded.height, self.proposer,
                                         limit) if limit else ([], [])
        photo.region_pixels = [self.preprocess(crop) for crop in crops]


class RegionIndexer:
    """Stored photos without regions -> read, decode, regions -> ``RegionWriter``."""

    def __init__(self, store: PhotoStore, embedder: "Embedder", proposer: Proposer, *, per_photo: int,
                 batch_size: int, decode_workers: int, max_image_pixels: int,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
        self.store, self.embedder, self.proposer = store, embedder, proposer
        self.per_photo = per_photo
        self.photos_per_batch = max(1, batch_size // max(1, per_photo // 2))
        self.decode_workers = decode_workers
        self.max_image_pixels, self.max_file_bytes = max_image_pixels, max_file_bytes

    def stages(self) -> list[Stage]:
        return [ReadFile(self.max_file_bytes), Decode(self.max_image_pixels, REGION_DECODE),
                RegionCuts(self.proposer, self.per_photo, self.embedder.preprocess_image)]

    def run(self, records: Sequence[StoredRecord], progress: Callable[[int, int, str], None] | None = None,
            times: StageTimes | None = None) -> RegionReport:
        report = RegionReport()
        records = [r for r in records if needs_regions(r)]
        if not records:
            return report
        times = times if times is not None else StageTimes()
        self.store.regions.bind(self.embedder.signature)
        writer = RegionWriter(self.store, EmbedStep(self.embedder, times), report, times, len(records), progress)
        photos = (Photo(path=Path(r.metadata["path"]) if r.metadata.get("path") else None, record=r)
                  for r in records)
        prepared = ThreadRunner(self.decode_workers, self.photos_per_batch * 2).prepare(photos, self.stages())
        with contextlib.closing(prepared):
            drive(prepared, writer, self.photos_per_batch, times)
        return report


class RegionWriter:
    """Stores a batch's regions, then stamps its photos with how many they have; a photo the
    regions failed on is left unstamped (so the next run tries again), the failure noted on it."""

    def __init__(self, store: PhotoStore, embed: EmbedStep, report: RegionReport, times: StageTimes, total: int,
                 progress: Callable[[int, int, str], None] | None):
        self.store, self.embed, self.report, self.times = store, embed, report, times
        self.total, self.done, self.progress = total, 0, progress
        self.failures: list[tuple[StoredRecord, str]] = []

    def take(self, photo: Photo) -> bool:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, str(photo.record.metadata.get("path", "")))
        problem = "no local file" if photo.path is None else (
            photo.failed.get(RegionCuts.name) or (str(photo.rejected.detail or photo.rejected)
                                                  if photo.rejected is not None else ""))
        if problem:
            self.report.failed.append((photo.where, problem))
            self.failures.append((photo.record, problem))
            return False
        return True

    def commit(self, batch: list[Photo]) -> None:
        pixels = [p for photo in batch for p in photo.region_pixels]
        vectors = self.embed(pixels, len(batch))
        ids, metadatas = [], []
        for photo in batch:
            for number, box in enumerate(photo.boxes):
                ids.append(region_id(photo.record.id, number))
                metadatas.append(region_metadata(photo.record.id, number, box))
        records = [photo.record for photo in batch]
        with timed(self.times, "write regions", len(batch)):
            if batch:
                regions = self.store.regions
                regions.delete_regions_of([record.id for record in records])  # what a killed run left half-written
                if ids:
                    regions.upsert(ids, vectors, metadatas)
            for photo in batch:
                photo.record.metadata[REGION_COUNT_FIELD] = len(photo.boxes)
            records += [record for record, _problem in self.failures]
            if records:
                self.store.update_metadata([r.id for r in records], self._with_failures_noted(records))
        self.failures = []
        self.report.photos += len(batch)
        self.report.regions += len(ids)
        if batch:
            log.info("committed the regions of %d photos (%d regions this run)", len(batch), self.report.regions)

    def _with_failures_noted(self, records: list[StoredRecord]) -> list[dict]:
        """Each record's metadata with ``failed_stages`` saying whether the regions failed (None:
        the field removed, once they worked)."""
        failed = {record.id: problem for record, problem in self.failures}
        updates = []
        for record in records:
            notes = with_stages_rerun(record.metadata, [RegionCuts.name],
                                      {RegionCuts.name: failed[record.id]} if record.id in failed else {})
            updates.append({**record.metadata, FAILED_STAGES_FIELD: notes})
            if notes is None:
                record.metadata.pop(FAILED_STAGES_FIELD, None)
            else:
                record.metadata[FAILED_STAGES_FIELD] = notes
        return updates
