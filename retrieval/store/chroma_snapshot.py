"""A read-only copy of an embedded Chroma collection, so a command that only searches it need not
import chromadb.

Importing chromadb is about half of a cold ``search`` (0.4 of 0.8 s on 2 cores of
an AMD EPYC), for a read that takes 20 ms once it is in. So ``index`` leaves a
snapshot of the collection in the cache (``CACHE_DIR/snapshots``): its ids,
vectors and metadata, stamped with where Chroma's write log stood and the
collection's id (``chroma_log.py``, read with sqlite3 alone). A command's
``search`` whose snapshot still carries the store's stamp answers from it, by
exact cosine over the vectors; any write since, by any process (the app, a tag
edit, another ``index``), moves the log, and the snapshot is no longer used.

It answers what needs no filter: a query with filters, tags, a phrase, regions
or descriptions by meaning, or a model other than the collection's, raises
``SnapshotCannotAnswer``, and the engine asks Chroma instead (``Engine.search``).
Collections of more than ``MAX_PHOTOS`` photos get none: writing it would add
seconds to every ``index`` that changes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..model_signature import ModelSignature
from ..settings import ChromaSettings
from .chroma_log import collection_id, log_position
from .contract import Match, PhotoStore, StoredRecord, bind_facts
from .filters import TagRule

log = logging.getLogger(__name__)

FORMAT = 1
MAX_PHOTOS = 20_000  # about 40 MB of vectors for a ViT-B/32, written in about a second


class SnapshotCannotAnswer(Exception):
    """The snapshot holds no answer to this: ask the store itself."""


def snapshot_path(cache: Path, settings: ChromaSettings) -> Path:
    key = hashlib.sha1(f"{settings.location}\n{settings.collection}".encode()).hexdigest()[:16]
    return cache / "snapshots" / f"{key}.npz"


def stamp_of(settings: ChromaSettings) -> tuple[str, str] | None:
    """(the write log's position, the collection's id) as the store's files say now; None for a
    server, or a store or collection that is not there."""
    if settings.host:
        return None
    folder = settings.path.expanduser()
    position = log_position(folder)
    made = collection_id(folder, settings.collection) if position is not None else None
    return None if made is None else (str(position), made)


def open_snapshot(settings: ChromaSettings, cache: Path) -> "SnapshotStore | None":
    """The collection's snapshot, if there is one and nothing was written since it was taken."""
    stamp = stamp_of(settings)
    path = snapshot_path(cache, settings)
    if stamp is None or not path.is_file():
        return None
    try:
        with np.load(path) as saved:
            if _stamp_in(saved) != stamp:
                return None
            return SnapshotStore(settings, stamp[0], {name: saved[name] for name in saved.files})
    except (OSError, ValueError, KeyError) as exc:  # a damaged cache file: Chroma answers
        log.debug("the snapshot at %s can't be read: %s", path, exc)
        return None


def _stamp_in(saved) -> tuple[str, str] | None:
    if int(saved["format"]) != FORMAT:
        return None
    return str(saved["position"]), str(saved["collection_id"])


def _is_current(path: Path, stamp: tuple[str, str]) -> bool:
    try:
        with np.load(path) as saved:
            return _stamp_in(saved) == stamp
    except (OSError, ValueError, KeyError):
        return False


def keep_snapshot(store: PhotoStore, settings: ChromaSettings, cache: Path) -> bool:
    """Take the collection's snapshot unless the one in the cache is current; whether one is now."""
    path = snapshot_path(cache, settings)
    stamp = stamp_of(settings)
    if stamp is None:
        return False
    if _is_current(path, stamp):
        return True
    if store.count() > MAX_PHOTOS:
        path.unlink(missing_ok=True)
        return False
    records = list(store.iter_all(with_embeddings=True))
    arrays = {
        "format": np.array(FORMAT), "position": np.array(stamp[0]), "collection_id": np.array(stamp[1]),
        "recorded_model": _text(json.dumps(store.recorded_model())),
        "regions": np.array(store.regions.count()), "meanings": np.array(store.meanings.count()),
        **_records_as_arrays(records),
    }
    if stamp_of(settings) != stamp:  # written to meanwhile: the next index takes it
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        try:
            np.savez(handle, **arrays)
        except BaseException:
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)  # a reader sees the old snapshot or the new one
    return True


def _records_as_arrays(records: list[StoredRecord]) -> dict[str, np.ndarray]:
    dim = len(records[0].embedding) if records else 0
    vectors = np.asarray([r.embedding for r in records], dtype=np.float32).reshape(len(records), dim)
    metadata = [json.dumps(r.metadata, ensure_ascii=False).encode() for r in records]
    return {"ids": _text(json.dumps([r.id for r in records])), "vectors": vectors,
            "norms": np.linalg.norm(vectors, axis=1).astype(np.float32),
            "metadata": _text(b"".join(metadata)),
            "metadata_ends": np.cumsum([len(m) for m in metadata], dtype=np.int64)}


def _text(value: str | bytes) -> np.ndarray:
    return np.frombuffer(value.encode() if isinstance(value, str) else value, dtype=np.uint8)


def _read_text(stored: np.ndarray) -> str:
    return stored.tobytes().decode()


class _Unanswerable(PhotoStore):
    """Every operation of the contract, refused: the snapshot answers only what it overrides."""

    def __init__(self, location: str, collection_name: str):
        self.location, self.collection_name = location, collection_name
        self._companions = None

    def _refuse(self, *_args, **_kwargs):
        raise SnapshotCannotAnswer(f"the snapshot of {self.collection_name} can't answer this")

    recorded_model = bind = count = get = find = iter_all = query = match_text = _refuse
    fill_documents = known_fields = upsert = update_metadata = delete_records = _refuse
    rename_collection = companion = ids_starting_with = _refuse

    def change_marker(self) -> str | None:
        return None


class _CountOnly(_Unanswerable):
    """A companion collection (regions, meanings): how many records it has, nothing else."""

    def __init__(self, location: str, collection_name: str, count: int):
        super().__init__(location, collection_name)
        self._count = count

    def count(self) -> int:
        return self._count


class SnapshotStore(_Unanswerable):
    def __init__(self, settings: ChromaSettings, position: str, saved: dict[str, np.ndarray]):
        super().__init__(settings.location, settings.collection)
        self._position = position
        self._ids: list[str] = json.loads(_read_text(saved["ids"]))
        self._row = {record_id: row for row, record_id in enumerate(self._ids)}
        self._vectors, self._norms = saved["vectors"], saved["norms"]
        self._metadata, self._metadata_ends = saved["metadata"], saved["metadata_ends"]
        self._recorded = json.loads(_read_text(saved["recorded_model"]))
        self._region_count, self._meaning_count = int(saved["regions"]), int(saved["meanings"])

    @property
    def regions(self) -> PhotoStore:
        return _CountOnly(self.location, self.collection_name + "-regions", self._region_count)

    @property
    def meanings(self) -> PhotoStore:
        return _CountOnly(self.location, self.collection_name + "-meanings", self._meaning_count)

    def change_marker(self) -> str | None:
        return self._position  # Chroma's own (ChromaStore.change_marker): the word index's stamp too

    def recorded_model(self) -> dict[str, Any] | None:
        return dict(self._recorded) if self._recorded else None

    def bind(self, signature: ModelSignature) -> None:
        """Nothing to write for the collection's own model; anything else is the store's to say."""
        try:
            needs_writing = bind_facts(self._recorded, self.count(), signature, self.collection_name, self.location)
        except Exception:  # noqa: BLE001 - another model's collection: the store's own error says so
            needs_writing = True
        if needs_writing is not None:
            self._refuse()

    def count(self) -> int:
        return len(self._ids)

    def _metadata_of(self, row: int) -> dict[str, Any]:
        start = int(self._metadata_ends[row - 1]) if row else 0
        return json.loads(self._metadata[start:int(self._metadata_ends[row])].tobytes())

    def _record(self, row: int, with_embeddings: bool) -> StoredRecord:
        embedding = np.array(self._vectors[row]) if with_embeddings else None
        return StoredRecord(self._ids[row], self._metadata_of(row), embedding)

    @staticmethod
    def _unfiltered(filters: dict | None, tags: TagRule | None) -> None:
        if filters or tags is not None:
            raise SnapshotCannotAnswer("a filter is the store's to apply")

    def get(self, ids: Sequence[str], with_embeddings: bool = False, filters: dict[str, Any] | None = None,
            tags: TagRule | None = None) -> list[StoredRecord]:
        self._unfiltered(filters, tags)
        return [self._record(self._row[i], with_embeddings) for i in dict.fromkeys(ids) if i in self._row]

    def iter_all(self, filters: dict[str, Any] | None = None, tags: TagRule | None = None,
                 with_embeddings: bool = False) -> Iterator[StoredRecord]:
        self._unfiltered(filters, tags)
        return (self._record(row, with_embeddings) for row in range(len(self._ids)))

    def query(self, vector: np.ndarray, n: int, filters: dict[str, Any] | None = None,
              tags: TagRule | None = None, with_metadata: bool = True) -> list[Match]:
        """Exact cosine (Chroma's index is approximate, at recall@10 0.99+ of this)."""
        self._unfiltered(filters, tags)
        if n <= 0 or not self._ids:
            return []
        query = np.asarray(vector, dtype=np.float32)
        scores = (self._vectors @ query) / np.maximum(self._norms * np.linalg.norm(query), 1e-12)
        best = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [Match(self._ids[row], float(scores[row]), self._metadata_of(row) if with_metadata else {})
                for row in best]

    def ids_starting_with(self, prefix: str, limit: int = 2) -> list[str]:
        return [i for i in self._ids if i.startswith(prefix)][:limit]
