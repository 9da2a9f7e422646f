"""CLIP embeddings: the only module that knows about models and tensors.

Vectors are float32 and L2-normalised, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .errors import RetrievalError
from .hub import hub_unreachable
from .model_signature import ModelSignature

log = logging.getLogger(__name__)


def _load_failure_message(name: str, reason: str) -> str:
    return (
        f"Could not load the CLIP model '{name}': {reason}\n"
        "If this machine is offline or the id is wrong, download the model where you have "
        "internet (for example `hf download "
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K --local-dir ./models/clip`), copy the folder "
        "here and set CLIP_MODEL=/path/to/that/folder (or pass --model)."
    )


PRECISIONS = ("auto", "float32", "bfloat16")


def _compute_dtype(precision: str) -> torch.dtype:
    """bfloat16 where the CPU computes it natively (AVX-512 BF16, AMX); float32 otherwise."""
    if precision not in PRECISIONS:
        raise RetrievalError(f"PRECISION={precision!r}: use one of {', '.join(PRECISIONS)}.")
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else torch.float32


class ClipEmbedder:
    """A Hugging Face CLIP model and its own processor, loaded by id or local folder."""

    def __init__(self, model_name: str, torch_threads: int | None = None, precision: str = "auto"):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.name = model_name
        self._model, self._processor = self._load(model_name)
        self.dim: int = int(self._model.config.projection_dim)
        self.context_length: int = int(self._model.config.text_config.max_position_embeddings)
        # The processor is not documented as thread-safe; the tokenizer is shared state.
        self._text_lock = threading.Lock()
        self.signature = ModelSignature(model_name, self.dim, self._fingerprint())
        # bfloat16 where the CPU has it: vectors stay within a cosine of 0.9999 of the
        # float32 reference (the equivalence tests hold either way).
        self.dtype = _compute_dtype(precision)
        self._text_tower, self._text_projection = self._model.text_model, self._model.text_projection
        if self.dtype != torch.float32:
            # A text query reads every weight of the text tower once for a handful of
            # tokens, so its time is the time to read the weights: bfloat16 copies halve it.
            self._text_tower = copy.deepcopy(self._model.text_model).to(self.dtype)
            self._text_projection = copy.deepcopy(self._model.text_projection).to(self.dtype)

    @staticmethod
    def _load(name: str):
        # Imported here so that commands which never embed (stats) start fast.
        from transformers import AutoProcessor, CLIPModel
        from transformers.utils import logging as hf_logging

        local = Path(name).expanduser()
        if not local.is_dir() and name.startswith((".", "/", "~")):
            raise RetrievalError(_load_failure_message(name, f"the folder {local} does not exist."))
        source = str(local) if local.is_dir() else name  # otherwise a Hugging Face id
        previous = hf_logging.get_verbosity()
        # transformers' own warnings and progress bars are not for end users
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        def load(**options):
            model = CLIPModel.from_pretrained(source, dtype=torch.float32, **options)
            # The PIL backend is the processor's reference implementation and needs no torchvision.
            return model, AutoProcessor.from_pretrained(source, backend="pil", **options)

        try:
            if local.is_dir():
                model, processor = load()
            else:
                try:  # the local Hugging Face cache first: no network needed when it is there
                    model, processor = load(local_files_only=True)
                except OSError:
                    unreachable = hub_unreachable()
                    if unreachable:
                        raise RetrievalError(_load_failure_message(
                            name, f"it is not in the local cache and {unreachable}.")) from None
                    model, processor = load()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RetrievalError(_load_failure_message(name, reason)) from None
        finally:
            hf_logging.set_verbosity(previous)
            hf_logging.enable_progress_bar()
        model.eval()
        log.info("loaded CLIP model %s", name)
        return model, processor

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for weight in (self._model.text_projection.weight, self._model.visual_projection.weight):
            digest.update(weight.detach().to(torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    # -- images -------------------------------------------------------------

    @property
    def draft_size(self) -> tuple[int, int]:
        """How small a JPEG may be decoded without changing its vector measurably.

        JPEG decoders scale by 1/2, 1/4 or 1/8 almost for free, which makes big
        photos several times cheaper to decode. Keeping at least 1.5 times the
        model's input size, the processor's antialiased resize gives practically the
        same pixels as from the full-size decode (cosine >= 0.99999 on 12 MP photos).
        """
        processor = self._processor.image_processor
        size = getattr(processor, "size", None) or {}
        crop = getattr(processor, "crop_size", None) or {}
        side = size.get("shortest_edge") or size.get("height") or crop.get("height") or 224
        return (int(side * 1.5), int(side * 1.5))

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """One RGB image to the model's pixel array (thread-safe; used by decode workers)."""
        pixels = self._processor.image_processor(images=image, return_tensors="np")["pixel_values"]
        return pixels[0]

    def embed_pixels(self, pixel_batch: Sequence[np.ndarray]) -> np.ndarray:
        if not len(pixel_batch):
            return np.zeros((0, self.dim), dtype=np.float32)
        tensor = torch.from_numpy(np.stack(pixel_batch).astype(np.float32, copy=False))
        # The image tower is compute-bound: autocast runs its matrix products in
        # bfloat16 (about 2.3x faster on AVX-512 BF16) and keeps norms and softmax in float32.
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                     enabled=self.dtype == torch.bfloat16):
            features = self._model.get_image_features(pixel_values=tensor).pooler_output.float()
        return _unit_rows(features)

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        chunks = [
            self.embed_pixels([self.preprocess_image(img) for img in images[i : i + batch_size]])
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    # -- text ---------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        cleaned = [t.strip() if isinstance(t, str) else "" for t in texts]
        if not cleaned or any(not t for t in cleaned):
            raise RetrievalError("The text query is empty: type a few words describing the photo.")
        chunks = []
        for start in range(0, len(cleaned), batch_size):
            with self._text_lock:
                tokens = self._processor.tokenizer(
                    cleaned[start : start + batch_size],
                    padding=True,
                    truncation=True,  # long text is cut to the model's context, not an error
                    max_length=self.context_length,
                    return_tensors="pt",
                )
            with torch.inference_mode():
                pooled = self._text_tower(input_ids=tokens["input_ids"],
                                          attention_mask=tokens["attention_mask"]).pooler_output
                features = self._text_projection(pooled).float()
            chunks.append(_unit_rows(features))
        return np.concatenate(chunks)

    def reads_whole(self, text: str) -> bool:
        """Whether ``text`` fits the model's context (longer text is cut, not refused)."""
        if len(text.strip().encode()) + 2 <= self.context_length:  # a token covers at least one byte
            return True
        with self._text_lock:
            tokens = self._processor.tokenizer(text.strip(), truncation=False)["input_ids"]
        return len(tokens) <= self.context_length

    def embed_text(self, text: str) -> np.ndarray:
        return self.embed_texts([text])[0]


def _unit_rows(features: torch.Tensor) -> np.ndarray:
    array = features.detach().to(torch.float32).numpy()
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.maximum(norms, 1e-12)).astype(np.float32)
