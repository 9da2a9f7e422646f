"""Indexing files under folders: what is new is read, goes through the stages, is embedded and
stored batch by batch (``runner.py``, ``writer.py``); what is stored already costs a stat.

- Incremental: a file whose path, size and mtime match its record is not read
  again; a file whose bytes are already stored is not embedded again.
- Resumable: each batch is committed on its own, so a killed run loses at most
  the batch in flight and the next run picks up where it stopped.
- Robust: a file that cannot be used is skipped with a reason, never fatal; an optional
  stage failing on a photo is recorded on it and retried by the next run.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from ..errors import RetrievalError
from ..photos.files import scan_folders
from ..photos.images import DEFAULT_MAX_FILE_BYTES
from ..store import PhotoStore
from .photo import Photo
from .runner import EmbedStep, ThreadRunner, drive
from .stages import Decode, ReadFile, Stage, StageTimes, analyses, decode_size, photo_stages
from .writer import (DuplicateFile, IndexProgress, IndexReport, IndexWriter, MetadataLookup, ProgressCallback,
                     SkippedFile, StageFailure, WorkerWrites)

__all__ = ["Indexer", "Cluster", "IndexReport", "IndexProgress", "ProgressCallback", "MetadataLookup",
           "SkippedFile", "DuplicateFile", "StageFailure", "WorkerWrites"]

if TYPE_CHECKING:
    from ..embedder import Embedder
    from ..text.captions import TransformersCaptioner
    from ..text.ocr import OcrReader
    from .meanings import MeaningIndexer
    from .regions import RegionIndexer

BACKFILL_DRAFT = (224, 224)  # the decode size of the models' own reads, so hashes agree


class Cluster:
    """Where the stages and the model can run instead of this process's threads (``cluster.py``):
    ``prepare`` hands back each file as a ``Photo`` with its vector, or stored already (with
    ``writes``, when the workers can reach the store), in the order given."""

    def prepare(self, paths: list[Path], writes: WorkerWrites) -> Iterator[Photo]:
        raise NotImplementedError


class Indexer:
    """Indexes files into a store that is already bound to the embedder's model
    (the engine binds it when it loads the model)."""

    def __init__(self, store: PhotoStore, embedder: Embedder | Callable[[], Embedder], *, batch_size: int,
                 decode_workers: int, max_image_pixels: int, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 cluster: Cluster | None = None, regions: Callable[[], "RegionIndexer"] | None = None,
                 ocr: OcrReader | None = None, captioner: TransformersCaptioner | None = None,
                 meanings: "MeaningIndexer | None" = None):
        """``embedder``: the model, or a function that loads it (and binds the store to it). A
        function is called only when a file needs embedding, so a run that finds nothing new
        loads no model. ``cluster``: runs the stages and the model somewhere else (Ray); this
        process still decides what is new, moved or a duplicate. ``regions``: makes the indexer
        that gives every photo of the run its regions, once the photos are stored (also photos
        indexed before, and those a cluster embedded). ``ocr``: read the words in each photo too
        (photos indexed before without them are read on this run); ``captioner``: caption each
        photo too (likewise). ``meanings``: give every described photo of the run the vector of its
        descriptions' meaning, last (after OCR and captions wrote theirs)."""
        self.store, self._embedder, self.cluster, self.regions, self.ocr = store, embedder, cluster, regions, ocr
        self.captioner, self.meanings = captioner, meanings
        self.batch_size, self.decode_workers = batch_size, decode_workers
        self.max_image_pixels, self.max_file_bytes = max_image_pixels, max_file_bytes

    def run(
        self,
        roots: Iterable[Path],
        *,
        metadata: MetadataLookup | None = None,
        source: str = "local",
        prune: bool = False,
        progress: ProgressCallback | None = None,
        exclude: Sequence[str] = (),
    ) -> IndexReport:
        """``exclude``: gitignore-style patterns, relative to each folder, never indexed (and,
        with ``prune``, removed from the store if they were)."""
        started = time.perf_counter()
        self.store.fill_documents()  # a collection from before searchable text was kept: once
        roots = [Path(r).expanduser().resolve() for r in roots]
        scan = scan_folders(roots, exclude)
        times = StageTimes()
        embed = EmbedStep(self._embedder, times)
        writer = IndexWriter(self.store, embed, metadata=metadata or (lambda _path: {}), source=source,
                             progress=progress, total=len(scan.images), batch_size=self.batch_size,
                             max_file_bytes=self.max_file_bytes, times=times)
        writer.report.skipped += [SkippedFile(str(p.path), p.reason.value, p.detail) for p in scan.passed_over]
        writer.report.excluded = scan.excluded
        optional = analyses(self.ocr, self.captioner)
        to_read, owing = [], []
        for path in scan.images:
            lacking = writer.owed(path, optional)
            if lacking is None:
                to_read.append(path)
            elif lacking:
                owing.append((path, lacking))
        self._add_new(writer, embed, to_read, source, times)
        self._complete(writer, owing, times)
        writer.forget_displaced()
        if prune:
            writer.prune(roots, exclude)
        if self.regions is not None:
            self._add_regions(writer, scan.images, times)
        if self.meanings is not None:
            self._add_meanings(writer, scan.images, times)
        writer.report.stages = times.to_dict()
        writer.report.seconds = time.perf_counter() - started
        return writer.report

    def _add_new(self, writer: IndexWriter, embed: EmbedStep, paths: list[Path], source: str,
                 times: StageTimes) -> None:
        if not paths:
            return
        embedder = embed.embedder  # loaded (with its guard against another model's store) before any file is read
        embedder.expect_images(len(paths))  # what embeds them starts loading while the first are decoded
        if self.cluster is not None:
            writes = WorkerWrites(frozenset(writer.by_id), writer.metadata, source,
                                  datetime.now(timezone.utc).isoformat(timespec="seconds"))
            prepared = self.cluster.prepare(paths, writes)
        else:
            stages = photo_stages(embedder, max_image_pixels=self.max_image_pixels,
                                  max_file_bytes=self.max_file_bytes, stored_at=writer.stored_at, ocr=self.ocr,
                                  captioner=self.captioner)
            runner = ThreadRunner(self.decode_workers, max(self.batch_size * 2, 4))
            prepared = runner.prepare((Photo(path=path) for path in paths), stages)
        with contextlib.closing(prepared):
            drive(writer.claimed_in_order(prepared), writer, self.batch_size, times)

    def _complete(self, writer: IndexWriter, owing: list[tuple[Path, list[Stage]]], times: StageTimes) -> None:
        """Give stored photos the optional stages they lack (indexed before the stage existed, or it
        failed on them): read and decoded again, nothing embedded."""
        if not owing:
            return
        rerun = list(dict.fromkeys(stage.name for _path, lacking in owing for stage in lacking))
        owed = [stage for stage in analyses(self.ocr, self.captioner) if stage.name in rerun]
        stages = [ReadFile(self.max_file_bytes), Decode(self.max_image_pixels, decode_size(owed, BACKFILL_DRAFT)),
                  *owed]
        runner = ThreadRunner(self.decode_workers, max(self.batch_size * 2, 4))
        photos = (Photo(path=path, record=writer.by_path[str(path)]) for path, _lacking in owing)
        prepared = runner.prepare(photos, stages)
        with contextlib.closing(prepared):
            drive(prepared, writer.completer(rerun), self.batch_size, times)

    def _add_meanings(self, writer: IndexWriter, files: list[Path], times: StageTimes) -> None:
        """Give the run's photos whose descriptions have no vector yet (or changed) theirs."""
        writer._flush_updates()
        records = list({r.id: r for p in files if (r := writer.by_path.get(str(p))) is not None}.values())
        report = writer.report

        def tick(done: int, total: int, path: str) -> None:
            if writer.progress is not None:
                writer.progress(IndexProgress(done, total, len(report.added), len(report.skipped), path,
                                              stage="meaning"))

        try:
            result = self.meanings.run(records, tick)
        except RetrievalError as exc:  # the sentence model can't be had: the photos are indexed all the same
            report.warnings.append(f"{exc}\nThe photos were indexed without their descriptions' meaning; the next "
                                   "`index` adds it once the model can be had (MEANING=0 or --no-meaning: "
                                   "don't try).")
            return
        report.photos_given_meaning = result.embedded
        if result.embedded or result.removed:
            times.add("meaning", result.seconds, photos=result.embedded + result.removed)

    def _add_regions(self, writer: IndexWriter, files: list[Path], times: StageTimes) -> None:
        """Give the run's photos that have none their regions (after every photo is stored)."""
        from ..regions.records import needs_regions

        writer._flush_updates()
        records = list({r.id: r for p in files if (r := writer.by_path.get(str(p))) is not None}.values())
        records = [r for r in records if needs_regions(r)]
        if not records:
            return
        report = writer.report

        def tick(done: int, total: int, path: str) -> None:
            if writer.progress is not None:
                writer.progress(IndexProgress(done, total, len(report.added), len(report.skipped), path,
                                              stage="regions"))

        result = self.regions().run(records, tick, times)
        report.photos_given_regions = result.photos
        report.regions_added = result.regions
        report.region_failures = [SkippedFile(path, "no regions", why) for path, why in result.failed]
        report.stage_failures += [StageFailure(path, "regions", why) for path, why in result.failed]
