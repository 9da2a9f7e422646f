"""Query logic with hand-made vectors in a real store, on every backend: no model at all."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.embedder import ModelSignature
from retrieval.errors import RetrievalError
from retrieval.search.query_syntax import parse_filter, parse_query
from retrieval.store.filters import Compare, OneOf, TagRule
from retrieval.search.searcher import (QueryTerm, Searcher, SearchRequest, combine_vectors,
                              select_page, SearchResult, tag_score)
from retrieval.store import open_store
from retrieval.store.chroma import chroma_where
from retrieval.store.milvus import milvus_filter

DIM = 8


def unit(*values) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


# Hand-made photos: axis 0 = "dog", axis 1 = "beach", axis 2 = "fruit".
PHOTOS = {
    "dog-on-beach": (unit(1, 1, 0), {"photographer": "Ana", "source": "unsplash", "tags": ["dog", "beach"]}),
    "dog": (unit(1, 0, 0), {"photographer": "Ana", "source": "local", "tags": ["dog"]}),
    "dog-with-fruit": (unit(1, 0, 1), {"photographer": "Ben", "source": "local", "tags": ["dog", "fruit"]}),
    "beach": (unit(0, 1, 0), {"photographer": "Ben", "source": "unsplash", "tags": ["beach", "sunset"]}),
    "fruit": (unit(0, 0, 1), {"photographer": "Cy", "source": "local", "tags": ["fruit"]}),
    "sunset": (unit(0, 1, 0, 1), {"photographer": "Cy", "source": "unsplash", "tags": ["sunset", "beach", "sky"]}),
}
WORDS = {"dog": unit(1, 0, 0), "beach": unit(0, 1, 0), "fruit": unit(0, 0, 1),
         "mix": unit(3, 2, 1, 0.5)}  # a different score for every photo


@pytest.fixture
def searcher(store_settings) -> Searcher:
    store = open_store(store_settings)
    store.bind(ModelSignature("hand-made", DIM, "f00d"))
    ids = list(PHOTOS)
    store.upsert(ids, np.stack([PHOTOS[i][0] for i in ids]),
                 [dict(PHOTOS[i][1], path=f"/photos/{i}.jpg") for i in ids])

    def embed(term: QueryTerm) -> np.ndarray:
        if term.kind == "record":
            return store.get([term.value], with_embeddings=True)[0].embedding
        return WORDS[term.value]

    return Searcher(store, embed)


def ids(results) -> list[str]:
    return [r.id for r in results]


def text(*words_and_weights) -> list[QueryTerm]:
    return [QueryTerm("text", w, weight) for w, weight in words_and_weights]


def test_nearest_first_with_cosine_scores(searcher):
    results = searcher.search(SearchRequest(terms=text(("dog", 1)), k=6))
    assert ids(results)[0] == "dog"
    assert results[0].score == pytest.approx(1.0, abs=1e-5)
    assert results[1].score == pytest.approx(1 / np.sqrt(2), abs=1e-4)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_weight_zero_term_changes_nothing(searcher):
    plain = searcher.search(SearchRequest(terms=text(("dog", 1)), k=6))
    with_zero = searcher.search(SearchRequest(terms=text(("dog", 1), ("fruit", 0)), k=6))
    assert ids(plain) == ids(with_zero)
    np.testing.assert_allclose([r.score for r in plain], [r.score for r in with_zero], atol=1e-6)


def test_negative_term_lowers_its_neighbours(searcher):
    plain = {r.id: r.score for r in searcher.search(SearchRequest(terms=text(("dog", 1)), k=6))}
    minus_fruit = {r.id: r.score for r in
                   searcher.search(SearchRequest(terms=text(("dog", 1), ("fruit", -1)), k=6))}
    assert minus_fruit["dog-with-fruit"] < plain["dog-with-fruit"]
    assert minus_fruit["fruit"] < plain["fruit"]
    assert ids(searcher.search(SearchRequest(terms=text(("dog", 1), ("fruit", -1)), k=1))) == ["dog"]


def test_weights_shift_the_balance(searcher):
    beachy = searcher.search(SearchRequest(terms=text(("dog", 1), ("beach", 3)), k=1))
    doggy = searcher.search(SearchRequest(terms=text(("dog", 3), ("beach", 1)), k=2))
    assert ids(beachy) == ["beach"] or ids(beachy) == ["sunset"]
    assert ids(doggy)[0] in ("dog", "dog-on-beach")


def test_terms_that_cancel_out_are_a_clear_error(searcher):
    with pytest.raises(RetrievalError, match="cancel"):
        searcher.search(SearchRequest(terms=text(("dog", 1), ("dog", -1))))


def test_metadata_filters_combine_with_vector_queries(searcher):
    results = searcher.search(SearchRequest(terms=text(("dog", 1)), filters={"photographer": "Ben"}, k=6))
    assert set(ids(results)) == {"dog-with-fruit", "beach"}
    results = searcher.search(SearchRequest(terms=text(("beach", 1)),
                                            filters={"source": "unsplash", "photographer": ["Ana", "Cy"]}, k=6))
    assert set(ids(results)) == {"dog-on-beach", "sunset"}


def test_tags_any_and_all(searcher):
    any_of = searcher.search(SearchRequest(tags=["beach", "fruit"], k=10))
    assert set(ids(any_of)) == {"dog-on-beach", "beach", "sunset", "dog-with-fruit", "fruit"}
    all_of = searcher.search(SearchRequest(tags=["beach", "sunset"], match_all_tags=True, k=10))
    assert set(ids(all_of)) == {"beach", "sunset"}
    assert all(r.score == 1.0 for r in all_of)


def test_tags_any_ranks_by_share_of_tags_matched(searcher):
    results = searcher.search(SearchRequest(tags=["beach", "sunset", "sky"], k=10))
    assert ids(results)[0] == "sunset"
    assert results[0].score == 1.0 and results[-1].score == pytest.approx(1 / 3)


def test_tags_filter_a_text_query(searcher):
    results = searcher.search(SearchRequest(terms=text(("dog", 1)), tags=["beach"], k=10))
    assert ids(results)[0] == "dog-on-beach" and set(ids(results)) <= {"dog-on-beach", "beach", "sunset"}


def test_tags_are_normalised(searcher):
    assert set(ids(searcher.search(SearchRequest(tags=[" Sunset ", "SKY"], match_all_tags=True)))) == {"sunset"}


def test_paging_and_min_score(searcher):
    mix = text(("mix", 1))
    everything = ids(searcher.search(SearchRequest(terms=mix, k=6)))
    assert everything == ["dog-on-beach", "dog", "dog-with-fruit", "beach", "sunset", "fruit"]
    pages = [ids(searcher.search(SearchRequest(terms=mix, k=2, offset=o))) for o in (0, 2, 4)]
    assert sum(pages, []) == everything
    assert ids(searcher.search(SearchRequest(terms=mix, k=6, min_score=0.6))) == everything[:3]
    assert ids(searcher.search(SearchRequest(terms=mix, k=6, offset=2, min_score=0.6))) == ["dog-with-fruit"]
    assert searcher.search(SearchRequest(terms=mix, k=6, offset=6)) == []


def test_more_like_this_excludes_the_photo_itself(searcher):
    request = SearchRequest(terms=[QueryTerm("record", "dog")], exclude_ids={"dog"}, k=2)
    assert "dog" not in ids(searcher.search(request))
    assert len(searcher.search(request)) == 2


@pytest.mark.parametrize("request_kwargs, message", [
    (dict(k=0), "number of results"), (dict(k=5000), "number of results"), (dict(offset=-1), "offset"),
    (dict(min_score=3), "minimum score"), (dict(terms=[]), "Nothing to search"),
])
def test_absurd_requests_are_clear_errors(searcher, request_kwargs, message):
    request = SearchRequest(**{"terms": text(("dog", 1)), **request_kwargs})
    with pytest.raises(RetrievalError, match=message):
        searcher.search(request)


def test_combine_vectors_is_renormalised_weighted_sum():
    combined = combine_vectors([unit(1, 0), unit(0, 1)], [2.0, -1.0])
    np.testing.assert_allclose(combined, unit(2, -1), atol=1e-6)
    assert np.linalg.norm(combined) == pytest.approx(1.0)


def test_chroma_where_translates_the_product_filters():
    assert chroma_where({}, None) is None
    assert chroma_where({"source": "x"}) == {"source": {"$eq": "x"}}
    assert chroma_where({}, TagRule.all_of(["a", "b"])) == {"$and": [{"tags": {"$contains": "a"}},
                                                                      {"tags": {"$contains": "b"}}]}
    assert chroma_where({"photographer": ["A", "B"]}, TagRule.any_of(["a"])) == {
        "$and": [{"photographer": {"$in": ["A", "B"]}}, {"tags": {"$contains": "a"}}]}
    assert chroma_where({"photo_id": OneOf((640, "x"))}) == {
        "$or": [{"photo_id": {"$in": [640]}}, {"photo_id": {"$in": ["x"]}}]}


def test_milvus_filter_translates_the_product_filters():
    assert milvus_filter({}, None) == ""
    assert milvus_filter({"source": "x"}) == '$meta["source"] == "x"'
    assert milvus_filter({}, TagRule.all_of(["a", "b"])) == 'ARRAY_CONTAINS_ALL(tags, ["a", "b"])'
    assert milvus_filter({"photographer": ["A", 'B "x"']}, TagRule.any_of(["a"])) == (
        '(($meta["photographer"] == "A" or $meta["photographer"] == "B \\"x\\"") and ARRAY_CONTAINS(tags, "a"))')
    assert milvus_filter({"width": Compare("!=", 640, "640")}) == (
        '($meta["width"] is null or ($meta["width"] != 640 and $meta["width"] != "640"))')


@pytest.mark.parametrize("value", [{"$ne": "x"}, {"$gt": 0}, object(), float("inf")])
def test_filter_values_are_values_never_engine_syntax(searcher, value):
    with pytest.raises(RetrievalError, match="filter value"):
        searcher.search(SearchRequest(terms=text(("dog", 1)), filters={"photographer": value}))
    with pytest.raises(RetrievalError, match="field name"):
        searcher.search(SearchRequest(terms=text(("dog", 1)), filters={"$or": "x"}))


def test_tag_score_and_select_page():
    assert tag_score(["a", "b"], ["a", "c"]) == 0.5
    assert tag_score(None, ["a"]) == 0.0
    results = [SearchResult(str(i), 1 - i / 10, {}) for i in range(6)]
    page = select_page(results, SearchRequest(k=2, offset=1, min_score=0.75, exclude_ids={"1"}))
    assert ids(page) == ["2"]  # kept: 0, 2 (1 excluded; 3.. under 0.75); page 2 of size 2 from offset 1


def test_parse_query_rclip_syntax(tmp_path):
    image = tmp_path / "pool.jpg"
    image.write_bytes(b"x")
    terms = parse_query(["2:golden retriever", "+", str(image), "-", "fruit"])
    assert [(t.kind, str(t.value), t.weight) for t in terms] == [
        ("text", "golden retriever", 2.0), ("image", str(image), 1.0), ("text", "fruit", -1.0)]
    assert [(t.value, t.weight) for t in parse_query("a dog running on the beach")] == [
        ("a dog running on the beach", 1.0)]
    assert [(t.value, t.weight) for t in parse_query("black-and-white photo - 0.5:snow")] == [
        ("black-and-white photo", 1.0), ("snow", -0.5)]


@pytest.mark.parametrize("bad", ["", "   ", "cat +", "cat + - dog", "2:"])
def test_parse_query_rejects_malformed_input(bad):
    with pytest.raises(RetrievalError):
        parse_query(bad)


def test_parse_filter():
    assert parse_filter("photographer=Jane Doe") == ("photographer", Compare("=", "Jane Doe"))
    assert parse_filter("width>=1000") == ("width", Compare(">=", 1000))
    assert parse_filter("width>=1e3") == ("width", Compare(">=", 1000))
    assert parse_filter("source!='local'") == ("source", Compare("!=", "local"))
    assert parse_filter("width=640") == ("width", Compare("=", 640, "640"))
    assert parse_filter("photographer=Nan") == ("photographer", Compare("=", "Nan"))
    for bad in ("width", "width>=big", "=x", "width>=1.5e400", "width<-1e999"):
        with pytest.raises(RetrievalError):
            parse_filter(bad)


def test_numeric_filters_match_numbers_and_numbers_stored_as_text(store_settings):
    from retrieval.search.query_syntax import parse_filters

    store = open_store(store_settings)
    store.bind(ModelSignature("hand-made", DIM, "f00d"))
    widths = {"a": 640, "b": 320, "c": 640, "d": 1024}
    store.upsert(list(widths), np.stack([unit(i + 1, 1) for i in range(4)]),
                 [{"width": w, "photo_id": str(w)} for w in widths.values()])
    searcher = Searcher(store, lambda term: unit(1, 1))

    def found(*expressions):
        request = SearchRequest(terms=text(("q", 1)), filters=parse_filters(list(expressions)), k=10)
        return sorted(ids(searcher.search(request)))

    assert found("width=640") == ["a", "c"]
    assert found("width!=640") == ["b", "d"]
    assert found("width=640.0") == ["a", "c"]
    assert found("photo_id=1024") == ["d"]  # stored as text, typed as a number
    assert found("width>=640", "photo_id!=1024") == ["a", "c"]
    assert found("width<1e3") == ["a", "b", "c"]


@pytest.mark.parametrize("match_all", [False, True])
def test_tag_pages_cover_every_match_once_best_first(store_settings, match_all):
    """Tag search reads only what a page needs; pages must still add up to the full ranking."""
    rng = np.random.default_rng(5)
    store = open_store(store_settings)
    store.bind(ModelSignature("hand-made", DIM, "f00d"))
    vocabulary = ["a", "b", "c", "d"]
    records = {f"p{i:02d}": sorted(set(rng.choice(vocabulary, size=int(rng.integers(1, 4))))) for i in range(40)}
    store.upsert(list(records), np.tile(unit(1, 0, 0), (40, 1)),
                 [{"tags": tags, "photographer": "Ana" if i % 2 else "Ben"} for i, tags in enumerate(records.values())])
    searcher = Searcher(store, lambda term: WORDS["dog"])
    wanted = ["a", "b", "c"]
    have = {pid: sum(t in tags for t in wanted) for pid, tags in records.items()}
    expected = {pid for pid, n in have.items() if (n == 3 if match_all else n >= 1)}
    for filters in ({}, {"photographer": "Ana"}):
        paged = []
        for offset in range(0, 60, 7):
            paged += searcher.search(SearchRequest(tags=wanted, match_all_tags=match_all, filters=filters,
                                                   k=7, offset=offset))
        matching = {pid for pid in expected
                    if not filters or ("Ana" if int(pid[1:]) % 2 else "Ben") == filters["photographer"]}
        assert len(ids(paged)) == len(set(ids(paged))) == len(matching)  # no repeats, nothing skipped
        assert set(ids(paged)) == matching
        scores = [r.score for r in paged]
        assert scores == sorted(scores, reverse=True)
        assert all(r.score == pytest.approx(have[r.id] / 3) for r in paged)


def test_date_order_puts_undated_photos_last_and_keeps_ties_stable():
    from retrieval.search.searcher import order_by_date

    results = [SearchResult("c", 0.9, {"taken_at": 30.0}), SearchResult("x", 0.8, {}),
               SearchResult("a", 0.7, {"taken_at": 10.0}), SearchResult("b", 0.6, {"taken_at": 10.0}),
               SearchResult("y", 0.5, {"taken_at": "2024"})]  # not a number: undated
    assert [r.id for r in order_by_date(results, newest_first=False)] == ["a", "b", "c", "x", "y"]
    assert [r.id for r in order_by_date(results, newest_first=True)] == ["c", "a", "b", "x", "y"]


def test_near_identical_results_fold_into_the_best_placed():
    from retrieval.search.searcher import collapse_near_duplicates

    def result(rid, phash):
        return SearchResult(rid, 0.5, {"phash": phash} if phash else {})

    results = [result("a", "ffff0000ffff0000"), result("b", "0000ffff0000ffff"), result("a2", "ffff0000ffff0001"),
               result("n", None), result("a3", "ffff0000ffff0003"), result("b2", "0000ffff0000fffe")]
    kept = collapse_near_duplicates(results, threshold=2)
    assert [(r.id, r.similar) for r in kept] == [("a", ["a2", "a3"]), ("b", ["b2"]), ("n", [])]
    assert kept[0].to_dict()["similar"] == ["a2", "a3"] and "similar" not in kept[2].to_dict()
