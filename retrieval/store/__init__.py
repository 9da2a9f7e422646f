"""Where the photo vectors and their metadata live.

``open_store(settings)`` gives the backend ``STORE`` names: ChromaDB (the
default; embedded in a folder, or a ``chroma run`` server) or Milvus (Milvus Lite
in a folder, or a server or cluster). Everything else talks to the
:class:`PhotoStore` contract in ``contract.py``; only the backend modules import
their database client.
"""

from __future__ import annotations

from ..settings import Settings
from .contract import SCHEMA_VERSION, Match, PhotoStore, StoredRecord, clean_metadata

__all__ = ["SCHEMA_VERSION", "Match", "PhotoStore", "StoredRecord", "clean_metadata", "open_store", "repair_store"]


def open_store(settings: Settings) -> PhotoStore:
    if settings.store_backend == "milvus":
        try:
            from .milvus import MilvusStore
        except ImportError as exc:
            from ..errors import RetrievalError

            raise RetrievalError(f"STORE={settings.store} needs the Milvus client ({exc.name} is missing): "
                                 "pip install pymilvus milvus-lite") from None
        return MilvusStore(settings.milvus)
    from .chroma import ChromaStore

    return ChromaStore(settings.chroma)


def repair_store(settings: Settings):
    """Mend a store that a record it could not apply has blocked; a ``RepairReport``. Only embedded
    Chroma applies its writes after committing them: a Milvus store refuses such a record at once."""
    if settings.store_backend == "milvus":
        from ..errors import RetrievalError

        raise RetrievalError(f"A Milvus store ({settings.store_location}) refuses a record it can't take "
                             "when it is written, so it needs no repair: its error says what was refused.")
    from .chroma import repair_local

    return repair_local(settings.chroma)
