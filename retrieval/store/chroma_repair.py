"""Mend an embedded Chroma store that a write it could not apply has blocked.

Why a store can break: embedded Chroma commits every write to a log table
(``embeddings_queue``) at once and applies the log to its metadata tables on the
next read. A record the metadata tables can't take (more list items or fields
than SQLite binds in one statement) fails that step, stays first in line, and
every later read and write fails behind it ("Failed to apply logs to the metadata
segment"). Nothing is lost: the records are still in the log. The repair cuts
every logged record to the limits every backend accepts (``field_limits``), so the
log applies; the photo keeps its vector and all but the cut part of its metadata.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RetrievalError
from .field_limits import fit_to_limits


@dataclass
class RepairReport:
    location: str
    checked: int = 0  # log entries read
    mended: list[str] = field(default_factory=list)  # ids of the records that were cut to the limits
    notes: list[str] = field(default_factory=list)  # what was cut, record by record
    count: int | None = None  # records the store reads after the repair


def mend_log(database: Path) -> RepairReport:
    """Cut each logged record to the limits (the caller holds the store's write lock)."""
    report = RepairReport(location=str(database.parent))
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
            rows = db.execute("SELECT seq_id, id, metadata FROM embeddings_queue").fetchall()
            for seq_id, record_id, text in rows:
                report.checked += 1
                if not text:
                    continue
                try:
                    metadata = json.loads(text)
                except json.JSONDecodeError:
                    continue  # not ours to judge: Chroma wrote it
                if not isinstance(metadata, dict):
                    continue
                fitted, cut = fit_to_limits(metadata)
                if cut:
                    db.execute("UPDATE embeddings_queue SET metadata = ? WHERE seq_id = ?",
                               (json.dumps(fitted, ensure_ascii=False), seq_id))
                    report.mended.append(record_id)
                    report.notes.append(f"{record_id[:16]}: {'; '.join(cut)}")
            db.commit()
    except sqlite3.DatabaseError as exc:
        raise RetrievalError(
            f"The store file {database} can't be mended ({exc}): it is not a Chroma store this program "
            "can read. Restore it from a backup, or move the folder aside and index your photos again."
        ) from None
    return report
