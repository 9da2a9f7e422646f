"""Indexing into a real embedded ChromaDB with the tiny model."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from photos import random_photo, write_bad_files, write_photos
from retrieval.engine import Engine
from retrieval.errors import RetrievalError


def stored_paths(engine) -> list[str]:
    return sorted(r.metadata["path"] for r in engine.store.iter_all())


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
    (folder / "readme.txt").write_text("not picked up: not an image extension")
    report = engine.index([folder])
    assert len(report.added) == 3
    assert report.skipped_counts == {reason: 1 for reason in bad}
    assert {s.path: s.reason for s in report.skipped} == {str(p): r for r, p in bad.items()}
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
    other = Engine(settings.with_overrides(clip_model=str(other_tiny_model)))
    with pytest.raises(RetrievalError) as caught:
        other.search_text("a cat")
    message = str(caught.value)
    assert str(settings.clip_model) in message and "CLIP_MODEL" in message
    assert other.stats()["count"] == 2  # nothing was touched


def test_same_weights_from_another_folder_are_accepted(settings, tiny_model, tmp_path):
    write_photos(tmp_path / "photos", 2)
    Engine(settings).index([tmp_path / "photos"])
    copy = shutil.copytree(tiny_model, tmp_path / "copied-model")
    assert len(Engine(settings.with_overrides(clip_model=str(copy))).search_text("cat")) == 2
