"""The text channel: ranking records by the words of a query (BM25), and fusing that ranking
with the vector ranking (reciprocal rank fusion).

Written once, for every backend: the store only finds the candidates whose searchable text
holds a query word (``PhotoStore.match_text``); the scoring is the word index's BM25
(``keyword_index.py``) over those candidates, a word counting where it is part of a document's word ("bakery" in "bakeryco"),
as a shop sign read by OCR often runs words together.
"""

from __future__ import annotations

from typing import Sequence

from ..store import StoredRecord
from ..store.documents import words
from .keyword_index import KeywordIndex
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009): damps the first few ranks
TEXT_CANDIDATES = 1000  # records read for the text ranking (document frequencies are counted on these)
MIN_WORD = 2  # letters: shorter query words are not searched for on their own
# Words too common to rank by: without this, "a photo of a dog" ranks by "a" and "of".
STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in into is it its of on or that the their there this to "
    "was were with photo picture image".split()
)


def query_words(text: str) -> list[str]:
    """The words of a query worth ranking by: without stop words and one-letter words, each once."""
    return list(dict.fromkeys(w for w in words(text) if w not in STOP_WORDS and len(w) >= MIN_WORD))


def bm25_ranking(records: Sequence[StoredRecord], wanted: Sequence[str], collection_size: int
                 ) -> list[tuple[StoredRecord, float, list[str]]]:
    """``records`` holding a wanted word, best first: (record, BM25 score, the words it holds), a
    word's rarity counted against the whole collection (the records are the store's candidates)."""
    by_id = {record.id: record for record in records}
    index = KeywordIndex.of_records(by_id.values(), "")
    ranked = index.rank(list(wanted), len(by_id), collection_size)
    return sorted(((by_id[i], score, found) for i, score, found in ranked), key=lambda item: (-item[1], item[0].id))


def fuse(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: each id scores the sum of 1 / (k + rank) over the rankings it is in."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, record_id in enumerate(ranking, start=1):
            fused[record_id] = fused.get(record_id, 0.0) + 1.0 / (k + rank)
    return fused
