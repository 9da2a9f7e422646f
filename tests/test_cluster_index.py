"""Indexing on a real local Ray cluster (two CPUs, started by the test)."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

from photos import write_bad_files, write_photos
from retrieval.engine import Engine

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    from retrieval.indexing.cluster import connect

    connect("local", num_cpus=2)
    yield
    ray.shutdown()


def embeddings(engine: Engine) -> dict[str, np.ndarray]:
    return {r.id: r.embedding for r in engine.store.iter_all(with_embeddings=True)}


def test_ray_vectors_equal_the_single_process_ones_and_a_rerun_adds_nothing(ray_cluster, clip_settings, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 30)
    write_bad_files(folder / "bad")
    (folder / "copy.jpg").write_bytes((folder / "photo_0003.jpg").read_bytes())  # a duplicate

    alone = Engine(clip_settings.with_overrides(chroma_path=tmp_path / "alone"))
    single = alone.index([folder])
    clustered = Engine(clip_settings.with_overrides(chroma_path=tmp_path / "ray", batch_size=4))
    report = clustered.index([folder], ray="local", ray_workers=2)

    assert sorted(report.added) == sorted(single.added) and len(set(report.added)) == 30
    assert report.skipped_counts == single.skipped_counts
    assert [d.path for d in report.duplicates] == [d.path for d in single.duplicates]
    ours, theirs = embeddings(clustered), embeddings(alone)
    assert ours.keys() == theirs.keys()
    for record_id, vector in ours.items():
        np.testing.assert_allclose(vector, theirs[record_id], atol=1e-5)
    by_id = {r.id: r.metadata for r in clustered.store.iter_all()}
    for record in alone.store.iter_all():
        mine = by_id[record.id]
        assert {k: mine[k] for k in ("path", "width", "height", "size", "mtime")} == {
            k: record.metadata[k] for k in ("path", "width", "height", "size", "mtime")}

    again = clustered.index([folder], ray="local")
    assert again.added == [] and again.unchanged == 30 and clustered.store.count() == 30
    assert [d.path for d in again.duplicates] == [d.path for d in single.duplicates]  # the same copy again


def _embed_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any("EmbedFiles" in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_a_worker_killed_mid_run_still_finishes_the_job(ray_cluster, clip_settings, tmp_path):
    folder = tmp_path / "photos"
    good = write_photos(folder, 120, size=(160, 120))
    engine = Engine(clip_settings.with_overrides(chroma_path=tmp_path / "store", batch_size=2))
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["report"] = engine.index([folder], ray="local", ray_workers=2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 240
    while engine.store.count() < 6 and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)  # some batches are done: the workers are busy
    workers = _embed_workers()
    assert workers and runner.is_alive(), "the run ended before a worker could be killed"
    os.kill(workers[0].pid, signal.SIGKILL)
    runner.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    paths = sorted(r.metadata["path"] for r in engine.store.iter_all())
    assert paths == sorted(map(str, good))  # every photo, each once
    assert len(report.added) == len(good) and not report.skipped


def test_with_a_milvus_server_every_worker_stores_what_it_embeds(ray_cluster, clip_settings, milvus_server_port,
                                                                  tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 20)
    (folder / "copy.jpg").write_bytes((folder / "photo_0003.jpg").read_bytes())  # found first: it owns the record
    (folder / "zz_copy.jpg").write_bytes((folder / "photo_0007.jpg").read_bytes())  # found last: a duplicate
    alone = Engine(clip_settings.with_overrides(chroma_path=tmp_path / "alone"))
    single = alone.index([folder])

    server = clip_settings.with_overrides(store=f"milvus://127.0.0.1:{milvus_server_port}",
                                          collection=f"ray_{os.getpid()}_{time.monotonic_ns()}", batch_size=4)
    clustered = Engine(server)
    report = clustered.index([folder], ray="local", ray_workers=2)
    assert report.written_by_workers == len(report.added) == 20
    assert sorted(report.added) == sorted(single.added)
    assert [d.path for d in report.duplicates] == [d.path for d in single.duplicates]
    ours, theirs = embeddings(clustered), embeddings(alone)
    assert ours.keys() == theirs.keys()
    for record_id, vector in ours.items():
        np.testing.assert_allclose(vector, theirs[record_id], atol=1e-5)
    paths = {r.id: r.metadata for r in clustered.store.iter_all()}
    for record in alone.store.iter_all():  # the same record, the same first file of each copy
        assert {k: paths[record.id][k] for k in ("path", "width", "height", "size", "taken_from")} == {
            k: record.metadata[k] for k in ("path", "width", "height", "size", "taken_from")}
        assert paths[record.id]["mtime"] == pytest.approx(record.metadata["mtime"], abs=1e-6)  # JSON's last digit

    again = clustered.index([folder], ray="local")
    assert again.added == [] and again.written_by_workers == 0 and clustered.store.count() == 20
