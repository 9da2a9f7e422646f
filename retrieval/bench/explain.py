"""The heat map's cost ("why this matched"): one Grad-CAM, against embedding the same photo.

Both start from the decoded photo; the heat map runs the image side forward and
back once, the embedding forward only, so the ratio shows what the backward pass
adds. The target is at most one second per photo on the machine measured.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from PIL import Image

from ..embedder import Embedder
from .report import Report

TARGET_S = 1.0


def run(report: Report, embedder: Embedder, photos: list[Path], repeats: int = 5) -> None:
    section = "why this matched (heat map)"
    if photos:
        with Image.open(photos[0]) as opened:
            photo = opened.convert("RGB")
    else:
        photo = Image.new("RGB", (640, 480), (120, 160, 200))
    query = embedder.embed_text("a dog running on the beach")
    embedder.explain(photo, query)  # warm up
    embed, explain = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.embed_images([photo])
        embed.append(time.perf_counter() - started)
        started = time.perf_counter()
        embedder.explain(photo, query)
        explain.append(time.perf_counter() - started)
    embed_s, explain_s = statistics.median(embed), statistics.median(explain)
    report.add(section, "embed one photo (median)", embed_s * 1000, "ms")
    report.add(section, "heat map of one photo (median)", explain_s * 1000, "ms", baseline="embedding it",
               ratio=explain_s / embed_s if embed_s else None, target=f"<= {TARGET_S * 1000:g}",
               met=explain_s <= TARGET_S)
    report.details["explain"] = {"embed_s": embed_s, "explain_s": explain_s, "photo_size": list(photo.size)}
