"""An embedder that answers text from the model's ONNX export and loads the full model only
when an image needs it (see ``text_export.py``)."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..model_signature import ModelSignature
from .checkpoint import languages_of
from .contract import Embedder, ScoreScale, clean_texts
from .text_export import ExportedText

log = logging.getLogger(__name__)


class TextFirstEmbedder(Embedder):
    def __init__(self, name: str, exported: ExportedText, load_full: Callable[[], Embedder]):
        facts = exported.facts
        self.name = name
        self.family = facts.family
        self.dim = facts.dim
        self.signature = ModelSignature(name, facts.dim, facts.fingerprint)
        self.languages = languages_of(name)
        self.scores = ScoreScale(facts.good_text_match_from, facts.score_why)
        self.device = "cpu"
        self.context_length = facts.context_length
        self._text: ExportedText | None = exported
        self._load_full = load_full
        self._full: Embedder | None = None
        self._full_lock = threading.Lock()

    @property
    def full(self) -> Embedder:
        """The whole model, for images (loaded on first use)."""
        with self._full_lock:
            if self._full is None:
                self._full = self._load_full()
                self.device = self._full.device
                if self._full.signature != self.signature:  # the files changed under the export
                    log.warning("the text export of %s does not match its weights; text goes through the "
                                "model from now on", self.name)
                    self._text = None
        return self._full

    @property
    def precision_note(self) -> str:
        text = "text in float32 through its checked ONNX export"
        return text if self._full is None else f"{self._full.precision_note}; {text}"

    @property
    def precision(self) -> str:
        return self.full.precision

    # -- images: the full model ------------------------------------------------

    @property
    def draft_size(self) -> tuple[int, int]:
        return self.full.draft_size

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        return self.full.preprocess_image(image)

    def embed_pixels(self, pixel_batch: Sequence[np.ndarray]) -> np.ndarray:
        return self.full.embed_pixels(pixel_batch)

    def explain(self, image: Image.Image, query: np.ndarray) -> np.ndarray:
        return self.full.explain(image, query)

    def seen_area(self, width: int, height: int) -> tuple[int, int, int, int]:
        return self.full.seen_area(width, height)

    # -- text: the export ---------------------------------------------------------

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if self._text is None:
            return self.full.embed_texts(texts, batch_size)
        cleaned = clean_texts(texts)
        return np.concatenate([self._text.embed(cleaned[start : start + batch_size])
                               for start in range(0, len(cleaned), batch_size)])

    def reads_whole(self, text: str) -> bool:
        if self._text is None:
            return self.full.reads_whole(text)
        return self._text.reads_whole(text.strip())
