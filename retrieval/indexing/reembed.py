"""Moving a collection to another model.

Vectors of two models can't be compared, so every record is embedded again by
the new model, from its file (or, when the file is gone, its image URL), into a
new collection next to the old one. Ids and metadata are kept as they are. Each
batch is committed on its own, so a killed run loses at most one batch and the
next run embeds only what is missing. The old collection stays untouched until
the user switches (``--switch``): then the new one takes the old one's name and
the old one is kept under another name.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from ..embedder import Embedder
from ..errors import RetrievalError
from ..model_signature import ModelSignature
from ..photos.images import ImageRejected, SkipReason, read_file_bytes
from ..photos.web_urls import web_url
from ..regions.records import REGION_COUNT_FIELD
from ..store import PhotoStore, StoredRecord
from .photo import Photo
from .runner import EmbedStep, ThreadRunner, drive, timed
from .stages import Decode, Preprocess, Stage, StageTimes

log = logging.getLogger(__name__)

URL_TIMEOUT_S = 30.0


def target_collection(collection: str, model: str) -> str:
    """The new collection's name: the old name and the model's, in Chroma's allowed characters."""
    tail = Path(model.rstrip("/")).name or model
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", tail).strip("-_")[:60] or "model"
    return f"{collection}-{slug}"


@dataclass
class LeftBehind:
    id: str
    path: str
    reason: str


@dataclass
class ReembedReport:
    source: str
    target: str
    model: str
    total: int = 0
    embedded: int = 0  # this run
    already: int = 0  # in the new collection from an earlier run
    left_behind: list[LeftBehind] = field(default_factory=list)
    switched_to: str | None = None  # the new collection's name after --switch
    old_kept_as: str | None = None
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.embedded + self.already + len(self.left_behind) == self.total

    def to_dict(self) -> dict:
        data = asdict(self)
        data["complete"] = self.complete
        return data


@dataclass
class ReembedProgress:
    done: int
    total: int


class ReadRecord(Stage):
    """A stored photo's bytes: from its file, or when that is gone, its image URL."""

    name, needs, required = "read", ("record",), True

    def __init__(self, max_file_bytes: int):
        self.max_file_bytes = max_file_bytes

    def run(self, photo: Photo) -> None:
        metadata = photo.record.metadata
        path = metadata.get("path")
        url = web_url(metadata.get("image_url")) or web_url(metadata.get("url"))
        problem = "no file or image URL is recorded"
        if path:
            try:
                photo.data = read_file_bytes(Path(path), self.max_file_bytes)
                return
            except (OSError, ImageRejected) as exc:
                problem = f"the file can't be read ({getattr(exc, 'strerror', None) or exc})"
        if url:
            import httpx

            try:
                response = httpx.get(url, timeout=URL_TIMEOUT_S, follow_redirects=True)
                response.raise_for_status()
                photo.data = response.content
                return
            except httpx.HTTPError as exc:
                problem += f"; its image URL failed ({type(exc).__name__}: {exc})"
        raise ImageRejected(SkipReason.UNREADABLE, problem)


class Reembedder:
    """The store's records -> read (file or URL), decode, preprocess -> the new collection."""

    def __init__(self, source: PhotoStore, target: PhotoStore, embedder: Embedder, *, batch_size: int,
                 decode_workers: int, max_image_pixels: int, max_file_bytes: int):
        self.source, self.target, self.embedder = source, target, embedder
        self.batch_size, self.decode_workers = batch_size, decode_workers
        self.max_image_pixels, self.max_file_bytes = max_image_pixels, max_file_bytes

    def run(self, progress: Callable[[ReembedProgress], None] | None = None) -> ReembedReport:
        started = time.perf_counter()
        report = ReembedReport(self.source.collection_name, self.target.collection_name, self.embedder.name)
        records = list(self.source.iter_all())
        report.total = len(records)
        done_already = self._already_in_target([r.id for r in records])
        todo = [r for r in records if r.id not in done_already]
        report.already = len(records) - len(todo)
        times = StageTimes()
        stages = [ReadRecord(self.max_file_bytes), Decode(self.max_image_pixels, self.embedder.draft_size),
                  Preprocess(self.embedder)]
        writer = ReembedWriter(self.target, EmbedStep(self.embedder, times), report, times, progress)
        prepared = ThreadRunner(self.decode_workers, 4 * self.batch_size).prepare(
            (Photo(record=record) for record in todo), stages)
        with contextlib.closing(prepared):
            drive(prepared, writer, self.batch_size, times)
        self._carry_meanings()
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def _carry_meanings(self) -> None:
        """The descriptions' meanings, a sentence model's vectors, are the same whatever the photo
        model: those of the photos now in the new collection go with them as they are."""
        facts = self.source.meanings.recorded_model()
        if not facts or not self.source.meanings.count():
            return
        target = self.target.meanings
        try:
            target.bind(ModelSignature.from_facts(facts))
        except RetrievalError:  # another sentence model's there: the next index makes them with it
            return
        moved = {record.id for record in self.target.iter_all()}
        batch: list[StoredRecord] = []
        for record in [*self.source.meanings.iter_all(with_embeddings=True), None]:
            if record is not None and record.id in moved:
                batch.append(record)
            if batch and (record is None or len(batch) >= 1000):
                target.upsert([r.id for r in batch], np.stack([r.embedding for r in batch]),
                              [r.metadata for r in batch])
                batch = []

    def _already_in_target(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            found.update(r.id for r in self.target.get(ids[start : start + 1000]))
        return found


class ReembedWriter:
    """Each batch's new vectors stored in the new collection, with the records' metadata."""

    def __init__(self, target: PhotoStore, embed: EmbedStep, report: ReembedReport, times: StageTimes,
                 progress: Callable[[ReembedProgress], None] | None):
        self.target, self.embed, self.report, self.times, self.progress = target, embed, report, times, progress
        self.done = report.already

    def take(self, photo: Photo) -> bool:
        self.done += 1
        if self.progress is not None:
            self.progress(ReembedProgress(self.done, self.report.total))
        if photo.rejected is not None:
            self.report.left_behind.append(LeftBehind(photo.record.id, photo.where,
                                                      photo.rejected.detail or str(photo.rejected)))
            return False
        return True

    def commit(self, batch: list[Photo]) -> None:
        if not batch:
            return
        vectors = self.embed([photo.pixels for photo in batch], len(batch))
        moved_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        # Regions stay with the old model's collection: the new one gives them again (index --regions).
        metadatas = [{**{k: v for k, v in photo.record.metadata.items() if k != REGION_COUNT_FIELD},
                      "reembedded_at": moved_at} for photo in batch]
        with timed(self.times, "write", len(batch)):
            self.target.upsert([photo.record.id for photo in batch], vectors, metadatas)
        self.report.embedded += len(batch)
        log.info("committed %d re-embedded photos", len(batch))


def kept_name(collection: str) -> str:
    """A free name for the old collection after a switch."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{collection}-before-{stamp}"
