"""Query logic: compose query vectors, build filters, rank and page results.

Nothing here touches a model: terms are turned into vectors by a function the
engine passes in, so every rule can be tested with hand-made vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal

import numpy as np

from ..errors import RetrievalError
from .fact_filters import Place
from ..store.filters import TagRule, normalise
from ..photos.tags import parse_tags
from ..photos.near_duplicates import DEFAULT_THRESHOLD, HASH_FIELD, group_indices, shape_of
from ..regions.ranking import MAX_REGION_READ, REGION_READ_FACTOR, best_region_per_photo, region_wins
from ..store import Match, PhotoStore
from ..store.documents import document_of, holds
from ..store.documents import normalise as normalise_text
from .keyword_index import KeywordIndex
from .keywords import RRF_K, TEXT_CANDIDATES, bm25_ranking, fuse, query_words

MAX_K = 1000
MAX_LEVELLED_TAGS = 6  # more tags than this: read every match (the levels' clauses grow too fast)
# Sorted by date, a search orders its best matches by when they were taken: the best
# DATE_SORT_POOL (or as many as the page reaches, if more), so pages never overlap.
DATE_SORT_POOL = 200
SORTS = ("score", "date", "-date")  # best first; oldest first; newest first
COLLAPSE_READ_FACTOR = 3  # grouping near-duplicates reads this many times the page's matches
FUSION_DEPTH = 50  # photos of each ranking fused, at least (more when a page reaches further)
MAX_TEXT_MATCHES = 20000  # photos --contains ranks by their vectors (a phrase more common is no filter)
MAX_PLACE_READ = 16384  # matches read to find those within a distance (the box is a little wider)
# A description nearer the query in meaning than this ranks in the meaning channel; farther, it is
# about something else. Chosen on COCO's train2017 captions with all-MiniLM-L6-v2 (val2017 is held
# out): it keeps 99% of photos' own descriptions (one caption against another) and 6% of other
# photos'; short texts run high ("sky" against "photo number 4" is 0.28).
MEANING_FLOOR = 0.3
TermKind = Literal["text", "image", "record"]


@dataclass
class QueryTerm:
    """One part of a query: ``value`` is text, an image (a path or an opened PIL
    image, for uploads) or a record id ("more like this")."""

    kind: TermKind
    value: Any
    weight: float = 1.0


@dataclass
class SearchRequest:
    terms: list[QueryTerm] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    match_all_tags: bool = False
    filters: dict[str, Any] = field(default_factory=dict)
    k: int = 10
    offset: int = 0
    min_score: float | None = None
    exclude_ids: set[str] = field(default_factory=set)
    place: Place | None = None  # only photos taken within this distance of a point
    sort: str = "score"
    collapse_duplicates: bool = False  # near-identical photos as one result, the others under "similar"
    regions: bool = True  # a photo's regions count too, where the collection has them
    contains: list[str] = field(default_factory=list)  # only photos whose text holds every phrase
    hybrid: bool = True  # a text query's words rank photos too (their text), fused with the vector ranking
    meaning: bool = True  # with hybrid: so do the photos' descriptions by meaning, where they were embedded


@dataclass
class SearchResult:
    id: str
    score: float
    metadata: dict[str, Any]
    similar: list[str] = field(default_factory=list)  # near-identical photos folded into this one
    matched_box: list[int] | None = None  # the region that matched (left, top, right, bottom), if one did
    photo_score: float | None = None  # the whole photo's own score, when a region's is the result's
    matched_words: list[str] = field(default_factory=list)  # the query's words found in the photo's text
    meaning_score: float | None = None  # how near the photo's descriptions are to the query in meaning

    @property
    def path(self) -> str | None:
        return self.metadata.get("path")

    @property
    def url(self) -> str | None:
        return self.metadata.get("url") or self.metadata.get("image_url")

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"similar": list(self.similar)} if self.similar else {}
        if self.matched_box is not None:
            extra.update(matched_box=list(self.matched_box), photo_score=round(float(self.photo_score), 6))
        if self.matched_words:
            extra["matched_words"] = list(self.matched_words)
        if self.meaning_score is not None:
            extra["meaning_score"] = round(self.meaning_score, 6)
        return {"id": self.id, "score": round(self.score, 6), **self.metadata, **extra}


def combine_vectors(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted sum of unit vectors, renormalised to unit length."""
    if not vectors:
        raise RetrievalError("The query has no terms: give some text, an image, or both.")
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float64))
    for vector, weight in zip(vectors, weights):
        unit = np.asarray(vector, dtype=np.float64)
        norm = np.linalg.norm(unit)
        if norm > 0:
            total += weight * unit / norm
    norm = np.linalg.norm(total)
    if norm < 1e-6:
        raise RetrievalError(
            "The query terms cancel each other out (or every weight is 0): "
            "give at least one term a positive weight."
        )
    return (total / norm).astype(np.float32)


def unit_vector(vector: np.ndarray) -> np.ndarray:
    return np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector)


def cosine(embedding, unit: np.ndarray) -> float:
    """A stored embedding's cosine with a unit vector (what the store's own query scores)."""
    embedding = np.asarray(embedding, dtype=np.float64)
    return float(embedding @ unit / max(np.linalg.norm(embedding), 1e-12))


def tag_score(record_tags: list[str] | None, wanted: list[str]) -> float:
    """The share of the wanted tags a record has (1.0 when it has them all)."""
    if not wanted:
        return 0.0
    have = set(record_tags or [])
    return sum(tag in have for tag in wanted) / len(wanted)


def select_page(results: list[SearchResult], request: SearchRequest) -> list[SearchResult]:
    """Drop excluded ids and scores under ``min_score``, then take one page."""
    kept = [
        r for r in results
        if r.id not in request.exclude_ids
        and (request.min_score is None or r.score >= request.min_score)
    ]
    return kept[request.offset : request.offset + request.k]


def order_by_date(results: list[SearchResult], newest_first: bool) -> list[SearchResult]:
    """By capture time (``taken_at``); photos without one last, in the order they came."""
    dated = [r for r in results if isinstance(r.metadata.get("taken_at"), (int, float))]
    undated = [r for r in results if not isinstance(r.metadata.get("taken_at"), (int, float))]
    dated.sort(key=lambda r: (-r.metadata["taken_at"] if newest_first else r.metadata["taken_at"], r.id))
    return dated + undated


def collapse_near_duplicates(results: list[SearchResult], threshold: int = DEFAULT_THRESHOLD) -> list[SearchResult]:
    """Each group of near-identical results as its best-placed member, the others in its ``similar``."""
    hashed = [n for n, r in enumerate(results) if r.metadata.get(HASH_FIELD)]
    leader_of: dict[int, int] = {}
    for members in group_indices([results[n].metadata[HASH_FIELD] for n in hashed], threshold,
                                 [shape_of(results[n].metadata) for n in hashed]):
        positions = sorted(hashed[m] for m in members)
        for position in positions[1:]:
            leader_of[position] = positions[0]
    kept = []
    for n, result in enumerate(results):
        if n in leader_of:
            results[leader_of[n]].similar.append(result.id)
        else:
            kept.append(result)
    return kept


def query_text(request: SearchRequest) -> str | None:
    """The words of a query of words, which the text channels rank by: its positive terms all text,
    of one weight (words to leave out may follow). None for an image in the query or a balance set
    by weights (``dog:1 beach:3``), the vectors' own arithmetic, which words can't follow."""
    positive = [term for term in request.terms if term.weight > 0]
    if not positive or any(t.kind != "text" or t.weight != positive[0].weight for t in positive):
        return None
    return " ".join(t.value for t in positive if isinstance(t.value, str)).strip() or None


def validate(request: SearchRequest) -> None:
    if not 1 <= request.k <= MAX_K:
        raise RetrievalError(f"The number of results must be between 1 and {MAX_K}, got {request.k}.")
    if request.offset < 0:
        raise RetrievalError(f"The offset can't be negative, got {request.offset}.")
    if request.min_score is not None and not -1.0 <= request.min_score <= 1.0:
        raise RetrievalError(f"The minimum score is a cosine similarity between -1 and 1, got {request.min_score}.")
    if not request.terms and not request.tags and not request.filters and request.place is None \
            and not any(normalise_text(p) for p in request.contains):
        raise RetrievalError("Nothing to search for: give some text, an image, tags or a filter.")
    if request.sort not in SORTS:
        raise RetrievalError(f"Unknown order '{request.sort}': use score, date (oldest first) or -date (newest first).")
    normalise(request.filters)  # filter values are values, never engine syntax


class Searcher:
    def __init__(self, store: PhotoStore, embed_term: Callable[[QueryTerm], np.ndarray],
                 keywords: Callable[[], KeywordIndex | None] | None = None,
                 meaning_of: Callable[[str], np.ndarray | None] | None = None,
                 refine_boxes: Callable[[list[SearchResult], SearchRequest], None] | None = None):
        """``keywords``: the word index of the store's texts as they are now (``keyword_index.py``),
        or None where the store's own text match must serve. ``meaning_of``: a query's vector by
        the sentence model that made the store's meanings (None: the collection has none).
        ``refine_boxes``: tightens the boxes of the page's photos found by a region, around what
        the query matches (``regions/refine.py``)."""
        self.store = store
        self.embed_term = embed_term
        self.keywords = keywords
        self.meaning_of = meaning_of
        self.refine_boxes = refine_boxes

    def query_vector(self, terms: list[QueryTerm]) -> np.ndarray:
        return combine_vectors([self.embed_term(t) for t in terms], [t.weight for t in terms])

    def search(self, request: SearchRequest) -> list[SearchResult]:
        request = replace(request, tags=parse_tags(request.tags))  # the caller's request stays as given
        validate(request)
        wanted = request.offset + request.k + len(request.exclude_ids)
        if request.sort != "score":
            wanted = max(wanted, DATE_SORT_POOL)
        if request.collapse_duplicates:  # room for the copies that fold into the page's photos
            wanted = max(wanted * COLLAPSE_READ_FACTOR, wanted + 50)
        if request.place is not None:
            request = replace(request, filters={**request.filters, **request.place.box()})
        try:
            if request.terms:
                vector = self.query_vector(request.terms)
                results = self._within_place(lambda n: self._by_vector(vector, request, n), wanted, request.place)
            elif request.tags:
                results = self._within_place(lambda n: self._by_tags(request, n), wanted, request.place)
            else:  # a filter alone: every photo it keeps, by date
                results = self._browse(request)
                wanted = len(results)
        except ValueError as exc:  # Chroma's answer to a malformed filter
            raise RetrievalError(f"The filter could not be used: {exc}") from None
        if request.collapse_duplicates:
            results = collapse_near_duplicates(results)
        if request.sort != "score":
            results = order_by_date(results[:wanted], newest_first=request.sort == "-date")
        page = select_page(results, request)
        if request.terms and self.refine_boxes is not None and any(r.matched_box for r in page):
            self.refine_boxes(page, request)
        return page

    @staticmethod
    def _within_place(fetch: Callable[[int], list[SearchResult]], wanted: int,
                      place: Place | None) -> list[SearchResult]:
        """``fetch(wanted)``; with a place, the matches truly within its distance, reading
        further while the box's corners (outside the circle) took places on the page."""
        if place is None:
            return fetch(wanted)
        ask = min(wanted * 2, MAX_PLACE_READ)
        while True:
            results = fetch(ask)
            kept = [r for r in results if place.holds(r.metadata)]
            if len(kept) >= wanted or len(results) < ask or ask >= MAX_PLACE_READ:
                return kept
            ask = min(ask * 4, MAX_PLACE_READ)

    def _by_vector(self, vector: np.ndarray, request: SearchRequest, wanted: int) -> list[SearchResult]:
        tags = None
        if request.tags:
            tags = TagRule.all_of(request.tags) if request.match_all_tags else TagRule.any_of(request.tags)
        depth = max(wanted, FUSION_DEPTH)  # a page's order never depends on the page's size
        text = query_text(request) if request.hybrid else None
        ranked = self._word_ranking(request, text, tags, depth) if text else []
        meant = self._meaning_ranking(request, text, tags, depth) if text and request.meaning else []
        if not ranked and not meant:
            return self._vector_ranking(vector, request, tags, wanted)
        # Read to the fusion's depth without metadata: only the page's photos need theirs.
        results = self._vector_ranking(vector, request, tags, depth, with_metadata=False)
        return self._fused(vector, request, tags, results, ranked[:depth], meant[:depth], wanted)

    def _vector_ranking(self, vector: np.ndarray, request: SearchRequest, tags: TagRule | None,
                        wanted: int, with_metadata: bool = True) -> list[SearchResult]:
        if request.contains:
            results = self._within_text(vector, request, tags, wanted)
        else:
            matches: list[Match] = self.store.query(vector, wanted, request.filters, tags, with_metadata=with_metadata)
            results = [SearchResult(m.id, m.score, m.metadata) for m in matches]
            if request.regions and self.store.regions.count():
                results = self._with_regions(vector, request, tags, wanted, results)
        # Equal scores in a stable order, so that pages never repeat or skip a photo.
        results.sort(key=lambda r: (-round(r.score, 6), r.id))
        return results

    def _scored(self, vector: np.ndarray, ids: list[str], request: SearchRequest,
                tags: TagRule | None) -> list[SearchResult]:
        """These photos (those the filters keep), each scored by its vector's cosine with ``vector``."""
        unit = unit_vector(vector)
        scored = []
        for record in self.store.get(ids, with_embeddings=True, filters=request.filters, tags=tags):
            scored.append(SearchResult(record.id, cosine(record.embedding, unit), record.metadata))
        return scored

    def _within_text(self, vector: np.ndarray, request: SearchRequest, tags: TagRule | None,
                     wanted: int) -> list[SearchResult]:
        """``--contains``: the photos whose text holds the phrases, ranked by the vector."""
        held = self.store.match_text(request.contains, filters=request.filters, tags=tags, limit=MAX_TEXT_MATCHES)
        results = self._scored(vector, [record.id for record in held], request, tags)
        results.sort(key=lambda r: (-round(r.score, 6), r.id))
        return results[:wanted]

    def _word_ranking(self, request: SearchRequest, text: str, tags: TagRule | None,
                      depth: int) -> list[tuple[str, float, list[str]]]:
        """The photos whose text holds the query's words, best first (BM25): (id, score, the words
        it holds)."""
        wanted_words = query_words(text)
        if not wanted_words:
            return []
        index = self.keywords() if self.keywords is not None and not request.contains else None
        if index is None:  # the store's own match, within the filters and the phrases
            candidates = self.store.match_text(wanted_words, any_of=True, filters=request.filters, tags=tags,
                                               limit=TEXT_CANDIDATES)
            if request.contains:
                candidates = [c for c in candidates if holds(document_of(c.metadata), request.contains)]
            return [(record.id, score, found)
                    for record, score, found in bm25_ranking(candidates, wanted_words, self.store.count())]
        if not request.filters and tags is None:
            return index.rank(wanted_words, depth)
        return self._passing(index.rank(wanted_words, TEXT_CANDIDATES), request, tags, depth)

    def _meaning_ranking(self, request: SearchRequest, text: str, tags: TagRule | None,
                         depth: int) -> list[tuple[str, float]]:
        """The photos whose descriptions are nearest the query in meaning, best first: (id, cosine),
        those under ``MEANING_FLOOR`` left out."""
        if self.meaning_of is None or not query_words(text):  # "a photo": nothing to mean
            return []
        vector = self.meaning_of(text)
        if vector is None:
            return []
        narrowed = bool(request.filters or tags is not None or request.contains)
        matches = self.store.meanings.query(vector, TEXT_CANDIDATES if narrowed else depth, with_metadata=False)
        ranked = [(m.id, m.score) for m in matches if m.score >= MEANING_FLOOR]
        return self._passing(ranked, request, tags, depth) if narrowed else ranked

    def _passing(self, ranked: list[tuple], request: SearchRequest, tags: TagRule | None, depth: int) -> list[tuple]:
        """Of ``ranked`` ((id, ...), best first), the best ``depth`` whose photos the filters, tags
        and phrases keep, read a few at a time."""
        kept: list[tuple] = []
        for start in range(0, len(ranked), depth):
            chunk = ranked[start:start + depth]
            passing = {r.id for r in self.store.get([item[0] for item in chunk], filters=request.filters, tags=tags)
                       if not request.contains or holds(document_of(r.metadata), request.contains)}
            kept += [item for item in chunk if item[0] in passing]
            if len(kept) >= depth:
                break
        return kept[:depth]

    def _fused(self, vector: np.ndarray, request: SearchRequest, tags: TagRule | None, results: list[SearchResult],
               ranked: list[tuple[str, float, list[str]]], meant: list[tuple[str, float]],
               wanted: int) -> list[SearchResult]:
        """The best ``wanted`` of the vector ranking, the word ranking and the meaning ranking as
        one (reciprocal rank fusion); each photo keeps its own cosine as its score, the words it
        holds and how near its descriptions came."""
        by_id = {result.id: result for result in results}
        words = {record_id: found for record_id, _score, found in ranked}
        meanings = dict(meant)
        fused = fuse([[r.id for r in results], list(words), list(meanings)])
        # A photo found by its words or meaning past the picture ranking's depth ranks by its picture
        # just after it (else it would tie with the picture's best, which has no words).
        beyond = 1.0 / (RRF_K + len(results) + 1)
        for record_id in fused:
            if record_id not in by_id:
                fused[record_id] += beyond
        order = sorted(fused, key=lambda i: (-round(fused[i], 9), -round(by_id[i].score, 6) if i in by_id else 0.0, i))
        page = order[:wanted]
        self._complete(vector, page, by_id, request, tags)
        chosen = [by_id[i] for i in page if i in by_id]
        for result in chosen:
            result.matched_words = words.get(result.id, [])
            result.meaning_score = meanings.get(result.id)
        return chosen

    def _complete(self, vector: np.ndarray, page: list[str], by_id: dict[str, SearchResult], request: SearchRequest,
                  tags: TagRule | None) -> None:
        """The page's photos with their metadata, read in one go; those found by their words alone
        also get their cosine with ``vector``, as their score."""
        unread = [i for i in page if i not in by_id or not by_id[i].metadata]
        if not unread:
            return
        missing = any(i not in by_id for i in unread)
        unit = unit_vector(vector)
        for record in self.store.get(unread, with_embeddings=missing, filters=request.filters, tags=tags):
            if record.id in by_id:
                by_id[record.id].metadata = record.metadata
            else:
                by_id[record.id] = SearchResult(record.id, cosine(record.embedding, unit), record.metadata)

    def _with_regions(self, vector: np.ndarray, request: SearchRequest, tags: TagRule | None, wanted: int,
                      results: list[SearchResult]) -> list[SearchResult]:
        """The photos' own matches and those whose regions match best, each scored by the better
        of the two. Photos found by a region alone pass the filters and tags in the store."""
        read = min(wanted * REGION_READ_FACTOR, MAX_REGION_READ)
        hits = best_region_per_photo(self.store.regions.query(vector, read))
        by_id = {result.id: result for result in results}
        others = [photo for photo in hits if photo not in by_id]
        if others:
            unit = unit_vector(vector)
            for record in self.store.get(others, with_embeddings=True, filters=request.filters, tags=tags):
                whole = cosine(record.embedding, unit)
                by_id[record.id] = SearchResult(record.id, whole, record.metadata)
        for photo, hit in hits.items():
            result = by_id.get(photo)  # None: a photo the filters leave out
            if result is not None and region_wins(result.score, hit.score):
                result.photo_score, result.score, result.matched_box = result.score, hit.score, hit.box
        return list(by_id.values())

    def _by_tags(self, request: SearchRequest, wanted: int) -> list[SearchResult]:
        """Photos with the most of the wanted tags first, reading only as many as the page needs.

        Level by level: first the photos with all n tags, then those with at least
        n-1, and so on; a level's read stops at the page's end, and a level that
        fills the page ends the search. Within a level the store's own order is
        stable, so pages never repeat or skip a photo.
        """
        tags = request.tags
        if len(tags) > MAX_LEVELLED_TAGS or request.match_all_tags:
            levels = [len(tags)] if request.match_all_tags else None
        else:
            levels = list(range(len(tags), 0, -1))
        if levels is None:  # many tags: read every match once and rank them here
            records = self.store.iter_all(request.filters, TagRule.any_of(tags))
            if request.contains:
                records = (r for r in records if holds(document_of(r.metadata), request.contains))
            return self._rank_by_tags(records, tags)
        results: list[SearchResult] = []
        seen: set[str] = set()
        for level in levels:
            for record in self.store.find(request.filters, TagRule(tuple(tags), level), wanted + len(seen)):
                if request.contains and not holds(document_of(record.metadata), request.contains):
                    continue
                if record.id not in seen:
                    seen.add(record.id)
                    results.append(SearchResult(record.id, tag_score(record.metadata.get("tags"), tags),
                                                record.metadata))
            if len(results) >= wanted:
                break
        return results

    def _browse(self, request: SearchRequest) -> list[SearchResult]:
        records = (self.store.match_text(request.contains, filters=request.filters) if request.contains
                   else self.store.iter_all(request.filters))
        results = [SearchResult(r.id, 0.0, r.metadata) for r in records
                   if request.place is None or request.place.holds(r.metadata)]
        return results if request.sort != "score" else order_by_date(results, newest_first=True)

    @staticmethod
    def _rank_by_tags(records, tags: list[str]) -> list[SearchResult]:
        results = [SearchResult(r.id, tag_score(r.metadata.get("tags"), tags), r.metadata) for r in records]
        results.sort(key=lambda r: (-r.score, r.metadata.get("path") or r.metadata.get("url") or r.id))
        return results

