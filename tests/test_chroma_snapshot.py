"""The snapshot a command's search answers from without importing chromadb (store/chroma_snapshot.py):
the same results as Chroma's, never used once anything was written after it, and Chroma asked
for whatever it can't answer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from photos import write_photos
from retrieval.cli import main
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.search.query_syntax import parse_filters
from retrieval.search.searcher import QueryTerm, SearchRequest
from retrieval.settings import Settings, cache_dir
from retrieval.store.chroma_snapshot import SnapshotStore, keep_snapshot, open_snapshot, snapshot_path


@pytest.fixture
def indexed(monkeypatch, tiny_model, tmp_path):
    """A collection indexed by the command line, which leaves the snapshot; its settings."""
    monkeypatch.setenv("MODEL", str(tiny_model))
    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "store"))
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    photos = write_photos(tmp_path / "photos", 12)
    assert main(["index", str(tmp_path / "photos"), "--json"]) == 0
    return Settings.from_env(), photos


def requests(photos):
    return [SearchRequest(terms=[QueryTerm("text", "a red square")], k=5),
            SearchRequest(terms=[QueryTerm("text", "a dog"), QueryTerm("text", "grass", -1.0)], k=12),
            SearchRequest(terms=[QueryTerm("image", str(photos[3]))], k=4, offset=2),
            SearchRequest(terms=[QueryTerm("text", "photo 0004")], k=6),  # the words channel: file names
            SearchRequest(terms=[QueryTerm("text", "blue")], k=3, min_score=-1.0)]


def test_a_search_answers_from_the_snapshot_as_chroma_does(indexed):
    settings, photos = indexed
    command = Engine(settings, brief=True)  # one command's process
    assert isinstance(command.snapshot(), SnapshotStore)
    app = Engine(settings)  # a running app keeps its own store open and never reads the snapshot
    assert app.snapshot() is None
    for request in requests(photos):
        ours, chroma = command.search(request), app.search(request)
        assert [r.id for r in ours] == [r.id for r in chroma], request
        assert np.allclose([r.score for r in ours], [r.score for r in chroma], atol=1e-5)
        assert [r.metadata for r in ours] == [r.metadata for r in chroma]
    assert command._store is None  # Chroma was never opened


def test_any_write_after_the_snapshot_leaves_it_unused(indexed, tmp_path):
    settings, photos = indexed
    store = Engine(settings).store
    store.update_metadata([next(store.iter_all()).id], [{"description": "a new description"}])
    assert open_snapshot(settings.chroma, cache_dir()) is None
    write_photos(tmp_path / "photos", 1, start=50)
    Engine(settings).index([tmp_path / "photos"])  # not the command: no new snapshot
    command = Engine(settings, brief=True)
    assert command.snapshot() is None
    found = command.search(SearchRequest(terms=[QueryTerm("image", str(tmp_path / "photos" / "photo_0050.jpg"))], k=1))
    assert found[0].path.endswith("photo_0050.jpg")  # the new photo, from Chroma
    assert main(["index", str(tmp_path / "photos"), "--json"]) == 0  # the command takes a new one
    assert Engine(settings, brief=True).snapshot().count() == 13


def test_a_collection_made_again_under_the_same_name_does_not_match_the_old_snapshot(indexed, tmp_path):
    settings, photos = indexed
    store_folder = settings.chroma.path
    saved = snapshot_path(cache_dir(), settings.chroma).read_bytes()
    shutil.rmtree(store_folder)
    Engine(settings).index([photos[0]])  # the same name, made anew, at the same write-log position or not
    snapshot_path(cache_dir(), settings.chroma).write_bytes(saved)
    assert open_snapshot(settings.chroma, cache_dir()) is None


def test_what_the_snapshot_cannot_answer_chroma_does(indexed):
    settings, photos = indexed
    command = Engine(settings, brief=True)
    assert command.snapshot() is not None
    narrowed = SearchRequest(terms=[QueryTerm("text", "a dog")], k=5, filters=parse_filters(["width=64"]))
    found = command.search(narrowed)
    assert found and all(r.metadata["width"] == 64 for r in found)
    assert command._store is not None and not isinstance(command._store, SnapshotStore)


def test_a_model_other_than_the_collections_gets_the_stores_own_refusal(indexed, other_tiny_model):
    settings, _ = indexed
    other = settings.with_overrides(model=str(other_tiny_model))
    with pytest.raises(RetrievalError) as from_chroma:
        Engine(other).search(SearchRequest(terms=[QueryTerm("text", "a dog")], k=3))
    with pytest.raises(RetrievalError) as from_command:
        Engine(other, brief=True).search(SearchRequest(terms=[QueryTerm("text", "a dog")], k=3))
    assert str(from_command.value) == str(from_chroma.value) and "model" in str(from_chroma.value)


def test_a_large_collection_gets_no_snapshot(indexed, monkeypatch):
    from retrieval.store import chroma_snapshot

    settings, _ = indexed
    store = Engine(settings).store
    monkeypatch.setattr(chroma_snapshot, "MAX_PHOTOS", 5)
    store.update_metadata([next(store.iter_all()).id], [{"description": "moved"}])
    assert not keep_snapshot(store, settings.chroma, cache_dir())
    assert not snapshot_path(cache_dir(), settings.chroma).exists()
