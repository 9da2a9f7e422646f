"""A model's image side exported to ONNX, so indexing new photos needs neither torch nor transformers.

Importing torch and transformers and loading the weights is about a fifth of
indexing 159 photos, and all of indexing a handful. So, as for the text side
(``text_export.py``), once a model has been loaded on the CPU its image side is
exported into the cache folder (``CACHE_DIR``/image-export) with its preprocessing
written out as numbers (``image_recipe.py``), and checked before it is kept: the
same input pixels as the model's own processor and the same vectors as the model
(cosine >= 0.9999) on photos of several sizes, shapes and colour modes. An export
that fails is refused, and the refusal remembered.

Which runtime then embeds a run's photos is measured, not assumed (the trial in
``runtime.json``, by CPU time as the precision trial): ONNX Runtime in float32
against torch in the arithmetic its own trial chose (float32 or bfloat16), run as
the image side traced beside the export (``torch_program.py``), which needs torch
but not transformers. Torch only wins a run when its cheaper photos pay for
importing it and loading the program: ``uses_export(photos)`` is the break-even,
so a few new photos never load torch, and a large index on a CPU where bfloat16
is much cheaper uses it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from . import onnx_export
from .image_recipe import ImageRecipe
from .torch_program import image_side_module

log = logging.getLogger(__name__)

EXPORT_FORMAT = 2  # 2: with the image side traced for torch beside it (torch_program.py)
MODEL_FILE = "image.onnx"  # the optimised graph; its weights are in WEIGHTS_FILE next to it
WEIGHTS_FILE = "image.weights"
RUNTIME_FILE = "runtime.json"  # the trial's figures, per thread count
INT8_FILE = "image.int8.onnx"  # IMAGE_INT8=1: the export with its matrix products quantised (weights inside)
INT8_AGREEMENT_FILE = "int8.json"  # how close its vectors came to float32's when it was made
MIN_COSINE = 0.9999
# Photo sizes the export is checked on: upscaled, landscape, portrait, square, a strip, the input side.
CHECK_SIZES = ((37, 23), (640, 480), (480, 640), (333, 333), (1000, 40), (224, 224))
CHECK_MODES = ("RGB", "L", "CMYK", "P")  # converted to RGB as the model's processor converts them
EXPORT_STEPS = ("tracing the image side", "optimising it for ONNX Runtime", "checking it against the model",
                "timing it against torch")
ExportProgress = Callable[[str, int, int], None]  # (step, steps done, steps in all)


@dataclass(frozen=True)
class ImageFacts:
    """What the image side needs to answer and what the store checks, without the model."""

    model: str
    family: str
    dim: int
    fingerprint: str
    recipe: ImageRecipe


def export_folder(name: str) -> Path | None:
    """Where the image export of this checkpoint, as its files are now, lives (None: it can't be told)."""
    return onnx_export.export_folder(name, "image", EXPORT_FORMAT)


def read_facts(folder: Path) -> ImageFacts | None:
    raw = onnx_export.read_facts(folder, EXPORT_FORMAT)
    try:
        return ImageFacts(**{**raw, "recipe": ImageRecipe.from_dict(raw["recipe"])}) if raw else None
    except (TypeError, KeyError, ValueError):
        return None


class ExportedImages:
    """The model's input with PIL and numpy, vectors with ONNX Runtime (``int8``: the quantised graph)."""

    def __init__(self, folder: Path, facts: ImageFacts, threads: int | None = None, int8: bool = False,
                 prepack: bool = True):
        self.folder, self.facts, self.threads, self.int8 = folder, facts, threads, int8
        self._session = onnx_export.open_session(quantised(folder) if int8 else folder / MODEL_FILE, threads,
                                                 optimised=not int8, prepack=prepack)

    def embed(self, pixel_batch: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack(pixel_batch).astype(np.float32, copy=False)
        (features,) = self._session.run(None, {"pixel_values": batch})
        features = np.asarray(features, dtype=np.float32)
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def find_export(name: str) -> tuple[Path, ImageFacts] | None:
    """The checked image export of this checkpoint made on this machine, without opening it."""
    folder = export_folder(name)
    facts = read_facts(folder) if folder is not None else None
    return (folder, facts) if facts is not None else None


def open_export(folder: Path, facts: ImageFacts, threads: int | None = None,
                int8: bool = False, prepack: bool = True) -> ExportedImages | None:
    try:
        return ExportedImages(folder, facts, threads, int8, prepack)
    except Exception as exc:  # noqa: BLE001 - a damaged cache entry only costs the slow path
        log.warning("the image export at %s can't be used (%s); loading the full model", folder, exc)
        return None


# -- INT8, only when asked for (IMAGE_INT8=1) ----------------------------------------------

def quantised(folder: Path) -> Path:
    """The export with ONNX Runtime's dynamic INT8 quantisation of its matrix products (weights in
    INT8, activations quantised per batch), made once, in about 2 s, from the float32 export. Its
    agreement with float32 on the check photos is kept beside it (``int8_agreement``)."""
    target = folder / INT8_FILE
    if target.is_file():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = Path(tempfile.mkdtemp(dir=folder, prefix=".int8-"))
    try:
        # The optimised graph holds ONNX Runtime's own fused operators, whose outputs shape inference
        # can't type: they are float32.
        logging.disable(logging.WARNING)  # the quantiser's advice goes to the root logger, not for users
        try:
            quantize_dynamic(folder / MODEL_FILE, scratch / INT8_FILE, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": 1})
        finally:
            logging.disable(logging.NOTSET)
        facts = read_facts(folder)
        photos = [facts.recipe.pixels(photo) for photo in check_photos()]
        exact = ExportedImages(folder, facts).embed(photos)
        session = onnx_export.open_session(scratch / INT8_FILE, None, optimised=False)
        (features,) = session.run(None, {"pixel_values": np.stack(photos)})
        features /= np.linalg.norm(features, axis=1, keepdims=True)
        cosines = (exact * features).sum(axis=1)
        (folder / INT8_AGREEMENT_FILE).write_text(json.dumps(
            {"min_cosine": round(float(cosines.min()), 5), "mean_cosine": round(float(cosines.mean()), 5),
             "photos": len(photos)}))
        (scratch / INT8_FILE).replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def int8_agreement(folder: Path) -> dict:
    try:
        return json.loads((folder / INT8_AGREEMENT_FILE).read_text())
    except (OSError, ValueError):
        return {}


# -- which runtime a run uses -----------------------------------------------------------

def runtime_key(threads: int | None) -> str:
    return f"{threads or 'default'} threads"


def read_runtimes(folder: Path) -> dict:
    try:
        known = json.loads((folder / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def remember_runtime(folder: Path, threads: int | None, figures: dict) -> None:
    """Best effort, atomic: a reader sees the old figures or the new ones."""
    try:
        known = {**read_runtimes(folder), runtime_key(threads): figures}
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
            json.dump(known, handle, indent=1)
        Path(handle.name).replace(folder / RUNTIME_FILE)
    except OSError as exc:
        log.debug("could not remember the image runtime trial: %s", exc)


def forget_runtimes(name: str) -> int:
    """Drop the runtime trial of this checkpoint's export (every thread count); how many there were."""
    found = find_export(name)
    if found is None:
        return 0
    known = read_runtimes(found[0])
    (found[0] / RUNTIME_FILE).unlink(missing_ok=True)
    return len(known)


def break_even(figures: dict) -> float:
    """How many photos a run needs before torch's cheaper photos pay for loading it (inf: never).

    In the run's time, not CPU time: importing torch and loading the weights runs on one core,
    while either runtime embeds on all of ``threads``, so a photo saves its CPU time over that many
    (measured with the full model, before the traced program: 159 photos took 9.8 s through the
    export and 11.7 s in torch bfloat16, where CPU time alone put the break-even at 143 photos)."""
    saved_ms = (figures["onnx_cpu_ms_per_image"] - figures["torch_cpu_ms_per_image"]) / max(1, figures.get("threads", 1))
    if figures.get("runtime") != "torch" or saved_ms <= 0:
        return float("inf")
    extra_start_ms = 1000 * (figures["torch_start_cpu_s"] - figures["onnx_start_cpu_s"])
    return max(0.0, extra_start_ms / saved_ms)


def uses_export(folder: Path, threads: int | None, photos: int) -> bool:
    """Whether a run of ``photos`` new photos embeds them through the export. Not timed yet (or timed
    at another thread count): the export, which spares torch's start."""
    figures = read_runtimes(folder).get(runtime_key(threads))
    if not isinstance(figures, dict):
        return True
    try:
        return photos < break_even(figures)
    except (KeyError, TypeError):
        return True


def describe_runtime(figures: dict | None) -> str:
    if not figures:
        return "not timed against torch yet"
    limit = break_even(figures)
    traced = " (its traced program)" if figures.get("torch_runs") == "traced program" else ""
    return (f"ONNX Runtime float32 used {figures['onnx_cpu_ms_per_image']} ms of CPU per image against "
            f"{figures['torch_cpu_ms_per_image']} in torch {figures['torch_dtype']}{traced}"
            + (f"; torch is used from {int(limit) + 1} new photos in a run, where it pays for its "
               f"{figures['torch_start_cpu_s']:.1f} s start" if limit != float("inf") else "; torch is not needed"))


# -- making the export (where the model is loaded already) ------------------------------------

def export_image_side(name: str, model, processor, facts: ImageFacts, trial: Callable[[ExportedImages], dict],
                      threads: int | None = None, announce: ExportProgress | None = None) -> Path | None:
    """Export, check and time the image side of a loaded model (float32, on the CPU); None if it fails
    the check. ``trial(export)`` times it against torch (``precision_trial.time_export``)."""
    target = export_folder(name)
    if target is None:
        return None
    step = announce or (lambda _step, _done, _total: None)
    if read_facts(target) is not None:
        if runtime_key(threads) not in read_runtimes(target):  # exported before, at another thread count
            exported = open_export(target, read_facts(target), threads)
            if exported is not None:
                step(EXPORT_STEPS[3], 3, len(EXPORT_STEPS))
                remember_runtime(target, threads, trial(exported))
                step("done", len(EXPORT_STEPS), len(EXPORT_STEPS))
        return target
    if onnx_export.refusal_of(target).is_file():  # tried and failed: not again for these files
        return None
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
    try:
        _write_export(scratch, model, facts, step)
        step(EXPORT_STEPS[2], 2, len(EXPORT_STEPS))
        problem = _check(scratch, model, processor, facts)
        if problem:
            step("done", len(EXPORT_STEPS), len(EXPORT_STEPS))
            log.warning("image export of %s not used: %s", name, problem)
            onnx_export.remember_refusal(target, problem, "image")
            return None
        step(EXPORT_STEPS[3], 3, len(EXPORT_STEPS))
        remember_runtime(scratch, threads, trial(ExportedImages(scratch, facts, threads)))
        step("done", len(EXPORT_STEPS), len(EXPORT_STEPS))
        onnx_export.publish(scratch, target)
        log.info("exported the image side of %s in %.1f s", name, time.perf_counter() - started)
        return target
    except Exception as exc:  # noqa: BLE001 - an export that can't be made only costs the slow path
        log.warning("could not export the image side of %s: %s", name, exc)
        onnx_export.remember_refusal(target, f"{type(exc).__name__}: {exc}", "image")
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_export(folder: Path, model, facts: ImageFacts, step: ExportProgress) -> None:
    import torch

    side = facts.recipe.input_side
    sample = torch.rand(2, 3, side, side)
    traced = folder / "traced.onnx"
    step(EXPORT_STEPS[0], 0, len(EXPORT_STEPS))
    # The tracer's warnings are about shapes the check below covers; they are not for users.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(image_side_module(model).eval(), (sample,), str(traced), input_names=["pixel_values"],
                          output_names=["features"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=18, dynamo=False)
    step(EXPORT_STEPS[1], 1, len(EXPORT_STEPS))
    onnx_export.save_optimised(traced, folder, MODEL_FILE, WEIGHTS_FILE)
    traced.unlink()
    onnx_export.write_facts(folder, EXPORT_FORMAT, {**facts.__dict__, "recipe": facts.recipe.to_dict()})


def check_photos() -> list[Image.Image]:
    """Smooth pictures (as photos are, not noise) of every size and mode the export is checked on."""
    photos = []
    for n, (width, height) in enumerate(CHECK_SIZES):
        ys, xs = np.mgrid[0:height, 0:width]
        phase = np.array([0.0, 2.1, 4.2]) + n
        channels = [127 + 120 * np.sin(xs * 0.05 * (1 + c) + ys * 0.03 * (3 - c) + phase[c]) for c in range(3)]
        photo = Image.fromarray(np.stack(channels, axis=-1).clip(0, 255).astype("uint8"), "RGB")
        mode = CHECK_MODES[n % len(CHECK_MODES)]
        photos.append(photo if mode == "RGB" else photo.convert(mode).convert("RGB"))
    return photos


def _check(folder: Path, model, processor, facts: ImageFacts) -> str | None:
    """Why the export differs from the model, or None when it answers as the model does."""
    import torch

    exported = ExportedImages(folder, read_facts(folder) or facts)
    photos = check_photos()
    ours = [facts.recipe.pixels(photo) for photo in photos]
    for photo, pixels in zip(photos, ours):
        reference = processor(images=photo, return_tensors="np")["pixel_values"][0]
        if reference.shape != pixels.shape or not np.allclose(reference, pixels, atol=1e-5):
            return f"its preprocessing gives other pixels than the model's processor for a {photo.size} photo"
    with torch.inference_mode():
        expected = image_side_module(model)(torch.from_numpy(np.stack(ours))).float().numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    cosine = float((expected * exported.embed(ours)).sum(axis=1).min())
    if cosine < MIN_COSINE:
        return f"its vectors differ from the model's (cosine {cosine:.6f})"
    return None
