"""An embedder that answers from the model's checked ONNX exports and loads the full model only
for what they don't cover (see ``text_export.py`` and ``image_export.py``).

Text goes through the text export; photos through the image export, unless the
runtime trial says torch is cheaper for a run this size (``expect_images``): then
through the image side traced for torch (``torch_program.py``), which needs torch
but not transformers. The full model loads, on first need, for heat maps and for
a side without an export or program. Whatever a run will need starts loading in
the background as soon as the run knows its size, while the first photos are
read and decoded.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..model_signature import ModelSignature
from .checkpoint import languages_of
from .contract import Embedder, ScoreScale, clean_texts
from .image_export import ExportedImages, ImageFacts, describe_runtime, int8_agreement, open_export, \
    read_runtimes, runtime_key, uses_export
from .text_export import ExportedText
from .torch_program import TracedImages, open_program, program_path

log = logging.getLogger(__name__)

PREPACK_FROM = 64  # photos in a run from which laying the weights out as the session opens pays (0.35 s, 5 ms a photo)


class ExportFirstEmbedder(Embedder):
    def __init__(self, name: str, text: ExportedText | None, images: tuple[Path, ImageFacts] | None,
                 load_full: Callable[[], Embedder], threads: int | None = None, int8: bool = False,
                 brief: bool = False):
        facts = text.facts if text is not None else images[1]
        self.name = name
        self.family = facts.family
        self.dim = facts.dim
        self.signature = ModelSignature(name, facts.dim, facts.fingerprint)
        self.languages = languages_of(name)
        self.device = "cpu"
        self._text: ExportedText | None = text
        self.context_length = text.facts.context_length if text is not None else None
        self._image_folder, self._image_facts = images if images is not None else (None, None)
        self._images: ExportedImages | TracedImages | None = None
        # What embeds photos: "export" (ONNX), "program" (the traced torch program, for a run large
        # enough to pay for torch's start: expect_images) or "model" (the full model).
        self._image_route = "export" if images is not None else "model"
        self._threads = threads
        self._int8 = int8 and images is not None  # asked for (IMAGE_INT8=1): never otherwise
        self._prepack_images = not brief  # until a run says how many photos it has (onnx_export.open_session)
        self._load_full = load_full
        self._full: Embedder | None = None
        self._full_lock = threading.Lock()
        self._images_lock = threading.Lock()

    @property
    def full(self) -> Embedder:
        """The whole model (loaded on first use)."""
        with self._full_lock:
            if self._full is None:
                self._full = self._load_full()
                self.device = self._full.device
                self.context_length = self._full.context_length
                if self._full.signature != self.signature:  # the files changed under the exports
                    log.warning("the ONNX exports of %s do not match its weights; it runs in torch from now on",
                                self.name)
                    self._text, self._image_folder, self._image_facts = None, None, None
                    self._image_route = "model"
        return self._full

    @property
    def scores(self) -> ScoreScale:
        if self._text is not None:
            return ScoreScale(self._text.facts.good_text_match_from, self._text.facts.score_why)
        return self.full.scores

    @property
    def precision_note(self) -> str:
        notes = []
        if self._image_route == "export" and self._int8:
            agreement = int8_agreement(self._image_folder)
            notes.append("images in INT8 through its ONNX export (IMAGE_INT8=1; cosine to float32 "
                         f"{agreement.get('min_cosine', '?')} at worst on the check photos)")
        elif self._image_route == "export":
            figures = read_runtimes(self._image_folder).get(runtime_key(self._threads))
            notes.append(f"images in float32 through its checked ONNX export ({describe_runtime(figures)})")
        elif self._image_route == "program":
            notes.append(f"images in {self.precision} through the image side traced for torch, cheaper than "
                         "the ONNX export for a run this large")
        elif self._full is not None:
            notes.append(self._full.precision_note)
        if self._text is not None:
            notes.append("text in float32 through its checked ONNX export")
        return "; ".join(notes) or "loaded when first needed"

    @property
    def precision(self) -> str:
        if self._image_route == "export":
            return "int8" if self._int8 else "float32"
        if self._image_route == "program":
            return read_runtimes(self._image_folder).get(runtime_key(self._threads), {}).get("torch_dtype", "float32")
        return self.full.precision

    # -- images: the export, or the full model ------------------------------------------

    def expect_images(self, count: int) -> None:
        if self._image_facts is not None and self._full is None and not self._int8:
            if uses_export(self._image_folder, self._threads, count):
                self._image_route = "export"
            else:
                self._image_route = "program" if program_path(self._image_folder) is not None else "model"
        self._prepack_images = count >= PREPACK_FROM
        # Loaded now, in the background, while the run reads and decodes its first photos.
        threading.Thread(target=self._warm_up, name="model-load", daemon=True).start()

    def _warm_up(self) -> None:
        try:
            self._image_session() if self._image_route != "model" else self.full
        except Exception:  # noqa: BLE001 - the run meets the same error where it can report it
            log.debug("loading in the background failed", exc_info=True)

    def _image_session(self) -> ExportedImages | TracedImages | None:
        with self._images_lock:
            if self._images is None and self._image_route == "export":
                self._images = open_export(self._image_folder, self._image_facts, self._threads, self._int8,
                                           self._prepack_images)
            elif self._images is None and self._image_route == "program":
                self._images = open_program(self._image_folder, self._threads)
            if self._images is None:  # could not be opened: the full model
                self._image_route = "model"
            return self._images

    @property
    def draft_size(self) -> tuple[int, int]:
        return self._image_facts.recipe.draft_size if self._image_facts is not None else self.full.draft_size

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        if self._image_facts is not None:  # the same pixels as the model's processor: checked at export
            return self._image_facts.recipe.pixels(image)
        return self.full.preprocess_image(image)

    def embed_pixels(self, pixel_batch: Sequence[np.ndarray]) -> np.ndarray:
        if not len(pixel_batch):
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self._image_session() if self._image_route != "model" else None
        if session is not None:
            return session.embed(pixel_batch)
        return self.full.embed_pixels(pixel_batch)

    def explain(self, image: Image.Image, query: np.ndarray) -> np.ndarray:
        return self.full.explain(image, query)

    def seen_area(self, width: int, height: int) -> tuple[int, int, int, int]:
        if self._image_facts is not None:
            return self._image_facts.recipe.seen_area(width, height)
        return self.full.seen_area(width, height)

    # -- text: the export, or the full model ---------------------------------------------------

    def open_text(self) -> ExportedText | None:
        """The text export, opened (else it opens at the first text); None where it can't be."""
        if self._text is not None:
            try:
                self._text.open()
            except Exception as exc:  # noqa: BLE001 - a damaged cache entry only costs the model's start
                log.warning("the text export of %s can't be used (%s); loading the full model", self.name, exc)
                self._text = None
        return self._text

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if self.open_text() is None:
            return self.full.embed_texts(texts, batch_size)
        cleaned = clean_texts(texts)
        return np.concatenate([self._text.embed(cleaned[start : start + batch_size])
                               for start in range(0, len(cleaned), batch_size)])

    def reads_whole(self, text: str) -> bool:
        if self.open_text() is None:
            return self.full.reads_whole(text)
        return self._text.reads_whole(text.strip())

    def prepare_text_export(self, announce=None) -> bool:
        return self._text is not None or (self._full is not None and self._full.prepare_text_export(announce))

    def prepare_image_export(self, announce=None) -> bool:
        if self._full is None:  # nothing was loaded that an export could come from
            return self._image_facts is not None
        return self._full.prepare_image_export(announce)
