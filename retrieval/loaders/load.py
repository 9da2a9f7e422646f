"""``load SOURCE``: pick photos from a source, fetch them, index them, report.

SOURCE is one of ``unsplash-lite[:FOLDER|ARCHIVE|URL]``, ``kaggle:OWNER/DATASET``,
``hf:DATASET[:SPLIT]`` (a hub id, a local dataset folder or parquet file) and
``folder:DIR``. Re-running the same command is idempotent: files already on disk
are not fetched again and photos already stored are not embedded again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import RetrievalError
from ..indexing.ingest import IndexReport, ProgressCallback
from .download import DownloadFailure
from .sources import LoadOptions, Prepared, from_folder, from_huggingface, from_kaggle, from_unsplash

SOURCE_KINDS = ("unsplash-lite", "kaggle", "hf", "folder")


@dataclass
class LoadReport:
    source: str
    available: int
    selected: int
    downloaded: int
    already_on_disk: int
    failures: list[DownloadFailure] = field(default_factory=list)
    index: IndexReport | None = None

    def to_dict(self) -> dict[str, Any]:
        index = self.index.to_dict() if self.index else {}
        index.pop("added_ids", None)
        return {
            "source": self.source,
            "available": self.available,
            "selected": self.selected,
            "downloaded": self.downloaded,
            "already_on_disk": self.already_on_disk,
            "failed_downloads": [asdict(f) for f in self.failures],
            "index": index,
        }


def default_dest(spec: str) -> Path:
    """data/<source name>: one folder per source, reused by later runs."""
    name = spec.split(":", 1)[1] if spec.startswith(("kaggle:", "hf:")) else spec.split(":", 1)[0]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/")) or "dataset"
    return Path("data") / safe


def prepare(spec: str, options: LoadOptions, progress: Callable[[int], None] | None = None) -> Prepared:
    kind, _, value = spec.partition(":")
    if kind == "unsplash-lite":
        return from_unsplash(value or None, options, progress)
    if kind == "kaggle" and value:
        return from_kaggle(value, options)
    if kind == "hf" and value:
        return from_huggingface(value, options, progress)
    if kind == "folder" and value:
        return from_folder(Path(value), options)
    raise RetrievalError(f"Unknown source {spec!r}: use unsplash-lite[:PATH|URL], kaggle:OWNER/DATASET, "
                         "hf:DATASET[:SPLIT] or folder:DIR.")


def load(engine, spec: str, options: LoadOptions, *, fetch_progress: Callable[[int], None] | None = None,
         index_progress: ProgressCallback | None = None, meaning: bool | None = None) -> LoadReport:
    """Fetch the photos ``spec`` names and index them with their metadata; ``meaning``: embed their
    descriptions by meaning too (None: the MEANING setting)."""
    prepared = prepare(spec, options, fetch_progress)
    report = LoadReport(prepared.label, prepared.available, prepared.selected,
                        prepared.downloaded, prepared.already_on_disk, prepared.failures)
    if prepared.files:
        report.index = engine.index(prepared.files, metadata=prepared.lookup, source=prepared.label,
                                    progress=index_progress, meaning=meaning)
    return report
