"""Reading the words in a photo (OCR), and how a record keeps them.

The reader is RapidOCR 3: PP-OCRv6's small text detector and recogniser, and PP-OCR's
orientation classifier, as ONNX models inside the ``rapidocr`` wheel, run on ONNX Runtime.
It reads offline: the models are given by path, so it never fetches anything (a model file
that is missing is an error that says so, before RapidOCR would try to download it).

A record keeps the words as ``ocr_text`` (searchable), each line's box and confidence as
``ocr_words`` (JSON: ``[[text, left, top, right, bottom, confidence], ...]`` in pixels of the
upright photo) and how many lines it has as ``ocr``, the field that says the photo was read.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import RetrievalError
from ..store.field_limits import MAX_TEXT_CHARS

OCR_TEXT_FIELD = "ocr_text"
OCR_WORDS_FIELD = "ocr_words"
OCR_COUNT_FIELD = "ocr"
MIN_CONFIDENCE = 0.5  # the recogniser's own score; see the README's OCR evaluation for the choice
# A line of one letter or sign is what the detector makes of a round shape as often as a word
# (an "O" for a wheel or a plate): not worth keeping, and too short to search for.
MIN_CHARACTERS = 2
MAX_LINES = 200  # lines kept with their boxes, as fit in one field; all of them stay in the text
# The detector reads the photo with its longer side at most this many pixels: the decoded photo
# is cut to this size first. Words down to about 12 px tall in a 640 px photo are still found.
DETECT_SIDE = 960
MODEL_FILES = {"det": "PP-OCRv6_det_small.onnx", "rec": "PP-OCRv6_rec_small.onnx",
               "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx"}


@dataclass(frozen=True)
class Line:
    text: str
    box: tuple[int, int, int, int]  # left, top, right, bottom
    confidence: float


def bundled_models() -> Path:
    """The folder of the ONNX models that come inside the rapidocr wheel."""
    try:
        import rapidocr
    except ImportError as exc:
        raise RetrievalError(f"Reading words in photos (--ocr, OCR=1) needs the rapidocr package ({exc}). "
                             "Install it with `pip install -r requirements.txt`.") from None
    return Path(rapidocr.__file__).resolve().parent / "models"


class OcrReader:
    """PP-OCR through RapidOCR: one engine per thread (an ONNX session is not shared between the
    stage threads), each using one CPU thread, so several photos are read side by side."""

    def __init__(self, models: Path | None = None, min_confidence: float = MIN_CONFIDENCE):
        self.models = Path(models) if models is not None else bundled_models()
        missing = [name for name in MODEL_FILES.values() if not (self.models / name).is_file()]
        if missing:
            raise RetrievalError(f"The OCR models {', '.join(missing)} are not in {self.models}. Reinstall the "
                                 "rapidocr package (`pip install --force-reinstall rapidocr`); it carries them.")
        self.min_confidence = min_confidence
        self._local = threading.local()

    def _engine(self):
        engine = getattr(self._local, "engine", None)
        if engine is None:
            import logging

            from rapidocr import RapidOCR

            engine = RapidOCR(params={
                "Global.log_level": "error", "Global.text_score": self.min_confidence,
                "Det.model_path": str(self.models / MODEL_FILES["det"]),
                "Rec.model_path": str(self.models / MODEL_FILES["rec"]),
                "Cls.model_path": str(self.models / MODEL_FILES["cls"]),
                "Det.limit_type": "max", "Det.limit_side_len": DETECT_SIDE,
                "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            })
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
            self._local.engine = engine
        return engine

    def read(self, image: Image.Image, width: int, height: int) -> list[Line]:
        """The lines of text in ``image`` (the upright photo, maybe decoded reduced), boxes in
        pixels of the ``width`` x ``height`` photo."""
        scale = min(1.0, DETECT_SIDE / max(image.size))
        if scale < 1.0:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.BILINEAR)
        found = self._engine()(np.asarray(image.convert("RGB")))
        back = width / image.width  # detector pixels -> the full photo's
        lines = []
        for corners, text, confidence in zip(found.boxes if found.boxes is not None else [],
                                             found.txts or (), found.scores or ()):
            text = " ".join(str(text).split())
            if sum(c.isalnum() for c in text) < MIN_CHARACTERS or float(confidence) < self.min_confidence:
                continue
            xs, ys = [float(p[0]) for p in corners], [float(p[1]) for p in corners]
            box = (max(0, int(min(xs) * back)), max(0, int(min(ys) * back)),
                   min(width, round(max(xs) * back)), min(height, round(max(ys) * back)))
            lines.append(Line(text, box, float(confidence)))
        return lines


def ocr_fields(lines: list[Line]) -> dict[str, Any]:
    """The fields a photo's record gets from its words (the count says it was read)."""
    fields: dict[str, Any] = {OCR_COUNT_FIELD: len(lines)}
    if lines:
        fields[OCR_TEXT_FIELD] = " ".join(line.text for line in lines)
        rows = [[line.text, *line.box, round(line.confidence, 3)] for line in lines[:MAX_LINES]]
        while len(json.dumps(rows, ensure_ascii=False)) > MAX_TEXT_CHARS:  # whole lines, never cut JSON
            rows = rows[: len(rows) * 3 // 4]
        fields[OCR_WORDS_FIELD] = json.dumps(rows, ensure_ascii=False)
    return fields


def lines_of(metadata: dict[str, Any]) -> list[Line]:
    """The lines a record keeps (none when it was not read, or its field is damaged)."""
    try:
        rows = json.loads(metadata.get(OCR_WORDS_FIELD) or "[]")
        return [Line(str(r[0]), (int(r[1]), int(r[2]), int(r[3]), int(r[4])), float(r[5])) for r in rows]
    except (ValueError, TypeError, IndexError):
        return []


def lines_holding(metadata: dict[str, Any], wanted: list[str]) -> list[Line]:
    """The lines a record read that hold one of ``wanted`` (query words), as the words channel
    matches them: a part of a word, the line's words run together, or a read word one letter off."""
    from ..store.documents import misread_as, words

    wanted = [w for w in wanted if w]
    held = []
    for line in lines_of(metadata) if wanted else []:
        read = words(line.text)
        joined = "".join(read)
        if any(w in joined or any(misread_as(r, w) for r in read) for w in wanted):
            held.append(line)
    return held
