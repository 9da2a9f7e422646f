"""Indexing throughput: files on disk -> vectors in the store.

Three pipelines on the same files with the same loaded model:

- ceiling: the model alone on tensors decoded and preprocessed beforehand,
  in batches of the configured size (what no pipeline can beat);
- product: ``Engine.index`` end to end (read, hash, decode, preprocess, embed, store);
- naive: what the seed projects did: full-size ``Image.open``, the processor per
  image, a batch of one, one store write per image.
"""

from __future__ import annotations

import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..embedder import Embedder
from ..engine import Engine
from ..settings import Settings
from .memory import PeakMemory
from .report import Report
from .stats import ratio

TARGETS = {"photos": 0.85, "12mp": 0.70}  # share of the ceiling
NAIVE_TARGET = 3.0


def write_large_jpegs(folder: Path, count: int, size=(4000, 3000), seed: int = 0) -> list[Path]:
    """Camera-sized JPEGs with photo-like content: smooth shapes plus sensor-like noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"large_{i:03d}.jpg"
        if not path.is_file():
            base = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
            picture = Image.fromarray(base).resize(size, Image.BICUBIC)
            noisy = np.asarray(picture, dtype=np.int16) + rng.integers(-12, 12, (size[1], size[0], 3))
            Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def preprocessed(embedder: Embedder, files: list[Path]) -> list[np.ndarray]:
    return [embedder.preprocess_image(Image.open(f).convert("RGB")) for f in files]


def ceiling(embedder: Embedder, pixels: list[np.ndarray], batch_size: int) -> float:
    """Images per second of the model alone on tensors prepared beforehand."""
    embedder.embed_pixels(pixels[:batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(pixels), batch_size):
        embedder.embed_pixels(pixels[start:start + batch_size])
    return len(pixels) / (time.perf_counter() - started)


def product(embedder: Embedder, files: list[Path], settings: Settings) -> tuple[float, dict]:
    """Images per second of ``Engine.index``, and what each stage of its pipeline took."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as store:
        engine = Engine(settings.with_overrides(chroma_path=Path(store), collection="bench"), embedder=embedder)
        started = time.perf_counter()
        report = engine.index(files)
        elapsed = time.perf_counter() - started
    return len(report.added) / elapsed, report.stages


def naive(embedder: Embedder, files: list[Path], settings: Settings) -> float:
    import torch

    processor = embedder._processor  # the pipeline under test is deliberately not ours
    model = embedder._model
    with tempfile.TemporaryDirectory(prefix="bench-naive-") as store:
        engine = Engine(settings.with_overrides(chroma_path=Path(store), collection="naive"), embedder=embedder)
        started = time.perf_counter()
        for number, path in enumerate(files):
            image = Image.open(path).convert("RGB")
            inputs = processor(images=image, return_tensors="pt")
            with torch.no_grad():
                vector = model.get_image_features(**inputs).pooler_output[0].numpy()
            vector = vector / np.linalg.norm(vector)
            engine.store.upsert([f"naive-{number}"], vector[None, :], [{"path": str(path)}])
        elapsed = time.perf_counter() - started
    return len(files) / elapsed


def run(report: Report, embedder: Embedder, settings: Settings, photos: list[Path],
        large_count: int, naive_count: int, work: Path, rounds: int = 3) -> None:
    """Each round times the ceiling, the product, then the ceiling again; the
    product's share of the ceiling is taken per round (against the mean of the two
    ceilings around it) and the median round reported. Shared machines change
    speed from minute to minute; this keeps each comparison between neighbours."""
    sets = {}
    if photos:
        sets["photos"] = photos
    if large_count:
        sets["12mp"] = write_large_jpegs(work / "large", large_count)
    for name, files in sets.items():
        copies = _fresh_copies(files, work / f"copy-{name}")
        pixels = preprocessed(embedder, copies)
        tops, ours_runs, shares, stage_runs = [], [], [], []
        with PeakMemory() as memory_product:
            for _ in range(max(1, rounds)):
                before = ceiling(embedder, pixels, settings.batch_size)
                speed, stages = product(embedder, copies, settings)
                ours_runs.append(speed)
                stage_runs.append(stages)
                after = ceiling(embedder, pixels, settings.batch_size)
                tops += [before, after]
                shares.append(ours_runs[-1] / ((before + after) / 2))
        del pixels
        top, ours, share = statistics.median(tops), statistics.median(ours_runs), statistics.median(shares)
        with PeakMemory() as memory_naive:
            slow = naive(embedder, copies[:naive_count], settings)
        label = f"indexing {name} ({len(files)} files)"
        report.add(label, f"encoder ceiling (median of {len(tops)})", top, "img/s")
        report.add(label, f"product pipeline (median of {len(ours_runs)})", ours, "img/s", baseline="ceiling", ratio=share,
                   target=f">= {TARGETS[name]:.2f}", met=share >= TARGETS[name])
        speedup = ratio(ours, slow)
        report.add(label, f"naive pipeline ({len(copies[:naive_count])} files)", slow, "img/s")
        report.add(label, "product vs naive", speedup, "x", baseline="naive", ratio=speedup,
                   target=f">= {NAIVE_TARGET:.0f}", met=speedup >= NAIVE_TARGET)
        for stage in stage_runs[0]:  # seconds summed over the stage threads: where the pipeline's work goes
            report.add(label, f"stage {stage}: share of the pipeline's work",
                       statistics.median(run[stage]["share"] for run in stage_runs if stage in run), "share")
        report.add(label, "peak memory, product pipeline", memory_product.mib, "MiB")
        report.add(label, "peak memory, naive pipeline", memory_naive.mib, "MiB")
        report.details[f"indexing_{name}"] = {
            "files": len(files), "batch_size": settings.batch_size, "decode_workers": settings.decode_workers,
            "ceiling_img_s": tops, "product_img_s": ours_runs, "product_share_per_round": shares,
            "naive_img_s": slow, "stages_per_round": stage_runs,
            "peak_mib": {"product_and_ceiling": memory_product.mib, "naive": memory_naive.mib},
            "megapixels": _megapixels(files[0]),
        }


def _fresh_copies(files: list[Path], folder: Path) -> list[Path]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    copies = []
    for i, path in enumerate(files):
        target = folder / f"{i:05d}{path.suffix.lower()}"
        shutil.copyfile(path, target)
        copies.append(target)
    return copies


def _megapixels(path: Path) -> float:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return round(image.width * image.height / 1e6, 2)
