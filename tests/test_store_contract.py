"""The store contract, the same on every backend: embedded Chroma, a Chroma server,
Milvus Lite and a Milvus server (``store_settings`` in store_backends.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.store.filters import AllOf, Compare, OneOf, TagRule
from retrieval.model_signature import ModelSignature
from retrieval.store import SCHEMA_VERSION, open_store
from retrieval.store.contract import bind_facts

DIM = 6
MODEL = ModelSignature("hand-made", DIM, "f00d")


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def store(store_settings):
    store = open_store(store_settings)
    store.bind(MODEL)
    return store


def fill(store, n=12):
    ids = [f"p{i:02d}" for i in range(n)]
    metadatas = [{"photographer": ["Ana", "Ben", 'Cy "the eye"'][i % 3], "width": 320 * (1 + i % 4),
                  "tags": [["dog", "beach", "sun", "sky"][j] for j in range(4) if (i >> j) & 1] or None,
                  "title": f"Photo número {i}", "portrait": i % 2 == 0}
                 for i in range(n)]
    store.upsert(ids, vectors(n), metadatas)
    return ids, vectors(n), metadatas


def rewrite_facts(store, facts: dict) -> None:
    """What another program version would have written (each backend's own client)."""
    if hasattr(store, "_connection"):
        with store._connection.writing():
            store._existing().modify(metadata=facts)
    else:
        store._client.alter_collection_properties(store._name, properties={"photo_store": json.dumps(facts)})


def test_round_trip_of_vectors_and_metadata(store):
    ids, vecs, metadatas = fill(store)
    assert store.count() == 12
    got = {r.id: r for r in store.get(ids + ["missing"], with_embeddings=True)}
    assert set(got) == set(ids)
    for i, record_id in enumerate(ids):
        np.testing.assert_allclose(got[record_id].embedding, vecs[i], atol=1e-6)
        expected = {k: v for k, v in metadatas[i].items() if v is not None}
        assert got[record_id].metadata == expected
    streamed = list(store.iter_all(with_embeddings=True))
    assert sorted(r.id for r in streamed) == sorted(ids)
    assert all(r.embedding is not None for r in streamed)


def test_update_merges_metadata_and_keeps_the_vector(store):
    ids, vecs, _ = fill(store, 3)
    store.update_metadata(["p01"], [{"photographer": "Dee", "note": "new"}])
    record = store.get(["p01"], with_embeddings=True)[0]
    assert record.metadata["photographer"] == "Dee" and record.metadata["note"] == "new"
    assert record.metadata["width"] == 640  # untouched fields stay
    np.testing.assert_allclose(record.embedding, vecs[1], atol=1e-6)


def test_a_field_updated_to_none_is_removed(store):
    fill(store, 3)
    store.update_metadata(["p02"], [{"failed_stages": ["phash: odd file"], "note": "kept"}])
    store.update_metadata(["p02"], [{"failed_stages": None}])
    record = store.get(["p02"])[0]
    assert "failed_stages" not in record.metadata and record.metadata["note"] == "kept"
    assert record.metadata["photographer"] == 'Cy "the eye"'


def test_text_matches_phrases_in_any_case_within_the_filters(store):
    ids = ["sign", "menu", "plain", "other"]
    store.upsert(ids, vectors(4), [
        {"description": "A BAKERY&CO storefront", "photographer": "Ana", "filename": "IMG_1.jpg"},
        {"ocr_text": "Bakery menu: Red Door specials", "photographer": "Ben", "filename": "IMG_2.jpg"},
        {"description": "A quiet street", "photographer": "Ana", "filename": "bakery_street.jpg"},
        {"tags": ["door", "red"], "photographer": "Ana", "filename": "IMG_4.jpg"},
    ])
    found = lambda *phrases, **options: sorted(r.id for r in store.match_text(list(phrases), **options))
    assert found("bakery") == ["menu", "plain", "sign"]  # descriptions, words read, file names
    assert found("red door") == ["menu"]  # a phrase: words in order (tags "door, red" are not)
    assert found("BAKERY", "menu") == ["menu"] and found("storefront", "quiet", any_of=True) == ["plain", "sign"]
    assert found("bakery", filters={"photographer": "Ana"}) == ["plain", "sign"]
    assert found("bakery", limit=1) in (["menu"], ["plain"], ["sign"])
    store.update_metadata(["other"], [{"ocr_text": "BAKERY"}])  # the text follows a merged update
    assert found("bakery") == ["menu", "other", "plain", "sign"]
    assert found("nowhere") == []


def test_delete_and_upsert_replace(store):
    ids, _, _ = fill(store, 5)
    store.delete(["p00", "p03", "never-there"])
    assert store.count() == 3 and not store.get(["p00"])
    store.upsert(["p01"], vectors(1, seed=9), [{"title": "again"}])
    assert store.count() == 3
    assert store.get(["p01"])[0].metadata == {"title": "again"}


def test_query_is_cosine_best_first_and_filtered(store):
    ids, vecs, metadatas = fill(store)
    matches = store.query(vecs[4], 5)
    assert matches[0].id == "p04" and matches[0].score == pytest.approx(1.0, abs=1e-5)
    expected = sorted(((float(vecs[i] @ vecs[4]), ids[i]) for i in range(12)), reverse=True)[:5]
    assert [m.id for m in matches] == [i for _, i in expected]
    np.testing.assert_allclose([m.score for m in matches], [s for s, _ in expected], atol=1e-5)
    by_ana = store.query(vecs[4], 12, {"photographer": "Ana"})
    assert {m.id for m in by_ana} == {i for i, m in zip(ids, metadatas) if m["photographer"] == "Ana"}
    assert all(m.metadata["photographer"] == "Ana" for m in by_ana)


@pytest.mark.parametrize("filters, tags, rule", [
    ({"photographer": 'Cy "the eye"'}, None, lambda m: m["photographer"] == 'Cy "the eye"'),
    ({"photographer": Compare("!=", "Ana")}, None, lambda m: m["photographer"] != "Ana"),
    ({"note": Compare("!=", "x")}, None, lambda m: True),  # no such field: nothing equals x
    ({"width": Compare(">=", 960)}, None, lambda m: m["width"] >= 960),
    ({"width": Compare("<", 700), "portrait": True}, None, lambda m: m["width"] < 700 and m["portrait"]),
    ({"width": OneOf((320, 1280))}, None, lambda m: m["width"] in (320, 1280)),
    ({"width": AllOf.between(640, 1280)}, None, lambda m: 640 <= m["width"] < 1280),  # a date range's shape
    ({"width": AllOf.between(high=960), "portrait": False}, None, lambda m: m["width"] < 960 and not m["portrait"]),
    ({"title": "Photo número 7"}, None, lambda m: m["title"] == "Photo número 7"),
    ({}, TagRule.all_of(["dog", "beach"]), lambda m: {"dog", "beach"} <= set(m["tags"] or [])),
    ({}, TagRule.any_of(["sun", "sky"]), lambda m: bool({"sun", "sky"} & set(m["tags"] or []))),
    ({}, TagRule(("dog", "beach", "sun"), 2), lambda m: len({"dog", "beach", "sun"} & set(m["tags"] or [])) >= 2),
    ({"photographer": "Ben"}, TagRule.any_of(["dog"]), lambda m: m["photographer"] == "Ben" and "dog" in (m["tags"] or [])),
])
def test_filters_mean_the_same_on_every_backend(store, filters, tags, rule):
    ids, vecs, metadatas = fill(store)
    expected = {i for i, m in zip(ids, metadatas) if rule(m)}
    assert expected, "the case should match something"
    assert {r.id for r in store.iter_all(filters, tags)} == expected
    assert {m.id for m in store.query(vecs[0], 12, filters, tags)} == expected


def test_find_and_iter_all_share_one_stable_order(store):
    fill(store, 30)
    full = [r.id for r in store.iter_all()]
    assert len(full) == len(set(full)) == 30
    assert [r.id for r in store.find(None, None, 7)] == full[:7]
    assert [r.id for r in store.find(None, None, 7)] == full[:7]  # the same again
    ana = [r.id for r in store.iter_all({"photographer": "Ana"})]
    assert [r.id for r in store.find({"photographer": "Ana"}, None, 4)] == ana[:4]
    assert store.find(None, None, 0) == []


def test_known_fields(store):
    fill(store, 4)
    assert {"photographer", "width", "title", "portrait", "tags"} <= store.known_fields()


def test_another_model_is_refused_and_an_empty_collection_may_change_model(store_settings):
    store = open_store(store_settings)
    store.bind(MODEL)
    other = ModelSignature("other-model", DIM + 2, "beef")
    store.bind(other)  # empty: fine
    assert store.recorded_model()["model"] == "other-model"
    store.upsert(["a"], np.ones((1, DIM + 2), dtype=np.float32), [{}])
    again = open_store(store_settings)
    with pytest.raises(RetrievalError, match="reembed"):
        again.bind(MODEL)
    again.bind(other)
    assert again.count() == 1


def test_a_newer_layout_is_refused_and_an_unversioned_one_is_stamped(store):
    fill(store, 2)
    facts = dict(store.recorded_model())
    assert facts["schema_version"] == SCHEMA_VERSION
    rewrite_facts(store, {**facts, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(RetrievalError, match="newer version"):
        store.bind(MODEL)
    unversioned = {k: v for k, v in facts.items() if k != "schema_version"}
    rewrite_facts(store, unversioned)
    store.bind(MODEL)
    assert store.recorded_model()["schema_version"] == SCHEMA_VERSION
    assert store.count() == 2


def test_bind_facts_rules():
    assert bind_facts(None, 0, MODEL, "c", "here")["schema_version"] == SCHEMA_VERSION
    current = bind_facts(None, 0, MODEL, "c", "here")
    assert bind_facts(current, 5, MODEL, "c", "here") is None  # nothing to write
    with pytest.raises(RetrievalError, match="unknown store layout"):
        bind_facts({**current, "schema_version": "x"}, 5, MODEL, "c", "here")


def test_rename_keeps_the_records(store_settings):
    store = open_store(store_settings)
    store.bind(MODEL)
    fill(store, 3)
    store.rename("photos-renamed")
    renamed = open_store(store_settings.with_overrides(collection="photos-renamed"))
    assert renamed.count() == 3
    assert open_store(store_settings).count() == 0


def test_write_before_bind_is_a_programming_error(store_settings):
    with pytest.raises(RuntimeError, match="bind"):
        open_store(store_settings).upsert(["a"], vectors(1), [{}])


def test_stats_reads_the_recorded_model(store_settings):
    store = open_store(store_settings)
    store.bind(MODEL)
    fill(store, 3)
    stats = Engine(store_settings).stats()
    assert stats["count"] == 3 and stats["model"] == "hand-made" and stats["dim"] == DIM


def test_no_module_outside_the_store_package_writes_backend_filter_syntax():
    from pathlib import Path

    import retrieval

    package = Path(retrieval.__file__).parent
    syntax = ('"$and"', '"$or"', '"$contains"', '"$in"', '"$eq"', "ARRAY_CONTAINS", "$meta[")
    offenders = [f"{path.relative_to(package)}: {word}"
                 for path in package.rglob("*.py") if "store" not in path.relative_to(package).parts
                 for word in syntax if word in path.read_text()]
    assert offenders == []


def test_get_keeps_only_the_ids_that_match_the_filters(store):
    fill(store)
    got = store.get(["p00", "p01", "p03", "p04", "nope"], filters={"photographer": "Ben"})
    assert sorted(r.id for r in got) == ["p01", "p04"]
    got = store.get(["p00", "p01", "p03"], with_embeddings=True, tags=TagRule.any_of(["dog"]))
    assert sorted(r.id for r in got) == ["p01", "p03"] and all(r.embedding is not None for r in got)


def test_regions_and_meanings_live_beside_their_photos_and_go_with_them(store):
    from retrieval.store.contract import REGION_PHOTO_FIELD

    fill(store, 4)
    regions, meanings = store.regions, store.meanings
    assert regions.count() == 0 and regions.companion_of is store and store.regions is regions
    assert meanings.count() == 0 and meanings.companion_of is store and store.meanings is meanings
    regions.bind(MODEL)
    ids = [f"p{i:02d}:r{n}" for i in range(4) for n in range(3)]
    regions.upsert(ids, vectors(len(ids), seed=5), [{REGION_PHOTO_FIELD: i.split(":")[0]} for i in ids])
    sentences = ModelSignature("a-sentence-model", 4, "f" * 16)  # another model, another size
    meanings.bind(sentences)
    meanings.upsert(["p00", "p01", "p02"], vectors(3, seed=6)[:, :4], [{"stamp": "x"}] * 3)
    assert store.count() == 4 and regions.count() == 12 and meanings.count() == 3  # neither are photos

    store.delete(["p01", "p02"])  # a photo's regions and meaning go first, then the photo
    assert sorted(r.id for r in store.iter_all()) == ["p00", "p03"]
    assert sorted({r.metadata[REGION_PHOTO_FIELD] for r in regions.iter_all()}) == ["p00", "p03"]
    assert regions.count() == 6 and [r.id for r in meanings.iter_all()] == ["p00"]

    store.rename(store.collection_name + "-old")  # switching models: the companions follow their collection
    assert store.regions.count() == 6 and store.regions.collection_name == store.collection_name + "-regions"
    assert store.meanings.count() == 1 and store.meanings.recorded_model()["dim"] == 4


def test_an_emptied_collection_takes_a_model_of_another_size(store):
    fill(store, 3)
    store.delete([r.id for r in store.iter_all()])
    store.bind(ModelSignature("a-wider-model", 12, "e" * 16))
    store.upsert(["w0"], vectors(1, seed=7)[:, :1].repeat(12, axis=1), [{"path": "/w0.jpg"}])
    assert store.count() == 1 and store.recorded_model()["dim"] == 12


def test_ids_are_found_by_their_start(store):
    ids, _, _ = fill(store)
    assert sorted(store.ids_starting_with("p1", limit=5)) == ["p10", "p11"]
    assert len(store.ids_starting_with("p0", limit=3)) == 3
    assert store.ids_starting_with("x") == []
