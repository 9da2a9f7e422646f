"""An inverted index of the collection's searchable texts, for ranking by words in milliseconds.

A store's own text match reads every document it tests (embedded Chroma takes 120 ms for four
words at 100,000 photos, against 17 ms for the whole vector query), so the words channel ranks
from this index instead, where the store can say cheaply whether it changed
(``PhotoStore.change_marker``): built once from the documents, kept in memory by a running app
and on disk for the next command, rebuilt when the marker moves. The scoring is
BM25, over the whole collection.

A reader misreads a letter now and then ("drinkng", "cookiey", "TRFATS"): a query word of
``NEAR_MIN`` letters or more also finds the words *read off photos* one edit away from it, at
``NEAR_WEIGHT`` of a match's worth. Only the read words: a description's "house" is a house,
never a misread "horse".
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from ..store.documents import EMPTY, NEAR_MIN, document_of, read_text

log = logging.getLogger(__name__)
FORMAT = 3
K1, B = 1.2, 0.75  # BM25's usual saturation and length normalisation
NEAR_WEIGHT = 0.5  # what a read word one edit away counts, against the word itself


class Postings:
    """Which documents each token is in: ``postings[offsets[t]:offsets[t + 1]]``, once per time."""

    def __init__(self, tokens: list[str], offsets: np.ndarray, postings: np.ndarray):
        self.tokens, self.offsets, self.postings = tokens, offsets, postings

    @classmethod
    def build(cls, texts: Iterable[str]) -> "Postings":
        found: dict[str, list[int]] = defaultdict(list)
        for number, text in enumerate(texts):
            for token in text.split():
                found[token].append(number)
        tokens = sorted(found)
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(found[t]) for t in tokens])
        flat = np.fromiter((n for t in tokens for n in found[t]), dtype=np.int32, count=int(offsets[-1]))
        return cls(tokens, offsets, flat)

    def of(self, members: Iterable[int]) -> list[np.ndarray]:
        return [self.postings[self.offsets[t]:self.offsets[t + 1]] for t in members]


class KeywordIndex:
    def __init__(self, ids: list[str], lengths: np.ndarray, words: Postings, read: Postings, marker: str):
        """``words``: every token of the documents; ``read``: those read off the photos."""
        self.ids, self.lengths, self.words, self.read, self.marker = ids, lengths, words, read, marker
        average = float(lengths.mean()) if len(lengths) else 1.0
        self._norm = K1 * (1 - B + B * lengths / (average or 1.0))  # BM25's length normalisation, per document
        tokens = words.tokens
        # The vocabulary as one text, searched at once for the tokens a word is part of; in two, as
        # file names make most tokens numbers ("img 2041"), which a word with a letter is never in.
        self._numbers = [n for n, t in enumerate(tokens) if t.isdigit()]
        self._words = [n for n, t in enumerate(tokens) if not t.isdigit()]
        self._joined = {kind: "\n" + "\n".join(tokens[n] for n in members) + "\n"
                        for kind, members in (("numbers", self._numbers), ("words", self._words))}
        self._starts = {kind: np.cumsum([1] + [len(tokens[n]) + 1 for n in members])
                        for kind, members in (("numbers", self._numbers), ("words", self._words))}
        # The read words by length, for those one edit away from a query word (its length, or one more or less).
        self._read_by_length: dict[int, tuple[list[str], list[int]]] = {}
        for number, token in enumerate(read.tokens):
            if len(token) >= NEAR_MIN - 1 and not token.isdigit():
                same_length = self._read_by_length.setdefault(len(token), ([], []))
                same_length[0].append(token)
                same_length[1].append(number)

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], marker: str) -> "KeywordIndex":
        """From ``(id, document)`` or ``(id, document, read text)`` (``documents.read_text``)."""
        entries = [(entry[0], entry[1], entry[2] if len(entry) > 2 else EMPTY) for entry in documents]
        return cls([e[0] for e in entries], np.asarray([len(e[1].split()) for e in entries], dtype=np.float32),
                   Postings.build(e[1] for e in entries), Postings.build(e[2] for e in entries), marker)

    @classmethod
    def of_records(cls, records: Iterable, marker: str) -> "KeywordIndex":
        return cls.build(((r.id, document_of(r.metadata), read_text(r.metadata)) for r in records), marker)

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

    def _read_near(self, word: str) -> list[int]:
        """The read tokens one edit away from ``word`` (not holding it: those match outright)."""
        if len(word) < NEAR_MIN or word.isdigit():
            return []
        found = []
        for length in (len(word) - 1, len(word), len(word) + 1):
            tokens, numbers = self._read_by_length.get(length, ((), ()))
            for _token, _distance, at in process.extract(word, tokens, scorer=Levenshtein.distance,
                                                          score_cutoff=1, limit=None):
                if word not in tokens[at]:
                    found.append(numbers[at])
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
        # Over every document at once (a word's absence adds 0): cheaper than picking out those
        # holding it, at 100,000 documents.
        norm = self._norm
        for word in words:
            exact, near = self.words.of(self._tokens_holding(word)), self.read.of(self._read_near(word))
            if not exact and not near:
                continue
            counts = np.bincount(np.concatenate(exact), minlength=total).astype(np.float64) if exact else np.zeros(total)
            if near:
                counts += NEAR_WEIGHT * np.bincount(np.concatenate(near), minlength=total)
            holding = np.count_nonzero(counts)
            idf = math.log(1 + (counted - holding + 0.5) / (holding + 0.5))
            scores += idf * (K1 + 1) * counts / (counts + norm)
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
                     lengths=self.lengths, **_saved("words", self.words), **_saved("read", self.read))
        partial.replace(path)  # whole or not at all: a reader never sees half a file

    @classmethod
    def load(cls, path: Path, marker: str) -> "KeywordIndex | None":
        """The index kept at ``path``, if it was built at ``marker`` (else None)."""
        try:
            with np.load(path, allow_pickle=False) as data:  # numbers and bytes only: nothing to unpickle
                if int(data["format"][0]) != FORMAT or _words(data["marker"]) != marker:
                    return None
                ids = _words(data["ids"]).split("\n")
                return cls(ids if ids != [""] else [], data["lengths"], _loaded("words", data), _loaded("read", data),
                           marker)
        except (OSError, ValueError, KeyError, UnicodeDecodeError):
            return None


def _saved(name: str, postings: Postings) -> dict[str, np.ndarray]:
    return {f"{name}_tokens": _text("\n".join(postings.tokens)), f"{name}_offsets": postings.offsets,
            f"{name}_postings": postings.postings}


def _loaded(name: str, data) -> Postings:
    tokens = _words(data[f"{name}_tokens"]).split("\n")
    return Postings(tokens if tokens != [""] else [], data[f"{name}_offsets"], data[f"{name}_postings"])


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
    index = KeywordIndex.of_records(store.iter_all(), marker)
    log.info("indexed the words of %d photos", len(index.ids))
    if path is not None:
        try:
            index.save(path)
        except OSError as exc:  # a read-only cache: the index still serves this process
            log.warning("could not keep the word index at %s: %s", path, exc)
    return index
