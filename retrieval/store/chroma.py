"""The ChromaDB backend: embedded (a store folder) or a ``chroma run`` server.

This is the only module that imports ``chromadb``. It translates the product's
filter types (``filters.py`` here) into Chroma's ``where`` syntax, and Chroma's
failures (a server that went away, a full disk, a damaged file) into messages
that say what to do. The collection records which model made its vectors and
refuses to mix in vectors from another one.

Several processes on one embedded store (the app open while ``index`` runs in a
terminal, or two ``index`` runs at once): every write holds an exclusive lock on
a file in the store folder, and before each operation the store checks Chroma's
log position; when another process has written since, it reopens its client, so
it sees the new photos and never writes over them from a stale view.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import threading
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .chroma_import import import_chromadb
from .chroma_log import SQLITE_FILE as _SQLITE_FILE, log_position

chromadb = import_chromadb()
from chromadb.errors import ChromaError, NotFoundError  # noqa: E402 - after the import above

from ..errors import RetrievalError, first_line
from .filters import AllOf, Condition, OneOf, TagRule, normalise
from ..model_signature import ModelSignature
from ..settings import ChromaSettings
from .contract import Match, PhotoStore, StoredRecord, bind_facts, clean_metadata
from .documents import document_of
from .documents import normalise as normalise_text

log = logging.getLogger(__name__)

_READ_PAGE = 2000
# Cosine distance; a wider search beam than Chroma's default (100) keeps recall@10
# of the approximate index at 0.99+ of exact search at 100k+ photos (see the
# benchmark's "ANN recall@10"), for well under a millisecond more per query.
HNSW_CONFIGURATION = {"space": "cosine", "ef_search": 200}
_LOCK_FILE = ".write.lock"
_LOW_DISK_BYTES = 16 * 1024 * 1024  # below this much free space a failed write is a full disk


# -- filters: the product's types in Chroma's syntax ----------------------------

_CHROMA_OPERATOR = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def _all(clauses: list[dict]) -> dict | None:
    clauses = [c for c in clauses if c]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _any(clauses: list[dict]) -> dict:
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def _condition_clause(field: str, condition: Condition) -> dict:
    if isinstance(condition, AllOf):
        return _all([_condition_clause(field, c) for c in condition.comparisons])
    if isinstance(condition, OneOf):
        by_type: dict[type, list] = {}
        for value in condition.values:  # Chroma's $in takes values of one type
            by_type.setdefault(type(value), []).append(value)
        return _any([{field: {"$in": values}} for values in by_type.values()])
    clause = {field: {_CHROMA_OPERATOR[condition.op]: condition.value}}
    if condition.text is None or condition.op not in ("=", "!="):
        return clause
    as_text = {field: {_CHROMA_OPERATOR[condition.op]: condition.text}}  # the number as typed
    return {"$or": [clause, as_text]} if condition.op == "=" else {"$and": [clause, as_text]}


def _tag_clause(rule: TagRule | None) -> dict | None:
    if rule is None or not rule.tags:
        return None
    has = [{"tags": {"$contains": tag}} for tag in rule.tags]
    count = max(1, min(rule.at_least, len(has)))
    if count == len(has):
        return _all(has)
    if count == 1:
        return _any(has)
    return {"$or": [_all(list(group)) for group in combinations(has, count)]}


_COMPARE = {"$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b, "$gt": lambda a, b: a > b,
            "$gte": lambda a, b: a >= b, "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}


def holds_where(metadata: dict[str, Any], where: dict) -> bool:
    """Whether a record's metadata meets a ``where`` clause as ``chroma_where`` writes them (the
    operators it uses), as Chroma itself decides: a field the record lacks meets nothing but ``$ne``,
    and text never equals a number."""
    if "$and" in where:
        return all(holds_where(metadata, part) for part in where["$and"])
    if "$or" in where:
        return any(holds_where(metadata, part) for part in where["$or"])
    (field, test), = where.items()
    (operator, wanted), = test.items()
    if operator == "$ne":  # as Chroma: a record without the field, or with another kind of value, differs
        return field not in metadata or not (_same_kind(metadata[field], wanted) and metadata[field] == wanted)
    if field not in metadata:
        return False
    value = metadata[field]
    if operator == "$contains":
        return isinstance(value, list) and wanted in value
    if operator == "$in":
        return any(_same_kind(value, w) and value == w for w in wanted)
    return _same_kind(value, wanted) and _COMPARE[operator](value, wanted)


def _same_kind(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool)
    if isinstance(value, (int, float)):
        return isinstance(wanted, (int, float))
    return type(value) is type(wanted)


def chroma_where(filters: dict[str, Any] | None, tags: TagRule | None = None) -> dict | None:
    """One Chroma ``where`` clause: every filter and the tag rule, combined with AND."""
    clauses = [_condition_clause(field, c) for field, c in normalise(filters).items()]
    return _all(clauses + [_tag_clause(tags)])


# -- one embedded client per store folder in this process --------------------------

@contextlib.contextmanager
def _folder_lock(folder: Path, kind: int):
    """A lock every process using this store folder honours (``flock`` on a file in it)."""
    try:
        handle = open(folder / _LOCK_FILE, "a+b")
    except OSError:  # a read-only store folder: no other writer can be there either
        yield
        return
    with handle:
        fcntl.flock(handle, kind)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _exclusive(folder: Path):
    return _folder_lock(folder, fcntl.LOCK_EX)


class _LocalConnection:
    """The embedded Chroma client of one store folder, shared by every store object
    of this process on that folder, and reopened when another process wrote."""

    _open: dict[str, "_LocalConnection"] = {}
    _open_lock = threading.Lock()

    @classmethod
    def of(cls, folder: Path) -> "_LocalConnection":
        key = str(folder.resolve())
        with cls._open_lock:
            if key not in cls._open:
                cls._open[key] = cls(Path(key))
            return cls._open[key]

    def __init__(self, folder: Path):
        self.folder = folder
        self.lock = threading.RLock()
        self.generation = 0
        self.client = self._new_client()
        self._stamp = self._log_position()

    def _new_client(self):
        return chromadb.PersistentClient(path=str(self.folder),
                                         settings=chromadb.Settings(anonymized_telemetry=False))

    def _log_position(self) -> Any:
        """Where Chroma's write log stands: it moves with every write of any process."""
        return log_position(self.folder)

    def _refresh(self) -> None:
        position = self._log_position()
        if position == self._stamp:
            return
        log.info("the store at %s was changed by another process; reopening it", self.folder)
        from chromadb.api.shared_system_client import SharedSystemClient

        with SharedSystemClient._refcount_lock:  # drop the cached system so the files are read again
            system = SharedSystemClient._identifier_to_system.pop(str(self.folder), None)
            SharedSystemClient._identifier_to_refcount.pop(str(self.folder), None)
        if system is not None:
            with contextlib.suppress(Exception):
                system.stop()
        self.client = self._new_client()
        self.generation += 1
        self._stamp = position

    @contextlib.contextmanager
    def reading(self):
        with self.lock, _folder_lock(self.folder, fcntl.LOCK_SH):
            self._refresh()
            yield

    @contextlib.contextmanager
    def writing(self):
        with self.lock, _exclusive(self.folder):
            self._refresh()  # never write from a view older than the files
            try:
                yield
            finally:
                self._stamp = self._log_position()  # our own write is not news


class _ServerConnection:
    """A Chroma server serialises its writers itself: nothing to reopen."""

    def __init__(self, client):
        self.client = client
        self.lock = threading.RLock()
        self.generation = 0

    @contextlib.contextmanager
    def reading(self):
        yield

    writing = reading


# -- failures in words ----------------------------------------------------------

class _Failures:
    """Turns what Chroma, the network or the disk raise into a RetrievalError."""

    def __init__(self, settings: ChromaSettings):
        self.settings = settings
        self.location = settings.location

    def server_down(self, exc: BaseException) -> RetrievalError:
        return RetrievalError(
            f"The Chroma server at {self.location} is unreachable ({first_line(exc)}). Start it again "
            f"(`chroma run --path chroma_store --port {self.settings.port}`) and repeat the "
            "command: everything committed so far is kept. Or unset CHROMA_HOST to use a local store."
        )

    def disk_full(self) -> RetrievalError:
        return RetrievalError(
            f"The disk holding the store at {self.location} is full. Free some space and repeat the "
            "command: everything committed so far is kept."
        )

    def _disk_is_full(self) -> bool:
        if self.settings.host:
            return False
        try:
            return shutil.disk_usage(self.settings.path).free < _LOW_DISK_BYTES
        except OSError:
            return False

    def translate(self, exc: BaseException, doing: str) -> RetrievalError:
        import httpx

        if isinstance(exc, (httpx.TransportError, ConnectionError)):
            return self.server_down(exc)
        if isinstance(exc, OSError) and exc.errno == 28 or self._disk_is_full():
            return self.disk_full()
        if isinstance(exc, PermissionError):
            return RetrievalError(f"The store at {self.location} can't be {doing}: permission denied. "
                                  "Run as a user who may write there, or set CHROMA_PATH to another folder.")
        return RetrievalError(
            f"The store at {self.location} could not be {doing} ({type(exc).__name__}: {first_line(exc)})."
            f"{self._hint()}"
        )

    def _hint(self) -> str:
        if self.settings.host:
            return " Check the Chroma server's log."
        return (" If this keeps happening, run `python -m retrieval repair`, which mends a store that a "
                "write it could not apply has blocked; if that does not help, the store is damaged: move "
                "the folder aside and index your photos again.")

    @contextlib.contextmanager
    def guard(self, doing: str):
        try:
            yield
        except RetrievalError:
            raise
        except Exception as exc:
            import httpx

            if isinstance(exc, (ChromaError, OSError, ConnectionError, httpx.TransportError)):
                raise self.translate(exc, doing) from None
            raise


def _open_connection(settings: ChromaSettings, failures: _Failures):
    if settings.host:
        try:
            client = chromadb.HttpClient(host=settings.host, port=settings.port,
                                         settings=chromadb.Settings(anonymized_telemetry=False))
        except Exception as exc:  # chromadb raises many types for a server that isn't there
            raise failures.server_down(exc) from None
        return _ServerConnection(client)
    folder = settings.path
    database = folder / _SQLITE_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RetrievalError(f"Could not create the store folder {folder}: {exc.strerror or exc}. "
                             "Set CHROMA_PATH to a folder you can write to.") from None
    # Opening a new store writes its tables; another process creating the same store at this
    # moment would otherwise show us its file half-made (0 bytes) or race us through the migrations.
    with _exclusive(folder):
        if database.is_file() and database.stat().st_size == 0:
            raise RetrievalError(
                f"The store file {database.resolve()} is empty (0 bytes): it was cut off, for example by "
                "a full disk or a copy that did not finish. Restore it from a backup, or move the folder "
                "aside and index your photos again."
            )
        return _open_local(folder, database, settings, failures)


def _open_local(folder: Path, database: Path, settings: ChromaSettings, failures: _Failures) -> "_LocalConnection":
    try:
        return _LocalConnection.of(folder)
    except Exception as exc:  # noqa: BLE001 - chromadb raises many types for a bad store file
        message = first_line(exc)
        if "not a database" in message.lower() or "malformed" in message.lower() \
                or "file is not" in message.lower():
            raise RetrievalError(
                f"The store at {settings.location} is damaged ({message}). Restore "
                f"{database.name} from a backup, or move the folder aside and index your photos again."
            ) from None
        raise failures.translate(exc, "opened") from None


# -- the store ------------------------------------------------------------------

class ChromaStore(PhotoStore):
    def __init__(self, settings: ChromaSettings):
        self._settings = settings
        self.location = settings.location
        self.collection_name = settings.collection
        self._failures = _Failures(settings)
        self._connection = _open_connection(settings, self._failures)
        self._collection = None
        self._generation = self._connection.generation
        with self._failures.guard("opened"):
            self._max_batch = max(1, int(self._connection.client.get_max_batch_size()))

    # -- the collection and its model ---------------------------------------

    def _existing(self):
        """The collection as this process sees it now (call inside reading/writing)."""
        if self._generation != self._connection.generation:  # reopened: old handles are gone
            self._collection, self._generation = None, self._connection.generation
        if self._collection is None:
            try:
                self._collection = self._connection.client.get_collection(self.collection_name)
            except (NotFoundError, ValueError):
                return None
        return self._collection

    @contextlib.contextmanager
    def _reading(self, doing: str = "read"):
        with self._failures.guard(doing), self._connection.reading():
            yield self._existing()

    @contextlib.contextmanager
    def _writing(self):
        with self._failures.guard("written"), self._connection.writing():
            collection = self._existing()
            if collection is None:
                raise RuntimeError("PhotoStore.bind() must be called before writing")
            yield collection

    def recorded_model(self) -> dict[str, Any] | None:
        """The model the collection was built with, or ``None`` for a new store."""
        with self._reading() as collection:
            if collection is None or not collection.metadata or "model" not in collection.metadata:
                return None
            return dict(collection.metadata)

    def bind(self, signature: ModelSignature) -> None:
        with self._failures.guard("opened"), self._connection.writing():
            collection = self._existing()
            recorded = None
            if collection is not None:
                recorded = dict(collection.metadata or {})
            facts = bind_facts(recorded, collection.count() if collection is not None else 0,
                               signature, self.collection_name, self.location)
            if facts is None:
                return
            if collection is None or collection.count() == 0 or recorded.get(DOCUMENTED):
                facts = {**facts, DOCUMENTED: 1}  # every record written from now on has its document
            if collection is not None and recorded.get("dim") not in (None, signature.dim):
                # Empty (else bind_facts refused): Chroma keeps the vector size of the first vectors
                # ever added, so a model of another size needs the collection made anew.
                self._connection.client.delete_collection(self.collection_name)
                collection = self._collection = None
            if collection is None:
                self._collection = self._connection.client.get_or_create_collection(
                    self.collection_name,
                    metadata=facts,
                    configuration={"hnsw": HNSW_CONFIGURATION},
                    embedding_function=None,
                )
            else:
                collection.modify(metadata=facts)

    # -- reads --------------------------------------------------------------

    def count(self) -> int:
        with self._reading() as collection:
            return collection.count() if collection is not None else 0

    def get(self, ids: Sequence[str], with_embeddings: bool = False, filters: dict[str, Any] | None = None,
            tags: TagRule | None = None) -> list[StoredRecord]:
        ids = list(ids)
        include = ["metadatas", "embeddings"] if with_embeddings else ["metadatas"]
        where = chroma_where(filters, tags)
        records: list[StoredRecord] = []
        with self._reading() as collection:
            if collection is None:
                return []
            for start in range(0, len(ids), self._max_batch):
                # By ids alone, the filter applied here: Chroma 1.5 takes half a second or more for
                # ids and a where clause together (584 ms for 10 ids of 100,000), 3 ms for ids alone.
                got = collection.get(ids=ids[start : start + self._max_batch], include=include)
                records.extend(r for r in _records(got, with_embeddings) if where is None or holds_where(r.metadata, where))
        return records

    def find(self, filters: dict[str, Any] | None, tags: TagRule | None, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` records matching the filters (metadata only), in the store's own stable order."""
        where = chroma_where(filters, tags)
        with self._reading() as collection:
            if collection is None or limit < 1:
                return []
            return _records(collection.get(where=where, include=["metadatas"], limit=limit), False)

    def iter_all(self, filters: dict[str, Any] | None = None, tags: TagRule | None = None,
                 with_embeddings: bool = False) -> Iterator[StoredRecord]:
        where = chroma_where(filters, tags)
        include = ["metadatas", "embeddings"] if with_embeddings else ["metadatas"]
        offset = 0
        while True:
            with self._reading() as collection:
                if collection is None:
                    return
                got = collection.get(where=where, include=include, limit=_READ_PAGE, offset=offset)
            page = _records(got, with_embeddings)
            yield from page
            if len(page) < _READ_PAGE:
                return
            offset += len(page)

    def query(self, vector: np.ndarray, n: int, filters: dict[str, Any] | None = None,
              tags: TagRule | None = None, with_metadata: bool = True) -> list[Match]:
        where = chroma_where(filters, tags)
        with self._reading("searched") as collection:
            if collection is None or n <= 0:
                return []
            got = collection.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)],
                n_results=n,
                where=where,
                include=["metadatas", "distances"] if with_metadata else ["distances"],
            )
        metadatas = got["metadatas"][0] if with_metadata else [None] * len(got["ids"][0])
        return [
            Match(id=record_id, score=1.0 - float(distance), metadata=dict(metadata or {}))
            for record_id, distance, metadata in zip(got["ids"][0], got["distances"][0], metadatas)
        ]

    def ids_starting_with(self, prefix: str, limit: int = 2) -> list[str]:
        """Read ids only, page by page (no metadata): a short id resolves fast in a big collection."""
        found: list[str] = []
        offset = 0
        while len(found) < limit:
            with self._reading() as collection:
                if collection is None:
                    return found
                ids = collection.get(include=[], limit=_READ_PAGE, offset=offset)["ids"]
            found += [record_id for record_id in ids if record_id.startswith(prefix)][: limit - len(found)]
            if len(ids) < _READ_PAGE:
                return found
            offset += len(ids)
        return found

    def match_text(self, phrases: Sequence[str], *, any_of: bool = False, filters: dict[str, Any] | None = None,
                   tags: TagRule | None = None, limit: int | None = None) -> list[StoredRecord]:
        """Through Chroma's own full-text index over the records' documents (the generic scan for
        a collection whose older records have none yet: ``fill_documents``)."""
        clauses = [{"$contains": text} for p in phrases if (text := normalise_text(p))]
        with self._reading() as collection:
            if collection is None or not clauses:
                return []
            documented = bool((collection.metadata or {}).get(DOCUMENTED))
        if not documented:
            return super().match_text(phrases, any_of=any_of, filters=filters, tags=tags, limit=limit)
        where_document = clauses[0] if len(clauses) == 1 else {"$or" if any_of else "$and": clauses}
        with self._reading("searched") as collection:
            got = collection.get(where=chroma_where(filters, tags), where_document=where_document,
                                 include=["metadatas"], limit=limit)
        return _records(got, False)

    def change_marker(self) -> str | None:
        """Embedded Chroma's write log position (every write of any process moves it)."""
        if not isinstance(self._connection, _LocalConnection):
            return None
        position = self._connection._log_position()
        return None if position is None else f"{position}"

    def fill_documents(self) -> int:
        """Give the records written before documents were kept theirs (once per collection)."""
        with self._reading() as collection:
            if collection is None or (collection.metadata or {}).get(DOCUMENTED):
                return 0
        filled, offset = 0, 0
        while True:
            with self._writing() as collection:
                got = collection.get(include=["metadatas", "documents", "embeddings"], limit=_READ_PAGE,
                                     offset=offset)
                missing = [n for n, document in enumerate(got["documents"]) if not document]
                if missing:  # with their own vectors: Chroma embeds documents given without
                    collection.update(ids=[got["ids"][n] for n in missing],
                                      embeddings=np.asarray([got["embeddings"][n] for n in missing], dtype=np.float32),
                                      documents=[document_of(got["metadatas"][n] or {}) for n in missing])
                filled += len(missing)
            if len(got["ids"]) < _READ_PAGE:
                break
            offset += len(got["ids"])
        with self._writing() as collection:
            collection.modify(metadata={**(collection.metadata or {}), DOCUMENTED: 1})
        return filled

    def known_fields(self, sample: int = 200) -> set[str]:
        """Metadata field names seen on a sample of records (for "no such field" hints)."""
        with self._reading() as collection:
            if collection is None:
                return set()
            got = collection.get(include=["metadatas"], limit=sample)
        return {key for metadata in got["metadatas"] for key in (metadata or {})}

    # -- writes (each chunk is committed on its own) ------------------------

    def upsert(self, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict]) -> None:
        """Each record replaced whole: Chroma's upsert merges metadata, so the fields an existing
        record has and the new one lacks are removed (a ``None`` value removes a field)."""
        self._write_chunks(ids, embeddings, metadatas, only_new=False)

    def insert_new(self, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict]) -> list[str]:
        """Checked and written under the store's write lock, chunk by chunk: of two processes
        adding the same photo, exactly one writes it."""
        return self._write_chunks(ids, embeddings, metadatas, only_new=True)

    def _write_chunks(self, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict],
                      only_new: bool) -> list[str]:
        written: list[str] = []
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            chunk_ids = list(ids[start:end])
            with self._writing() as collection:
                old = collection.get(ids=chunk_ids, include=["metadatas"])
                old_keys = {i: set(m or {}) for i, m in zip(old["ids"], old["metadatas"])}
                keep = [n for n, record_id in enumerate(chunk_ids) if not (only_new and record_id in old_keys)]
                if not keep:
                    continue
                rows, documents = [], []
                for n in keep:
                    row: dict[str, Any] = clean_metadata(metadatas[start + n])
                    documents.append(document_of(row))
                    row.update({key: None for key in old_keys.get(chunk_ids[n], set()) - set(row)})
                    rows.append(row or None)
                vectors = np.asarray(embeddings[start:end], dtype=np.float32)[keep]
                collection.upsert(ids=[chunk_ids[n] for n in keep], embeddings=vectors, metadatas=rows,
                                  documents=documents)
                written.extend(chunk_ids[n] for n in keep)
        return written

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[dict]) -> None:
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            chunk_ids, updates = list(ids[start:end]), [_update_of(m) for m in metadatas[start:end]]
            with self._writing() as collection:
                # The document follows the merged fields. Chroma embeds documents given without
                # vectors, so each record's own vector goes with its new document.
                current = collection.get(ids=chunk_ids, include=["metadatas", "embeddings"])
                merged = {i: dict(m or {}) for i, m in zip(current["ids"], current["metadatas"])}
                vectors = dict(zip(current["ids"], current["embeddings"]))
                wanted = {record_id: update for record_id, update in zip(chunk_ids, updates) if record_id in merged}
                if not wanted:
                    continue
                for record_id, update in wanted.items():
                    merged[record_id].update(update)
                collection.update(
                    ids=list(wanted), metadatas=list(wanted.values()),
                    embeddings=np.asarray([vectors[i] for i in wanted], dtype=np.float32),
                    documents=[document_of({k: v for k, v in merged[i].items() if v is not None}) for i in wanted])

    def companion(self, collection_name: str) -> "ChromaStore":
        return ChromaStore(replace(self._settings, collection=collection_name))

    def rename_collection(self, new_name: str) -> None:
        with self._failures.guard("written"), self._connection.writing():
            collection = self._existing()
            if collection is None:
                raise RetrievalError(f"The collection '{self.collection_name}' does not exist at {self.location}.")
            collection.modify(name=new_name)
            self.collection_name, self._collection = new_name, None

    def delete_records(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        if not ids:
            return
        for start in range(0, len(ids), self._max_batch):
            with self._failures.guard("written"), self._connection.writing():
                collection = self._existing()
                if collection is None:
                    return
                collection.delete(ids=ids[start : start + self._max_batch])


def _records(got: dict, with_embeddings: bool) -> list[StoredRecord]:
    embeddings = got.get("embeddings") if with_embeddings else None
    return [
        StoredRecord(
            id=record_id,
            metadata=dict(got["metadatas"][i] or {}),
            embedding=np.asarray(embeddings[i], dtype=np.float32) if embeddings is not None else None,
        )
        for i, record_id in enumerate(got["ids"])
    ]


def repair_local(settings: ChromaSettings):
    """Mend an embedded store whose log a record it could not apply has blocked (see
    ``chroma_repair``), then check that it reads again. Returns the ``RepairReport``."""
    from .chroma_repair import mend_log

    if settings.host:
        raise RetrievalError(
            f"`repair` mends a store folder on this machine; the store at {settings.location} is a "
            "Chroma server. Stop the server and run the repair with CHROMA_PATH set to its --path folder."
        )
    folder = settings.path
    database = folder / _SQLITE_FILE
    if not database.is_file():
        raise RetrievalError(f"There is no store at {folder.resolve()} (no {_SQLITE_FILE}): nothing to repair. "
                             "Set CHROMA_PATH to the store's folder.")
    with _exclusive(folder):
        report = mend_log(database)
    opened = _LocalConnection._open.get(str(folder.resolve()))
    if opened is not None:  # a client opened before the repair holds the old view: reopen it
        with opened.lock:
            opened._stamp = object()
            opened._refresh()
    store = ChromaStore(settings)
    report.count = store.count()  # raises, in words, when the store still can't be read
    return report


DOCUMENTED = "documents"  # in a collection's metadata: every record has its searchable text


def _update_of(metadata: dict) -> dict:
    """What Chroma's update takes: the cleaned fields, and None for each field to remove."""
    return {**clean_metadata(metadata), **{key: None for key, value in metadata.items() if value is None}}
