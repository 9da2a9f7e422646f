"""The text channel: photos' searchable text, the keyword filter, BM25 and its fusion with the
vector ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_runs import run_in_process
from photos import scene_photo
from retrieval.engine import Engine
from retrieval.search.keywords import bm25_ranking, fuse, query_words
from retrieval.search.searcher import QueryTerm, SearchRequest
from retrieval.store import StoredRecord
from retrieval.store.documents import document_of, holds, words


def record(record_id: str, **metadata) -> StoredRecord:
    return StoredRecord(record_id, metadata)


def test_a_document_holds_every_text_of_a_record_folded():
    document = document_of({"description": "Café BAKERY&CO", "ocr_text": "Open 7-22", "tags": ["Shop", "street"],
                            "filename": "IMG_2041.JPG", "photographer": "Not Searched"})
    assert document == " cafe bakery co open 7 22 shop street open7 722 img 2041 "  # words read: pairs joined too
    assert holds(document, ["bakery"]) and holds(document, ["BAKERY co"]) and holds(document, ["café"])
    assert holds(document, ["bake"])  # part of a word: "bakery" in "BAKERY&CO", "bake" in "bakery"
    assert not holds(document, ["co bakery"]) and not holds(document, ["searched"])
    assert holds(document, ["nothing", "shop"], any_of=True) and not holds(document, ["nothing", "shop"])
    assert document_of({}) == " " and words("Ünïcode ß") == ["unicode", "ss"]
    assert holds(document_of({"ocr_text": "RAIL WAY STATION"}), ["railway"])  # a word read in two pieces


def test_query_words_leave_out_stop_words_and_single_letters():
    assert query_words("A photo of the Bakery on 5 Main St, a bakery") == ["bakery", "main", "st"]


def test_bm25_prefers_more_and_rarer_words_and_shorter_texts():
    records = [
        record("once", description="a bakery on the corner of a long street with many shops and cars"),
        record("twice", description="bakery bakery"),
        record("short", description="bakery"),
        record("rare", description="bakery with a red door"),
        record("none", description="a red car"),
    ]
    ranked = bm25_ranking(records, ["bakery"], collection_size=100)
    order = [r.id for r, _score, _found in ranked]
    assert order[0] == "twice" and order.index("short") < order.index("once") and "none" not in order
    both = bm25_ranking(records, ["bakery", "door"], collection_size=100)
    assert both[0][0].id == "rare" and both[0][2] == ["bakery", "door"]
    # "red" is in two of five texts, "door" in one: the rarer word counts for more.
    red, door = (bm25_ranking([records[3]], [w], collection_size=5)[0][1] for w in ("red", "door"))
    assert red == pytest.approx(door)  # alone in its collection sample, equal
    common = bm25_ranking(records, ["red"], 5)
    rare = bm25_ranking(records, ["door"], 5)
    assert rare[0][1] > max(score for r, score, _ in common if r.id == "rare")


def test_reciprocal_rank_fusion_on_hand_made_rankings():
    fused = fuse([["a", "b", "c"], ["c", "d"]])
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61) and fused["d"] == pytest.approx(1 / 62)
    assert sorted(fused, key=lambda i: -fused[i]) == ["c", "a", "b", "d"]  # in both lists beats first in one
    assert fuse([]) == {}


@pytest.fixture
def described(settings, tmp_path):
    """Five photos, three with descriptions from a table."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(5):
        scene_photo(seed, size=(160, 120)).save(folder / f"p{seed}.jpg")
    table = tmp_path / "table.json"
    table.write_text(json.dumps([
        {"filename": "p1.jpg", "description": "The BAKERY&CO storefront at dawn"},
        {"filename": "p2.jpg", "description": "A red door in an old wall"},
        {"filename": "p3.jpg", "description": "Bread in the window of a bakery with a red door"},
    ]))
    engine = Engine(settings)
    engine.index([folder], metadata_file=table)
    return engine


def names(results) -> list[str]:
    return [r.metadata["filename"] for r in results]


def test_hybrid_ranking_puts_photos_with_the_words_first(described):
    text = [QueryTerm("text", "bakery")]
    fused = described.search(SearchRequest(terms=text, k=5))
    assert set(names(fused)[:2]) == {"p1.jpg", "p3.jpg"}
    assert all(r.matched_words == ["bakery"] for r in fused[:2]) and not fused[2].matched_words
    picture_only = described.search(SearchRequest(terms=text, k=5, hybrid=False))
    assert sorted(r.score for r in picture_only) == sorted(r.score for r in fused)  # the same cosines shown
    assert [r.score for r in picture_only] == sorted((r.score for r in picture_only), reverse=True)
    assert not any(r.matched_words for r in picture_only)
    paged = described.search(SearchRequest(terms=text, k=2, offset=1))
    assert names(paged) == names(fused)[1:3]


def test_the_keyword_filter_keeps_photos_whose_text_holds_every_phrase(described):
    text = [QueryTerm("text", "a photo")]
    assert sorted(names(described.search(SearchRequest(terms=text, contains=["red door"])))) == ["p2.jpg", "p3.jpg"]
    assert names(described.search(SearchRequest(terms=text, contains=["RED DOOR", "bakery"]))) == ["p3.jpg"]
    assert names(described.search(SearchRequest(contains=["storefront"]))) == ["p1.jpg"]  # the filter alone
    assert described.search(SearchRequest(terms=text, contains=["no such words"])) == []


def test_search_from_the_command_line_with_words(described, settings):
    code, out, err = run_in_process(settings, "search", "bakery", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert {found[0]["filename"], found[1]["filename"]} == {"p1.jpg", "p3.jpg"}
    assert found[0]["matched_words"] == ["bakery"]
    code, out, err = run_in_process(settings, "search", "--contains", "red door", "--json")
    assert code == 0, err and sorted(r["filename"] for r in json.loads(out)) == ["p2.jpg", "p3.jpg"]
    code, out, _ = run_in_process(settings, "search", "bakery", "--no-hybrid", "--json")
    assert code == 0 and not any("matched_words" in r for r in json.loads(out))


def test_an_older_chroma_collection_gains_its_documents_on_the_next_index(described, settings, tmp_path):
    from retrieval.store.chroma import DOCUMENTED

    store = described.store
    records = list(store.iter_all(with_embeddings=True))
    with store._connection.writing():  # as an earlier version wrote it: no documents, no mark
        collection = store._existing()
        collection.modify(metadata={k: v for k, v in collection.metadata.items() if k != DOCUMENTED})
        collection.delete(ids=[r.id for r in records])
        collection.add(ids=[r.id for r in records], embeddings=np.stack([r.embedding for r in records]),
                       metadatas=[r.metadata for r in records])
    older = Engine(settings)
    assert sorted(r.metadata["filename"] for r in older.store.match_text(["bakery"])) == ["p1.jpg", "p3.jpg"]
    assert older.store.fill_documents() == 5 and older.store.fill_documents() == 0
    assert sorted(r.metadata["filename"] for r in older.store.match_text(["bakery"])) == ["p1.jpg", "p3.jpg"]


def test_a_photo_found_by_its_words_beyond_the_pictures_depth_still_comes_first(described, monkeypatch):
    import retrieval.search.searcher as searcher

    monkeypatch.setattr(searcher, "FUSION_DEPTH", 1)  # the picture ranking holds one photo only
    for word, owner in (("storefront", "p1.jpg"), ("window", "p3.jpg"), ("wall", "p2.jpg")):
        found = described.search(SearchRequest(terms=[QueryTerm("text", word)], k=1))
        assert names(found) == [owner], word


def test_the_word_index_ranks_as_bm25_does_and_follows_every_change_of_the_store(described, settings, tmp_path):
    from retrieval.search.keyword_index import KeywordIndex
    from retrieval.settings import cache_dir

    records = list(described.store.iter_all())
    index = KeywordIndex.build(((r.id, document_of(r.metadata)) for r in records), "marker")
    for wanted in (["bakery"], ["red", "door"], ["bake"], ["wall", "window", "nothing"], ["nothing"]):
        expected = {r.id: (pytest.approx(score), found) for r, score, found in bm25_ranking(records, wanted, 5)}
        assert {i: (score, found) for i, score, found in index.rank(wanted, 10)} == expected
    assert [i for i, _s, _f in index.rank(["bakery"], 1)] == [index.rank(["bakery"], 10)[0][0]]

    kept = described._keywords()
    assert kept is not None and described._keywords() is kept  # nothing changed: the same index
    assert list((cache_dir() / "keywords").glob("*.npz")), "kept on disk for the next command"
    assert Engine(settings)._keywords().marker == kept.marker  # the next command reads it back
    folder = tmp_path / "more"
    folder.mkdir()
    scene_photo(9, size=(160, 120)).save(folder / "p9.jpg")
    Engine(settings).index([folder], metadata=lambda path: {"description": "a lighthouse"})  # another process
    found = described.search(SearchRequest(terms=[QueryTerm("text", "lighthouse")], k=1))
    assert names(found) == ["p9.jpg"] and found[0].matched_words == ["lighthouse"]


def test_the_word_index_finds_numbers_and_parts_of_words():
    from retrieval.search.keyword_index import KeywordIndex

    index = KeywordIndex.build([("a", " img 2041 "), ("b", " shop 20412 "), ("c", " img2041 open7 "), ("d", " ")], "m")
    assert sorted(i for i, _s, _w in index.rank(["2041"], 10)) == ["a", "b", "c"]
    assert sorted(i for i, _s, _w in index.rank(["img"], 10)) == ["a", "c"]
    assert [i for i, _s, _w in index.rank(["open7", "nothing"], 10)] == ["c"] and index.rank(["zzz"], 10) == []


def test_the_word_index_is_kept_without_pickles_and_a_damaged_file_is_rebuilt(tmp_path):
    from retrieval.search.keyword_index import KeywordIndex

    index = KeywordIndex.build([("a", " café bakery 12 "), ("b", " red door ")], "m1")
    index.save(tmp_path / "words.npz")
    loaded = KeywordIndex.load(tmp_path / "words.npz", "m1")
    assert loaded.ids == ["a", "b"] and loaded.rank(["bakery"], 5) == index.rank(["bakery"], 5)
    assert KeywordIndex.load(tmp_path / "words.npz", "m2") is None  # the store moved on
    (tmp_path / "words.npz").write_bytes(b"not an index")
    assert KeywordIndex.load(tmp_path / "words.npz", "m1") is None
    empty = KeywordIndex.build([], "m")
    empty.save(tmp_path / "empty.npz")
    assert KeywordIndex.load(tmp_path / "empty.npz", "m").rank(["x"], 5) == []


def test_a_word_misread_by_one_letter_is_found_in_read_text_only_and_counts_less():
    from retrieval.search.keyword_index import KeywordIndex
    from retrieval.store.documents import read_text

    def entry(record_id, description="", read=""):
        metadata = {"description": description, "ocr_text": read}
        return record_id, document_of(metadata), read_text(metadata)

    index = KeywordIndex.build([
        entry("sign", read="DRINKNG WATER"),  # one letter missed by the reader
        entry("exact", read="drinking fountain"),
        entry("house", description="a house by the sea"),  # a description's word is never a misreading
        entry("house-sign", read="HOUSE"),
        entry("far", read="DRNKNG"),  # two edits away
        entry("short", read="CAF"),  # a short word one edit away: another word as often as not
    ], "m")
    ranked = index.rank(["drinking"], 10)
    assert [i for i, _s, _w in ranked] == ["exact", "sign"] and ranked[1][2] == ["drinking"]
    assert ranked[0][1] > ranked[1][1]
    assert [i for i, _s, _w in index.rank(["horse"], 10)] == ["house-sign"]
    assert index.rank(["cat"], 10) == []


def test_the_words_channel_finds_a_photo_whose_sign_was_misread(described, tmp_path, settings):
    folder = tmp_path / "read"
    folder.mkdir()
    scene_photo(11, size=(160, 120)).save(folder / "sign.jpg")
    engine = Engine(settings)
    engine.index([folder], metadata=lambda path: {"ocr_text": "BREAKEAST CLUB"})
    # The words channel alone beside the picture: "bakery at dawn" is near "breakfast" in meaning.
    found = engine.search(SearchRequest(terms=[QueryTerm("text", "breakfast")], k=1, meaning=False))
    assert names(found) == ["sign.jpg"] and found[0].matched_words == ["breakfast"]
    # A filter stays exact: the phrase is not in the photo's text.
    assert engine.search(SearchRequest(terms=[QueryTerm("text", "breakfast")], k=5, contains=["breakfast"])) == []
