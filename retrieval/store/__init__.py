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

__all__ = ["SCHEMA_VERSION", "Match", "PhotoStore", "StoredRecord", "clean_metadata", "open_store"]


def open_store(settings: Settings) -> PhotoStore:
    if settings.store_backend == "milvus":
        try:
            from .milvus import MilvusStore
        except ImportError as exc:
            from ..errors import RetrievalError

            raise RetrievalError(f"STORE={settings.store} needs the Milvus client ({exc.name} is missing): "
                                 "pip install pymilvus milvus-lite") from None
        return MilvusStore(settings)
    from .chroma import ChromaStore

    return ChromaStore(settings)
