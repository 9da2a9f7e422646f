"""What an embedded Chroma store's files say without importing chromadb: where its write log
stands (it moves with every write of any process) and which collection a name is now.

Read with the standard library's sqlite3, read-only, so a command that only needs to know
whether the store changed (``chroma_snapshot.py``) never pays for chromadb's import.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

SQLITE_FILE = "chroma.sqlite3"


def _read(folder: Path, sql: str, *arguments) -> Any:
    database = folder / SQLITE_FILE
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute(sql, arguments).fetchone()


def log_position(folder: Path) -> Any:
    """Where Chroma's write log stands; None where there is no store."""
    try:
        return _read(folder, "SELECT MAX(seq_id) FROM embeddings_queue")[0]
    except sqlite3.Error:  # another Chroma layout: fall back to the file's change time
        try:
            stat = (folder / SQLITE_FILE).stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)


def collection_id(folder: Path, name: str) -> str | None:
    """The id Chroma gave the collection called ``name`` when it made it: a collection deleted and
    made again under the same name has another."""
    try:
        found = _read(folder, "SELECT id FROM collections WHERE name = ?", name)
    except sqlite3.Error:
        return None
    return found[0] if found else None
