"""Indexing's thread settings, chosen by measurement: ``TORCH_THREADS`` x ``DECODE_WORKERS``.

Each setting indexes the same photos into a fresh store the way a user's ``index``
does: a process of its own, started cold, after the model's exports were made and
the runtime trial was timed at that thread count (``precision --retime``), so each
thread count embeds with the runtime its own trial chose. Within a thread count the
decode-worker counts alternate round by round, so a change of the machine's load
touches them alike. Rows: photos per second, CPU seconds, and the ratio of the rate
to the defaults' (all cores, ``DECODE_WORKERS`` 2).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
from pathlib import Path

from ..embedder.image_export import find_export, read_runtimes, runtime_key, uses_export
from .peer import timed
from .report import Report

THREADS = (1, 0)  # 0: TORCH_THREADS unset, all cores (the default)
WORKERS = (1, 2, 3)
DEFAULT = (0, 2)
REPO = Path(__file__).resolve().parents[2]


def run(report: Report, model: str, photos: list[Path], work: Path, rounds: int = 2,
        threads: tuple[int, ...] = THREADS, workers: tuple[int, ...] = WORKERS) -> None:
    folder = work / "sweep-photos"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for number, photo in enumerate(photos):
        shutil.copyfile(photo, folder / f"{number:05d}{photo.suffix.lower()}")
    cache = work / "sweep-cache"
    base = {**os.environ, "MODEL": model, "HF_HUB_OFFLINE": "1", "CACHE_DIR": str(cache)}
    for name in ("CHROMA_HOST", "CHROMA_COLLECTION", "TORCH_THREADS", "DECODE_WORKERS"):
        base.pop(name, None)
    # The exports, made once by a first index as a user's are.
    timed([sys.executable, "-m", "retrieval", "index", str(folder)], {**base, "CHROMA_PATH": str(work / "sweep-first")},
          REPO)
    stores = 0
    results: dict[tuple[int, int], list] = {}
    runtimes: dict[int, str] = {}
    for count in threads:
        env = {**base, **({"TORCH_THREADS": str(count)} if count else {})}
        timed([sys.executable, "-m", "retrieval", "precision", "--retime"], env, REPO)  # the trial at this count
        runtimes[count] = _runtime(model, cache, count or None, len(photos))
        for _ in range(rounds):
            for decoders in workers:
                stores += 1
                results.setdefault((count, decoders), []).append(timed(
                    [sys.executable, "-m", "retrieval", "index", str(folder)],
                    {**env, "DECODE_WORKERS": str(decoders), "CHROMA_PATH": str(work / f"sweep-store-{stores}")},
                    REPO))
    section = f"indexing threads ({len(photos)} photos, a process each)"
    rate = {key: len(photos) / statistics.median(t.wall_s for t in runs) for key, runs in results.items()}
    baseline = rate.get(DEFAULT)
    best = max(rate, key=rate.get)
    for (count, decoders), runs in results.items():
        label = f"TORCH_THREADS={count or 'all'}, DECODE_WORKERS={decoders} ({runtimes[count]})"
        report.add(section, label, rate[(count, decoders)], "photos/s",
                   baseline="defaults" if baseline else "", ratio=rate[(count, decoders)] / baseline if baseline else None)
        report.add(section, f"{label}: CPU time", statistics.median(t.cpu_s for t in runs), "s")
    report.add(section, f"fastest: TORCH_THREADS={best[0] or 'all'}, DECODE_WORKERS={best[1]}", rate[best], "photos/s",
               baseline="defaults" if baseline else "", ratio=rate[best] / baseline if baseline else None)
    report.details["thread_sweep"] = {
        f"{count or 'all'} x {decoders}": {"wall_s": [t.wall_s for t in runs], "cpu_s": [t.cpu_s for t in runs],
                                           "runtime": runtimes[count]}
        for (count, decoders), runs in results.items()}


def _runtime(model: str, cache: Path, threads: int | None, photos: int) -> str:
    """Which runtime a run of ``photos`` new photos uses at this thread count, as its trial decided."""
    previous = os.environ.get("CACHE_DIR")
    os.environ["CACHE_DIR"] = str(cache)
    try:
        found = find_export(model)
    finally:
        if previous is None:
            os.environ.pop("CACHE_DIR", None)
        else:
            os.environ["CACHE_DIR"] = previous
    if found is None:
        return "the model in torch"
    if uses_export(found[0], threads, photos):
        return "ONNX export"
    figures = read_runtimes(found[0]).get(runtime_key(threads), {})
    return f"torch {figures.get('torch_dtype', '')} program".replace("  ", " ")
