"""Moving a collection to another model family: every record embedded again, resumable, switchable."""

from __future__ import annotations

import os
import signal

import pytest

from cli_runs import run_until_committed
from dataset_server import FlakyPhotoServer
from photos import write_photos
from retrieval import RetrievalError
from retrieval.embedder import load_embedder
from retrieval.engine import Engine
from retrieval.indexing.reembed import target_collection
from tiny_models import BUILDERS


@pytest.fixture(scope="module")
def new_model(model_family, tmp_path_factory):
    """A model of the other family than the suite's: the move is across families."""
    family = "clip" if model_family != "clip" else "siglip2"
    return BUILDERS[family](tmp_path_factory.mktemp("new-model") / family, seed=3)


def assert_holds_each_photo_once(engine: Engine, source_ids: set[str], model) -> None:
    records = list(engine.store.iter_all())
    assert sorted(r.id for r in records) == sorted(source_ids)  # every record, exactly once
    embedder = load_embedder(str(model))
    for record in records[:6]:  # each vector is the new model's vector of its own file
        first = engine.search_image(record.metadata["path"], k=1)[0]
        assert first.id == record.id and first.score > 0.999
    assert engine.store.recorded_model()["model"] == embedder.name


def test_a_store_of_one_family_refuses_another_and_names_reembed(settings, new_model, tmp_path):
    write_photos(tmp_path / "photos", 3)
    Engine(settings).index([tmp_path / "photos"])
    other = Engine(settings.with_overrides(model=str(new_model)))
    with pytest.raises(RetrievalError, match=f"reembed --model {new_model}"):
        other.search_text("ein Hund")
    # and again on the next use (an app keeps its engine): never a search or a write past the guard
    with pytest.raises(RetrievalError, match="reembed"):
        other.index(write_photos(tmp_path / "more", 2, start=10))
    assert Engine(settings).store.count() == 3


def test_reembed_builds_a_new_collection_and_switch_makes_it_the_collection(settings, new_model, tmp_path):
    photos = write_photos(tmp_path / "photos", 10)
    old = Engine(settings)
    old.index([tmp_path / "photos"])
    source_ids = {r.id for r in old.store.iter_all()}
    photos[0].unlink()  # a file gone: reported, not copied, kept in the old collection
    gone_id = next(r.id for r in old.store.iter_all() if r.metadata["path"] == str(photos[0]))

    report = old.reembed(str(new_model))
    assert (report.embedded, report.already, [g.id for g in report.left_behind]) == (9, 0, [gone_id])
    target = target_collection(settings.collection, str(new_model))
    moved = Engine(settings.with_overrides(model=str(new_model), collection=target))
    assert_holds_each_photo_once(moved, source_ids - {gone_id}, new_model)
    assert Engine(settings).store.count() == 10  # the old collection is untouched
    assert len(Engine(settings).search_text("a cat", k=3)) == 3

    report = Engine(settings).reembed(str(new_model), switch=True)  # nothing left to embed: switch
    assert (report.embedded, report.already, report.switched_to) == (0, 9, settings.collection)
    switched = Engine(settings.with_overrides(model=str(new_model)))
    assert_holds_each_photo_once(switched, source_ids - {gone_id}, new_model)
    kept = Engine(settings.with_overrides(collection=report.old_kept_as))
    assert kept.store.count() == 10 and len(kept.search_text("a cat", k=2)) == 2


def test_a_gone_file_is_read_from_its_image_url(settings, new_model, tmp_path):
    photos = write_photos(tmp_path / "photos", 2)
    engine = Engine(settings)
    engine.index([tmp_path / "photos"])
    server = FlakyPhotoServer()
    record = next(r for r in engine.store.iter_all() if r.metadata["path"] == str(photos[0]))
    server.files["/p0.jpg"] = photos[0].read_bytes()
    with server:
        engine.store.update_metadata([record.id], [{**record.metadata, "image_url": f"{server.base_url}/p0.jpg"}])
        photos[0].unlink()
        report = engine.reembed(str(new_model))
    assert (report.embedded, report.left_behind) == (2, [])


def test_reembed_killed_mid_run_then_run_again_holds_every_record_once(settings, new_model, tmp_path):
    write_photos(tmp_path / "photos", 48)
    old = Engine(settings)
    old.index([tmp_path / "photos"])
    source_ids = {r.id for r in old.store.iter_all()}
    env = dict(os.environ, MODEL=settings.model, CHROMA_PATH=str(settings.chroma_path), BATCH_SIZE="4",
               DECODE_WORKERS="1")
    process = run_until_committed(["reembed", "--model", str(new_model)], env, batches=2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    target = Engine(settings.with_overrides(model=str(new_model),
                                            collection=target_collection(settings.collection, str(new_model))))
    part = target.store.count()
    assert 0 < part < 48, part  # killed part-way

    report = Engine(settings).reembed(str(new_model), switch=True)
    assert report.already == part and report.embedded == 48 - part and not report.left_behind
    assert_holds_each_photo_once(Engine(settings.with_overrides(model=str(new_model))), source_ids, new_model)


def test_reembed_of_an_empty_collection_says_so(settings, new_model):
    with pytest.raises(RetrievalError, match="empty"):
        Engine(settings).reembed(str(new_model))


def test_a_switch_interrupted_between_its_renames_is_finished_by_running_it_again(settings, new_model, tmp_path):
    write_photos(tmp_path / "photos", 3)
    old = Engine(settings)
    old.index([tmp_path / "photos"])
    old.reembed(str(new_model))
    old.store.rename("photos-before-crash")  # the first rename happened, then the process died
    report = Engine(settings).reembed(str(new_model), switch=True)
    assert report.switched_to == settings.collection
    assert Engine(settings.with_overrides(model=str(new_model))).store.count() == 3
