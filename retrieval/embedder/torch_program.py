"""The model's image side traced into a TorchScript program: torch's arithmetic without transformers.

Where torch in bfloat16 costs less per photo than the ONNX export (an AMD EPYC:
about 50 against 94 ms of CPU for a ViT-B/32), a large run is cheaper in torch,
but importing transformers and building the model cost about 4 s of CPU before
the first photo. The traced program needs only torch (about 1.2 s to import and
load), so torch pays from a few dozen photos instead of a few hundred.

The program is traced from the loaded model in the arithmetic the precision trial
chose. For bfloat16 it is traced under autocast, so its graph holds autocast's
casts (matrix products in bfloat16, norms and softmax in float32); the weights of
its linear and convolution layers are stored in bfloat16, which is what autocast
casts them to on every call. The text side is left out. It is kept only if it
gives the model's own vectors (cosine >= 0.9999) on the export's check photos.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

PROGRAM_FILE = "image.torchscript"
MIN_COSINE = 0.9999
# Photos per forward pass, as the trial times them. At 32 (indexing's batch) a photo costs 9% more CPU
# (58 against 54 ms) and the process peaks about 100 MB higher (a ViT-B/32 in bfloat16 on 2 cores of
# an AMD EPYC).
CHUNK = 16


class TracedImages:
    """Vectors from the traced program; the same pixels in as the export's (``image_recipe.py``)."""

    def __init__(self, path: Path, threads: int | None = None):
        import torch

        from .runtime import use_threads

        use_threads(threads)
        self.path = path
        self._program = torch.jit.load(str(path), map_location="cpu")

    def embed(self, pixel_batch: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        parts = []
        with torch.inference_mode():
            for start in range(0, len(pixel_batch), CHUNK):
                chunk = np.stack(pixel_batch[start:start + CHUNK]).astype(np.float32, copy=False)
                parts.append(self._program(torch.from_numpy(chunk)).float().numpy())
        features = np.concatenate(parts)
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def program_path(folder: Path) -> Path | None:
    path = folder / PROGRAM_FILE
    return path if path.is_file() else None


def open_program(folder: Path, threads: int | None = None) -> TracedImages | None:
    path = program_path(folder)
    if path is None:
        return None
    try:
        return TracedImages(path, threads)
    except Exception as exc:  # noqa: BLE001 - a damaged cache entry only costs loading the full model
        log.warning("the traced image program at %s can't be used (%s); loading the full model", path, exc)
        return None


def write_program(folder: Path, model, text_modules: tuple[str, ...], dtype, input_side: int,
                  check_pixels: np.ndarray) -> TracedImages | None:
    """Trace the image side of ``model`` in ``dtype`` (float32 or bfloat16) into ``folder``; None if
    it can't be traced or answers otherwise than the model."""
    import torch

    target = folder / PROGRAM_FILE
    try:
        side = image_side_module(_image_only(model, text_modules, dtype)).eval()
        sample = torch.rand(2, 3, input_side, input_side)
        autocast = dtype == torch.bfloat16
        # The tracer's warnings are about shapes (the check photos cover them); not for users.
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(side, (sample,), check_trace=False)
            pixels = torch.from_numpy(check_pixels)
            expected = image_side_module(model)(pixels).float().numpy()
        torch.jit.save(traced, str(target))
        program = TracedImages(target)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        cosine = float((expected * program.embed(list(check_pixels))).sum(axis=1).min())
        if cosine < MIN_COSINE:
            raise ValueError(f"its vectors differ from the model's (cosine {cosine:.6f})")
        return program
    except Exception as exc:  # noqa: BLE001 - without it, a large run loads the full model as before
        log.info("the image side is not traced for torch: %s", exc)
        target.unlink(missing_ok=True)
        return None


def _image_only(model, text_modules: tuple[str, ...], dtype):
    """A copy of ``model`` without its text side; in bfloat16, the linear and convolution layers
    hold the bfloat16 weights autocast would make of theirs (the same numbers, cast once)."""
    import torch

    shell = copy.copy(model)
    shell._modules = {name: module for name, module in model._modules.items() if name not in text_modules}
    image_only = copy.deepcopy(shell)
    if dtype == torch.bfloat16:
        for module in image_only.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.to(torch.bfloat16)
    return image_only


def image_side_module(model):
    """The image side of ``model`` as a module of its own, pixels in, features out: what the ONNX
    export and the traced program are made from."""
    import torch

    class ImageSide(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            output = self.model.get_image_features(pixel_values=pixel_values)
            return output if isinstance(output, torch.Tensor) else output.pooler_output

    return ImageSide(model)
