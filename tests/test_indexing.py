"""Indexing into a real embedded ChromaDB with the tiny model."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from photos import random_photo, write_bad_files, write_photos
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from conftest import every_family


def stored_paths(engine) -> list[str]:
    return sorted(r.metadata["path"] for r in engine.store.iter_all())


@every_family
def test_indexed_photo_queried_by_itself_ranks_first(engine, tmp_path):
    paths = write_photos(tmp_path / "photos", 12)
    report = engine.index([tmp_path / "photos"])
    assert len(report.added) == 12 and engine.store.count() == 12
    for path in paths[:4]:
        top = engine.search_image(path, k=3)[0]
        assert top.path == str(path)
        assert top.score == pytest.approx(1.0, abs=1e-4)


def test_record_metadata(engine, tmp_path):
    path = write_photos(tmp_path / "photos", 1, size=(70, 40))[0]
    report = engine.index([path], source="holiday")
    metadata = engine.store.get(report.added)[0].metadata
    assert metadata["path"] == str(path.resolve())
    assert (metadata["width"], metadata["height"]) == (70, 40)
    assert metadata["source"] == "holiday"
    assert metadata["added_at"].startswith("20")
    assert report.added[0] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()


@every_family
def test_duplicate_bytes_are_stored_once(engine, tmp_path):
    folder = tmp_path / "photos"
    original = write_photos(folder, 3)[0]
    shutil.copy(original, folder / "copy-of-first.jpg")
    (folder / "nested").mkdir()
    shutil.copy(original, folder / "nested" / "SAME.JPG")
    report = engine.index([folder])
    assert len(report.added) == 3
    assert engine.store.count() == 3
    same_bytes = {str(original), str(folder / "copy-of-first.jpg"), str(folder / "nested" / "SAME.JPG")}
    kept = same_bytes & set(stored_paths(engine))
    assert len(kept) == 1
    assert {d.path for d in report.duplicates} == same_bytes - kept
    assert {d.duplicate_of for d in report.duplicates} == kept


def test_rerun_embeds_nothing_and_skips_reading_unchanged_files(engine, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 6)
    engine.index([folder])
    second = engine.index([folder])
    assert second.added == [] and second.unchanged == 6
    # A touched file (same bytes, new mtime) is re-read but not re-embedded.
    touched = folder / "photo_0002.jpg"
    os.utime(touched, (1_000_000_000, 1_000_000_000))
    third = engine.index([folder])
    assert third.added == [] and third.unchanged == 6
    assert engine.store.count() == 6


def test_new_files_are_added_incrementally(engine, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 4)
    engine.index([folder])
    write_photos(folder, 3, start=4)
    report = engine.index([folder])
    assert len(report.added) == 3 and report.unchanged == 4
    assert engine.store.count() == 7


def test_prune_removes_records_of_deleted_files_only_under_the_given_roots(engine, tmp_path):
    kept_elsewhere = write_photos(tmp_path / "other", 2, start=100)
    folder = tmp_path / "photos"
    paths = write_photos(folder, 5)
    engine.index([folder, tmp_path / "other"])
    paths[0].unlink()
    paths[1].unlink()
    kept_elsewhere[0].unlink()  # gone too, but not under the folder being pruned
    report = engine.index([folder], prune=True)
    assert report.pruned == 2
    assert stored_paths(engine) == sorted([str(p) for p in paths[2:]] + [str(p) for p in kept_elsewhere])


def test_moved_file_keeps_its_record(engine, tmp_path):
    folder = tmp_path / "photos"
    paths = write_photos(folder, 3)
    engine.index([folder])
    moved = folder / "renamed.jpg"
    paths[0].rename(moved)
    report = engine.index([folder], prune=True)
    assert report.added == [] and report.updated == 1 and report.pruned == 0
    assert str(moved) in stored_paths(engine) and engine.store.count() == 3


def test_file_edited_in_place_replaces_its_record(engine, tmp_path):
    folder = tmp_path / "photos"
    paths = write_photos(folder, 3)
    engine.index([folder])
    random_photo(500).save(paths[1])
    report = engine.index([folder])
    assert len(report.added) == 1 and report.replaced == 1
    assert engine.store.count() == 3
    assert engine.search_image(paths[1], k=1)[0].score == pytest.approx(1.0, abs=1e-4)


def test_bad_files_are_skipped_and_reported(engine, tmp_path):
    folder = tmp_path / "photos"
    good = write_photos(folder, 3)
    bad = write_bad_files(folder / "bad")
    readme = folder / "readme.txt"
    readme.write_text("not an image extension: reported, not indexed")
    report = engine.index([folder])
    assert len(report.added) == 3
    assert report.skipped_counts == {**{reason: 1 for reason in bad}, "not an image": 2}
    assert {s.path: s.reason for s in report.skipped} == {
        **{str(p): r for r, p in bad.items()}, str(readme): "not an image"}
    assert stored_paths(engine) == sorted(str(p) for p in good)
    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["skipped"]["counts"]["too many pixels"] == 1


def test_extensions_are_case_insensitive_and_hidden_files_ignored(engine, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, fmt in [("a.JPG", "JPEG"), ("b.Png", "PNG"), ("c.webp", "WEBP"), ("d.bmp", "BMP"),
                      ("e.gif", "GIF"), ("f.TIFF", "TIFF"), ("g.tif", "TIFF"), ("h.jpeg", "JPEG")]:
        random_photo(hash(name) % 1000).save(folder / name, fmt)
    (folder / ".hidden").mkdir()
    random_photo(1).save(folder / ".hidden" / "secret.jpg")
    report = engine.index([folder])
    assert len(report.added) == 8


def test_metadata_table_is_joined_by_photo_id(engine, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    random_photo(1).save(folder / "abc123.jpg")
    random_photo(2).save(folder / "def456.jpg")
    table = tmp_path / "photos.tsv"
    table.write_text(
        "photo_id\tphoto_url\tphoto_image_url\tphoto_description\tai_description\t"
        "photographer_first_name\tphotographer_last_name\tkeywords\n"
        "abc123\thttps://unsplash.com/photos/abc123\thttps://images.unsplash.com/abc\t"
        "A red barn\t\tJane\tDoe\tbarn, Farm,red\n"
        "def456\thttps://unsplash.com/photos/def456\t\t\tsnowy mountain peak\tAli\t\tmountain\n"
    )
    engine.index([folder], metadata_file=table)
    by_name = {r.metadata["filename"]: r.metadata for r in engine.store.iter_all()}
    barn = by_name["abc123.jpg"]
    assert barn["description"] == "A red barn"
    assert barn["photographer"] == "Jane Doe"
    assert barn["tags"] == ["barn", "farm", "red"]
    assert barn["url"] == "https://unsplash.com/photos/abc123"
    mountain = by_name["def456.jpg"]
    assert mountain["description"] == "snowy mountain peak"  # ai_description as fallback
    assert mountain["photographer"] == "Ali"


def test_metadata_added_later_updates_records_without_embedding(engine, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 2)
    engine.index([folder])
    table = tmp_path / "meta.jsonl"
    table.write_text(json.dumps({"filename": "photo_0001.jpg", "description": "late caption",
                                 "tags": ["later"]}) + "\n")
    report = engine.index([folder], metadata_file=table)
    assert report.added == [] and report.updated == 1
    assert [r.metadata["description"] for r in engine.search_tags(["later"])] == ["late caption"]


def test_missing_folder_and_metadata_file_are_clear_errors(engine, tmp_path):
    with pytest.raises(RetrievalError, match="does not exist"):
        engine.index([tmp_path / "nowhere"])
    write_photos(tmp_path / "photos", 1)
    with pytest.raises(RetrievalError, match="Metadata file"):
        engine.index([tmp_path / "photos"], metadata_file=tmp_path / "missing.csv")


def test_progress_callback_reaches_the_total(engine, tmp_path):
    write_photos(tmp_path / "photos", 5)
    updates = []
    engine.index([tmp_path / "photos"], progress=updates.append)
    assert updates[-1].done == updates[-1].total == 5
    assert [u.done for u in updates] == sorted(u.done for u in updates)


def test_writes_respect_the_client_batch_limit(settings, tmp_path):
    engine = Engine(settings.with_overrides(batch_size=16))
    engine.store._max_batch = 5  # as a Chroma server with a small limit would report
    write_photos(tmp_path / "photos", 16)
    engine.index([tmp_path / "photos"])
    assert engine.store.count() == 16


def test_a_store_of_another_model_is_refused(settings, other_tiny_model, tmp_path):
    write_photos(tmp_path / "photos", 2)
    Engine(settings).index([tmp_path / "photos"])
    other = Engine(settings.with_overrides(model=str(other_tiny_model)))
    with pytest.raises(RetrievalError) as caught:
        other.search_text("a cat")
    message = str(caught.value)
    assert str(settings.model) in message and "MODEL" in message
    assert other.stats()["count"] == 2  # nothing was touched


def test_same_weights_from_another_folder_are_accepted(settings, tiny_model, tmp_path):
    write_photos(tmp_path / "photos", 2)
    Engine(settings).index([tmp_path / "photos"])
    copy = shutil.copytree(tiny_model, tmp_path / "copied-model")
    assert len(Engine(settings.with_overrides(model=str(copy))).search_text("cat")) == 2


def test_swapped_file_names_follow_their_bytes(engine, tmp_path):
    """Rename a.png <-> b.png: each record must end up on the file that holds its bytes."""
    folder = tmp_path / "photos"
    a, b, c = write_photos(folder, 3, ext=".png")
    engine.index([folder])
    id_of = {r.metadata["path"]: r.id for r in engine.store.iter_all()}
    a.rename(folder / "tmp.png")
    b.rename(a)
    (folder / "tmp.png").rename(b)
    report = engine.index([folder], prune=True)
    assert report.added == [] and report.duplicates == [] and report.updated == 2
    now = {r.id: r.metadata["path"] for r in engine.store.iter_all()}
    assert now == {id_of[str(a)]: str(b), id_of[str(b)]: str(a), id_of[str(c)]: str(c)}
    best = engine.search_image(a, k=1)[0]
    assert best.path == str(a) and best.score == pytest.approx(1.0, abs=1e-4)
    assert engine.index([folder]).unchanged == 3  # and stays settled


def test_a_file_replaced_by_another_indexed_file_leaves_no_stale_record(engine, tmp_path):
    folder = tmp_path / "photos"
    a, b = write_photos(folder, 2, ext=".png")
    engine.index([folder])
    b.replace(a)  # a.png now holds b's bytes, b.png is gone
    report = engine.index([folder], prune=True)
    assert report.added == [] and engine.store.count() == 1
    assert [r.metadata["path"] for r in engine.store.iter_all()] == [str(a)]


def test_special_files_are_skipped_without_hanging(engine, tmp_path):
    """A FIFO named .jpg would block a read forever; a link to /dev/zero never ends."""
    folder = tmp_path / "photos"
    write_photos(folder, 2)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    report = engine.index([folder])
    assert len(report.added) == 2
    reasons = {os.path.basename(s.path): s.reason for s in report.skipped}
    assert reasons == {"pipe.jpg": "not a regular file", "zero.jpg": "not a regular file"}
    # named directly on the command line, too
    direct = engine.index([folder / "pipe.jpg", folder / "zero.jpg"])
    assert [s.reason for s in direct.skipped] == ["not a regular file"] * 2


def test_files_over_the_size_cap_are_not_read(settings, tmp_path):
    folder = tmp_path / "photos"
    small, = write_photos(folder, 1)
    big, = write_photos(folder, 1, start=1, size=(600, 600))
    engine = Engine(settings.with_overrides(max_file_mb=1))
    with open(big, "ab") as handle:  # a valid JPEG followed by 1.5 MB of padding
        handle.write(b"\0" * 1_500_000)
    report = engine.index([folder])
    assert len(report.added) == 1
    assert [(s.path, s.reason) for s in report.skipped] == [(str(big), "file too big")]


def test_every_file_found_is_accounted_for(engine, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 1)
    for n, name in enumerate(("phone.heic", "drawing.svg", "scan.pdf", "raw.CR2")):
        (folder / name).write_bytes(bytes([n]) * 10)
    report = engine.index([folder])
    reasons = {os.path.basename(s.path): (s.reason, s.detail) for s in report.skipped}
    assert reasons["drawing.svg"] == ("unsupported format", "SVG can't be read yet")
    assert reasons["scan.pdf"][0] == "unsupported format"
    assert reasons["phone.heic"][0] == "not an image"  # read (HEIC is supported), and not one
    assert reasons["raw.CR2"][0] == "corrupt image" and "camera RAW" in reasons["raw.CR2"][1]


def test_a_copy_of_a_file_that_cant_be_used_is_skipped_for_the_same_reason(engine, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 1)
    for name in ("a_notes.jpg", "b_notes_copy.jpg"):
        (folder / name).write_text("not a photo\n")
    report = engine.index([folder])
    assert len(report.added) == 1 and not report.duplicates
    assert sorted((os.path.basename(s.path), s.reason) for s in report.skipped) == [
        ("a_notes.jpg", "not an image"), ("b_notes_copy.jpg", "not an image")]


def test_unreadable_folders_are_reported(tmp_path):
    """Run the folder scan as an ordinary user (root reads every folder)."""
    import subprocess
    import sys
    from pathlib import Path

    base = Path("/tmp") / f"scan-{os.getpid()}"  # a place an ordinary user can reach
    shutil.rmtree(base, ignore_errors=True)
    (base / "photos" / "locked").mkdir(parents=True)
    write_photos(base / "photos", 1)
    for folder in (base, base / "photos"):
        folder.chmod(0o755)
    (base / "photos" / "locked").chmod(0)
    script = ("import sys; from retrieval.photos.files import scan_folders; "
              "print([(p.path.name, p.reason.value) for p in scan_folders([sys.argv[1]]).passed_over])")
    # A copy of the package the ordinary user can read (the checkout may sit in a private folder).
    repo = base / "code"
    shutil.copytree(Path(__file__).resolve().parents[1] / "retrieval", repo / "retrieval",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [repo, *(p for p in repo.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    command = [sys.executable, "-c", script, str(base / "photos")]
    if os.geteuid() == 0:  # the scan needs only the standard library: any Python 3 will do
        python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or sys.executable
        command = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", python,
                   *command[1:]]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(repo)}, cwd="/tmp")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('locked', 'unreadable folder')]"


def test_avif_photos_are_indexed(engine, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    random_photo(3, (80, 60)).save(folder / "a.avif", "AVIF")
    report = engine.index([folder])
    assert len(report.added) == 1 and report.skipped == []


@pytest.mark.parametrize("size", [(100_000, 10), (3, 65_500)])
def test_strips_are_refused_with_a_reason(engine, tmp_path, size):
    from PIL import Image

    folder = tmp_path / "photos"
    write_photos(folder, 1)
    Image.new("L", size, 128).save(folder / "strip.png")
    report = engine.index([folder])
    assert len(report.added) == 1
    assert [(os.path.basename(s.path), s.reason) for s in report.skipped] == [("strip.png", "extreme aspect ratio")]
    with pytest.raises(RetrievalError, match="extreme aspect ratio"):
        engine.search_image(folder / "strip.png")
    with Image.open(folder / "strip.png") as opened:  # an upload arrives already decoded
        with pytest.raises(RetrievalError, match="extreme aspect ratio"):
            engine.search_image(opened)


PEAK_MEMORY_SCRIPT = """
import resource, sys
from pathlib import Path
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.settings import Settings
model, store, photo = sys.argv[1:4]
engine = Engine(Settings(model=model, chroma_path=Path(store)))
engine.preload()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
engine.index([photo])
try:
    engine.search_image(photo)
except RetrievalError:
    pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.slow
def test_a_strip_costs_no_more_memory_than_a_photo(tiny_model, tmp_path):
    """Index and query a 300000x3 PNG (a few kB) in a fresh process: the peak must stay
    within 300 MB of doing the same with an ordinary photo."""
    import subprocess
    import sys

    from PIL import Image

    photo = write_photos(tmp_path / "photo", 1, size=(640, 480))[0]
    strip = tmp_path / "strip" / "strip.png"
    strip.parent.mkdir()
    Image.new("L", (300_000, 3), 200).save(strip)

    def growth_mb(path, store) -> int:
        done = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT, str(tiny_model), str(tmp_path / store),
                               str(path)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.strip().splitlines()[-1])

    assert growth_mb(strip, "s1") <= growth_mb(photo, "s2") + 300
