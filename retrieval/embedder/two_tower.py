"""Any transformers image-text model with ``get_text_features`` / ``get_image_features``.

The model and its own processor embed exactly as the model card shows; only the
family's facts (see ``families.py``) differ between CLIP, SigLIP and the others.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import threading
import time
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..model_signature import ModelSignature
from .checkpoint import read_json
from .contract import Embedder, ScoreScale, clean_texts
from .families import Family, label_of
from .image_recipe import draft_size, seen_area
from .loading import load_checkpoint
from . import precision_trial
from .runtime import compute_dtype, resolve_device, use_threads

log = logging.getLogger(__name__)


class TwoTowerEmbedder(Embedder):
    def __init__(self, model_name: str, torch_threads: int | None = None, precision: str = "auto",
                 device: str = "auto"):
        use_threads(torch_threads)
        self.torch_threads = torch_threads
        self.trial_cpu_s = 0.0
        self.name = model_name
        self.device = resolve_device(device)
        self.dtype, self.precision_note = compute_dtype(precision, self.device)
        loading = time.process_time()
        family, model, self._processor = load_checkpoint(model_name)
        self.load_cpu_s = time.process_time() - loading  # the weights and processor, without the imports
        self._family: Family = family
        config, tokenizer_config = model.config, read_json(model_name, "tokenizer_config.json")
        self.family = label_of(family, tokenizer_config)
        self.dim = family.dim_of(config)
        self.context_length = int(config.text_config.max_position_embeddings)
        self.languages = family.languages_of(config.to_dict(), tokenizer_config)
        self.signature = ModelSignature(model_name, self.dim, _fingerprint(model, family))
        self.scores = _score_scale(model, family)
        self._text_lock = threading.Lock()  # the tokenizer is shared state, not documented as thread-safe
        if self.dtype is None:  # PRECISION=auto on a CPU with native bfloat16: measure which is faster
            pixel_shape = self.preprocess_image(Image.new("RGB", (64, 64))).shape
            trial_started = time.process_time()
            self.dtype, self.precision_note = precision_trial.choose(
                model, pixel_shape, precision_trial.trial_key(model_name, self.signature.fingerprint))
            self.trial_cpu_s = time.process_time() - trial_started  # once per machine: not part of a start
        if self.device == "cpu":
            self._model = model
            # A short text query reads every weight of the text side once for a handful of tokens, so
            # its time is the time to read the weights: a bfloat16 copy of that side halves it. The
            # image side stays float32 and runs its matrix products under autocast (embed_pixels).
            copy_text_side = self.dtype != torch.float32 and family.text_bfloat16 == "weights"
            self._text_model = _with_modules_in(model, family.text_modules, self.dtype) if copy_text_side \
                else model
            self._text_autocast = self.dtype == torch.bfloat16 and not copy_text_side
        else:
            self._model = self._text_model = model.to(self.device, self.dtype)
            self._text_autocast = False

    @property
    def precision(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    # -- images -------------------------------------------------------------

    @property
    def draft_size(self) -> tuple[int, int]:
        processor = self._processor.image_processor
        size = getattr(processor, "size", None) or {}
        crop = getattr(processor, "crop_size", None) or {}
        return draft_size(size.get("shortest_edge") or max(size.get("height") or 0, size.get("width") or 0)
                          or crop.get("height") or 224)

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        pixels = self._processor.image_processor(images=image, return_tensors="np")["pixel_values"]
        return pixels[0]

    def embed_pixels(self, pixel_batch: Sequence[np.ndarray]) -> np.ndarray:
        if not len(pixel_batch):
            return np.zeros((0, self.dim), dtype=np.float32)
        tensor = torch.from_numpy(np.stack(pixel_batch).astype(np.float32, copy=False))
        with torch.inference_mode():
            if self.device == "cpu":
                # The image side is compute-bound: autocast runs its matrix products in bfloat16
                # and keeps norms and softmax in float32.
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
                    features = _features(self._model.get_image_features(pixel_values=tensor))
            else:
                features = _features(self._model.get_image_features(
                    pixel_values=tensor.to(self.device, self.dtype)))
        return _unit_rows(features)

    # -- text ---------------------------------------------------------------

    def explain(self, image: Image.Image, query: np.ndarray) -> np.ndarray:
        """Grad-CAM of the photo's cosine score for ``query``, over the patch grid.

        The activations are the last vision block's input: the last block's attention is what
        carries a patch's content into the pooled image vector (CLIP's class token, SigLIP's
        attention head), so the score's gradient reaches every patch there, while the last
        block's own output reaches the vector only through the pooled position. Each channel
        is weighted by its mean gradient over the patches; the positive part of the weighted
        sum, scaled to 0..1, is the map (Selvaraju et al.'s Grad-CAM, as applied to ViTs).
        """
        layers = self._model.vision_model.encoder.layers
        captured: dict[str, torch.Tensor] = {}

        def keep_input(_module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            hidden.retain_grad()
            captured["hidden"] = hidden

        pixels = torch.from_numpy(self.preprocess_image(image)[None]).to(self.device, self._model.dtype)
        target = torch.from_numpy(np.asarray(query, dtype=np.float32)).to(self.device, self._model.dtype)
        handle = layers[-1].register_forward_pre_hook(keep_input, with_kwargs=True)
        try:
            with torch.enable_grad():
                features = _features(self._model.get_image_features(pixel_values=pixels)).float()
                score = (features[0] / features[0].norm()) @ target.float()
                score.backward()
        finally:
            handle.remove()
            self._model.zero_grad(set_to_none=True)
        hidden, grads = captured["hidden"][0].float(), captured["hidden"].grad[0].float()
        side = math.isqrt(hidden.shape[0])
        patches = slice(hidden.shape[0] - side * side, None)  # after the class token, when there is one
        weights = grads[patches].mean(dim=0)
        cam = torch.relu(hidden[patches] @ weights).reshape(side, side).detach()
        peak = float(cam.max())
        return (cam / peak if peak > 0 else cam).cpu().numpy().astype(np.float32)

    def seen_area(self, width: int, height: int) -> tuple[int, int, int, int]:
        return seen_area(width, height, crops=getattr(self._processor.image_processor, "do_center_crop", False))

    def _tokens(self, texts: list[str]) -> dict:
        with self._text_lock:
            return self._processor.tokenizer(
                texts,
                padding=self._family.text_padding,
                truncation=True,  # long text is cut to the model's context, not an error
                max_length=self.context_length,
                return_tensors="pt",
            )

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        cleaned = clean_texts(texts)
        chunks = []
        for start in range(0, len(cleaned), batch_size):
            tokens = {k: v.to(self.device) for k, v in self._tokens(cleaned[start : start + batch_size]).items()}
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._text_autocast):
                chunks.append(_unit_rows(_features(self._text_model.get_text_features(**tokens))))
        return np.concatenate(chunks)

    def prepare_text_export(self, announce=None) -> bool:
        if self.device != "cpu":  # the export is for CPUs; a GPU runs the text side fast already
            return False
        from .text_export import TextFacts, export_text_side

        tokenizer = self._processor.tokenizer
        sample = tokenizer(["a photo"], padding=self._family.text_padding)
        facts = TextFacts(
            model=self.name, family=self.family, dim=self.dim, fingerprint=self.signature.fingerprint,
            context_length=self.context_length, padding=self._family.text_padding,
            inputs=tuple(name for name in ("input_ids", "attention_mask") if name in sample),
            pad_id=int(tokenizer.pad_token_id or 0), padding_side=tokenizer.padding_side,
            truncation_side=tokenizer.truncation_side, good_text_match_from=self.scores.good_text_match_from,
            score_why=self.scores.why)
        with self._text_lock:  # the tokenizer is used by the check
            return export_text_side(self.name, self._model, tokenizer, facts, announce) is not None

    def prepare_image_export(self, announce=None) -> bool:
        if self.device != "cpu" or self.dtype not in (torch.float32, torch.bfloat16):
            return False  # a GPU runs the image side fast already
        from .image_export import ImageFacts, export_image_side
        from .image_recipe import ImageRecipe

        try:
            recipe = ImageRecipe.from_processor(self._processor.image_processor)
        except ValueError as exc:
            log.info("the image side of %s is not exported: %s", self.name, exc)
            return False
        facts = ImageFacts(model=self.name, family=self.family, dim=self.dim,
                           fingerprint=self.signature.fingerprint, recipe=recipe)

        def trial(exported) -> dict:
            return precision_trial.time_export(self._model, self.dtype, exported, self._start_cpu_s(),
                                               self._traced_program(exported))

        return export_image_side(self.name, self._model, self._processor.image_processor, facts, trial,
                                 self.torch_threads, announce) is not None

    def _traced_program(self, exported):
        """The image side traced for torch beside the export (made on first need; ``torch_program.py``)."""
        from .image_export import check_photos
        from .torch_program import open_program, program_path, write_program

        if program_path(exported.folder) is not None:
            return open_program(exported.folder, self.torch_threads)
        pixels = np.stack([exported.facts.recipe.pixels(photo) for photo in check_photos()])
        return write_program(exported.folder, self._model, self._family.text_modules, self.dtype,
                             exported.facts.recipe.input_side, pixels)

    def _start_cpu_s(self) -> float:
        """CPU seconds a process spends importing torch and transformers and loading this model."""
        measured = getattr(self, "start_cpu_s", None)
        if measured is not None:
            return measured - self.trial_cpu_s  # the precision trial runs once per machine, not every start
        return precision_trial.import_cpu_s() + self.load_cpu_s

    def reads_whole(self, text: str) -> bool:
        if len(text.strip().encode()) + 2 <= self.context_length:  # a token covers at least one byte
            return True
        with self._text_lock:
            tokens = self._processor.tokenizer(text.strip(), truncation=False)["input_ids"]
        return len(tokens) <= self.context_length


def _features(output) -> torch.Tensor:
    """transformers 5 returns the projected features as ``pooler_output``; older versions a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _unit_rows(features: torch.Tensor) -> np.ndarray:
    array = features.detach().to("cpu", torch.float32).numpy()
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.maximum(norms, 1e-12)).astype(np.float32)


def _with_modules_in(model: torch.nn.Module, names: tuple[str, ...], dtype: torch.dtype) -> torch.nn.Module:
    """A view of ``model`` whose ``names`` submodules are copies in ``dtype``; the rest is shared."""
    view = copy.copy(model)
    view._modules = dict(model._modules)  # a shallow copy would share (and change) the original's dict
    for name in names:
        view._modules[name] = copy.deepcopy(model._modules[name]).to(dtype)
    return view


def _fingerprint(model: torch.nn.Module, family: Family) -> str:
    """A hash of the weights that identify the model (CLIP: its two projections, as always)."""
    weights = dict(model.named_parameters())
    digest = hashlib.sha256()
    for name in family.fingerprint_weights:
        digest.update(weights[name].detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _score_scale(model: torch.nn.Module, family: Family) -> ScoreScale:
    if not family.sigmoid_scores:
        return ScoreScale(family.typical_text_match, f"typical for {family.label} models")
    # A sigmoid-trained model's own match probability is sigmoid(exp(scale) * cosine + bias):
    # it passes one half at the cosine -bias / exp(scale), the model's own line for "a match".
    scale, bias = math.exp(model.logit_scale.item()), model.logit_bias.item()
    return ScoreScale(round(-bias / scale, 3), "where this model's own match probability passes 50%")
