"""Indexing on Ray against the single-process indexer, on the same photos.

Three runs into fresh stores: the single-process indexer (``Engine.index``),
then ``index --ray`` on a local Ray cluster with one worker and with two. The
cluster is started before the Ray runs are timed; each timed run includes what
every job pays, starting its actors and loading the model once in each. A job of
8 photos, timed on its own row, shows that fixed cost; the steady rate is the
photos beyond those 8 over the time beyond that job's, what a long job approaches.
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


def _rate(engine: Engine, folder: Path, **options) -> tuple[float, float]:
    started = time.perf_counter()
    report = engine.index([folder], **options)
    seconds = time.perf_counter() - started
    return len(report.added) / seconds, seconds


def run(report: Report, settings: Settings, photos: list[Path], count: int, work: Path) -> None:
    import ray

    from ..cluster_index import connect

    section = f"Ray indexing ({count} photos)"
    folder, warm = work / "ray-photos", work / "ray-warm-up"
    _copies(photos, count, folder)
    _copies(photos[::-1], 8, warm)

    def fresh(name: str) -> Engine:
        shutil.rmtree(work / name, ignore_errors=True)
        return Engine(settings.with_overrides(chroma_path=work / name, store="chroma"))

    single, _ = _rate(fresh("ray-single"), folder)
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
        rate, seconds = _rate(engine, folder, ray="local", ray_workers=workers)
        steady = (count - 8) / max(seconds - small_job, 1e-6)
        name = f"Ray, {workers} worker{'s' if workers > 1 else ''}"
        report.add(section, f"{name} on {cpus} CPUs, whole job", rate, "photos/s",
                   baseline="single process", ratio=rate / single)
        report.add(section, f"{name}: a job of 8 photos", small_job, "s")
        report.add(section, f"{name}: steady rate", steady, "photos/s", baseline="single process",
                   ratio=steady / single)
        details[f"ray_{workers}_workers"] = {"photos_per_s": rate, "small_job_s": small_job, "steady_per_s": steady}
    one, two = details["ray_1_workers"], details["ray_2_workers"]
    report.add(section, "2 workers vs 1, steady", two["steady_per_s"] / one["steady_per_s"], "x",
               baseline="Ray, 1 worker", ratio=two["steady_per_s"] / one["steady_per_s"])
    report.details["ray_indexing"] = details
    ray.shutdown()
