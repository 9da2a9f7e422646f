"""The index's writer: commits new photos batch by batch and keeps the collection's bookkeeping.

- Ids are content hashes: a file whose bytes are stored already is not embedded again; of two
  copies found in one run, the first file found owns the record.
- A record's path follows its bytes: a moved or renamed file keeps its record; a file edited in
  place gets a new record and its old one goes (unless those bytes turn up elsewhere: a swap).
- Each batch is committed on its own, so a killed run loses at most the batch in flight and the
  next run picks up where it stopped.
- Prune: records whose file under an indexed folder is gone (or now excluded) are deleted.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..photos.files import Exclusions, is_under
from ..photos.images import ImageRejected, read_file_bytes
from ..store import PhotoStore, StoredRecord
from .photo import FAILED_STAGES_FIELD, Photo, content_id, failure_notes, failure_notes_of, stage_of
from .runner import EmbedStep, timed
from .stages import Stage, StageTimes, owed_stages

log = logging.getLogger(__name__)

MetadataLookup = Callable[[Path], dict[str, Any]]


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
class StageFailure:
    path: str
    stage: str
    reason: str


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)  # ids of newly embedded photos
    unchanged: int = 0
    updated: int = 0  # metadata refreshed or file moved, no new embedding
    facts_read: int = 0  # photos indexed before, given the stages they lacked or that failed (no new embedding)
    written_by_workers: int = 0  # of ``added``: stored by the cluster workers themselves
    photos_given_regions: int = 0  # photos whose regions were embedded in this run (--regions)
    regions_added: int = 0  # region vectors embedded
    region_failures: list[SkippedFile] = field(default_factory=list)  # photos indexed, left without regions
    photos_given_meaning: int = 0  # photos whose descriptions' meaning was embedded in this run (--meaning)
    stage_failures: list[StageFailure] = field(default_factory=list)  # photos indexed without an optional stage
    replaced: int = 0  # records of files edited in place, superseded by their new bytes
    pruned: int = 0
    excluded: int = 0  # files and folders left out by --exclude or an ignore file
    duplicates: list[DuplicateFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    metadata_warnings: list[str] = field(default_factory=list)  # rows of the table that were not used
    warnings: list[str] = field(default_factory=list)  # what the run left undone and why (a model it could not load)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # per stage: photos, failed, seconds, share
    seconds: float = 0.0

    @property
    def skipped_counts(self) -> dict[str, int]:
        return dict(Counter(item.reason for item in self.skipped))

    @property
    def changed_the_store(self) -> bool:
        return bool(self.added or self.updated or self.replaced or self.pruned or self.photos_given_regions
                    or self.facts_read or self.photos_given_meaning)

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
            "photos_given_meaning": self.photos_given_meaning,
            "failed_stages": [asdict(f) for f in self.stage_failures],
            "replaced": self.replaced,
            "pruned": self.pruned,
            "excluded": self.excluded,
            "duplicates": [asdict(d) for d in self.duplicates],
            "skipped": {"counts": self.skipped_counts, "files": [asdict(s) for s in self.skipped]},
            "metadata_warnings": self.metadata_warnings,
            "warnings": self.warnings,
            "stages": self.stages,
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
    stage: str = "photos"  # then "regions", when photos are given their regions, and "meaning"


ProgressCallback = Callable[[IndexProgress], None]


def new_record_metadata(photo: Photo, source: str, added_at: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a newly embedded photo (here, or on the cluster worker that stores it)."""
    return {"path": str(photo.path), "filename": photo.path.name, "width": photo.width, "height": photo.height,
            "size": photo.size, "mtime": photo.mtime, "source": source, "added_at": added_at, **photo.fields,
            **({FAILED_STAGES_FIELD: failure_notes(photo.failed)} if photo.failed else {}), **extra}


def with_stages_rerun(metadata: dict[str, Any], rerun: Sequence[str], failed: dict[str, str]) -> list[str] | None:
    """A record's ``failed_stages`` after the stages ``rerun`` ran again (None: none failed)."""
    kept = [note for note in failure_notes_of(metadata) if stage_of(note) not in rerun]
    return kept + failure_notes({name: why for name, why in failed.items() if name in rerun}) or None


@dataclass(frozen=True)
class WorkerWrites:
    """What a cluster worker needs to store the photos it embeds itself: the ids stored before
    the run (never written again: moves and copies are this process's business), the metadata
    table's lookup, and the run's source and time."""

    stored_ids: frozenset
    metadata: Callable[[Path], dict[str, Any]]
    source: str
    added_at: str


class IndexWriter:
    """The state of one indexing run (what is stored, what was claimed, the report), and the
    ``Writer`` of its new photos and of the stored ones completed with stages they lacked."""

    def __init__(self, store: PhotoStore, embed: EmbedStep, *, metadata: MetadataLookup, source: str,
                 progress: ProgressCallback | None, total: int, batch_size: int, max_file_bytes: int,
                 times: StageTimes):
        self.store, self.embed, self.metadata, self.source = store, embed, metadata, source
        self.progress, self.total, self.done = progress, total, 0
        self.batch_size, self.max_file_bytes, self.times = batch_size, max_file_bytes, times
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
        self.rejected: dict[str, ImageRejected] = {}  # path -> why, for copies of files that can't be used

    # -- before reading: what is there already -------------------------------------------

    def stored_at(self, record_id: str) -> str | None:
        """Where bytes with this id are stored already (copies within this run are claimed in order)."""
        stored = self.by_id.get(record_id)
        return None if stored is None else (stored.metadata.get("path") or stored.metadata.get("url", ""))

    def owed(self, path: Path, optional: Sequence[Stage]) -> list[Stage] | None:
        """None: the file must be read (new, or changed since its record). Else the stored record
        matches it (same path, size and mtime: not read again) and this is what it lacks, if anything."""
        record = self.by_path.get(str(path))
        if record is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        stored = record.metadata
        if stored.get("size") != stat.st_size or abs(float(stored.get("mtime", -1)) - stat.st_mtime) > 1e-3:
            return None
        lacking = owed_stages(stored, optional)
        if not lacking:
            self._refresh_metadata(record, self.metadata(path))
            self.report.unchanged += 1
            self._tick(path)
        return lacking

    # -- the Writer of new photos ----------------------------------------------------------

    def claimed_in_order(self, prepared: Iterator[Photo]) -> Iterator[Photo]:
        """Bytes are claimed in the order the files were found, not the order stage threads
        finish: of two copies, the first file found always owns the record."""
        for photo in prepared:
            if photo.rejected is None:
                self.claim(photo)
            yield photo

    def take(self, photo: Photo) -> bool:
        if photo.duplicate_of in self.rejected:  # the same bytes as a file rejected earlier: the same reason
            photo.rejected, photo.duplicate_of = self.rejected[photo.duplicate_of], None
        if photo.rejected is not None:
            self.rejected[str(photo.path)] = photo.rejected
            self._unclaim_copies_of(photo)
            self.report.skipped.append(SkippedFile(str(photo.path), photo.rejected.reason.value,
                                                   photo.rejected.detail))
            log.info("skipped %s: %s", photo.path, photo.rejected)
            self._tick(photo.path)
            return False
        if photo.duplicate_of is not None:
            if photo.written:  # a copy of a photo claimed earlier in this run, stored by its worker:
                self.rewrites.append(photo.id)  # the record describes the first file found
            self._known_bytes(photo)
            self._tick(photo.path)
            return False
        return True

    def commit(self, batch: list[Photo]) -> None:
        self._flush_updates()
        if not batch:
            return
        added_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        metadatas = [self._new_metadata(photo, added_at) for photo in batch]
        unwritten = [n for n, photo in enumerate(batch) if not photo.written]
        added_elsewhere: set[str] = set()
        if unwritten:
            if all(batch[n].vector is not None for n in unwritten):
                vectors = np.stack([batch[n].vector for n in unwritten])
            else:
                vectors = self.embed([batch[n].pixels for n in unwritten], len(unwritten))
            wanted = [batch[n].id for n in unwritten]
            # Another run (a second `index`, the page's uploads) may have added some since this
            # run looked: they count as there already, not as added by this run.
            with timed(self.times, "write", len(unwritten)):
                written = set(self.store.insert_new(wanted, vectors, [metadatas[n] for n in unwritten]))
            added_elsewhere = set(wanted) - written
        # A file edited in place now has new bytes: its old record describes nothing,
        # unless those bytes turn up under another name later in this run (a swap).
        for photo in batch:
            previous = self.by_path.get(str(photo.path))
            if previous is not None and previous.id != photo.id:
                self.displaced[previous.id] = previous
        for photo, metadata in zip(batch, metadatas):
            record = StoredRecord(photo.id, metadata)
            self.by_id[photo.id] = record
            self.by_path[str(photo.path)] = record
            if photo.id in added_elsewhere:
                self.report.unchanged += 1
            else:
                self.report.added.append(photo.id)
                self._note_failures(photo)
            self._tick(photo.path)
        self.report.written_by_workers += len(batch) - len(unwritten)
        if self.rewrites:
            self._flush_updates()
        log.info("committed %d new photos (%d this run)", len(batch), len(self.report.added))

    def _new_metadata(self, photo: Photo, added_at: str) -> dict[str, Any]:
        if photo.written:  # as its worker stored it
            return dict(photo.metadata)
        return new_record_metadata(photo, self.source, added_at, self.metadata(photo.path))

    def _note_failures(self, photo: Photo) -> None:
        for stage, why in photo.failed.items():
            self.report.stage_failures.append(StageFailure(str(photo.path), stage, why))
            log.warning("%s: indexed without its %s (%s); the next index tries again", photo.path, stage, why)

    # -- the Writer of stored photos given the stages they lacked -------------------------

    def completer(self, rerun: Sequence[str]) -> "CompletionWriter":
        return CompletionWriter(self, rerun)

    # -- bytes seen before ----------------------------------------------------------------

    def claim(self, photo: Photo) -> bool:
        """Whether these bytes are stored or were claimed by another file in this run already
        (then ``duplicate_of`` says where); else this file claims them."""
        with self.claim_lock:
            stored = self.by_id.get(photo.id)
            if stored is not None:
                photo.duplicate_of = stored.metadata.get("path") or stored.metadata.get("url", "")
                return True
            if photo.id in self.claimed:
                photo.duplicate_of = self.claimed[photo.id]
                return True
            self.claimed[photo.id] = str(photo.path)
        return False

    def _unclaim_copies_of(self, rejected: Photo) -> None:
        """Files reported as copies of one that turned out unusable (stage threads claim bytes in
        the order they get to them): skipped for the same reason instead."""
        path = str(rejected.path)
        copies = [d for d in self.report.duplicates if d.duplicate_of == path]
        if copies:
            self.report.duplicates = [d for d in self.report.duplicates if d.duplicate_of != path]
            self.report.skipped += [SkippedFile(d.path, rejected.rejected.reason.value, rejected.rejected.detail)
                                    for d in copies]

    def _known_bytes(self, photo: Photo) -> None:
        """Bytes already stored: same file touched, a moved (or renamed, or swapped)
        file, or a true duplicate. A record's path follows its bytes."""
        stored = self.by_id.get(photo.id)
        path = str(photo.path)
        if stored is not None:
            stored_path = stored.metadata.get("path")
            if stored_path == path or (stored_path and not self._still_holds(stored_path, stored)):
                self._queue_update(stored, {"path": path, "size": photo.size, "mtime": photo.mtime,
                                            **self.metadata(photo.path)})
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
        self.report.duplicates.append(DuplicateFile(path, photo.duplicate_of or "", photo.id))

    def _still_holds(self, path: str, record: StoredRecord) -> bool:
        """Whether the file at ``path`` still has the record's bytes (so a copy elsewhere is a duplicate)."""
        try:
            if Path(path).stat().st_size != record.metadata.get("size", -1):
                return False
            return content_id(read_file_bytes(path, self.max_file_bytes)) == record.id
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

    # -- metadata updates -------------------------------------------------------------------

    def _refresh_metadata(self, record: StoredRecord, fields: dict[str, Any]) -> None:
        if any(record.metadata.get(key) != value for key, value in fields.items()):
            self._queue_update(record, fields)
            self.report.updated += 1

    def _queue_update(self, record: StoredRecord, fields: dict[str, Any]) -> None:
        record.metadata.update(fields)
        self.pending_updates.append((record.id, dict(record.metadata)))
        for key in [key for key, value in record.metadata.items() if value is None]:
            del record.metadata[key]  # stored as "remove this field" (``update_metadata``)
        if len(self.pending_updates) >= self.batch_size:
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

    def _tick(self, path: Path | None) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(IndexProgress(self.done, self.total, len(self.report.added),
                                        len(self.report.skipped), str(path)))

    # -- pruning ------------------------------------------------------------------------------

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


class CompletionWriter:
    """Stored photos, unchanged on disk, given the optional stages ``rerun`` they lacked or that
    failed on them before: their new fields merged into their records, nothing embedded."""

    def __init__(self, index: IndexWriter, rerun: Sequence[str]):
        self.index, self.rerun = index, list(rerun)

    def take(self, photo: Photo) -> bool:
        return True  # committed in batches, as new photos are: a kill loses at most one batch

    def commit(self, batch: list[Photo]) -> None:
        index = self.index
        for photo in batch:
            record, failed = photo.record, dict(photo.failed)
            if photo.rejected is not None:  # unreadable now: every stage it lacked failed again
                failed = {name: photo.rejected.detail or str(photo.rejected) for name in self.rerun}
            fields = {**photo.fields, **index.metadata(photo.path),
                      FAILED_STAGES_FIELD: with_stages_rerun(record.metadata, self.rerun, failed)}
            index._refresh_metadata(record, fields)
            index.report.facts_read += 1
            index.report.unchanged += 1
            for stage, why in failed.items():
                index.report.stage_failures.append(StageFailure(str(photo.path), stage, why))
            index._tick(photo.path)
        index._flush_updates()
        if batch:
            log.info("committed the missing stages of %d photos indexed before", len(batch))
