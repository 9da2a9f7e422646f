"""Query latency at collection sizes far beyond a test set, and ANN quality.

The store is filled with synthetic unit vectors through the product's own
store (clustered like real embeddings, with realistic metadata). Each query is
timed through ``Engine`` as a user runs it: text is embedded by the model,
image queries are read from disk and embedded, and results come back with
their metadata.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import psutil

from ..embedder import Embedder
from ..engine import Engine
from ..store.filters import Compare
from ..search.searcher import QueryTerm, SearchRequest
from ..settings import Settings
from .memory import PeakMemory
from .report import Report
from .stats import latency_summary, recall_at_k

WORDS = ("dog cat beach mountain city night street car forest lake river bridge sunset snow flower "
         "market food coffee train boat bicycle portrait child people building church sky rain fog "
         "desert road field horse bird window kitchen table garden park tree wave island harbour").split()
ADJECTIVES = "red old small busy quiet golden misty bright dark empty crowded wooden".split()
TEXT_TARGETS = {100_000: (25.0, 50.0), 1_000_000: (60.0, None)}  # size -> (p50, p95) ms
RECALL_TARGET = 0.99


HYBRID_TARGET = 1.5  # a text query ranked by its words too costs at most this many times the picture alone


def synthetic_collection(size: int, dim: int, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Unit vectors around many cluster centres, as photo embeddings are, and metadata for each."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(64, size // 200), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    members = rng.integers(0, len(centres), size)
    vectors = centres[members] + 0.6 / np.sqrt(dim) * rng.standard_normal((size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    photographers = [f"Photographer {i}" for i in range(max(50, size // 50))]
    zipf = 1.0 / np.arange(1, len(WORDS) + 1)
    zipf /= zipf.sum()
    metadatas = []
    for i in range(size):
        tags = list(dict.fromkeys(rng.choice(WORDS, size=int(rng.integers(2, 6)), p=zipf)))
        metadatas.append({
            "path": f"/photos/{i // 1000:04d}/{i:08d}.jpg", "filename": f"{i:08d}.jpg",
            "description": f"{rng.choice(ADJECTIVES)} {' '.join(tags[:2])}",
            "photographer": photographers[int(rng.integers(len(photographers)))],
            "tags": [str(t) for t in tags], "source": "synthetic",
            "width": 640, "height": 427, "url": f"https://example.org/photo/{i}",
            "year": int(2000 + rng.integers(25)),
        })
    return vectors, metadatas


def fill(engine: Engine, vectors: np.ndarray, metadatas: list[dict], chunk: int = 20_000) -> float:
    """Insert through the store; returns vectors per second."""
    started = time.perf_counter()
    for start in range(0, len(vectors), chunk):
        ids = [f"{i:08d}" for i in range(start, min(start + chunk, len(vectors)))]
        engine.store.upsert(ids, vectors[start:start + chunk], metadatas[start:start + chunk])
    return len(vectors) / (time.perf_counter() - started)


def timed(queries: list[Callable[[], object]], warmup: int = 3) -> list[float]:
    for query in queries[:warmup]:
        query()
    seconds = []
    for query in queries:
        started = time.perf_counter()
        query()
        seconds.append(time.perf_counter() - started)
    return seconds


def ann_recall(engine: Engine, vectors: np.ndarray, queries: int = 200, k: int = 10, seed: int = 1) -> float:
    """Mean recall@k of the store's answers against exact search over the same vectors."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(vectors), queries)
    noisy = vectors[picks] + 0.5 / np.sqrt(vectors.shape[1]) * rng.standard_normal(vectors[picks].shape)
    noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    total = 0.0
    for query in noisy:
        scores = vectors @ query
        exact = np.argpartition(-scores, k)[:k]
        exact = exact[np.argsort(-scores[exact])]
        found = [m.id for m in engine.store.query(query, k)]
        total += recall_at_k(found, [f"{i:08d}" for i in exact], k)
    return total / queries


def _with_meanings(engine: Engine, size: int, texts: list[str]) -> dict | None:
    """Text queries' latency once every photo has a meaning (the sentence model's vectors; random
    ones here, clustered like the photos'), the query embedded by the real sentence model: None
    where that model can't be had."""
    from ..errors import RetrievalError

    try:
        model = engine.sentence_model()
    except RetrievalError as exc:
        print(f"text with meaning: not measured ({exc})")
        return None
    vectors, _ = synthetic_collection(size, model.dim, seed=2)
    engine.store.meanings.bind(model.signature)
    for start in range(0, size, 20_000):
        ids = [f"{i:08d}" for i in range(start, min(start + 20_000, size))]
        engine.store.meanings.upsert(ids, vectors[start:start + 20_000], [{"stamp": "synthetic"}] * len(ids))
    return latency_summary(timed([lambda t=t: engine.search_text(t, k=10) for t in texts]))


BACKENDS = ("chroma", "milvus-lite")
RECENT = {"year": Compare(">=", 2020)}  # a filter that keeps about a fifth of the photos


def backend_settings(settings: Settings, backend: str, folder: Path) -> Settings:
    """The benchmark's own store of each backend, in ``folder``."""
    if backend == "chroma":
        return settings.with_overrides(store="chroma", chroma_path=folder, chroma_host="", collection="bench")
    if backend == "milvus-lite":
        return settings.with_overrides(store=f"milvus:{folder}", collection="bench")
    raise ValueError(f"unknown backend {backend}: use {', '.join(BACKENDS)}")


def run(report: Report, embedder: Embedder, settings: Settings, sizes: list[int],
        image_queries: list[Path], work: Path, repeats: int = 50, backends: tuple[str, ...] = ("chroma",)) -> None:
    """Each size on each backend, side by side; the rows name the backend when there are several."""
    for size in sizes:
        vectors, metadatas = synthetic_collection(size, embedder.dim)
        for backend in backends:
            label = f"queries at {size:,} photos" + (f" ({backend})" if len(backends) > 1 else "")
            folder = work / f"store-{backend}-{size}"
            shutil.rmtree(folder, ignore_errors=True)
            run_one(report, label, embedder, backend_settings(settings, backend, folder), vectors, metadatas,
                    image_queries, repeats, key=f"queries_{size}" + (f"_{backend}" if len(backends) > 1 else ""))
            shutil.rmtree(folder, ignore_errors=True)


def run_one(report: Report, label: str, embedder: Embedder, settings: Settings, vectors: np.ndarray,
            metadatas: list[dict], image_queries: list[Path], repeats: int, key: str) -> None:
    size = len(vectors)
    rng = random.Random(0)
    texts = [f"a {rng.choice(ADJECTIVES)} {rng.choice(WORDS)} near a {rng.choice(WORDS)}" for _ in range(repeats)]
    tag_sets = [rng.sample(WORDS[:12], rng.choice((1, 2))) for _ in range(repeats)]
    images = [image_queries[i % len(image_queries)] for i in range(repeats)] if image_queries else []
    engine = Engine(settings, embedder=embedder)
    before_mib = psutil.Process().memory_info().rss / 2**20  # the vectors and any earlier store are in it
    with PeakMemory() as memory_fill:
        rate = fill(engine, vectors, metadatas)
    report.add(label, "insert through the store", rate, "vectors/s")
    kinds: dict[str, list[Callable[[], object]]] = {
        "text": [lambda t=t: engine.search_text(t, k=10) for t in texts],
        "text, filtered (year >= 2020)": [lambda t=t: engine.search_text(t, k=10, filters=RECENT)
                                          for t in texts],
        "text, picture only (--no-hybrid)": [
            lambda t=t: engine.search(SearchRequest(terms=[QueryTerm("text", t)], k=10, hybrid=False)) for t in texts],
        "tags": [lambda t=t: engine.search_tags(t, k=10) for t in tag_sets],
    }
    if images:
        kinds["image"] = [lambda p=p: engine.search_image(p, k=10) for p in images]
        kinds["image + text"] = [
            lambda p=p, t=t: engine.search(SearchRequest(terms=[QueryTerm("image", p), QueryTerm("text", t)], k=10))
            for p, t in zip(images, texts)
        ]
    latencies = {}
    with PeakMemory() as memory_query:
        for kind, queries in kinds.items():
            summary = latency_summary(timed(queries))
            latencies[kind] = summary
            p50_target, p95_target = TEXT_TARGETS.get(size, (None, None)) if kind == "text" else (None, None)
            report.add(label, f"{kind} p50", summary["p50_ms"], "ms",
                       target=f"<= {p50_target:g}" if p50_target else "",
                       met=summary["p50_ms"] <= p50_target if p50_target else None)
            report.add(label, f"{kind} p95", summary["p95_ms"], "ms",
                       target=f"<= {p95_target:g}" if p95_target else "",
                       met=summary["p95_ms"] <= p95_target if p95_target else None)
    words = latencies["text"]["p50_ms"] / max(latencies["text, picture only (--no-hybrid)"]["p50_ms"], 1e-9)
    report.add(label, "text p50: words and picture / picture only", words, "x", baseline="picture only",
               ratio=words, target=f"<= {HYBRID_TARGET:g}", met=words <= HYBRID_TARGET)
    meaning = _with_meanings(engine, size, texts)
    if meaning is not None:
        latencies["text, with meaning"] = meaning
        report.add(label, "text, with meaning p50", meaning["p50_ms"], "ms")
        report.add(label, "text, with meaning p95", meaning["p95_ms"], "ms")
        ratio = meaning["p50_ms"] / max(latencies["text, picture only (--no-hybrid)"]["p50_ms"], 1e-9)
        report.add(label, "text p50: picture, words and meaning / picture only", ratio, "x",
                   baseline="picture only", ratio=ratio)
    recall = ann_recall(engine, vectors)
    report.add(label, "ANN recall@10", recall, "", baseline="exact search", ratio=recall,
               target=f">= {RECALL_TARGET}", met=recall >= RECALL_TARGET)
    report.add(label, "peak memory (fill / queries)", max(memory_fill.mib, memory_query.mib), "MiB")
    added = max(memory_fill.mib, memory_query.mib) - before_mib
    report.add(label, "memory the store added", added, "MiB")
    report.details[key] = {"latency": latencies, "insert_per_s": rate, "recall_at_10": recall,
                           "peak_mib": {"fill": memory_fill.mib, "queries": memory_query.mib},
                           "store_added_mib": added}
