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

from ..regions.records import REGION_COUNT_FIELD

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from ..embedder import Embedder
from ..photos.images import ImageRejected, decode_image, read_file_bytes
from .ingest import ordered_prefetch
from ..store import PhotoStore, StoredRecord
from ..photos.web_urls import web_url

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


@dataclass
class _Prepared:
    record: StoredRecord
    pixels: np.ndarray | None = None
    problem: str = ""


class Reembedder:
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
        batch: list[_Prepared] = []
        done = report.already
        for prepared in ordered_prefetch(self._prepare, todo, self.decode_workers, 4 * self.batch_size):
            if prepared.pixels is None:
                report.left_behind.append(LeftBehind(prepared.record.id, _where(prepared.record), prepared.problem))
            else:
                batch.append(prepared)
                if len(batch) >= self.batch_size:
                    report.embedded += self._commit(batch)
                    batch = []
            done += 1
            if progress is not None:
                progress(ReembedProgress(done, report.total))
        report.embedded += self._commit(batch)
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def _already_in_target(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            found.update(r.id for r in self.target.get(ids[start : start + 1000]))
        return found

    def _prepare(self, record: StoredRecord) -> _Prepared:
        prepared = _Prepared(record)
        try:
            data = self._bytes_of(record)
            decoded = decode_image(data, self.max_image_pixels, draft=self.embedder.draft_size,
                                   name=record.metadata.get("path") or "")
            prepared.pixels = self.embedder.preprocess_image(decoded.image)
        except (ImageRejected, _Gone) as exc:
            prepared.problem = str(exc)
        except Exception as exc:  # one odd file must not stop the run
            log.debug("unexpected error re-reading %s", _where(record), exc_info=True)
            prepared.problem = f"{type(exc).__name__}: {exc}"
        return prepared

    def _bytes_of(self, record: StoredRecord) -> bytes:
        path = record.metadata.get("path")
        url = web_url(record.metadata.get("image_url")) or web_url(record.metadata.get("url"))
        problem = "no file or image URL is recorded"
        if path:
            try:
                return read_file_bytes(Path(path), self.max_file_bytes)
            except (OSError, ImageRejected) as exc:
                problem = f"the file can't be read ({getattr(exc, 'strerror', None) or exc})"
        if url:
            import httpx

            try:
                response = httpx.get(url, timeout=URL_TIMEOUT_S, follow_redirects=True)
                response.raise_for_status()
                return response.content
            except httpx.HTTPError as exc:
                problem += f"; its image URL failed ({type(exc).__name__}: {exc})"
        raise _Gone(problem)

    def _commit(self, batch: list[_Prepared]) -> int:
        if not batch:
            return 0
        vectors = self.embedder.embed_pixels([item.pixels for item in batch])
        moved_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        # Regions stay with the old model's collection: the new one gives them again (index --regions).
        metadatas = [{**{k: v for k, v in item.record.metadata.items() if k != REGION_COUNT_FIELD},
                      "reembedded_at": moved_at} for item in batch]
        self.target.upsert([item.record.id for item in batch], vectors, metadatas)
        log.info("committed %d re-embedded photos", len(batch))
        return len(batch)


class _Gone(Exception):
    """Neither the record's file nor its image URL gives its bytes."""


def _where(record: StoredRecord) -> str:
    return str(record.metadata.get("path") or record.metadata.get("image_url") or record.metadata.get("url") or "")


def kept_name(collection: str) -> str:
    """A free name for the old collection after a switch."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{collection}-before-{stamp}"
