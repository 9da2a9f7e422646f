"""Indexing on Ray against the single-process indexer, on the same photos.

Three runs into fresh stores: the single-process indexer (``Engine.index``),
then ``index --ray`` on a local Ray cluster with one worker and with two. The
cluster is started before the Ray runs are timed; each timed run includes what
every job pays, starting its actors and loading the model once in each. A job of
8 photos, timed on its own row, shows that fixed cost. (A "steady rate" without it
is not reported: on a small machine the fixed cost varies from job to job by more
than the whole embedding time, and results come back in scan order, in bursts, so
neither a difference of jobs nor the time between results measures it.)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..engine import Engine
from ..settings import Settings
from .indexing import write_large_jpegs
from .report import Report


def _copies(photos: list[Path], count: int, folder: Path) -> list[Path]:
    """``count`` photos (the given ones, else generated 640x480 JPEGs) copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = photos or write_large_jpegs(folder.parent / "generated", count, size=(640, 480))
    copies = []
    for i in range(count):
        target = folder / f"{i:05d}{sources[i % len(sources)].suffix}"
        data = sources[i % len(sources)].read_bytes()
        target.write_bytes(data + (b"" if i < len(sources) else i.to_bytes(4, "big")))  # distinct bytes
        copies.append(target)
    return copies


def _rate(engine: Engine, folder: Path, **options) -> float:
    """Photos per second of the whole job."""
    started = time.perf_counter()
    report = engine.index([folder], **options)
    return len(report.added) / (time.perf_counter() - started)


def run(report: Report, settings: Settings, photos: list[Path], count: int, work: Path) -> None:
    import ray

    from ..indexing.cluster import connect

    section = f"Ray indexing ({count} photos)"
    folder, warm = work / "ray-photos", work / "ray-warm-up"
    _copies(photos, count, folder)
    _copies(photos[::-1], 8, warm)

    def fresh(name: str) -> Engine:
        shutil.rmtree(work / name, ignore_errors=True)
        return Engine(settings.with_overrides(chroma_path=work / name, store="chroma"))

    single = _rate(fresh("ray-single"), folder)
    report.add(section, "single process (Engine.index)", single, "photos/s")
    details = {"single_process": single}
    started = time.perf_counter()
    connect("local")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    details["cluster_start_s"] = time.perf_counter() - started
    for workers in (1, 2):
        engine = fresh(f"ray-{workers}")
        started = time.perf_counter()
        engine.index([warm], ray="local", ray_workers=workers)  # the fixed cost of a job
        small_job = time.perf_counter() - started
        rate = _rate(engine, folder, ray="local", ray_workers=workers)
        name = f"Ray, {workers} worker{'s' if workers > 1 else ''}"
        report.add(section, f"{name} on {cpus} CPUs, whole job", rate, "photos/s",
                   baseline="single process", ratio=rate / single)
        report.add(section, f"{name}: a job of 8 photos", small_job, "s")
        details[f"ray_{workers}_workers"] = {"photos_per_s": rate, "small_job_s": small_job}
    one, two = details["ray_1_workers"], details["ray_2_workers"]
    report.add(section, "2 workers vs 1", two["photos_per_s"] / one["photos_per_s"], "x",
               baseline="Ray, 1 worker", ratio=two["photos_per_s"] / one["photos_per_s"])
    report.details["ray_indexing"] = details
    ray.shutdown()
