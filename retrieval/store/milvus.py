"""The Milvus backend: Milvus Lite in a local folder, or a Milvus server or cluster by URI.

This is the only module that imports ``pymilvus``. Records keep their id and
vector in two schema fields; every metadata field is a dynamic field, so any
table's columns can be filtered without a schema change. The product's filter
types are written here as Milvus boolean expressions, with the same meaning the
Chroma backend gives them (``!=`` also matches records without the field, as
Chroma's ``$ne`` does). The model facts live in the collection's properties.

Milvus Lite (``STORE=milvus:FOLDER``) runs in this process and keeps its folder
to itself: a second process on the same folder is refused with a message. A
Milvus server (``STORE=milvus://HOST:PORT``) takes any number of writers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
import threading
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import RetrievalError, first_line
from .filters import AllOf, Compare, Condition, OneOf, TagRule, normalise
from ..model_signature import ModelSignature
from ..settings import MilvusSettings
from .contract import Match, PhotoStore, StoredRecord, bind_facts, clean_metadata
from .documents import document_of
from .documents import normalise as normalise_text

log = logging.getLogger(__name__)

ID_FIELD = "_pk"  # leading underscores keep them apart from any metadata column
VECTOR_FIELD = "_vector"
DOCUMENT_FIELD = "_document"  # each record's searchable text (``documents.document_of``), a dynamic field
DOCUMENTED = "documents"  # in the facts: every record has its document
FACTS_PROPERTY = "photo_store"  # the model facts, as JSON, in the collection's properties
MAX_ID_LENGTH = 2048
MAX_RESULTS = 16384  # Milvus caps limit (and offset + limit) per request
_WRITE_BATCH = 1000
_READ_PAGE = 2000
# HNSW as in the Chroma backend; ef (the search beam) is at least 200 and at least n.
INDEX_PARAMS = {"M": 16, "efConstruction": 200}
SEARCH_EF = 200


# -- filters: the product's types as a Milvus expression ----------------------------

def _field(name: str) -> str:
    if name == "tags":
        return "tags"  # array functions take a plain field name
    return f"$meta[{json.dumps(name, ensure_ascii=False)}]"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _any(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _all(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"


def _condition(name: str, condition: Condition) -> str:
    field = _field(name)
    if isinstance(condition, AllOf):
        return _all([_condition(name, c) for c in condition.comparisons])
    if isinstance(condition, OneOf):
        return _any([f"{field} == {_literal(v)}" for v in condition.values])
    assert isinstance(condition, Compare)
    values = [condition.value]
    if condition.text is not None and condition.op in ("=", "!="):
        values.append(condition.text)  # the number as typed also matches a field stored as text
    if condition.op == "=":
        return _any([f"{field} == {_literal(v)}" for v in values])
    if condition.op == "!=":
        return f"({field} is null or " + _all([f"{field} != {_literal(v)}" for v in values]) + ")"
    return f"{field} {condition.op} {_literal(condition.value)}"


def _tags(rule: TagRule | None) -> str | None:
    if rule is None or not rule.tags:
        return None
    count = max(1, min(rule.at_least, len(rule.tags)))
    if count == 1:
        return _any([f"ARRAY_CONTAINS(tags, {_literal(t)})" for t in rule.tags])
    return _any([f"ARRAY_CONTAINS_ALL(tags, [{', '.join(_literal(t) for t in group)}])"
                 for group in combinations(rule.tags, count)])


def milvus_filter(filters: dict[str, Any] | None, tags: TagRule | None = None) -> str:
    """One Milvus boolean expression: every filter and the tag rule, combined with AND ('' = all)."""
    parts = [_condition(name, c) for name, c in normalise(filters).items()]
    tag_part = _tags(tags)
    if tag_part:
        parts.append(tag_part)
    return _all(parts) if parts else ""


# -- connections --------------------------------------------------------------------

_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()


def _lite_uri(folder: Path) -> str:
    from milvus_lite import server_manager_instance

    # The in-process server logs a traceback for each call it does not implement (the query
    # iterator asks for a timestamp, then does without): noise, not news.
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RetrievalError(f"Could not create the store folder {folder}: {exc.strerror or exc}.") from None
    if _locked_by_another_process(folder):
        raise RetrievalError(
            f"The Milvus Lite store at {folder.resolve()} is in use by another process (Milvus Lite "
            "serves one process at a time). Close the other program (the app, or an `index` run), or "
            "run a Milvus server and set STORE=milvus://HOST:PORT for several programs at once."
        )
    logging.getLogger("milvus_lite.server_manager").setLevel(logging.CRITICAL)  # we say it below
    uri = server_manager_instance.start_and_get_uri(str(folder))
    if uri is None:
        raise RetrievalError(f"The Milvus Lite store at {folder.resolve()} could not be opened. Check that "
                             "the folder is readable and writable, or move it aside and index again.")
    return uri


def _locked_by_another_process(folder: Path) -> bool:
    """Milvus Lite holds an exclusive ``flock`` on the folder's LOCK file while it is open."""
    lock = folder / "LOCK"
    if not lock.is_file():
        return False
    from milvus_lite import server_manager_instance

    if str(folder.resolve()) in server_manager_instance._servers:  # this process holds it
        return False
    try:
        with open(lock, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _client(settings: MilvusSettings):
    from pymilvus import MilvusClient

    # Set once pymilvus has configured its loggers: the iterator warns on every call that
    # Milvus Lite has no server timestamp ("use client-side ts instead"), which changes nothing.
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)

    lite = settings.lite_path
    if lite is not None:
        key = (str(lite.resolve()), None)
    else:
        key = ("http://" + settings.store[len("milvus://"):], settings.token)
    with _clients_lock:
        if key not in _clients:
            uri = _lite_uri(lite) if lite is not None else key[0]
            # Milvus Lite's gRPC server keeps gRPC's default of one ping per 5 minutes; the
            # client's 10 s keepalive makes it log "too_many_pings" errors on long runs.
            options = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": 0} \
                if lite is not None else {}
            try:
                _clients[key] = MilvusClient(uri=uri, token=settings.token or "", timeout=30,
                                             grpc_options=options)
            except Exception as exc:  # noqa: BLE001 - pymilvus raises many types for a missing server
                raise _server_down(settings, exc) from None
        return _clients[key]


def _server_down(settings: MilvusSettings, exc: BaseException) -> RetrievalError:
    return RetrievalError(
        f"The Milvus server at {settings.location} is unreachable ({first_line(exc)}). Start it "
        "again and repeat the command: everything committed so far is kept. Or set STORE=chroma "
        "to use a local store."
    )


# -- the store ------------------------------------------------------------------------

class MilvusStore(PhotoStore):
    def __init__(self, settings: MilvusSettings):
        self.settings = settings
        self.location = settings.location
        self.collection_name = settings.collection
        self._client = _client(settings)
        self._lock = threading.RLock()
        self._loaded: str | None = None

    @property
    def _name(self) -> str:
        """The collection's name in Milvus, which allows letters, digits and underscores only."""
        name = re.sub(r"[^A-Za-z0-9_]", "_", self.collection_name)
        return name if name[:1].isalpha() or name[:1] == "_" else f"_{name}"

    @contextlib.contextmanager
    def _guard(self, doing: str):
        from pymilvus.exceptions import MilvusException

        try:
            yield
        except RetrievalError:
            raise
        except MilvusException as exc:
            message = first_line(exc)
            if any(word in message.lower() for word in ("unavailable", "connect", "deadline")):
                raise _server_down(self.settings, exc) from None
            raise RetrievalError(f"The store at {self.location} could not be {doing} ({message}).") from None
        except OSError as exc:
            if exc.errno == 28:
                raise RetrievalError(f"The disk holding the store at {self.location} is full. Free some "
                                     "space and repeat the command: everything committed so far is kept.") from None
            raise RetrievalError(f"The store at {self.location} could not be {doing} ({exc}).") from None

    def _exists(self) -> bool:
        """Whether the collection is there; loaded for reading on first sight (a collection is
        "released" after a restart until someone loads it). Once loaded it is not asked again:
        every operation would otherwise pay one more round trip."""
        if self._loaded == self._name:
            return True
        if not self._client.has_collection(self._name):
            self._loaded = None
            return False
        if self._loaded != self._name:
            self._client.load_collection(self._name)
            self._loaded = self._name
        return True

    # -- the collection and its model ---------------------------------------

    def recorded_model(self) -> dict[str, Any] | None:
        with self._guard("read"):
            facts = self._facts()
        return facts if facts and "model" in facts else None

    def _facts(self) -> dict[str, Any] | None:
        if not self._exists():
            return None
        properties = self._client.describe_collection(self._name).get("properties") or {}
        try:
            return json.loads(properties.get(FACTS_PROPERTY, "{}"))
        except ValueError:
            return {}

    def bind(self, signature: ModelSignature) -> None:
        with self._lock, self._guard("opened"):
            recorded = self._facts()
            count = self.count() if recorded is not None else 0
            facts = bind_facts(recorded, count, signature, self.collection_name, self.location)
            if facts is None:
                return
            if recorded is None or count == 0 or recorded.get(DOCUMENTED):
                facts = {**facts, DOCUMENTED: 1}  # every record written from now on has its document
            if recorded is None:
                self._create(signature.dim, facts)
            elif recorded.get("dim") != signature.dim:  # empty: the schema's vector size changes
                self._client.drop_collection(self._name)
                self._loaded = None
                self._create(signature.dim, facts)
            else:
                self._client.alter_collection_properties(
                    self._name, properties={FACTS_PROPERTY: json.dumps(facts)})

    def _create(self, dim: int, facts: dict[str, Any]) -> None:
        from pymilvus import DataType

        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        index = self._client.prepare_index_params()
        index.add_index(VECTOR_FIELD, metric_type="COSINE", index_type="HNSW", params=INDEX_PARAMS)
        self._client.create_collection(self._name, schema=schema, index_params=index,
                                       consistency_level="Strong",
                                       properties={FACTS_PROPERTY: json.dumps(facts)})

    # -- reads --------------------------------------------------------------

    def count(self) -> int:
        with self._guard("read"):
            if not self._exists():
                return 0
            got = self._client.query(self._name, filter="", output_fields=["count(*)"],
                                     consistency_level="Strong")
        return int(got[0]["count(*)"]) if got else 0

    def get(self, ids: Sequence[str], with_embeddings: bool = False, filters: dict[str, Any] | None = None,
            tags: TagRule | None = None) -> list[StoredRecord]:
        ids = list(ids)
        expression = milvus_filter(filters, tags)
        if expression and ids:  # only those of the ids that match
            return [record for start in range(0, len(ids), _READ_PAGE)
                    for record in self._paged(f"{ID_FIELD} in {json.dumps(ids[start:start + _READ_PAGE])} "
                                              f"and {expression}", with_embeddings)]
        records: list[StoredRecord] = []
        with self._guard("read"):
            if not ids or not self._exists():
                return []
            for start in range(0, len(ids), _READ_PAGE):
                rows = self._client.get(self._name, ids=ids[start:start + _READ_PAGE],
                                        output_fields=_fields(with_embeddings))
                records.extend(_record(row, with_embeddings) for row in rows)
        return records

    def find(self, filters: dict[str, Any] | None, tags: TagRule | None, limit: int) -> list[StoredRecord]:
        if limit < 1:
            return []
        return list(self._paged(milvus_filter(filters, tags), False, limit))

    def iter_all(self, filters: dict[str, Any] | None = None, tags: TagRule | None = None,
                 with_embeddings: bool = False) -> Iterator[StoredRecord]:
        """In id order: Milvus's query iterator walks the primary key, the one stable order it has.
        (A plain query is faster on Milvus Lite 3.2 but can pair a row's id with another row's
        fields once the collection spans several segments, so it is not used for reads.)"""
        yield from self._paged(milvus_filter(filters, tags), with_embeddings)

    def _paged(self, expression: str, with_embeddings: bool, limit: int = -1) -> Iterator[StoredRecord]:
        batch = _READ_PAGE if limit < 0 else max(1, min(limit, _READ_PAGE))
        with self._guard("read"):
            if not self._exists():
                return
            iterator = self._client.query_iterator(self._name, batch_size=batch, limit=limit,
                                                   filter=expression, output_fields=_fields(with_embeddings))
        try:
            while True:
                with self._guard("read"):
                    page = iterator.next()
                if not page:
                    return
                for row in page:
                    yield _record(row, with_embeddings)
        finally:
            with contextlib.suppress(Exception):
                iterator.close()

    def match_text(self, phrases: Sequence[str], *, any_of: bool = False, filters: dict[str, Any] | None = None,
                   tags: TagRule | None = None, limit: int | None = None) -> list[StoredRecord]:
        """Through a LIKE filter on each record's document (the generic scan for a collection whose
        older records have none yet: ``fill_documents``)."""
        texts = [text for phrase in phrases if (text := normalise_text(phrase))]
        with self._guard("read"):
            documented = bool((self._facts() or {}).get(DOCUMENTED))
        if not texts:
            return []
        if not documented:
            return super().match_text(phrases, any_of=any_of, filters=filters, tags=tags, limit=limit)
        # Words are letters and digits only (``documents.words``): nothing in them is LIKE's or a quote.
        likes = [f'{DOCUMENT_FIELD} like "%{text}%"' for text in texts]
        expression = _all([part for part in ((_any if any_of else _all)(likes), milvus_filter(filters, tags)) if part])
        return list(self._paged(expression, False, -1 if limit is None else limit))

    def fill_documents(self) -> int:
        """Give the records written before documents were kept theirs (once per collection)."""
        with self._guard("read"):
            facts = self._facts()
        if facts is None or facts.get(DOCUMENTED):
            return 0
        page: list[StoredRecord] = []
        filled = 0
        for record in self.iter_all(with_embeddings=True):
            page.append(record)
            if len(page) >= _WRITE_BATCH:
                filled += self._rewrite(page)
                page = []
        filled += self._rewrite(page)
        with self._lock, self._guard("written"):
            self._client.alter_collection_properties(
                self._name, properties={FACTS_PROPERTY: json.dumps({**facts, DOCUMENTED: 1})})
        return filled

    def _rewrite(self, records: list[StoredRecord]) -> int:
        if records:
            self.upsert([r.id for r in records], np.stack([r.embedding for r in records]),
                        [r.metadata for r in records])
        return len(records)

    def query(self, vector: np.ndarray, n: int, filters: dict[str, Any] | None = None,
              tags: TagRule | None = None, with_metadata: bool = True) -> list[Match]:
        expression = milvus_filter(filters, tags)
        n = min(int(n), MAX_RESULTS)
        with self._guard("searched"):
            if n <= 0 or not self._exists():
                return []
            got = self._client.search(
                self._name, data=[np.asarray(vector, dtype=np.float32).tolist()], limit=n,
                filter=expression, output_fields=["$meta"] if with_metadata else [], anns_field=VECTOR_FIELD,
                search_params={"metric_type": "COSINE", "params": {"ef": max(SEARCH_EF, n)}},
                consistency_level="Strong",
            )
        return [Match(id=hit[ID_FIELD], score=float(hit["distance"]), metadata=_metadata(hit.get("entity") or {}))
                for hit in got[0]]

    def known_fields(self, sample: int = 200) -> set[str]:
        return {key for record in self.find(None, None, sample) for key in record.metadata}

    # -- writes (each chunk is committed on its own) ------------------------

    def upsert(self, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict]) -> None:
        """Each record replaced whole. Milvus Lite merges the dynamic fields of an upsert into the
        old row, so the fields the new record lacks are written as null (read back as absent)."""
        vectors = np.asarray(embeddings, dtype=np.float32)
        for start in range(0, len(ids), _WRITE_BATCH):
            chunk = range(start, min(len(ids), start + _WRITE_BATCH))
            with self._lock, self._guard("written"):
                self._require()
                old = {r.id: r.metadata for r in self.get([ids[i] for i in chunk])}
                rows = []
                for i in chunk:
                    row = _row(ids[i], vectors[i], metadatas[i])
                    row.update({key: None for key in old.get(ids[i], {}) if key not in row})
                    rows.append(row)
                self._client.upsert(self._name, rows)
                if self.settings.lite_path is not None:
                    # Milvus Lite runs in this process: written to disk now, so a batch the indexer
                    # calls committed survives a kill (about 20 ms; a server keeps its own log).
                    self._client.flush(self._name)

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[dict]) -> None:
        """Merged into each record's metadata (as Chroma's update does), its vector kept; a field
        given as None is removed (written as null, which reads back as absent)."""
        for start in range(0, len(ids), _WRITE_BATCH):
            wanted = dict(zip(ids[start:start + _WRITE_BATCH], metadatas[start:start + _WRITE_BATCH]))
            with self._lock, self._guard("written"):
                self._require()
                current = self.get(list(wanted), with_embeddings=True)
                rows = []
                for r in current:
                    row = _row(r.id, r.embedding, {**r.metadata, **wanted[r.id]})
                    row.update({key: None for key in r.metadata if key not in row})  # a field set to None goes
                    rows.append(row)
                if rows:
                    self._client.upsert(self._name, rows)

    def delete_records(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), _WRITE_BATCH):
            with self._lock, self._guard("written"):
                if not self._exists():
                    return
                self._client.delete(self._name, ids=ids[start:start + _WRITE_BATCH])

    def companion(self, collection_name: str) -> "MilvusStore":
        return MilvusStore(replace(self.settings, collection=collection_name))

    def rename_collection(self, new_name: str) -> None:
        with self._lock, self._guard("written"):
            if not self._exists():
                raise RetrievalError(f"The collection '{self.collection_name}' does not exist at {self.location}.")
            old = self._name
            self.collection_name = new_name
            self._client.rename_collection(old, self._name)

    def _require(self) -> None:
        if not self._exists():
            raise RuntimeError("PhotoStore.bind() must be called before writing")


def _fields(with_embeddings: bool) -> list[str]:
    return ["$meta", VECTOR_FIELD] if with_embeddings else ["$meta"]


def _row(record_id: str, vector: np.ndarray, metadata: dict[str, Any]) -> dict[str, Any]:
    if len(record_id) > MAX_ID_LENGTH:
        raise RetrievalError(f"The record id '{record_id[:60]}…' is longer than {MAX_ID_LENGTH} characters.")
    row = {key: value for key, value in clean_metadata(metadata).items() if key not in (ID_FIELD, VECTOR_FIELD)}
    row[DOCUMENT_FIELD] = document_of(row)
    row[ID_FIELD] = record_id
    row[VECTOR_FIELD] = np.asarray(vector, dtype=np.float32).tolist()
    return row


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items()
            if key not in (ID_FIELD, VECTOR_FIELD, DOCUMENT_FIELD) and value is not None}


def _record(row: dict[str, Any], with_embeddings: bool) -> StoredRecord:
    embedding = np.asarray(row[VECTOR_FIELD], dtype=np.float32) if with_embeddings else None
    return StoredRecord(id=row[ID_FIELD], metadata=_metadata(row), embedding=embedding)
