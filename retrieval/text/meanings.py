"""What a photo is described as, for the sentence model: its descriptions, captions and the words
read in it, as one text, and the stamp that says which text (and which model) its meaning vector
was made from.

The text comes from the record alone, whoever wrote it: a metadata table's captions, Unsplash's
description and AI description, a captioning model's caption, OCR. No model is needed for any of
them; the sentence model only turns the text into a vector (``text/sentences.py``).
"""

from __future__ import annotations

import hashlib
from typing import Any

# The fields by which a photo is described, in the order they are joined. Tags and the file name
# are left to the words: a list of labels or "IMG_2041" is not a sentence.
MEANING_FIELDS = ("description", "ai_description", "alt_description", "caption", "captions", "ocr_text")
MEANING_STAMP_FIELD = "meaning_of"  # on a photo record: the stamp of the text its meaning vector was made from
MAX_MEANING_CHARS = 2000  # longer texts are cut (the model reads about 256 tokens anyway)


def meaning_text(metadata: dict[str, Any]) -> str:
    """The photo's descriptions as one text, each ended as a sentence ("" when it has none)."""
    parts: list[str] = []
    for name in MEANING_FIELDS:
        value = metadata.get(name)
        values = value if isinstance(value, (list, tuple)) else [value]
        for text in values:
            text = " ".join(str(text or "").split())
            if text and text not in parts:
                parts.append(text)
    joined = " ".join(p if p[-1] in ".!?" else p + "." for p in parts)
    return joined[:MAX_MEANING_CHARS]


def meaning_stamp(text: str) -> str:
    """Which text the vector was made from: a photo whose stamp differs owes a new vector (which
    model made it, the companion collection records)."""
    return hashlib.sha1(text.encode()).hexdigest()[:16]
