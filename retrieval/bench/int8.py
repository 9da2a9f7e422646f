"""``--sections int8``: what IMAGE_INT8=1 costs and how far its vectors move, on real photos.

The image side's float32 ONNX export and its dynamic INT8 quantisation embed the same
photos (``--photos``). Reported: CPU time per photo of each (and of torch in the
arithmetic its trial chose, as the baseline a run would otherwise take), the cosine of
each INT8 vector to its float32 vector, and how many of the same queries' top 10 stay
the same over the same photos: text queries, and each photo's float32 vector as a query
(a photo finds itself in both, so that one is left out of its own top 10).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import RetrievalError
from .report import Report

SECTION = "image INT8"
TEXT_QUERIES = ("a dog on a beach", "a plate of food", "a city street with cars", "people playing sport",
                "a cat sleeping", "a train at a station", "a bedroom", "an airplane in the sky",
                "a bowl of fruit", "a man riding a horse", "a kitchen", "boats on the water",
                "a giraffe", "a pizza", "a bus", "children in a park", "a computer on a desk",
                "an elephant", "a snowy mountain", "a bird on a branch")
TOP = 10


def run(report: Report, model: str, settings, photos: list[Path]) -> None:
    from ..embedder import load_embedder
    from ..embedder.image_export import ExportedImages, find_export, quantised, read_runtimes, runtime_key

    if len(photos) < TOP + 1:
        raise RetrievalError(f"The int8 section needs --photos with at least {TOP + 1} photos.")
    full = load_embedder(model, settings.torch_threads, settings.precision, "cpu", text_export=False,
                         image_export=False)
    if not full.prepare_image_export():
        raise RetrievalError(f"The image side of {model} could not be exported, so INT8 can't be measured.")
    folder, facts = find_export(model)
    quantised(folder)
    exact, int8 = ExportedImages(folder, facts, settings.torch_threads), \
        ExportedImages(folder, facts, settings.torch_threads, int8=True)
    pixels = [facts.recipe.pixels(Image.open(path).convert("RGB")) for path in photos]
    cpu = {}
    vectors = {}
    for name, embed in (("float32", exact.embed), ("int8", int8.embed), ("torch", full.embed_pixels)):
        embed(pixels[:2])  # warm-up
        started = time.process_time()
        vectors[name] = np.concatenate([embed(pixels[i:i + 16]) for i in range(0, len(pixels), 16)])
        cpu[name] = 1000 * (time.process_time() - started) / len(pixels)
    cosines = (vectors["float32"] * vectors["int8"]).sum(axis=1)
    texts = full.embed_texts(list(TEXT_QUERIES))
    text_overlap = _overlap(texts, vectors["float32"], vectors["int8"])
    image_overlap = _overlap(vectors["float32"], vectors["float32"], vectors["int8"], leave_self_out=True)
    torch_dtype = full.precision
    report.add(SECTION, "image side, ONNX float32", cpu["float32"], "CPU ms/photo",
               baseline=f"torch {torch_dtype}", ratio=cpu["float32"] / cpu["torch"])
    report.add(SECTION, "image side, ONNX INT8", cpu["int8"], "CPU ms/photo",
               baseline=f"torch {torch_dtype}", ratio=cpu["int8"] / cpu["torch"])
    report.add(SECTION, "INT8 vs float32: cosine, worst", float(cosines.min()), "cosine")
    report.add(SECTION, "INT8 vs float32: cosine, mean", float(cosines.mean()), "cosine")
    report.add(SECTION, f"same top {TOP}, text queries", text_overlap, "share")
    report.add(SECTION, f"same top {TOP}, photo queries", image_overlap, "share")
    report.details["int8"] = {
        "photos": len(photos), "text_queries": len(TEXT_QUERIES), "cpu_ms_per_photo": cpu,
        "torch_dtype": torch_dtype, "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean()),
        "cosine_p5": float(np.percentile(cosines, 5)), "top10_overlap_text": text_overlap,
        "top10_overlap_photos": image_overlap,
        "runtime_trial": read_runtimes(folder).get(runtime_key(settings.torch_threads))}


def _overlap(queries: np.ndarray, exact: np.ndarray, other: np.ndarray, leave_self_out: bool = False) -> float:
    """Mean share of each query's top 10 over ``exact`` that is also its top 10 over ``other``."""
    shares = []
    for n, query in enumerate(queries):
        ranked = [np.argsort(-(matrix @ query)) for matrix in (exact, other)]
        if leave_self_out:
            ranked = [order[order != n] for order in ranked]
        shares.append(len(set(ranked[0][:TOP]) & set(ranked[1][:TOP])) / TOP)
    return statistics.fmean(shares)
