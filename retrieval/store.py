"""The ChromaDB collection that holds the photo vectors and their metadata.

This is the only module that imports ``chromadb``. The collection records which
model made its vectors and refuses to mix in vectors from another one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import chromadb
import numpy as np
from chromadb.errors import NotFoundError

from .embedder import ModelSignature
from .errors import RetrievalError
from .settings import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_READ_PAGE = 2000
# Cosine distance; a wider search beam than Chroma's default (100) keeps recall@10
# of the approximate index at 0.99+ of exact search at 100k+ photos (see the
# benchmark's "ANN recall@10"), for well under a millisecond more per query.
HNSW_CONFIGURATION = {"space": "cosine", "ef_search": 200}


@dataclass
class StoredRecord:
    id: str
    metadata: dict[str, Any]
    embedding: np.ndarray | None = None


@dataclass
class Match:
    id: str
    score: float  # cosine similarity, higher is better
    metadata: dict[str, Any]


def clean_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Chroma accepts str/int/float/bool and non-empty homogeneous lists; drop the rest."""
    cleaned: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, (list, tuple)):
            cleaned[key] = [str(v) for v in value]
        elif isinstance(value, (bool, int, float, str)):
            cleaned[key] = value
        else:
            cleaned[key] = str(value)
    return cleaned


class PhotoStore:
    def __init__(self, settings: Settings):
        self.location = settings.store_location
        self.collection_name = settings.collection
        self._client = self._connect(settings)
        self._collection = None
        self._max_batch = max(1, int(self._client.get_max_batch_size()))

    @staticmethod
    def _connect(settings: Settings):
        chroma_settings = chromadb.Settings(anonymized_telemetry=False)
        try:
            if settings.chroma_host:
                return chromadb.HttpClient(
                    host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings
                )
            settings.chroma_path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
        except Exception as exc:  # chromadb raises many types for an unusable location
            if settings.chroma_host:
                hint = (
                    "Start one with `chroma run --path chroma_store --port "
                    f"{settings.chroma_port}`, or unset CHROMA_HOST to use the local store."
                )
            else:
                hint = "Set CHROMA_PATH to a folder you can write to."
            raise RetrievalError(
                f"Could not open the Chroma store at {settings.store_location}: {exc}. {hint}"
            ) from None

    # -- the collection and its model ---------------------------------------

    def _existing(self):
        if self._collection is None:
            try:
                self._collection = self._client.get_collection(self.collection_name)
            except (NotFoundError, ValueError):
                return None
        return self._collection

    def recorded_model(self) -> dict[str, Any] | None:
        """The model the collection was built with, or ``None`` for a new store."""
        collection = self._existing()
        if collection is None or not collection.metadata or "model" not in collection.metadata:
            return None
        return dict(collection.metadata)

    def bind(self, signature: ModelSignature) -> None:
        """Open (or create) the collection for this model; refuse another model's store."""
        wanted = {
            "model": signature.name,
            "dim": signature.dim,
            "fingerprint": signature.fingerprint,
            "schema_version": SCHEMA_VERSION,
        }
        collection = self._existing()
        if collection is None:
            self._collection = self._client.get_or_create_collection(
                self.collection_name,
                metadata=wanted,
                configuration={"hnsw": HNSW_CONFIGURATION},
                embedding_function=None,
            )
            return
        recorded = collection.metadata or {}
        if _same_model(recorded, wanted):
            return
        if collection.count() == 0:
            collection.modify(metadata=wanted)  # an empty store can change model freely
            return
        raise RetrievalError(
            f"The collection '{self.collection_name}' at {self.location} was built with the model "
            f"'{recorded.get('model')}' ({recorded.get('dim')}-dimensional vectors), but the current "
            f"model is '{signature.name}' ({signature.dim}). Set CLIP_MODEL={recorded.get('model')} "
            "to search it, or choose another store (CHROMA_PATH) or collection (CHROMA_COLLECTION) "
            "for the new model."
        )

    @property
    def _bound(self):
        if self._collection is None:
            raise RuntimeError("PhotoStore.bind() must be called before writing or querying")
        return self._collection

    # -- reads --------------------------------------------------------------

    def count(self) -> int:
        collection = self._existing()
        return collection.count() if collection is not None else 0

    def get(self, ids: Sequence[str], with_embeddings: bool = False) -> list[StoredRecord]:
        collection = self._existing()
        if collection is None or not ids:
            return []
        include = ["metadatas", "embeddings"] if with_embeddings else ["metadatas"]
        records: list[StoredRecord] = []
        for start in range(0, len(ids), self._max_batch):
            got = collection.get(ids=list(ids[start : start + self._max_batch]), include=include)
            records.extend(_records(got, with_embeddings))
        return records

    def find(self, where: dict | None, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` records matching ``where`` (metadata only), in the store's own stable order."""
        collection = self._existing()
        if collection is None or limit < 1:
            return []
        return _records(collection.get(where=where, include=["metadatas"], limit=limit), False)

    def iter_all(self, where: dict | None = None) -> Iterator[StoredRecord]:
        """Every record's id and metadata (no vectors), page by page."""
        collection = self._existing()
        if collection is None:
            return
        offset = 0
        while True:
            got = collection.get(where=where, include=["metadatas"], limit=_READ_PAGE, offset=offset)
            page = _records(got, False)
            yield from page
            if len(page) < _READ_PAGE:
                return
            offset += len(page)

    def query(self, vector: np.ndarray, n: int, where: dict | None = None) -> list[Match]:
        collection = self._existing()
        if collection is None or n <= 0:
            return []
        got = collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=n,
            where=where,
            include=["metadatas", "distances"],
        )
        return [
            Match(id=record_id, score=1.0 - float(distance), metadata=dict(metadata or {}))
            for record_id, distance, metadata in zip(
                got["ids"][0], got["distances"][0], got["metadatas"][0]
            )
        ]

    # -- writes (each chunk is committed on its own) ------------------------

    def upsert(self, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict]) -> None:
        collection = self._bound
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            collection.upsert(
                ids=list(ids[start:end]),
                embeddings=np.asarray(embeddings[start:end], dtype=np.float32),
                metadatas=[clean_metadata(m) for m in metadatas[start:end]],
            )

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[dict]) -> None:
        collection = self._bound
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            collection.update(
                ids=list(ids[start:end]), metadatas=[clean_metadata(m) for m in metadatas[start:end]]
            )

    def delete(self, ids: Sequence[str]) -> None:
        collection = self._existing()
        if collection is None:
            return
        for start in range(0, len(ids), self._max_batch):
            collection.delete(ids=list(ids[start : start + self._max_batch]))


def _same_model(recorded: dict, wanted: dict) -> bool:
    if recorded.get("dim") != wanted["dim"]:
        return False
    if recorded.get("fingerprint") and recorded.get("fingerprint") == wanted["fingerprint"]:
        return True  # same weights, wherever they were loaded from
    return recorded.get("model") == wanted["model"] and not recorded.get("fingerprint")


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
