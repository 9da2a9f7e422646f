"""A map of the collection: every photo placed in 2-D so that similar photos lie together.

The layout is UMAP (``umap-learn``: neighbours in the model's space stay
neighbours on the map) above ``UMAP_FROM`` photos, and PCA below it (the first
two principal axes: instant, and as good for a few hundred photos). Laying out
many photos takes a while, so a layout is kept in a file and reused while the
collection holds the same photos with the same model; any change makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RetrievalError

log = logging.getLogger(__name__)

UMAP_FROM = 2000
COLOUR_FIELDS = ("tags", "photographer", "year", "camera", "source")
KEPT_FIELDS = ("path", "url", "image_url", "filename", "description", "photographer", "tags", "camera",
               "source", "taken", "year")


@dataclass
class CollectionMap:
    ids: list[str]
    xy: np.ndarray  # (n, 2), each axis scaled to 0..1
    metadata: list[dict[str, Any]]
    method: str  # "UMAP" or "PCA"
    seconds: float  # time the layout took (0 when read from its file)
    key: str = ""
    from_cache: bool = False
    _where: dict[str, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, record_id: str) -> tuple[float, float] | None:
        if not self._where:
            self._where = {i: n for n, i in enumerate(self.ids)}
        n = self._where.get(record_id)
        return None if n is None else (float(self.xy[n, 0]), float(self.xy[n, 1]))


def layout(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D positions (scaled to 0..1 on each axis) for ``vectors``, and the method used."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if method == "auto":
        method = "umap" if n >= UMAP_FROM else "pca"
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32), method.upper()
    if n < 3:  # nothing to lay out: one photo in the middle, two side by side
        return np.array([[0.5, 0.5]] if n == 1 else [[0.0, 0.5], [1.0, 0.5]], dtype=np.float32), "PCA"
    if method == "umap":
        try:
            import umap
        except ImportError:
            log.warning("umap-learn is not installed: the map is laid out by PCA (pip install umap-learn)")
            method = "pca"
        else:
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed,
                                n_jobs=1)
            return _scaled(reducer.fit_transform(vectors)), "UMAP"
    if method != "pca":
        raise RetrievalError(f"Unknown map layout '{method}': use auto, pca or umap.")
    centred = vectors - vectors.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    points = centred @ axes[:2].T
    points *= np.where(points[np.abs(points).argmax(axis=0), [0, 1]] < 0, -1, 1)  # a stable orientation
    return _scaled(points), "PCA"


def _scaled(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 1e-12, high - low, 1.0)
    return ((points - low) / span).astype(np.float32)


def collection_key(ids: list[str], model: dict | None) -> str:
    """Names one state of the collection: the same photos with the same model."""
    digest = hashlib.sha256(json.dumps(model or {}, sort_keys=True).encode())
    for record_id in sorted(ids):
        digest.update(record_id.encode() + b"\0")
    return digest.hexdigest()[:24]


def build_map(store, cache_file: Path | None = None, method: str = "auto") -> CollectionMap:
    """The map of everything in ``store``, read from ``cache_file`` when it is still current."""
    ids, metadata = [], []
    for record in store.iter_all():  # no vectors yet: a kept layout needs none
        ids.append(record.id)
        metadata.append(_kept(record.metadata))
    key = collection_key(ids, store.recorded_model())
    cached = _read(cache_file, key, ids) if cache_file is not None else None
    if cached is not None:
        return CollectionMap(ids, cached[0], metadata, cached[1], 0.0, key, from_cache=True)
    ids, vectors, metadata = [], [], []  # read again with the vectors (it may have changed meanwhile)
    for record in store.iter_all(with_embeddings=True):
        ids.append(record.id)
        vectors.append(record.embedding)
        metadata.append(_kept(record.metadata))
    key = collection_key(ids, store.recorded_model())
    started = time.perf_counter()
    xy, used = layout(np.stack(vectors) if vectors else np.zeros((0, 2)), method)
    seconds = time.perf_counter() - started
    if cache_file is not None:
        _write(cache_file, key, ids, xy, used)
    return CollectionMap(ids, xy, metadata, used, seconds, key)


def _kept(metadata: dict[str, Any]) -> dict[str, Any]:
    kept = {k: metadata[k] for k in KEPT_FIELDS if k in metadata}
    if "year" not in kept and str(metadata.get("taken", ""))[:4].isdigit():
        kept["year"] = int(str(metadata["taken"])[:4])
    return kept


def _read(path: Path, key: str, ids: list[str]):
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            by_id = dict(zip(data["ids"].tolist(), data["xy"]))
            return np.stack([by_id[i] for i in ids]) if ids else np.zeros((0, 2), np.float32), str(data["method"])
    except (OSError, KeyError, ValueError):
        return None


def _write(path: Path, key: str, ids: list[str], xy: np.ndarray, method: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part.npz")
        np.savez(partial, key=key, ids=np.array(ids, dtype=str), xy=xy, method=method)
        partial.replace(path)  # a reader never sees half a file
    except OSError as exc:
        log.warning("could not keep the map in %s: %s", path, exc)


# -- colours ------------------------------------------------------------------------

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#17becf")
OTHER = "#bab0ac"


def colour_values(metadata: list[dict[str, Any]], field_name: str) -> list[str]:
    """Each photo's value of ``field_name`` as text (a list field: its first item; "" when missing)."""
    values = []
    for item in metadata:
        value = item.get(field_name)
        if isinstance(value, list):
            value = value[0] if value else None
        values.append("" if value in (None, "") else str(value))
    return values


def legend(values: list[str], size: int = len(PALETTE)) -> dict[str, str]:
    """The commonest values, each with its colour; the rest share ``OTHER``."""
    counts: dict[str, int] = {}
    for value in values:
        if value:
            counts[value] = counts.get(value, 0) + 1
    common = sorted(counts, key=lambda v: (-counts[v], v))[:size]
    return {value: PALETTE[n] for n, value in enumerate(sorted(common))}
