"""A collection as files: export to Parquet shards, import into any store backend.

An export is a folder: ``manifest.json`` (the model facts, the count, the shard
names) and ``part-NNNNN.parquet`` shards with three columns: ``id``, ``vector``
(float32, the model's dimension) and ``metadata`` (the record's metadata as JSON,
so numbers stay numbers and lists stay lists); the photos' regions (``index --regions``),
when they have any, go the same way into ``regions-NNNNN.parquet`` shards
(``region_shards``, ``region_count``), and the meanings of their descriptions
(``meanings-NNNNN.parquet``, ``meaning_shards``, ``meaning_count``, with the sentence model's
facts as ``meaning_model``). The manifest is written last: a folder without one is an export
that did not finish.

An import reads a folder or a Hugging Face dataset holding one (``hf:OWNER/NAME``
or ``OWNER/NAME``), binds the target collection to the export's model (a store
built with another model refuses it) and upserts the records, so it can be run
again after an interruption. No photo file travels: records point at their files
or their image URLs, which is how a Space can serve a collection built elsewhere.
An export written before regions travelled has none: its photos are imported without a
region count, so ``index --regions`` on the importing side gives them their own; one without
meanings leaves them to the importing side's next ``index``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RetrievalError
from ..model_signature import ModelSignature
from ..regions.records import REGION_COUNT_FIELD
from ..store import PhotoStore
from ..text.meanings import MEANING_STAMP_FIELD

FORMAT = "photo-search-collection"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SHARD_ROWS = 50_000
_WRITE_BATCH = 1000

Progress = Callable[[int, int], None]  # (records done, records in all)


@dataclass
class TransferReport:
    records: int
    folder: str
    model: str
    shards: int = 0
    skipped: bool = False  # import: the store held the export already
    regions: int = 0  # the photos' regions, with their boxes
    meanings: int = 0  # the photos' descriptions' meanings


def export_collection(store: PhotoStore, out: Path, *, shard_rows: int = DEFAULT_SHARD_ROWS,
                      progress: Progress | None = None) -> TransferReport:
    facts, total = store.recorded_model(), store.count()
    if not facts or not total:
        raise RetrievalError(f"The collection '{store.collection_name}' at {store.location} is empty: "
                             "there is nothing to export.")
    out = Path(out).expanduser()
    if (out / MANIFEST).exists():
        raise RetrievalError(f"{out} holds an export already. Choose another folder, or remove it first.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RetrievalError(f"Could not create {out}: {exc.strerror or exc}.") from None
    dim = int(facts["dim"])
    shards, written = _write_shards(store.iter_all(with_embeddings=True), out, "part", dim, shard_rows,
                                    progress, total)
    regions = store.regions
    region_shards, region_count = _write_shards(regions.iter_all(with_embeddings=True), out, "regions", dim,
                                                shard_rows) if regions.count() else ([], 0)
    meanings, meaning_facts = store.meanings, store.meanings.recorded_model()
    meaning_shards, meaning_count = _write_shards(
        meanings.iter_all(with_embeddings=True), out, "meanings", int(meaning_facts["dim"]),
        shard_rows) if meaning_facts and meanings.count() else ([], 0)
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "model": facts, "count": written,
                "collection": store.collection_name, "shards": shards,
                "region_count": region_count, "region_shards": region_shards,
                **({"meaning_model": meaning_facts, "meaning_count": meaning_count, "meaning_shards": meaning_shards}
                   if meaning_shards else {})}
    partial = out / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    os.replace(partial, out / MANIFEST)
    if progress:
        progress(written, total)
    return TransferReport(written, str(out.resolve()), str(facts.get("model")), len(shards), regions=region_count,
                          meanings=meaning_count)


def _write_shards(records, out: Path, prefix: str, dim: int, shard_rows: int, progress: Progress | None = None,
                  total: int = 0) -> tuple[list[str], int]:
    """``records`` as ``PREFIX-NNNNN.parquet`` shards of ``shard_rows`` (each written whole, then
    renamed into place): the shards' names and how many records they hold."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), dim)), ("metadata", pa.string())])
    shards: list[str] = []
    rows: list = []
    written = 0

    def flush() -> None:
        nonlocal rows
        if not rows:
            return
        name = f"{prefix}-{len(shards):05d}.parquet"
        ids, vectors, metadata = zip(*rows)
        table = pa.table({"id": list(ids),
                          "vector": pa.FixedSizeListArray.from_arrays(
                              pa.array(np.concatenate(vectors).astype(np.float32)), dim),
                          "metadata": list(metadata)}, schema=schema)
        partial = out / f".{name}.partial"
        pq.write_table(table, partial, compression="zstd")
        os.replace(partial, out / name)
        shards.append(name)
        rows = []

    for record in records:
        rows.append((record.id, record.embedding, json.dumps(record.metadata, ensure_ascii=False, sort_keys=True)))
        written += 1
        if len(rows) >= shard_rows:
            flush()
        if progress and written % _WRITE_BATCH == 0:
            progress(written, total)
    flush()
    return shards, written


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise RetrievalError(f"{folder} is not a collection export (it has no {MANIFEST}; an export that did "
                             "not finish has none either). Export it again with `python -m retrieval export`.")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise RetrievalError(f"{path} is damaged ({exc}). Export the collection again.") from None
    if manifest.get("format") != FORMAT:
        raise RetrievalError(f"{path} is not a photo collection export.")
    try:
        version = int(manifest.get("version", 0))
        model, count, shards = manifest["model"], int(manifest["count"]), manifest["shards"]
        dim = int(model["dim"])
        model["model"]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RetrievalError(f"{path} is damaged (its model, count or shard list is missing or malformed). "
                             "Export the collection again.") from None
    if version > FORMAT_VERSION:
        raise RetrievalError(f"{folder} was exported by a newer version of this program (format "
                             f"{manifest.get('version')}). Upgrade it to import this collection.")
    region_shards = manifest.setdefault("region_shards", [])  # none in an export from before regions travelled
    meaning_shards = manifest.setdefault("meaning_shards", [])  # none without meanings, or from before they travelled
    if count < 0 or dim < 1 or not all(isinstance(s, list) for s in (shards, region_shards, meaning_shards)):
        raise RetrievalError(f"{path} is damaged (count {count}, dimension {dim}). Export the collection again.")
    if meaning_shards:
        try:
            _meaning_signature(manifest)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RetrievalError(f"{path} is damaged (its sentence model is missing or malformed). Export the "
                                 "collection again.") from None
    for name in [*shards, *region_shards, *meaning_shards]:
        _shard_path(folder, name)
    return manifest


def _shard_path(folder: Path, name) -> Path:
    """A shard the manifest names: a plain file name inside the export folder, never a path that
    leads elsewhere (``../../other/part-00000.parquet``, ``/etc/passwd``)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        raise RetrievalError(f"The manifest of the export at {folder} names a shard outside its folder "
                             f"({str(name)[:80]!r}); an export's shards are files inside it. Export the collection "
                             "again.")
    return folder / name


def export_signature(manifest: dict) -> ModelSignature:
    return ModelSignature.from_facts(manifest["model"])


def _meaning_signature(manifest: dict) -> ModelSignature:
    return ModelSignature.from_facts(manifest["meaning_model"])


def locate_export(source: str) -> Path:
    """A local export folder, or one downloaded from a Hugging Face dataset (``hf:ID`` or ``ID``)."""
    text = source.strip()
    path = Path(text.removeprefix("file:")).expanduser()
    if path.exists() or text.startswith(("/", ".", "~", "file:")) or not text:
        if not path.is_dir():
            raise RetrievalError(f"The collection export {path} does not exist.")
        return path
    repo_id = text.removeprefix("hf:")
    if repo_id.count("/") != 1:
        raise RetrievalError(f"'{source}' is neither an export folder nor a Hugging Face dataset id (OWNER/NAME).")
    from ..hub import hub_unreachable

    why = hub_unreachable()
    if why:
        raise RetrievalError(f"The collection '{repo_id}' can't be downloaded from the Hugging Face Hub ({why}). "
                             "Download the export folder elsewhere and give its path.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=[MANIFEST, "*.parquet"]))
    except Exception as exc:  # noqa: BLE001 - the hub client raises its own kinds
        raise RetrievalError(f"Could not download the collection '{repo_id}' from the Hugging Face Hub "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).") from None


def import_collection(store: PhotoStore, folder: Path, *, progress: Progress | None = None,
                      only_if_needed: bool = False) -> TransferReport:
    """``only_if_needed``: leave a store that holds this export's model and count already as it is
    (the app, importing at every start)."""
    manifest = read_manifest(folder)
    signature = export_signature(manifest)
    total = int(manifest["count"])
    store.bind(signature)  # another model's collection refuses it here, before anything is written
    if only_if_needed and store.count() >= total:
        return TransferReport(store.count(), str(folder), signature.name, len(manifest["shards"]), skipped=True)
    meaning = _meaning_signature(manifest) if manifest["meaning_shards"] else None
    if meaning is not None:
        try:
            store.meanings.bind(meaning)
        except RetrievalError:  # this store's meanings are another sentence model's: its next index makes them
            meaning = None
    # What stayed behind goes from the photos too: their region count, the stamp of their meaning.
    dropped = (() if manifest["region_shards"] else (REGION_COUNT_FIELD,)) + (() if meaning else (MEANING_STAMP_FIELD,))
    photos = lambda: _checked_batches(folder, manifest["shards"], signature.dim, dropped)  # noqa: E731
    regions = lambda: _checked_batches(folder, manifest["region_shards"], signature.dim)  # noqa: E731
    meanings = lambda: _checked_batches(folder, manifest["meaning_shards"], meaning.dim)  # noqa: E731
    for _ in [*photos(), *regions(), *(meanings() if meaning else [])]:
        pass  # the whole export is checked before a record is written: a bad one changes nothing
    done = 0
    for ids, vectors, metadatas in photos():
        store.upsert(ids, vectors, metadatas)
        done += len(ids)
        if progress:
            progress(done, total)
    regions_done = 0
    if manifest["region_shards"]:
        store.regions.bind(signature)
        for ids, vectors, metadatas in regions():
            store.regions.upsert(ids, vectors, metadatas)
            regions_done += len(ids)
    meanings_done = 0
    if meaning is not None:
        for ids, vectors, metadatas in meanings():
            store.meanings.upsert(ids, vectors, metadatas)
            meanings_done += len(ids)
    return TransferReport(done, str(folder), signature.name, len(manifest["shards"]), regions=regions_done,
                          meanings=meanings_done)


def _checked_batches(folder: Path, shards: list[str], dim: int, dropped: tuple[str, ...] = ()):
    """The records of ``shards`` batch by batch, each checked (a bad one is named by shard and row),
    without the ``dropped`` fields."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    seen: set[str] = set()
    for name in shards:
        shard = _shard_path(folder, name)
        if not shard.is_file():
            raise RetrievalError(f"The export at {folder} lacks its shard {name}. Export the collection again.")
        row = 0
        try:
            batches = pq.ParquetFile(shard).iter_batches(batch_size=_WRITE_BATCH)
            for batch in batches:
                ids = batch.column("id").to_pylist()
                bad = lambda n, what: RetrievalError(  # noqa: E731
                    f"The export at {folder} is bad: row {row + n + 1} of {name} {what}. Nothing was imported; "
                    "export the collection again.")
                try:
                    vectors = np.asarray(batch.column("vector").to_pylist(), dtype=np.float32)
                except (TypeError, ValueError):
                    raise bad(0, "starts a batch of vectors of uneven length or not numbers") from None
                if vectors.ndim != 2 or vectors.shape[1] != dim:
                    raise RetrievalError(f"The shard {name} of the export at {folder} holds vectors of another "
                                         f"size than its manifest says ({dim}). Export the collection again.")
                finite = np.isfinite(vectors).all(axis=1)
                metadatas = []
                for n, (record_id, text) in enumerate(zip(ids, batch.column("metadata").to_pylist())):
                    if not isinstance(record_id, str) or not record_id.strip():
                        raise bad(n, "has no id")
                    if record_id in seen:
                        raise bad(n, f"repeats the id {record_id[:24]!r} of an earlier row")
                    seen.add(record_id)
                    if not finite[n]:
                        raise bad(n, f"({record_id[:16]}) has a vector with NaN or infinite values")
                    try:
                        metadata = json.loads(text) if text is not None else {}
                    except (TypeError, ValueError) as exc:
                        raise bad(n, f"({record_id[:16]}) has metadata that is not JSON ({exc})") from None
                    if not isinstance(metadata, dict):
                        raise bad(n, f"({record_id[:16]}) has metadata that is not a JSON object")
                    for field in dropped:
                        metadata.pop(field, None)
                    metadatas.append(metadata)
                yield ids, vectors, metadatas
                row += len(ids)
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise RetrievalError(f"The shard {name} of the export at {folder} can't be read "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                                 "Export the collection again.") from None


def start_from_export(settings, env) -> tuple:
    """The app's settings and export folder for ``COLLECTION_IMPORT``: the export's model is used
    unless MODEL names one."""
    from ..settings import model_setting

    folder = locate_export(settings.collection_import)
    if not model_setting(env):
        settings = settings.with_overrides(model=read_manifest(folder)["model"]["model"])
    return settings, folder
