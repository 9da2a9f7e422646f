"""Multimodal photo search: image-text embeddings (CLIP, SigLIP 2...) in a persistent ChromaDB collection."""

from .errors import RetrievalError
from .settings import Settings

__all__ = ["Engine", "RetrievalError", "Settings"]


def __getattr__(name: str):
    # The engine pulls in torch and transformers; import it only when asked for.
    if name == "Engine":
        from .engine import Engine

        return Engine
    raise AttributeError(name)
