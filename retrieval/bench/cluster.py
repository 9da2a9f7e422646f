"""Indexing on Ray against the single-process indexer, on the same photos.

Three runs into fresh stores: the single-process indexer (``Engine.index``),
then ``index --ray`` on a local Ray cluster with one worker and with two. The
cluster is started before the Ray runs are timed; each timed run includes what
every job pays, starting its actors and loading the model once in each. A job of
8 photos, timed on its own row, shows that fixed cost. The steady rate leaves it
out: the photos finished after the first result came back, over the time from
that first result to the last, for the single process as for Ray (what a long
job approaches).
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
    """Photos per second of the whole job, and the steady rate (after the first result)."""
    finished: list[tuple[float, int]] = []
    started = time.perf_counter()
    report = engine.index([folder], progress=lambda step: finished.append((time.perf_counter(), step.done)),
                          **options)
    seconds = time.perf_counter() - started
    (first, done_first), (last, done_last) = finished[0], finished[-1]
    steady = (done_last - done_first) / (last - first) if last > first else 0.0
    return len(report.added) / seconds, steady


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

    single, single_steady = _rate(fresh("ray-single"), folder)
    report.add(section, "single process (Engine.index), whole job", single, "photos/s")
    report.add(section, "single process: steady rate", single_steady, "photos/s")
    details = {"single_process": single, "single_process_steady": single_steady}
    started = time.perf_counter()
    connect("local")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    details["cluster_start_s"] = time.perf_counter() - started
    for workers in (1, 2):
        engine = fresh(f"ray-{workers}")
        started = time.perf_counter()
        engine.index([warm], ray="local", ray_workers=workers)  # the fixed cost of a job
        small_job = time.perf_counter() - started
        rate, steady = _rate(engine, folder, ray="local", ray_workers=workers)
        name = f"Ray, {workers} worker{'s' if workers > 1 else ''}"
        report.add(section, f"{name} on {cpus} CPUs, whole job", rate, "photos/s",
                   baseline="single process", ratio=rate / single)
        report.add(section, f"{name}: a job of 8 photos", small_job, "s")
        report.add(section, f"{name}: steady rate", steady, "photos/s", baseline="single process, steady",
                   ratio=steady / single_steady if single_steady else None)
        details[f"ray_{workers}_workers"] = {"photos_per_s": rate, "small_job_s": small_job, "steady_per_s": steady}
    one, two = details["ray_1_workers"], details["ray_2_workers"]
    report.add(section, "2 workers vs 1, steady", two["steady_per_s"] / one["steady_per_s"], "x",
               baseline="Ray, 1 worker", ratio=two["steady_per_s"] / one["steady_per_s"])
    report.details["ray_indexing"] = details
    ray.shutdown()
