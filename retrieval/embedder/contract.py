"""What every image-text model family provides to ingest, search and the store.

Nothing here imports torch: the store, the CLI and the page can hold an
:class:`Embedder` type and a :class:`Languages` answer without loading a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import RetrievalError
from ..model_signature import ModelSignature


@dataclass(frozen=True)
class Languages:
    """Which languages a model's text side reads."""

    name: str  # for people: "English", "many languages"
    multilingual: bool

    @property
    def description(self) -> str:
        return f"{self.name} (type queries in your own)" if self.multilingual else self.name

    def reads(self, language: str | None) -> bool:
        """Whether text in ``language`` (a code such as "de"; None: unknown) can be embedded as typed."""
        return self.multilingual or language in (None, "en")


ENGLISH = Languages("English", multilingual=False)
MANY = Languages("many languages", multilingual=True)


@dataclass(frozen=True)
class ScoreScale:
    """How to read this model's cosine similarities between a text and a photo.

    Scores are cosine similarities for every model and every kind of query, so a
    score means the same in text search, image search and "more like this". What
    differs between families is where good text matches start: contrastive
    (softmax) models such as CLIP put them around 0.2 and above; a sigmoid-trained
    model (SigLIP) defines its own match probability, which passes 50% at a
    cosine given by two of its weights, usually near 0.1.
    """

    good_text_match_from: float
    why: str  # where the figure comes from

    def describe(self) -> str:
        start = round(self.good_text_match_from, 2) + 0.0  # no "-0.00"
        return f"good text matches score from about {start:.2f} ({self.why})"


class Embedder(ABC):
    """A loaded image-text model. Vectors are float32 and L2-normalised, so a dot
    product is a cosine similarity."""

    name: str  # the Hugging Face id or folder it was loaded from
    family: str  # for people: "CLIP", "SigLIP", ...
    dim: int
    signature: ModelSignature
    languages: Languages
    scores: ScoreScale
    device: str  # "cpu", "cuda", "mps"
    precision: str  # the image side's arithmetic: "float32", "bfloat16" or "float16" (cluster workers get the same)
    precision_note: str  # that arithmetic and why
    context_length: int  # tokens a text may have before it is cut

    @property
    @abstractmethod
    def draft_size(self) -> tuple[int, int]:
        """How small a JPEG may be decoded without changing its vector measurably."""

    @abstractmethod
    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """One RGB image to the model's pixel array (thread-safe; used by decode workers)."""

    @abstractmethod
    def embed_pixels(self, pixel_batch: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocessed pixel arrays to unit vectors, one row each."""

    @abstractmethod
    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Texts to unit vectors, one row each; an empty text is an error."""

    @abstractmethod
    def reads_whole(self, text: str) -> bool:
        """Whether ``text`` fits the model's context (longer text is cut, not refused)."""

    def prepare_text_export(self, announce: Callable[[str, int, int], None] | None = None) -> bool:
        """Export and check the text side so that later processes embed text without torch (see
        ``text_export.py``); ``announce`` hears each step of it (name, done, total). True when
        such an export is there for this model afterwards."""
        return False

    def prepare_image_export(self, announce: Callable[[str, int, int], None] | None = None) -> bool:
        """Export, check and time the image side likewise (``image_export.py``), so that later runs
        index new photos without torch. True when such an export is there afterwards."""
        return False

    def expect_images(self, count: int) -> None:
        """A run is about to embed about ``count`` photos: the moment to choose what embeds them and to
        start loading it, while the first photos are read and decoded."""

    def explain(self, image: Image.Image, query: np.ndarray) -> np.ndarray:
        """Where in ``image`` its score for the unit vector ``query`` comes from: a grid over the
        model's patches, 0 to 1 (see ``two_tower.py``)."""
        raise RetrievalError(f"{self.family} models can't show where a photo matches.")

    def seen_area(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The part of a ``width`` x ``height`` photo the model sees (and ``explain``'s grid
        covers), as left, top, right, bottom: all of it, unless its processor crops."""
        return 0, 0, width, height

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        chunks = [
            self.embed_pixels([self.preprocess_image(img) for img in images[i : i + batch_size]])
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def embed_text(self, text: str) -> np.ndarray:
        return self.embed_texts([text])[0]

    def describe(self) -> dict:
        """What the page, ``stats`` and the benchmark say about the model."""
        return {"model": self.name, "family": self.family, "dim": self.dim, "device": self.device,
                "precision": self.precision_note, "languages": self.languages.description,
                "scores": self.scores.describe()}


def clean_texts(texts: Sequence[str]) -> list[str]:
    cleaned = [t.strip() if isinstance(t, str) else "" for t in texts]
    if not cleaned or any(not t for t in cleaned):
        raise RetrievalError("The text query is empty: type a few words describing the photo.")
    return cleaned
