"""What regions cost: indexing with and without them, each proposer's time per photo, and text
queries at a size with every photo's regions in the store next to the same query on whole
photos only.

Indexing runs the product's own pipeline (``Engine.index``) on the same photos twice,
into fresh stores. The query part fills the photo collection and its regions
collection with synthetic vectors (a photo's regions lie near it, as crops of a photo
do) and times ``Engine.search_text`` with regions on, then with ``regions=False``: the
photo collection is the same, so the baseline is exactly a collection without regions.
SAM's cost is measured with random weights in the architecture of ``facebook/sam-vit-base``
(the forward passes cost the same; only the masks that survive its filters differ).
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np

from ..embedder import Embedder
from ..engine import Engine
from ..regions.proposals import Box, GridProposer, SegmentProposer
from ..regions.records import REGION_COUNT_FIELD, region_id, region_metadata
from ..settings import Settings
from .indexing import write_large_jpegs
from .queries import ADJECTIVES, WORDS, fill, synthetic_collection, timed
from .report import Report
from .stats import latency_summary

QUERY_RATIO_TARGET = 2.0


def run(report: Report, embedder: Embedder, settings: Settings, photos: list[Path], work: Path,
        sizes: list[int], per_photo: int = 16, repeats: int = 50, sam: bool = True) -> None:
    photos = photos[:32] or write_large_jpegs(work / "region-photos", 16, size=(640, 480))
    _indexing(report, embedder, settings, photos, work)
    _proposers(report, photos[:8], sam, work)
    for size in sizes:
        _queries(report, embedder, settings, size, per_photo, work, repeats)


def _indexing(report: Report, embedder: Embedder, settings: Settings, photos: list[Path], work: Path) -> None:
    section = f"indexing with regions ({len(photos)} photos, {settings.regions_per_photo} regions each at most)"
    folder = work / "region-index-photos"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in photos:
        shutil.copy(path, folder / path.name)
    rates = {}
    for regions in (False, True):
        store = work / f"region-index-store-{regions}"
        shutil.rmtree(store, ignore_errors=True)
        engine = Engine(settings.with_overrides(chroma_path=store, collection="bench"), embedder=embedder)
        started = time.perf_counter()
        result = engine.index([folder], regions=regions)
        rates[regions] = len(result.added) / (time.perf_counter() - started)
        if regions:
            report.add(section, "regions per photo (mean)", result.regions_added / max(1, len(result.added)), "")
        shutil.rmtree(store, ignore_errors=True)
    report.add(section, "whole photos only", rates[False], "img/s")
    report.add(section, "with regions", rates[True], "img/s", baseline="whole photos only",
               ratio=rates[True] / rates[False])
    report.details["region_indexing"] = {"img_per_s": {"whole": rates[False], "regions": rates[True]}}


def _proposers(report: Report, photos: list[Path], sam: bool, work: Path) -> None:
    from PIL import Image

    section = "region proposals (per photo, decoded at up to 896 px)"
    images = []
    for path in photos:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        image.thumbnail((896, 896))
        images.append(image)
    proposers = {"segments": SegmentProposer(), "grid": GridProposer()}
    if sam:
        proposers["SAM ViT-B (random weights)"] = _sam_base(work)
    costs = {}
    for name, proposer in proposers.items():
        proposer.propose(images[0], 16)  # warm up
        started = time.perf_counter()
        for image in images:
            proposer.propose(image, 16)
        costs[name] = (time.perf_counter() - started) / len(images)
        report.add(section, name, costs[name] * 1000, "ms", baseline="segments",
                   ratio=costs[name] / costs["segments"])
    report.details["region_proposals_s"] = costs


def _sam_base(work: Path):
    import torch
    from transformers import SamConfig, SamImageProcessorPil, SamModel

    from ..regions.sam import SamProposer

    torch.manual_seed(0)
    model = SamModel(SamConfig())  # the sizes of facebook/sam-vit-base
    return SamProposer(model, SamImageProcessorPil(), pred_iou_thresh=0.0, stability_score_thresh=0.0)


def _queries(report: Report, embedder: Embedder, settings: Settings, size: int, per_photo: int, work: Path,
             repeats: int) -> None:
    section = f"text queries at {size:,} photos with {per_photo} regions each"
    store = work / f"region-query-store-{size}"
    shutil.rmtree(store, ignore_errors=True)
    vectors, metadatas = synthetic_collection(size, embedder.dim)
    for metadata in metadatas:
        metadata[REGION_COUNT_FIELD] = per_photo
    engine = Engine(settings.with_overrides(chroma_path=store, collection="bench"), embedder=embedder)
    fill(engine, vectors, metadatas)
    regions = engine.store.regions
    regions.bind(embedder.signature)
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    box = Box(0, 0, 320, 213)
    for start in range(0, size, 2000):
        chunk = range(start, min(size, start + 2000))
        ids = [f"{i:08d}" for i in chunk]
        near = np.repeat(vectors[start:start + len(ids)], per_photo, axis=0)
        near += 1.2 / np.sqrt(embedder.dim) * rng.standard_normal(near.shape).astype(np.float32)
        near /= np.linalg.norm(near, axis=1, keepdims=True)
        regions.upsert([region_id(i, n) for i in ids for n in range(per_photo)], near,
                       [region_metadata(i, n, box) for i in ids for n in range(per_photo)])
    insert_rate = size * per_photo / (time.perf_counter() - started)
    report.add(section, "region insert through the store", insert_rate, "vectors/s")
    rng_text = random.Random(0)
    texts = [f"a {rng_text.choice(ADJECTIVES)} {rng_text.choice(WORDS)} near a {rng_text.choice(WORDS)}"
             for _ in range(repeats)]
    whole = latency_summary(timed([lambda t=t: engine.search_text(t, k=10, regions=False) for t in texts]))
    both = latency_summary(timed([lambda t=t: engine.search_text(t, k=10) for t in texts]))
    report.add(section, "text p50, whole photos only", whole["p50_ms"], "ms")
    report.add(section, "text p50, photos and regions", both["p50_ms"], "ms", baseline="whole photos only",
               ratio=both["p50_ms"] / whole["p50_ms"], target=f"<= {QUERY_RATIO_TARGET:g}x",
               met=both["p50_ms"] <= QUERY_RATIO_TARGET * whole["p50_ms"])
    report.add(section, "text p95, photos and regions", both["p95_ms"], "ms", baseline="whole photos only",
               ratio=both["p95_ms"] / whole["p95_ms"])
    report.details[f"region_queries_{size}"] = {"whole": whole, "regions": both, "region_insert_per_s": insert_rate,
                                                "regions_stored": regions.count()}
    shutil.rmtree(store, ignore_errors=True)
