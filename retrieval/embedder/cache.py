"""The folder where the product remembers per-machine facts about models (``CACHE_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``CACHE_DIR``, else ``$XDG_CACHE_HOME/photo-search``, else ``~/.cache/photo-search``."""
    configured = os.environ.get("CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "photo-search"
