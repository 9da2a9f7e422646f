"""Image-text models: the only package that knows about models and tensors.

``load_embedder`` reads the checkpoint's config, picks its family (CLIP, SigLIP /
SigLIP 2, MetaCLIP 2) and returns an :class:`Embedder`; everything else in the
product talks to that contract only. Importing this package does not import torch;
a text query through a model's ONNX export never does.
"""

from __future__ import annotations

import sys
import time

from ..model_signature import ModelSignature
from .checkpoint import languages_of
from .contract import Embedder, Languages, ScoreScale


def load_embedder(name: str, torch_threads: int | None = None, precision: str = "auto",
                  device: str = "auto", text_export: bool = True, image_export: bool = True,
                  image_int8: bool = False, brief: bool = False) -> Embedder:
    """The model ``name`` (Hugging Face id or local folder); RetrievalError if it can't be had.

    With ``text_export`` / ``image_export`` and a checked export of this checkpoint's text / image
    side on this machine (see ``text_export.py`` and ``image_export.py``), text and photos are
    embedded without torch, and the full model loads only for what the exports don't cover. The
    exports are float32 on the CPU, so only those settings take them. ``image_int8``: photos through
    the image export quantised to INT8 (faster, not exact; only ever when asked for). ``brief``: this
    process embeds little (one command): the exports open faster and answer a little slower."""

    def full_model() -> Embedder:
        # torch's import and the weights: what the image runtime trial weighs (unknown here when
        # something imported torch before; the trial then times the import in a process of its own)
        fresh, started = "torch" not in sys.modules, time.process_time()
        from .two_tower import TwoTowerEmbedder

        embedder = TwoTowerEmbedder(name, torch_threads, precision, device)
        embedder.start_cpu_s = time.process_time() - started if fresh else None
        return embedder

    if precision not in ("auto", "float32") or (device or "auto") not in ("auto", "cpu"):
        return full_model()
    text = images = None
    if text_export:
        from .text_export import load_export

        text = load_export(name, torch_threads, prepack=not brief)
    if image_export:
        from .image_export import find_export

        images = find_export(name)
    if text is None and images is None:
        return full_model()
    from .export_first import ExportFirstEmbedder

    embedder = ExportFirstEmbedder(name, text, images, full_model, torch_threads, int8=image_int8, brief=brief)
    if not brief:
        # A long-lived process (the app) will embed text: opened now, while it loads. A command
        # opens it at its first text, so an index of photos never loads the text side.
        embedder.open_text()
    return embedder


def save_random_weights(config: dict, target, seed: int = 0) -> None:
    """A model of this configuration (a config.json's content) with random weights, saved like a
    download: same architecture and cost as the trained model, for benchmarks. ValueError for a
    model type this product does not read."""
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from .families import family_for

    model_class = getattr(transformers, family_for(config.get("model_type")).model_class)
    torch.manual_seed(seed)
    hf_logging.disable_progress_bar()
    model_class(model_class.config_class.from_dict(config)).save_pretrained(target)


__all__ = ["Embedder", "Languages", "ModelSignature", "ScoreScale", "languages_of", "load_embedder", "save_random_weights"]
