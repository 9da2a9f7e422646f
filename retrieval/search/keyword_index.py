"""An inverted index of the collection's searchable texts, for ranking by words in milliseconds.

A store's own text match reads every document it tests (embedded Chroma takes 120 ms for four
words at 100,000 photos, against 17 ms for the whole vector query), so the words channel ranks
from this index instead, where the store can say cheaply whether it changed
(``PhotoStore.change_marker``): built once from the documents, kept in memory by a running app
and on disk for the next command, rebuilt when the marker moves. The scoring is
BM25, over the whole collection.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from ..store.documents import document_of

log = logging.getLogger(__name__)
FORMAT = 2
K1, B = 1.2, 0.75  # BM25's usual saturation and length normalisation


class KeywordIndex:
    def __init__(self, ids: list[str], lengths: np.ndarray, tokens: list[str], offsets: np.ndarray,
                 postings: np.ndarray, marker: str):
        """``postings[offsets[t]:offsets[t + 1]]``: the documents token ``t`` is in, once per time."""
        self.ids, self.lengths, self.tokens = ids, lengths, tokens
        self.offsets, self.postings, self.marker = offsets, postings, marker
        # The vocabulary as one text, searched at once for the tokens a word is part of; in two, as
        # file names make most tokens numbers ("img 2041"), which a word with a letter is never in.
        self._numbers = [n for n, t in enumerate(tokens) if t.isdigit()]
        self._words = [n for n, t in enumerate(tokens) if not t.isdigit()]
        self._joined = {kind: "\n" + "\n".join(tokens[n] for n in members) + "\n"
                        for kind, members in (("numbers", self._numbers), ("words", self._words))}
        self._starts = {kind: np.cumsum([1] + [len(tokens[n]) + 1 for n in members])
                        for kind, members in (("numbers", self._numbers), ("words", self._words))}

    @classmethod
    def build(cls, documents: Iterable[tuple[str, str]], marker: str) -> "KeywordIndex":
        ids: list[str] = []
        lengths: list[int] = []
        postings: dict[str, list[int]] = defaultdict(list)
        for number, (record_id, document) in enumerate(documents):
            ids.append(record_id)
            words = document.split()
            lengths.append(len(words))
            for word in words:
                postings[word].append(number)
        tokens = sorted(postings)
        sizes = [len(postings[t]) for t in tokens]
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(sizes)
        flat = np.fromiter((n for t in tokens for n in postings[t]), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, np.asarray(lengths, dtype=np.float32), tokens, offsets, flat, marker)

    def _tokens_holding(self, word: str) -> list[int]:
        """The vocabulary's tokens that hold ``word`` (as a part, like ``bm25_ranking`` counts)."""
        found = []
        for kind, members in (("words", self._words), ("numbers", self._numbers)):
            if kind == "numbers" and not word.isdigit():
                continue
            joined, starts = self._joined[kind], self._starts[kind]
            position = joined.find(word)
            while position >= 0:
                member = int(np.searchsorted(starts, position, side="right")) - 1
                found.append(members[member])
                position = joined.find(word, int(starts[member + 1]))  # on from the next token
        return found

    def rank(self, words: list[str], limit: int, collection_size: int | None = None) -> list[tuple[str, float, list[str]]]:
        """The best ``limit`` documents holding a word: (id, BM25 score, the words it holds).
        ``collection_size``: the number of documents a word's rarity is counted against, when these
        are a sample of a larger collection (else they are all of it)."""
        total = len(self.ids)
        if not total or not words:
            return []
        counted = max(collection_size or total, total)
        scores = np.zeros(total, dtype=np.float64)
        held: dict[str, np.ndarray] = {}  # word -> which documents hold it
        average = float(self.lengths.mean()) or 1.0
        norm = K1 * (1 - B + B * self.lengths / average)
        for word in words:
            parts = [self.postings[self.offsets[t]:self.offsets[t + 1]] for t in self._tokens_holding(word)]
            if not parts:
                continue
            counts = np.bincount(np.concatenate(parts), minlength=total)
            present = np.nonzero(counts)[0]
            idf = math.log(1 + (counted - len(present) + 0.5) / (len(present) + 0.5))
            tf = counts[present]
            scores[present] += idf * tf * (K1 + 1) / (tf + norm[present])
            held[word] = counts > 0
        found = np.nonzero(scores)[0]
        if len(found) > limit:  # the best ``limit`` first, then only those sorted
            found = np.sort(found[np.argpartition(-scores[found], limit - 1)[:limit]])
        best = found[np.argsort(-scores[found], kind="stable")]  # ties: in the store's order
        return [(self.ids[n], float(scores[n]), [w for w in words if w in held and held[w][n]]) for n in best]

    # -- kept on disk between commands --------------------------------------------------

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        with partial.open("wb") as handle:
            np.savez(handle, format=np.asarray([FORMAT]), marker=_text(self.marker), ids=_text("\n".join(self.ids)),
                     lengths=self.lengths, tokens=_text("\n".join(self.tokens)), offsets=self.offsets,
                     postings=self.postings)
        partial.replace(path)  # whole or not at all: a reader never sees half a file

    @classmethod
    def load(cls, path: Path, marker: str) -> "KeywordIndex | None":
        """The index kept at ``path``, if it was built at ``marker`` (else None)."""
        try:
            with np.load(path, allow_pickle=False) as data:  # numbers and bytes only: nothing to unpickle
                if int(data["format"][0]) != FORMAT or _words(data["marker"]) != marker:
                    return None
                ids, tokens = _words(data["ids"]).split("\n"), _words(data["tokens"]).split("\n")
                return cls(ids if ids != [""] else [], data["lengths"], tokens if tokens != [""] else [],
                           data["offsets"], data["postings"], marker)
        except (OSError, ValueError, KeyError, UnicodeDecodeError):
            return None


def _text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode("utf-8"), dtype=np.uint8)


def _words(stored: np.ndarray) -> str:
    return stored.tobytes().decode("utf-8")


def index_path(cache: Path, location: str, collection: str) -> Path:
    key = hashlib.sha1(f"{location}\n{collection}".encode()).hexdigest()[:16]
    return cache / "keywords" / f"{key}.npz"


def keyword_index(store, cache: Path | None, kept: KeywordIndex | None) -> KeywordIndex | None:
    """The index of ``store``'s texts as they are now: ``kept`` (this process's), the one on disk, or
    built afresh; None for a store that can't tell cheaply whether it changed."""
    marker = store.change_marker()
    if marker is None:
        return None
    if kept is not None and kept.marker == marker:
        return kept
    path = index_path(cache, store.location, store.collection_name) if cache is not None else None
    loaded = KeywordIndex.load(path, marker) if path is not None and path.is_file() else None
    if loaded is not None:
        return loaded
    index = KeywordIndex.build(((r.id, document_of(r.metadata)) for r in store.iter_all()), marker)
    log.info("indexed the words of %d photos", len(index.ids))
    if path is not None:
        try:
            index.save(path)
        except OSError as exc:  # a read-only cache: the index still serves this process
            log.warning("could not keep the word index at %s: %s", path, exc)
    return index
