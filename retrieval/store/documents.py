"""A record's searchable text (its document), and the words in it.

The document is what keyword search reads: the human and AI descriptions, captions, the
words read from the photo, the tags and the file name. It is kept lower-case and
accent-folded, one space between words and one at each end, so that a store's plain
substring test matches words whatever their case and however the source spaced them, and
" word " matches a whole word.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath
from typing import Any, Iterable

TEXT_FIELDS = ("description", "ai_description", "alt_description", "caption", "captions", "ocr_text", "tags")
READ_FIELD = "ocr_text"  # the words read in the photo (text/ocr.py)
EMPTY = " "  # the document of a record without text: every stored record has one
# A read word one edit away from a query word of this many letters is taken for a misreading of
# it; shorter, it is another word ("cat", "hat") as often as not.
NEAR_MIN = 5
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words(text: str) -> list[str]:
    """The words of ``text``, lower-case and accent-folded the same way documents are."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return _WORD.findall("".join(c for c in folded if not unicodedata.combining(c)))


def normalise(text: str) -> str:
    return " ".join(words(text))


def document_of(metadata: dict[str, Any]) -> str:
    """The searchable text of one photo record (``EMPTY`` when it has none)."""
    parts: list[str] = []
    for name in TEXT_FIELDS:
        value = metadata.get(name)
        if isinstance(value, (list, tuple)):
            parts.extend(str(v) for v in value)
        elif value not in (None, ""):
            parts.append(str(value))
    read = words(str(metadata.get(READ_FIELD) or ""))
    parts.extend(a + b for a, b in zip(read, read[1:]))  # see ``read_text``
    name = metadata.get("filename") or metadata.get("path")
    if name:
        parts.append(PurePath(str(name)).stem)
    text = normalise(" ".join(parts))
    return f" {text} " if text else EMPTY


def read_text(metadata: dict[str, Any]) -> str:
    """The words read off the photo (OCR), as in its document: a reading's slips are looked for
    here only, never in what people wrote. A word read off a photo often comes in two pieces (a
    pole in front of a sign, a gap the detector cut at), so each two pieces in a row are also kept
    joined: "rail way" finds "railway"."""
    read = words(str(metadata.get(READ_FIELD) or ""))
    text = " ".join([*read, *(a + b for a, b in zip(read, read[1:]))])
    return f" {text} " if text else EMPTY


def misread_as(token: str, word: str) -> bool:
    """Whether a read ``token`` may be ``word`` misread by one letter (one edit away; not for
    short words or numbers)."""
    from rapidfuzz.distance import Levenshtein

    return len(word) >= NEAR_MIN and not word.isdigit() and Levenshtein.distance(word, token, score_cutoff=1) <= 1


def holds(document: str, phrases: Iterable[str], any_of: bool = False) -> bool:
    """Whether a document holds every phrase (or, ``any_of``, one of them) as a run of its text:
    "bakery" is in "bakery co" and in "the bakerys"; "red door" only where the words follow."""
    found = [normalise(phrase) in (document or "") for phrase in phrases]
    return any(found) if any_of else all(found)
