"""The map's layout time (``collection_map.layout``) at a real library's size.

Synthetic unit vectors clustered like photo embeddings (``queries.synthetic_collection``),
laid out by UMAP (what the map uses from 2,000 photos) and by PCA (below that), in the
same run: PCA is the baseline. UMAP's first call also compiles its kernels (numba);
that one-off cost is timed on its own row, on 2,000 vectors.
"""

from __future__ import annotations

import time

from ..views.collection_map import layout
from .memory import PeakMemory
from .queries import synthetic_collection
from .report import Report


def run(report: Report, size: int, dim: int = 512) -> None:
    section = f"map of {size:,} photos"
    vectors, _ = synthetic_collection(size, dim, seed=3)
    started = time.perf_counter()
    layout(vectors[:2000], "umap")
    report.add(section, "first UMAP call (2,000 photos, compiles its kernels)", time.perf_counter() - started, "s")
    started = time.perf_counter()
    layout(vectors, "pca")
    pca = time.perf_counter() - started
    report.add(section, "PCA layout", pca, "s")
    with PeakMemory() as memory:
        started = time.perf_counter()
        layout(vectors, "umap")
        umap_seconds = time.perf_counter() - started
    report.add(section, "UMAP layout (what the map uses)", umap_seconds, "s", baseline="PCA",
               ratio=umap_seconds / pca if pca > 0 else None)
    report.add(section, "peak memory, UMAP", memory.mib, "MiB")
    report.details["map"] = {"photos": size, "dim": dim, "pca_s": pca, "umap_s": umap_seconds,
                             "umap_peak_mib": memory.mib}
