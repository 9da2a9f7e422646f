"""One embedded store used by several processes, and stores that are damaged or on a full disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from photos import write_photos
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.settings import Settings

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def cli(settings: Settings, *argv, check=True, **options):
    env = dict(os.environ, MODEL=settings.model, CHROMA_PATH=str(settings.chroma_path),
               BATCH_SIZE="4", TORCH_THREADS="1")
    env.pop("CHROMA_HOST", None)
    done = subprocess.run([sys.executable, "-m", "retrieval", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, **options)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("start_empty", [True, False])
def test_a_running_engine_sees_photos_the_cli_adds(settings, tmp_path, start_empty):
    """The app's engine stays open while `index` runs in another process."""
    app = Engine(settings)
    app.preload()
    if not start_empty:
        app.index(write_photos(tmp_path / "first", 3))
    assert len(app.search_text("a photo", k=50)) == (0 if start_empty else 3)

    added = write_photos(tmp_path / "cli", 5, start=100)
    cli(settings, "index", str(tmp_path / "cli"))

    assert app.store.count() == 5 + (0 if start_empty else 3)
    assert len(app.search_text("a photo", k=50)) == app.store.count()
    best = app.search_image(added[2], k=1)[0]
    assert best.path == str(added[2]) and best.score == pytest.approx(1.0, abs=1e-4)
    assert len(app.more_like_this(best.id, k=3)) == 3
    assert "cli" in {Path(r.path).parent.name for r in app.search_tags(["x"], k=1) or app.search_text("x", k=50)}

    # and the app's own writes after that are seen by the next CLI run
    app.index(write_photos(tmp_path / "app", 2, start=200))
    stats = json.loads(cli(settings, "stats", "--json").stdout)
    assert stats["count"] == app.store.count()


def test_two_cli_runs_at_once_keep_every_photo_findable(settings, tmp_path):
    first = write_photos(tmp_path / "a", 40, start=0)
    second = write_photos(tmp_path / "b", 40, start=1000)
    env = dict(os.environ, MODEL=settings.model, CHROMA_PATH=str(settings.chroma_path),
               BATCH_SIZE="4", TORCH_THREADS="1")
    runs = [subprocess.Popen([sys.executable, "-m", "retrieval", "index", str(folder), "--json"], cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for folder in (tmp_path / "a", tmp_path / "b")]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        assert json.loads(out)["added"] == 40
    engine = Engine(settings)
    assert engine.store.count() == 80
    for path in first[::7] + second[::7]:  # the vector index holds both runs' photos
        assert engine.search_image(path, k=1)[0].path == str(path)


def test_two_runs_over_shared_photos_each_count_only_what_they_added(settings, tmp_path):
    """Both folders hold the same 12 new photos (the same files, reached twice). Whatever the
    interleaving, the two summaries' "added" sum to what the store gained, and the rest of each
    run's shared photos count as there already."""
    shared = write_photos(tmp_path / "shared", 12)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for path in shared:
            (tmp_path / folder / path.name).symlink_to(path)
    env = dict(os.environ, MODEL=settings.model, CHROMA_PATH=str(settings.chroma_path),
               BATCH_SIZE="2", TORCH_THREADS="1")
    runs = [subprocess.Popen([sys.executable, "-m", "retrieval", "index", str(tmp_path / folder), "--json"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for folder in ("a", "b")]
    reports = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        reports.append(json.loads(out))
    assert Engine(settings).store.count() == 12
    assert sum(report["added"] for report in reports) == 12
    for report in reports:
        assert report["added"] + report["unchanged"] + len(report["duplicates"]) == 12


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from retrieval.settings import Settings
from retrieval.store import open_store
start = float(sys.argv[2])
while time.time() < start:  # every process imported; now all open the new store together
    pass
print(open_store(Settings(chroma_path=Path(sys.argv[1]))).count())
"""


def test_processes_creating_one_new_store_at_once_all_open_it(tmp_path):
    """Six processes create the same store in the same instant: none sees it half-made."""
    for attempt in range(3):
        store, start = tmp_path / f"store-{attempt}", time.time() + 5
        runs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, str(store), str(start)], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
        for run in runs:
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0 and out.strip() == "0", err[-2000:]


def test_an_empty_store_file_is_refused_not_treated_as_empty(settings):
    settings.chroma_path.mkdir(parents=True)
    (settings.chroma_path / "chroma.sqlite3").write_bytes(b"")
    with pytest.raises(RetrievalError, match="is empty \\(0 bytes\\)"):
        Engine(settings).stats()


def test_a_garbled_store_file_is_a_clear_error(settings, tmp_path):
    write_photos(tmp_path / "photos", 2)
    cli(settings, "index", str(tmp_path / "photos"))
    database = settings.chroma_path / "chroma.sqlite3"
    data = bytearray(database.read_bytes())
    data[:100] = os.urandom(100)  # the header: not a database any more
    database.write_bytes(bytes(data))
    done = cli(settings, "stats", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "damaged" in done.stderr and "chroma.sqlite3" in done.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs: a disk that fills up (needs the right to mount, as CI's root has)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"can't mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_named_and_nothing_is_lost(clip_settings, small_disk, tmp_path):
    settings = clip_settings.with_overrides(chroma_path=small_disk / "store", batch_size=16)
    photos = write_photos(tmp_path / "photos", 600, size=(40, 30))
    done = cli(settings, "index", str(tmp_path / "photos"), check=False)
    assert done.returncode == 1, done.stdout
    assert "The disk holding the store" in done.stderr and "is full" in done.stderr
    assert "Traceback" not in done.stderr
    for argv in (["stats"], ["search", "a photo"]):
        after = cli(settings, *argv, check=False)
        assert "Traceback" not in after.stderr, argv
        assert after.returncode == 0 or "is full" in after.stderr, argv

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    cli(settings, "index", str(tmp_path / "photos"))  # space again: the run completes
    engine = Engine(settings)
    assert engine.store.count() == len(photos)
    assert engine.search_image(photos[-1], k=1)[0].path == str(photos[-1])
