"""CRAFT in INT8 through ONNX Runtime: how ``OCR_CRAFT`` runs it.

The torch network (``craft.py``) is exported to ONNX once per weights file and quantised
statically: weights per channel and activations in INT8, the activations' ranges measured on
pictures drawn here (colour fields, shapes and words), so no photo is needed to make it. It is
kept in the cache folder (``CACHE_DIR``) under the weights' fingerprint and made in about 11 s the
first time. On the OCR evaluation's tuning seed it found the same words as float32 torch at a
third of the CPU time (835 against 2,408 ms per photo at 640 px, PP-OCR's look included), and
the same again at 480 px, where it looks (570 ms).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ..model_signature import file_fingerprint
from ..settings import cache_dir

log = logging.getLogger(__name__)

MODEL_FILE = "craft.int8.onnx"
CALIBRATION_PICTURES = 8
CALIBRATION_SIZE = (480, 360)  # width, height: ranges hardly depend on the size, the time does


def cached_model(weights: Path) -> Path:
    """Where the INT8 model made from ``weights`` is kept (it may not be there yet)."""
    return cache_dir() / "craft" / file_fingerprint(weights) / MODEL_FILE


def calibration_picture(number: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """A picture with what photos hold at many scales (colour fields, flat shapes, words, grain),
    as the network's normalised input (1, 3, height, width)."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    width, height = CALIBRATION_SIZE
    rng, choose = np.random.default_rng(number), random.Random(number)
    field = np.zeros((height, width, 3), np.float32)
    for cells in (4, 16, 64):
        coarse = rng.uniform(0, 255, (max(2, height * cells // width), cells, 3)).astype(np.float32)
        field += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) / 3
    picture = Image.fromarray(field.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(choose.randint(3, 12)):
        left, top = choose.randint(0, width), choose.randint(0, height)
        shape = draw.rectangle if choose.random() < 0.5 else draw.ellipse
        shape((left, top, left + choose.randint(10, 300), top + choose.randint(10, 300)),
              fill=tuple(choose.randint(0, 255) for _ in range(3)))
    for _ in range(choose.randint(1, 4)):
        draw.text((choose.randint(0, width - 100), choose.randint(0, height - 40)),
                  choose.choice(["OPEN", "Bakery", "street", "SALE 50%", "exit", "Coffee & tea"]),
                  font=ImageFont.load_default(size=choose.randint(12, 90)),
                  fill=tuple(choose.randint(0, 255) for _ in range(3)))
    pixels = np.asarray(picture).astype(np.float32) + rng.normal(0, 8, (height, width, 3))
    return ((pixels.clip(0, 255) - mean) / std).astype(np.float32).transpose(2, 0, 1)[None].copy()


def make(net, target: Path, mean: np.ndarray, std: np.ndarray) -> Path:
    """Export ``net`` (CRAFT in torch, float32, as ``craft.load_network`` gives it) and quantise it into ``target``; atomic, so a run
    killed half way leaves nothing that looks made."""
    import torch
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Pictures(CalibrationDataReader):
        def __init__(self):
            self.left = iter(range(CALIBRATION_PICTURES))

        def get_next(self):
            number = next(self.left, None)
            return None if number is None else {"x": calibration_picture(number, mean, std)}

    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".making-") as scratch:
        exported = Path(scratch) / "craft.onnx"
        width, height = CALIBRATION_SIZE
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the exporter's notes on its own future
            torch.onnx.export(net, torch.zeros(1, 3, height, width),
                              str(exported), input_names=["x"], output_names=["scores"], opset_version=17,
                              dynamic_axes={"x": {2: "height", 3: "width"}, "scores": {2: "rows", 3: "columns"}},
                              dynamo=False)
        logging.disable(logging.WARNING)  # the quantiser's advice goes to the root logger, not for users
        try:
            quantize_static(str(exported), str(Path(scratch) / MODEL_FILE), Pictures(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            logging.disable(logging.NOTSET)
        os.replace(Path(scratch) / MODEL_FILE, target)
    log.info("made CRAFT's INT8 model in %.1f s; kept as %s", time.perf_counter() - started, target)
    return target


def open_session(model: Path):
    """A session on all the cores, shared by the stage threads (a run changes nothing in it). Its
    threads sleep between runs instead of spinning: the model's own stage needs the cores then."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with contextlib.suppress(OSError):
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
