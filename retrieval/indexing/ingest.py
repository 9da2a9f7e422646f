"""Indexing: files -> (read, hash, decode) -> model vectors -> store, batch by batch.

- Incremental: a file whose path, size and mtime match its record is not read
  again; a file whose bytes are already stored is not embedded again.
- Resumable: each batch is committed on its own, so a killed run loses at most
  the batch in flight and the next run picks up where it stopped.
- Robust: a file that cannot be used is skipped with a reason, never fatal.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..photos.files import Exclusions, is_under, scan_folders
from ..photos.images import DEFAULT_MAX_FILE_BYTES, ImageRejected, SkipReason, decode_image, read_file_bytes
from ..photos.near_duplicates import HASH_FIELD, perceptual_hash
from ..photos.facts import MARKER as FACTS_MARKER
from ..photos.facts import with_file_time
from ..store import PhotoStore, StoredRecord

if TYPE_CHECKING:
    from ..embedder import Embedder
    from .regions import RegionIndexer

log = logging.getLogger(__name__)

MetadataLookup = Callable[[Path], dict[str, Any]]
BACKFILL_DRAFT = (224, 224)  # the decode size of the models' own reads, so hashes agree


@dataclass
class SkippedFile:
    path: str
    reason: str
    detail: str = ""


@dataclass
class DuplicateFile:
    path: str
    duplicate_of: str
    id: str


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)  # ids of newly embedded photos
    unchanged: int = 0
    updated: int = 0  # metadata refreshed or file moved, no new embedding
    facts_read: int = 0  # photos indexed before facts were read, given them now (no new embedding)
    written_by_workers: int = 0  # of ``added``: stored by the cluster workers themselves
    photos_given_regions: int = 0  # photos whose regions were embedded in this run (--regions)
    regions_added: int = 0  # region vectors embedded
    region_failures: list[SkippedFile] = field(default_factory=list)  # photos indexed, left without regions
    replaced: int = 0  # records of files edited in place, superseded by their new bytes
    pruned: int = 0
    excluded: int = 0  # files and folders left out by --exclude or an ignore file
    duplicates: list[DuplicateFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    metadata_warnings: list[str] = field(default_factory=list)  # rows of the table that were not used
    seconds: float = 0.0

    @property
    def skipped_counts(self) -> dict[str, int]:
        return dict(Counter(item.reason for item in self.skipped))

    @property
    def changed_the_store(self) -> bool:
        return bool(self.added or self.updated or self.replaced or self.pruned or self.photos_given_regions)

    @property
    def images_per_second(self) -> float:
        return len(self.added) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": len(self.added),
            "unchanged": self.unchanged,
            "updated": self.updated,
            "facts_read": self.facts_read,
            "written_by_workers": self.written_by_workers,
            "photos_given_regions": self.photos_given_regions,
            "regions_added": self.regions_added,
            "region_failures": [asdict(f) for f in self.region_failures],
            "replaced": self.replaced,
            "pruned": self.pruned,
            "excluded": self.excluded,
            "duplicates": [asdict(d) for d in self.duplicates],
            "skipped": {"counts": self.skipped_counts, "files": [asdict(s) for s in self.skipped]},
            "metadata_warnings": self.metadata_warnings,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "added_ids": self.added,
        }


@dataclass
class IndexProgress:
    done: int
    total: int
    added: int
    skipped: int
    path: str
    stage: str = "photos"  # then "regions", when photos are given their regions


ProgressCallback = Callable[[IndexProgress], None]


@dataclass
class _Prepared:
    """What a decode worker hands back for one file."""

    path: Path
    size: int = 0
    mtime: float = 0.0
    id: str = ""
    pixels: np.ndarray | None = None
    width: int = 0
    height: int = 0
    duplicate_of: str | None = None  # a path, when the bytes are already claimed
    rejected: ImageRejected | None = None
    vector: np.ndarray | None = None  # embedded already (by a cluster worker)
    written: bool = False  # stored already, by the cluster worker that embedded it
    metadata: dict = field(default_factory=dict)  # what that worker stored with it
    facts: dict = field(default_factory=dict)  # EXIF facts and perceptual hash (``described``)


def described(decoded) -> dict[str, Any]:
    """What indexing stores about a decoded photo besides its vector: EXIF facts and its hash."""
    return {**decoded.facts, HASH_FIELD: perceptual_hash(decoded.image)}


def new_record_metadata(path: Path, width: int, height: int, size: int, mtime: float, facts: dict[str, Any],
                        source: str, added_at: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a newly embedded photo (here, or on the cluster worker that stores it)."""
    return {"path": str(path), "filename": path.name, "width": width, "height": height, "size": size,
            "mtime": mtime, "source": source, "added_at": added_at, **with_file_time(facts, mtime), **extra}


@dataclass(frozen=True)
class WorkerWrites:
    """What a cluster worker needs to store the photos it embeds itself (``prepare_elsewhere``):
    the ids stored before the run (never written again: moves and copies are this process's
    business), the metadata table's lookup, and the run's source and time."""

    stored_ids: frozenset
    metadata: Callable[[Path], dict[str, Any]]
    source: str
    added_at: str


def content_id(data: bytes) -> str:
    """A record id is the SHA-256 of the file's bytes: same photo, same id."""
    return hashlib.sha256(data).hexdigest()


def ordered_prefetch(fn, items: Sequence, workers: int, window: int) -> Iterator:
    """``map(fn, items)`` on a thread pool, in order, with at most ``window`` in flight.

    When the consumer stops early (Ctrl-C, an error), work not yet started is
    cancelled rather than waited for, so the run ends at once.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode")
    pending: deque = deque()
    try:
        iterator = iter(items)
        for item in iterator:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            next_item = next(iterator, None)
            if next_item is not None:
                pending.append(pool.submit(fn, next_item))
            yield result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class Indexer:
    """Indexes files into a store that is already bound to the embedder's model
    (the engine binds it when it loads the model)."""

    def __init__(self, store: PhotoStore, embedder: Embedder | Callable[[], Embedder], *, batch_size: int,
                 decode_workers: int, max_image_pixels: int, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 prepare_elsewhere: Callable[..., Iterable[_Prepared]] | None = None,
                 regions: Callable[[], "RegionIndexer"] | None = None):
        """``embedder``: the model, or a function that loads it (and binds the store to it). A
        function is called only when a file needs embedding, so a run that finds nothing new
        loads no model. ``prepare_elsewhere``: reads, decodes and embeds the files that need it
        somewhere else (a Ray cluster, ``indexing/cluster.py``), handing back each file's result
        with its vector, or stored already (``WorkerWrites``: with a store every worker can reach);
        this process still decides what is new, moved or a duplicate. ``regions``: makes the
        indexer that gives every photo of the run its regions, once the photos are stored (also
        photos indexed before, and those a cluster embedded)."""
        self.prepare_elsewhere = prepare_elsewhere
        self.regions = regions
        self.store = store
        self._embedder = embedder
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.max_image_pixels = max_image_pixels
        self.max_file_bytes = max_file_bytes

    @property
    def embedder(self) -> Embedder:
        if callable(self._embedder):  # a loader, not yet called
            self._embedder = self._embedder()
        return self._embedder

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
        roots = [Path(r).expanduser().resolve() for r in roots]
        scan = scan_folders(roots, exclude)
        run = _IndexRun(self, metadata or (lambda _path: {}), source, progress, len(scan.images))
        run.report.skipped += [SkippedFile(str(p.path), p.reason.value, p.detail) for p in scan.passed_over]
        run.report.excluded = scan.excluded
        run.index(scan.images)
        run.forget_displaced()
        if prune:
            run.prune(roots, exclude)
        if self.regions is not None:
            run.add_regions(scan.images, self.regions)
        run.report.seconds = time.perf_counter() - started
        return run.report


class _IndexRun:
    """The state of one indexing run (what is stored, what was claimed, the report)."""

    def __init__(self, indexer: Indexer, metadata: MetadataLookup, source: str,
                 progress: ProgressCallback | None, total: int):
        self.indexer = indexer
        self.store = indexer.store
        self.metadata = metadata
        self.source = source
        self.progress = progress
        self.total = total
        self.done = 0
        self.report = IndexReport()
        self.by_path: dict[str, StoredRecord] = {}
        self.by_id: dict[str, StoredRecord] = {}
        for record in self.store.iter_all():
            self.by_id[record.id] = record
            if record.metadata.get("path"):
                self.by_path[record.metadata["path"]] = record
        self.claimed: dict[str, str] = {}  # id -> path, for bytes seen during this run
        self.claim_lock = threading.Lock()
        self.pending_updates: list[tuple[str, dict]] = []
        self.rewrites: list[str] = []  # records a cluster worker stored under a copy's path
        # Records whose path now holds other bytes, and whose own bytes were not
        # found elsewhere (yet) in this run: they describe nothing at the end.
        self.displaced: dict[str, StoredRecord] = {}

    # -- per-file work --------------------------------------------------------

    def index(self, files: list[Path]) -> None:
        to_read = [path for path in files if not self._unchanged(path)]
        if to_read:  # the model (and its guard against another model's store) before any file is read:
            self.indexer.embedder  # noqa: B018 - a failure to load is the run's error, not each file's
        if self.indexer.prepare_elsewhere is not None:  # read, decoded and embedded on a cluster
            writes = WorkerWrites(frozenset(self.by_id), self.metadata, self.source,
                                  datetime.now(timezone.utc).isoformat(timespec="seconds"))
            self._consume(self._claimed(self.indexer.prepare_elsewhere(to_read, writes)))
            return
        window = max(self.indexer.batch_size * 2, 4)
        prefetch = ordered_prefetch(self._prepare, to_read, self.indexer.decode_workers, window)
        with contextlib.closing(prefetch):
            # Bytes are claimed in the order the files were found, not the order decode threads
            # finish: of two copies, the first file found always owns the record.
            self._consume(self._claimed(prefetch))

    def _claimed(self, prepared: Iterable[_Prepared]) -> Iterator[_Prepared]:
        for item in prepared:
            if item.rejected is None:
                self.claim(item)
            yield item

    def _consume(self, prefetch: Iterator[_Prepared]) -> None:
        batch: list[_Prepared] = []
        rejected: dict[str, ImageRejected] = {}  # path -> why, for copies of files that can't be used
        for prepared in prefetch:
            if prepared.duplicate_of in rejected:  # the same bytes as a file rejected earlier: the same reason
                prepared.rejected, prepared.duplicate_of = rejected[prepared.duplicate_of], None
            if prepared.rejected is not None:
                rejected[str(prepared.path)] = prepared.rejected
                self._unclaim_copies_of(prepared)
                self.report.skipped.append(SkippedFile(
                    str(prepared.path), prepared.rejected.reason.value, prepared.rejected.detail))
                log.info("skipped %s: %s", prepared.path, prepared.rejected)
                self._tick(prepared.path)
            elif prepared.duplicate_of is not None:
                if prepared.written:  # a copy of a photo claimed earlier in this run, stored by its worker:
                    self.rewrites.append(prepared.id)  # the record describes the first file found
                self._known_bytes(prepared)
                self._tick(prepared.path)
            else:
                batch.append(prepared)
                if len(batch) >= self.indexer.batch_size:
                    self._commit(batch)
                    batch = []
        self._commit(batch)

    def _unclaim_copies_of(self, rejected: _Prepared) -> None:
        """Files reported as copies of one that turned out unusable (decode threads claim bytes in
        the order they get to them): skipped for the same reason instead."""
        path = str(rejected.path)
        copies = [d for d in self.report.duplicates if d.duplicate_of == path]
        if copies:
            self.report.duplicates = [d for d in self.report.duplicates if d.duplicate_of != path]
            self.report.skipped += [SkippedFile(d.path, rejected.rejected.reason.value, rejected.rejected.detail)
                                    for d in copies]

    def _unchanged(self, path: Path) -> bool:
        """Cheap check: same path, size and mtime as the stored record -> no read."""
        record = self.by_path.get(str(path))
        if record is None:
            return False
        try:
            stat = path.stat()
        except OSError:
            return False
        stored = record.metadata
        if stored.get("size") != stat.st_size or abs(float(stored.get("mtime", -1)) - stat.st_mtime) > 1e-3:
            return False
        fields = self.metadata(path)
        if FACTS_MARKER not in stored or HASH_FIELD not in stored:  # indexed before these were kept: embed nothing
            fields = {**self._facts_of(path, stat.st_mtime), **fields}
            self.report.facts_read += 1
        self._refresh_metadata(record, fields)
        self.report.unchanged += 1
        self._tick(path)
        return True

    def _facts_of(self, path: Path, mtime: float) -> dict[str, Any]:
        """Facts and hash of a photo stored before they were kept ("" for a hash that can't be had)."""
        try:
            decoded = decode_image(read_file_bytes(path, self.indexer.max_file_bytes),
                                   self.indexer.max_image_pixels, draft=BACKFILL_DRAFT, name=path.name)
            facts = described(decoded)
        except (OSError, ImageRejected):
            facts = {HASH_FIELD: ""}
        return with_file_time(facts, mtime)

    def _prepare(self, path: Path) -> _Prepared:
        prepared = _Prepared(path=path)
        try:
            stat = path.stat()
            data = read_file_bytes(path, self.indexer.max_file_bytes)
        except OSError as exc:
            prepared.rejected = ImageRejected(SkipReason.UNREADABLE, exc.strerror or str(exc))
            return prepared
        except ImageRejected as exc:
            prepared.rejected = exc
            return prepared
        prepared.size, prepared.mtime = stat.st_size, stat.st_mtime
        if not data:
            prepared.rejected = ImageRejected(SkipReason.EMPTY)
            return prepared
        prepared.id = content_id(data)
        stored = self.by_id.get(prepared.id)
        if stored is not None:  # stored already: nothing to decode (copies within this run are claimed in order)
            prepared.duplicate_of = stored.metadata.get("path") or stored.metadata.get("url", "")
            return prepared
        try:
            decoded = decode_image(data, self.indexer.max_image_pixels, draft=self.indexer.embedder.draft_size,
                                   name=path.name)
            prepared.pixels = self.indexer.embedder.preprocess_image(decoded.image)
            prepared.width, prepared.height = decoded.width, decoded.height
            prepared.facts = described(decoded)
        except ImageRejected as exc:
            prepared.rejected = exc
        except Exception as exc:  # a decoder bug on one odd file must not stop the run
            log.debug("unexpected error decoding %s", path, exc_info=True)
            prepared.rejected = ImageRejected(SkipReason.CORRUPT, f"{type(exc).__name__}: {exc}")
        return prepared

    def claim(self, prepared: _Prepared) -> bool:
        """Whether these bytes are stored or were claimed by another file in this run already
        (then ``duplicate_of`` says where); else this file claims them."""
        with self.claim_lock:
            stored = self.by_id.get(prepared.id)
            if stored is not None:
                prepared.duplicate_of = stored.metadata.get("path") or stored.metadata.get("url", "")
                return True
            if prepared.id in self.claimed:
                prepared.duplicate_of = self.claimed[prepared.id]
                return True
            self.claimed[prepared.id] = str(prepared.path)
        return False

    def _known_bytes(self, prepared: _Prepared) -> None:
        """Bytes already stored: same file touched, a moved (or renamed, or swapped)
        file, or a true duplicate. A record's path follows its bytes."""
        stored = self.by_id.get(prepared.id)
        path = str(prepared.path)
        if stored is not None:
            stored_path = stored.metadata.get("path")
            if stored_path == path or (stored_path and not self._still_holds(stored_path, stored)):
                self._queue_update(stored, {"path": path, "size": prepared.size, "mtime": prepared.mtime,
                                            **self.metadata(prepared.path)})
                if stored_path == path:
                    self.report.unchanged += 1
                else:
                    self.report.updated += 1
                    if self.by_path.get(stored_path) is stored:
                        self.by_path.pop(stored_path, None)
                self.displaced.pop(stored.id, None)
                previous = self.by_path.get(path)
                if previous is not None and previous.id != stored.id:
                    self.displaced[previous.id] = previous  # its bytes are not at this path any more
                self.by_path[path] = stored
                return
        self.report.duplicates.append(DuplicateFile(path, prepared.duplicate_of or "", prepared.id))

    def _still_holds(self, path: str, record: StoredRecord) -> bool:
        """Whether the file at ``path`` still has the record's bytes (so a copy elsewhere is a duplicate)."""
        try:
            if Path(path).stat().st_size != record.metadata.get("size", -1):
                return False
            return content_id(read_file_bytes(path, self.indexer.max_file_bytes)) == record.id
        except (OSError, ImageRejected):
            return False

    def forget_displaced(self) -> None:
        """Delete records whose path now holds other bytes and whose bytes were found nowhere."""
        self._flush_updates()
        gone = list(self.displaced)  # re-homed records were taken out as their bytes turned up
        self.store.delete(gone)
        for record_id in gone:
            self.by_id.pop(record_id, None)
        self.report.replaced += len(gone)
        self.displaced.clear()

    def _refresh_metadata(self, record: StoredRecord, fields: dict[str, Any]) -> None:
        if any(record.metadata.get(key) != value for key, value in fields.items()):
            self._queue_update(record, fields)
            self.report.updated += 1

    def _queue_update(self, record: StoredRecord, fields: dict[str, Any]) -> None:
        record.metadata.update(fields)
        self.pending_updates.append((record.id, dict(record.metadata)))
        if len(self.pending_updates) >= self.indexer.batch_size:
            self._flush_updates()

    def _flush_updates(self) -> None:
        restore = [record_id for record_id in dict.fromkeys(self.rewrites) if record_id in self.by_id]
        if restore:
            self.store.update_metadata(restore, [self.by_id[record_id].metadata for record_id in restore])
            self.rewrites = [record_id for record_id in self.rewrites if record_id not in self.by_id]
        if self.pending_updates:
            ids, metadatas = zip(*self.pending_updates)
            self.store.update_metadata(list(ids), list(metadatas))
            self.pending_updates = []

    def _commit(self, batch: list[_Prepared]) -> None:
        self._flush_updates()
        if not batch:
            return
        added_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        metadatas = [self._new_metadata(item, added_at) for item in batch]
        unwritten = [n for n, item in enumerate(batch) if not item.written]
        added_elsewhere: set[str] = set()
        if unwritten:
            if all(batch[n].vector is not None for n in unwritten):
                vectors = np.stack([batch[n].vector for n in unwritten])
            else:
                vectors = self.indexer.embedder.embed_pixels([batch[n].pixels for n in unwritten])
            wanted = [batch[n].id for n in unwritten]
            # Another run (a second `index`, the page's uploads) may have added some since this
            # run looked: they count as there already, not as added by this run.
            written = set(self.store.insert_new(wanted, vectors, [metadatas[n] for n in unwritten]))
            added_elsewhere = set(wanted) - written
        # A file edited in place now has new bytes: its old record describes nothing,
        # unless those bytes turn up under another name later in this run (a swap).
        for item in batch:
            previous = self.by_path.get(str(item.path))
            if previous is not None and previous.id != item.id:
                self.displaced[previous.id] = previous
        for item, metadata in zip(batch, metadatas):
            record = StoredRecord(item.id, metadata)
            self.by_id[item.id] = record
            self.by_path[str(item.path)] = record
            if item.id in added_elsewhere:
                self.report.unchanged += 1
            else:
                self.report.added.append(item.id)
            self._tick(item.path)
        self.report.written_by_workers += len(batch) - len(unwritten)
        if self.rewrites:
            self._flush_updates()
        log.info("committed %d new photos (%d this run)", len(batch), len(self.report.added))

    def _new_metadata(self, item: _Prepared, added_at: str) -> dict[str, Any]:
        if item.written:  # as its worker stored it
            return dict(item.metadata)
        return new_record_metadata(item.path, item.width, item.height, item.size, item.mtime, item.facts,
                                   self.source, added_at, self.metadata(item.path))

    def _tick(self, path: Path) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(IndexProgress(self.done, self.total, len(self.report.added),
                                        len(self.report.skipped), str(path)))

    # -- regions ----------------------------------------------------------------

    def add_regions(self, files: list[Path], make_indexer: Callable[[], "RegionIndexer"]) -> None:
        """Give the run's photos that have none their regions (after every photo is stored)."""
        from ..regions.records import needs_regions

        self._flush_updates()
        records = list({r.id: r for p in files if (r := self.by_path.get(str(p))) is not None}.values())
        records = [r for r in records if needs_regions(r)]
        if not records:
            return

        def tick(done: int, total: int, path: str) -> None:
            if self.progress is not None:
                self.progress(IndexProgress(done, total, len(self.report.added), len(self.report.skipped),
                                            path, stage="regions"))

        result = make_indexer().run(records, tick)
        self.report.photos_given_regions = result.photos
        self.report.regions_added = result.regions
        self.report.region_failures = [SkippedFile(path, "no regions", why) for path, why in result.failed]

    # -- pruning ----------------------------------------------------------------

    def prune(self, roots: list[Path], exclude: Sequence[str] = ()) -> None:
        """Delete records whose file, under one of the indexed roots, is gone or now excluded."""
        self._flush_updates()
        rules = [Exclusions(root, exclude) for root in roots if root.is_dir()]

        def left_out(path: Path) -> bool:  # a file in an excluded folder matches that folder's pattern
            return any(rule.leaves_out(path) for rule in rules if rule and is_under(path, [rule.root]))

        gone = [
            record.id
            for path, record in self.by_path.items()
            if is_under(Path(path), roots) and (not Path(path).exists() or left_out(Path(path)))
        ]
        self.store.delete(gone)
        self.report.pruned = len(gone)
