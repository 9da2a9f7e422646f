"""Captions a model writes for photos, so a folder without descriptions can be searched by its words.

The captioner is any image-to-text checkpoint ``transformers`` reads as an
``AutoModelForImageTextToText`` (BLIP, GIT, Florence-2), by Hugging Face id or folder, loaded by the
same policy as every model the product loads (``embedder/loading.py``): the architecture comes from
the checkpoint's config, so a BLIP or a GIT folder loads whichever it is. Decoding is greedy, so a
photo always gets the same caption.

A record keeps the caption as ``caption``, apart from human descriptions (shown as "Caption
(generated)"; part of the photo's searchable text), and the model that wrote it as
``captioned_by``: the stamp that says the photo was captioned, even when the model had nothing to say.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

from PIL import Image


log = logging.getLogger(__name__)

CAPTION_FIELD = "caption"
CAPTIONED_BY_FIELD = "captioned_by"
DEFAULT_CAPTION_MODEL = "microsoft/git-base-coco"
MAX_CAPTION_TOKENS = 30  # a caption is a sentence: BLIP and GIT write 8 to 15 tokens and stop on their own
CAPTION_SIDE = 384  # BLIP reads 384 px, GIT 224: decoding larger only costs time
TASK_PROMPTS = {"florence2": "<CAPTION>"}  # models that caption only when asked to, and how to ask


def caption_fields(caption: str, model: str) -> dict[str, Any]:
    """The fields a record gets from its caption (the stamp even when the caption is empty)."""
    fields: dict[str, Any] = {CAPTIONED_BY_FIELD: model}
    if caption.strip():
        fields[CAPTION_FIELD] = caption.strip()
    return fields


class TransformersCaptioner:
    """An image-to-text checkpoint; one photo at a time per caller, the model shared under a lock."""

    def __init__(self, name: str, torch_threads: int | None = None, max_tokens: int = MAX_CAPTION_TOKENS):
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        from ..embedder.loading import load_quietly

        if torch_threads:
            torch.set_num_threads(torch_threads)

        def load(source: str, **options):
            model_type = AutoConfig.from_pretrained(source, **options).model_type
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32, **options)
            return model_type, model, AutoProcessor.from_pretrained(source, backend="pil", **options)

        model_type, self._model, self._processor = load_quietly(
            name, load, setting="CAPTION_MODEL", example=DEFAULT_CAPTION_MODEL, flag="--caption-model",
            kind="captioning model")
        self._model.eval()
        self._prompt = TASK_PROMPTS.get(model_type)
        self.name, self.max_tokens = name, max_tokens
        self._lock = threading.Lock()
        log.info("loaded captioning model %s (%s)", name, model_type)

    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        import torch

        if not images:
            return []
        rgb = [image.convert("RGB") for image in images]
        prompt = {"text": [self._prompt] * len(rgb)} if self._prompt else {}
        inputs = self._processor(images=rgb, return_tensors="pt", **prompt)
        with self._lock, torch.inference_mode():
            generated = self._model.generate(**inputs, max_new_tokens=self.max_tokens, do_sample=False, num_beams=1)
        if self._prompt and "input_ids" in inputs and not self._model.config.is_encoder_decoder:
            generated = generated[:, inputs["input_ids"].shape[1]:]  # a decoder-only model repeats its prompt
        return [" ".join(text.split()) for text in self._processor.batch_decode(generated, skip_special_tokens=True)]
