"""The folder where the product remembers per-machine facts about models (``CACHE_DIR``)."""

from __future__ import annotations

from pathlib import Path

from ..settings import cache_dir


def cache_root() -> Path:
    """``CACHE_DIR``, else ``$XDG_CACHE_HOME/photo-search``, else ``~/.cache/photo-search``."""
    return cache_dir()
