"""What every store backend provides to the engine, and the rules they share.

The engine, the indexer and the searcher talk to a :class:`PhotoStore` and never
to a database client. Filters arrive as the product's own types
(``store/filters.py``); each backend translates them into its engine's syntax
inside its own module, so no other module writes ``$and`` or ``ARRAY_CONTAINS``.

A collection records which model made its vectors (``bind``) and which version
of this layout wrote it (``SCHEMA_VERSION``). Both are checked on every open: a
store from another model is refused with the way out; one from an older layout
is migrated, one from a newer layout is refused.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import RetrievalError
from .filters import TagRule
from ..model_signature import ModelSignature
from ..settings import MAX_REGIONS_PER_PHOTO
from .documents import document_of, holds
from .field_limits import fit_to_limits

# 1: one record per photo, its metadata flat (str/int/float/bool or lists of text); a photo's
#    regions, when it has any, in a second collection beside it (``REGIONS_SUFFIX``), and the
#    vector of its descriptions' meaning, when it has one, in a third (``MEANINGS_SUFFIX``).
log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
REGIONS_SUFFIX = "-regions"
MEANINGS_SUFFIX = "-meanings"
REGION_PHOTO_FIELD = "photo_id"  # a region record's photo


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


class PhotoStore(ABC):
    """One collection of photo vectors and their metadata."""

    location: str  # where the store is, in words a person can act on
    collection_name: str
    companion_of: "PhotoStore | None" = None  # the photo collection this one stands beside, if it does
    _companions: "dict[str, PhotoStore] | None" = None

    # -- the collection and its model --------------------------------------
    @abstractmethod
    def recorded_model(self) -> dict[str, Any] | None:
        """The facts ``bind`` recorded (model, dim, fingerprint, schema_version), or ``None``."""

    @abstractmethod
    def bind(self, signature: ModelSignature) -> None:
        """Open (or create) the collection for this model; refuse another model's collection."""

    # -- reads ---------------------------------------------------------------
    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def get(self, ids: Sequence[str], with_embeddings: bool = False, filters: dict[str, Any] | None = None,
            tags: TagRule | None = None) -> list[StoredRecord]:
        """The records with these ids that exist (and match the filters), in no particular order."""

    @abstractmethod
    def find(self, filters: dict[str, Any] | None, tags: TagRule | None, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` matching records (metadata only), in the store's own stable order."""

    @abstractmethod
    def iter_all(self, filters: dict[str, Any] | None = None, tags: TagRule | None = None,
                 with_embeddings: bool = False) -> Iterator[StoredRecord]:
        """Every matching record, page by page, in the same stable order as ``find``."""

    @abstractmethod
    def query(self, vector: np.ndarray, n: int, filters: dict[str, Any] | None = None,
              tags: TagRule | None = None, with_metadata: bool = True) -> list[Match]:
        """The ``n`` nearest matching records by cosine similarity, best first; without
        ``with_metadata``, ids and scores only (their metadata empty), for a ranking read deeper
        than the page it gives (half the cost of a query at 100,000 photos)."""

    def ids_starting_with(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to ``limit`` ids that begin with ``prefix`` (a short id people type)."""
        found: list[str] = []
        for record in self.iter_all():
            if record.id.startswith(prefix):
                found.append(record.id)
                if len(found) >= limit:
                    break
        return found

    def match_text(self, phrases: Sequence[str], *, any_of: bool = False, filters: dict[str, Any] | None = None,
                   tags: TagRule | None = None, limit: int | None = None) -> list[StoredRecord]:
        """Records (metadata only) whose searchable text (``documents.document_of``) holds every
        phrase, or one of them with ``any_of``, in the store's own order. Here by reading every
        record; a backend with a text index of its own uses it (embedded Chroma)."""
        found: list[StoredRecord] = []
        for record in self.iter_all(filters, tags):
            if holds(document_of(record.metadata), phrases, any_of):
                found.append(record)
                if limit is not None and len(found) >= limit:
                    break
        return found

    def change_marker(self) -> str | None:
        """A value that moves whenever any record changes, if the backend can tell cheaply (it lets a
        word index built from the documents be kept between commands); None here."""
        return None

    def fill_documents(self) -> int:
        """Give the records written before searchable text was kept theirs; how many (nothing to
        do for a backend that reads the text from the metadata, as ``match_text`` does here)."""
        return 0

    @abstractmethod
    def known_fields(self, sample: int = 200) -> set[str]:
        """Metadata field names seen on a sample of records (for "no such field" hints)."""

    # -- writes (each chunk is committed on its own) ------------------------
    @abstractmethod
    def upsert(self, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict]) -> None: ...

    def insert_new(self, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict]) -> list[str]:
        """Write only the records whose ids the collection does not hold yet; the ids written. Two
        runs adding the same photos at once each learn what they really added. A backend that
        can check and write under one lock does so (embedded Chroma); here the check comes just
        before the write."""
        present = {record.id for record in self.get(list(ids))}
        keep = [n for n, record_id in enumerate(ids) if record_id not in present]
        if keep:
            self.upsert([ids[n] for n in keep], np.asarray(embeddings)[keep], [metadatas[n] for n in keep])
        return [ids[n] for n in keep]

    @abstractmethod
    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[dict]) -> None:
        """Merge these fields into existing records' metadata, keeping their vectors; a field given
        as None is removed from the record."""

    @abstractmethod
    def delete_records(self, ids: Sequence[str]) -> None:
        """Delete these records of this collection only (``delete`` takes their regions too)."""

    @abstractmethod
    def rename_collection(self, new_name: str) -> None:
        """Give this collection another name (``rename`` moves its regions with it)."""

    @abstractmethod
    def companion(self, collection_name: str) -> "PhotoStore":
        """A store for another collection at the same place, with the same backend."""

    # -- photos and their companions: rules every backend shares ------------------

    @property
    def regions(self) -> "PhotoStore":
        """The regions of this collection's photos: records in a collection beside it, each with
        its photo's id (``REGION_PHOTO_FIELD``) and box, never results of their own."""
        return self._companion(REGIONS_SUFFIX)

    @property
    def meanings(self) -> "PhotoStore":
        """The meaning of this collection's photos' descriptions: one record per described photo,
        under the photo's own id, its vector a sentence model's (``indexing/meanings.py``)."""
        return self._companion(MEANINGS_SUFFIX)

    def _companion(self, suffix: str) -> "PhotoStore":
        if self.companion_of is not None:
            raise RuntimeError("a companion collection has no companions of its own")
        wanted = self.collection_name + suffix
        companions = self._companions if self._companions is not None else {}
        if companions.get(suffix) is None or companions[suffix].collection_name != wanted:
            companions[suffix] = self.companion(wanted)
            companions[suffix].companion_of = self
        self._companions = companions
        return companions[suffix]

    def delete(self, ids: Sequence[str]) -> None:
        """Delete photos with their regions and meanings; those first, so that a crash in between
        never leaves a region or a meaning whose photo is gone (the photo goes on the next run)."""
        ids = list(ids)
        if ids and self.companion_of is None:
            self.regions.delete_regions_of(ids)
            if self.meanings.count():
                self.meanings.delete_records(ids)
        self.delete_records(ids)

    def delete_regions_of(self, photo_ids: Sequence[str]) -> int:
        """(On a collection of regions) delete every region of these photos; how many there were."""
        photo_ids, deleted = list(dict.fromkeys(photo_ids)), 0
        for start in range(0, len(photo_ids), 500):
            chunk = photo_ids[start:start + 500]
            found = self.find({REGION_PHOTO_FIELD: chunk}, None, len(chunk) * MAX_REGIONS_PER_PHOTO)
            self.delete_records([record.id for record in found])
            deleted += len(found)
        return deleted

    def rename(self, new_name: str) -> None:
        """Give the collection another name (switching a collection to a new model); its regions
        and meanings follow it."""
        if self.companion_of is None:
            for suffix in (REGIONS_SUFFIX, MEANINGS_SUFFIX):
                if self._companion(suffix).count():
                    self._companion(suffix).rename_collection(new_name + suffix)
        self.rename_collection(new_name)
        self._companions = None


# -- rules every backend applies ------------------------------------------------

def clean_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """What every backend stores: str/int/float/bool and non-empty lists of text, the rest dropped,
    cut to the limits every backend can apply (``field_limits``)."""
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
    fitted, notes = fit_to_limits(cleaned)
    if notes:
        log.warning("record %s cut to the store's limits: %s", cleaned.get("path") or cleaned.get("filename", ""),
                    "; ".join(notes))
    return fitted


def model_facts(signature: ModelSignature) -> dict[str, Any]:
    """What a collection records about the model that made its vectors, and its layout."""
    return {"model": signature.name, "dim": signature.dim, "fingerprint": signature.fingerprint,
            "schema_version": SCHEMA_VERSION}


def same_model(recorded: dict, wanted: dict) -> bool:
    if recorded.get("dim") != wanted["dim"]:
        return False
    if recorded.get("fingerprint") and recorded.get("fingerprint") == wanted["fingerprint"]:
        return True  # same weights, wherever they were loaded from
    return recorded.get("model") == wanted["model"] and not recorded.get("fingerprint")


def check_schema(recorded: dict, collection: str, location: str) -> bool:
    """Whether the collection needs its recorded facts rewritten (an older layout, migrated);
    a layout newer than this version is refused. Collections from before the version was
    written are version 1."""
    try:
        version = int(recorded.get("schema_version", 1))
    except (TypeError, ValueError):
        version = 0
    if version > SCHEMA_VERSION:
        raise RetrievalError(
            f"The collection '{collection}' at {location} was written by a newer version of this "
            f"program (store layout {version}; this one reads up to {SCHEMA_VERSION}). Upgrade it "
            "(`pip install -r requirements.txt` from the newest release) to use this collection."
        )
    if version < 1:
        raise RetrievalError(
            f"The collection '{collection}' at {location} records an unknown store layout "
            f"({recorded.get('schema_version')!r}). Move it aside and index your photos again."
        )
    # No layout has been retired yet: every version up to SCHEMA_VERSION reads as it is, and
    # only the recorded number is brought up to date.
    return "schema_version" not in recorded or version < SCHEMA_VERSION


def model_mismatch(collection: str, location: str, recorded: dict, signature: ModelSignature) -> RetrievalError:
    return RetrievalError(
        f"The collection '{collection}' at {location} was built with the model "
        f"'{recorded.get('model')}' ({recorded.get('dim')}-dimensional vectors), but the current "
        f"model is '{signature.name}' ({signature.dim}). Set MODEL={recorded.get('model')} "
        "to search it, or move the collection to the new model with "
        f"`python -m retrieval reembed --model {signature.name}` (the old vectors are kept until you "
        "switch), or choose another store (STORE, CHROMA_PATH) or collection (CHROMA_COLLECTION)."
    )


def bind_facts(recorded: dict | None, count: int, signature: ModelSignature, collection: str,
               location: str) -> dict | None:
    """What ``bind`` must write: the facts for a new or re-stamped collection, ``None`` when the
    collection is fine as it is. Raises for another model's (non-empty) collection."""
    wanted = model_facts(signature)
    if recorded is None:
        return wanted
    if "model" in recorded:
        needs_stamp = check_schema(recorded, collection, location)
        if same_model(recorded, wanted):
            return wanted if needs_stamp else None
    if count == 0:
        return wanted  # an empty collection can change model freely
    raise model_mismatch(collection, location, recorded, signature)
