"""A model's text side exported to ONNX, so a text query needs neither torch nor transformers.

A fresh ``search`` process used to spend about 80% of its time importing torch and
transformers and building the model, for one text query. The peer on the command
line (rclip) answers with an ONNX text tower in a fraction of that. So once a model
has been loaded on the CPU (by ``index`` or ``search``), its text side is exported
into the cache folder (``CACHE_DIR``/text-export), and checked before it is kept:
the same token ids as the model's own tokenizer and the same vectors as the model
(cosine >= 0.9999) on sample texts of every length. Later processes embed text with
ONNX Runtime and the ``tokenizers`` library alone, in float32 (the reference
arithmetic); images still go through the full model, loaded when first needed.

An export is keyed by the checkpoint's files (``onnx_export.py``), so new weights or a
new tokenizer make a new export, never a stale one.
Nothing here imports torch, except :func:`export_text_side`, which runs where the
model is loaded already.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import onnx_export

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1
MODEL_FILE = "text.onnx"  # the optimised graph; its weights are in WEIGHTS_FILE next to it
WEIGHTS_FILE = "text.weights"
MIN_COSINE = 0.9999
# Texts the export is checked on: short, long (cut to the context), other scripts, one letter.
CHECK_TEXTS = ("a photo", "a dog running on the beach at sunset", "ein Hund läuft am Strand", "le chien 狗 😀",
               "x", "a long description of a busy street " * 20)


@dataclass(frozen=True)
class TextFacts:
    """What the text side needs to answer and what the store checks, without the model."""

    model: str
    family: str
    dim: int
    fingerprint: str
    context_length: int
    padding: str  # "longest" or "max_length"
    inputs: tuple[str, ...]  # the tokenizer outputs the text side reads
    pad_id: int
    padding_side: str
    truncation_side: str
    good_text_match_from: float
    score_why: str


def export_folder(name: str) -> Path | None:
    """Where the text export of this checkpoint, as its files are now, lives (None: it can't be told)."""
    return onnx_export.export_folder(name, "text", EXPORT_FORMAT)


def read_facts(folder: Path) -> TextFacts | None:
    raw = onnx_export.read_facts(folder, EXPORT_FORMAT)
    try:
        return TextFacts(**{**raw, "inputs": tuple(raw["inputs"])}) if raw else None
    except (TypeError, KeyError):
        return None


class ExportedText:
    """Token ids with ``tokenizers``, vectors with ONNX Runtime. Both open at the first text
    (``open``): a run that only indexes photos never holds the text side's weights (about 250 MB
    for a ViT-B/32), nor spends the 0.1 s of reading them and the tokenizer."""

    def __init__(self, folder: Path, facts: TextFacts, threads: int | None = None, prepack: bool = True):
        self.facts = facts
        self._folder, self._threads, self._prepack = folder, threads, prepack
        for name in (MODEL_FILE, "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(folder / name)
        self._session = self._tokenizer = None
        self._opening = threading.Lock()

    def open(self) -> None:
        """Open the ONNX Runtime session and the tokenizer, if they are not open yet (raises where a
        file is damaged)."""
        with self._opening:
            if self._tokenizer is None:
                from tokenizers import Tokenizer

                tokenizer = Tokenizer.from_file(str(self._folder / "tokenizer.json"))
                tokenizer.no_padding()
                tokenizer.enable_truncation(max_length=self.facts.context_length,
                                            direction=self.facts.truncation_side)
                self._tokenizer = tokenizer
            if self._session is None:
                self._session = onnx_export.open_session(self._folder / MODEL_FILE, self._threads,
                                                         prepack=self._prepack)

    def token_ids(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The model's inputs for ``texts``, padded as its model card pads them."""
        self.open()
        encodings = self._tokenizer.encode_batch(list(texts))
        length = self.facts.context_length if self.facts.padding == "max_length" else max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), length), self.facts.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            span = slice(0, len(encoding.ids)) if self.facts.padding_side == "right" \
                else slice(length - len(encoding.ids), length)
            ids[row, span] = encoding.ids
            mask[row, span] = 1
        inputs = {"input_ids": ids, "attention_mask": mask}
        return {name: inputs[name] for name in self.facts.inputs}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.open()
        (features,) = self._session.run(None, self.token_ids(texts))
        features = np.asarray(features, dtype=np.float32)
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

    def reads_whole(self, text: str) -> bool:
        """Whether ``text`` fits the context (what is cut off is kept as the encoding's overflow)."""
        self.open()
        return not self._tokenizer.encode(text).overflowing


def load_export(name: str, threads: int | None = None, prepack: bool = True) -> ExportedText | None:
    """The checked export of this checkpoint, if one was made on this machine (``prepack``: see
    ``onnx_export.open_session``)."""
    folder = export_folder(name)
    facts = read_facts(folder) if folder is not None else None
    if facts is None:
        return None
    try:
        return ExportedText(folder, facts, threads, prepack)
    except Exception as exc:  # noqa: BLE001 - a damaged cache entry only costs the slow path
        log.warning("the text export at %s can't be used (%s); loading the full model", folder, exc)
        return None


EXPORT_STEPS = ("tracing the text side", "optimising it for ONNX Runtime", "checking it against the model")
ExportProgress = Callable[[str, int, int], None]  # (step, steps done, steps in all)


def export_text_side(name: str, model, tokenizer, facts: TextFacts,
                     announce: ExportProgress | None = None) -> Path | None:
    """Export and check the text side of a loaded model (float32, on the CPU); None if it fails the
    check. ``announce`` hears each step as it starts (``EXPORT_STEPS``), and the end."""
    target = export_folder(name)
    if target is None or read_facts(target) is not None:
        return target
    if onnx_export.refusal_of(target).is_file():  # tried and failed: not again for these files
        return None
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        log.info("the tokenizer of %s (%s) has no `tokenizers` pipeline to export; text queries keep "
                 "loading the model", name, type(tokenizer).__name__)
        return None
    step = announce or (lambda _step, _done, _total: None)
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
    try:
        _write_export(scratch, model, tokenizer, facts, step)
        step(EXPORT_STEPS[2], 2, len(EXPORT_STEPS))
        problem = _check(scratch, model, tokenizer, facts)
        step("done", len(EXPORT_STEPS), len(EXPORT_STEPS))
        if problem:
            log.warning("text export of %s not used: %s", name, problem)
            onnx_export.remember_refusal(target, problem, "text")
            return None
        onnx_export.publish(scratch, target)
        log.info("exported the text side of %s in %.1f s", name, time.perf_counter() - started)
        return target
    except Exception as exc:  # noqa: BLE001 - an export that can't be made only costs the slow path
        log.warning("could not export the text side of %s: %s", name, exc)
        onnx_export.remember_refusal(target, f"{type(exc).__name__}: {exc}", "text")
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _encode(tokenizer, texts: Sequence[str], facts: TextFacts, tensors: str):
    return tokenizer(list(texts), padding=facts.padding, truncation=True, max_length=facts.context_length,
                     return_tensors=tensors)


def _write_export(folder: Path, model, tokenizer, facts: TextFacts, step: ExportProgress) -> None:
    import torch

    class TextSide(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            output = self.model.get_text_features(**dict(zip(facts.inputs, inputs)))
            return output if isinstance(output, torch.Tensor) else output.pooler_output

    sample = _encode(tokenizer, CHECK_TEXTS[:2], facts, "pt")  # two lengths: padding is in the traced graph
    axes = {name: {0: "batch", 1: "tokens"} for name in facts.inputs}
    traced = folder / "traced.onnx"
    step(EXPORT_STEPS[0], 0, len(EXPORT_STEPS))
    # The tracer's warnings are about shapes the check below covers; they are not for users.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TextSide(model).eval(), tuple(sample[name] for name in facts.inputs), str(traced),
                          input_names=list(facts.inputs), output_names=["features"],
                          dynamic_axes={**axes, "features": {0: "batch"}}, opset_version=18, dynamo=False)
    step(EXPORT_STEPS[1], 1, len(EXPORT_STEPS))
    onnx_export.save_optimised(traced, folder, MODEL_FILE, WEIGHTS_FILE)
    traced.unlink()
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    onnx_export.write_facts(folder, EXPORT_FORMAT, facts.__dict__)


def _check(folder: Path, model, tokenizer, facts: TextFacts) -> str | None:
    """Why the export differs from the model, or None when it answers as the model does."""
    import torch

    exported = ExportedText(folder, read_facts(folder) or facts)
    for text in CHECK_TEXTS:
        if exported.reads_whole(text) != (len(tokenizer(text, verbose=False)["input_ids"]) <= facts.context_length):
            return f"it tells otherwise than the model's tokenizer whether {text[:40]!r}... fits the context"
    for texts in ([CHECK_TEXTS[0]], [CHECK_TEXTS[-1]], list(CHECK_TEXTS)):
        reference = _encode(tokenizer, texts, facts, "np")
        ours = exported.token_ids(texts)
        for name in facts.inputs:
            if not np.array_equal(np.asarray(reference[name], dtype=np.int64), ours[name]):
                return f"its tokenizer gives other {name} than the model's for {texts!r}"
        with torch.inference_mode():
            output = model.get_text_features(**_encode(tokenizer, texts, facts, "pt"))
        expected = (output if isinstance(output, torch.Tensor) else output.pooler_output).float().numpy()
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        cosine = float((expected * exported.embed(texts)).sum(axis=1).min())
        if cosine < MIN_COSINE:
            return f"its vectors differ from the model's (cosine {cosine:.6f})"
    return None
