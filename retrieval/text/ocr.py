"""Reading the words in a photo (OCR), and how a record keeps them.

The reader is RapidOCR 3: PP-OCRv6's small text detector and recogniser, and PP-OCR's
orientation classifier, as ONNX models inside the ``rapidocr`` wheel, run on ONNX Runtime.
It reads offline: the models are given by path, so it never fetches anything (a model file
that is missing is an error that says so, before RapidOCR would try to download it).

The detector often stops a line short where a word runs over something busy ("Wrapp" for
"Wrapped", "PEO" for "PEOPLE"), so each line it finds is read twice: as found, and lengthened
along its own direction by ``LENGTHEN`` of its height at each end. A reading of the lengthened
box that differs is kept as a line of its own. ``passes=2`` (``OCR_PASSES``) also looks a
second time with the same detector, its input normalised as PaddleOCR's own configs do
(ImageNet's mean and deviation, channels in BGR order), which finds some lines the first look
misses; lines it finds over those of the first are left out. ``craft`` (``OCR_CRAFT``) has
EasyOCR's CRAFT detector look too (``craft.py``), for words the PP-OCR detector passes over, at
about 2.8 times the cost. ``detector`` (``OCR_DETECTOR``) swaps the PP-OCR detector for another
of its family in ONNX, by path. A reading that an earlier one of the same place already holds is
left out. The README's OCR evaluation has what each costs and finds.

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
from ..model_signature import file_fingerprint
from ..store.field_limits import MAX_TEXT_CHARS

OCR_TEXT_FIELD = "ocr_text"
OCR_WORDS_FIELD = "ocr_words"
OCR_COUNT_FIELD = "ocr"
OCR_LOOKS_FIELD = "ocr_looks"  # which detectors looked ("pp-ocr,craft"): a later, more thorough reader reads again
PP_LOOK, PP_SECOND_LOOK, CRAFT_LOOK = "pp-ocr", "pp-ocr-imagenet", "craft"
MIN_CONFIDENCE = 0.5  # the recogniser's own score; see the README's OCR evaluation for the choice
# A line of one letter or sign is what the detector makes of a round shape as often as a word
# (an "O" for a wheel or a plate): not worth keeping, and too short to search for.
MIN_CHARACTERS = 2
MAX_LINES = 200  # lines kept with their boxes, as fit in one field; all of them stay in the text
# The detector reads the photo with its longer side at most this many pixels: the decoded photo
# is cut to this size first. Words down to about 12 px tall in a 640 px photo are still found.
DETECT_SIDE = 960
LENGTHEN = 1.0  # of a line's height, added at each end of it for its second reading
PASSES = (1, 2)  # detector looks: the first alone, or a second one too (OCR_PASSES)
# A line the second look finds is the first look's when this much of the smaller box overlaps.
SAME_LINE = 0.3
# The second look's input normalisation: ImageNet's, on channels in BGR order (PaddleOCR's).
SECOND_LOOK = {"Det.mean": [0.485, 0.456, 0.406], "Det.std": [0.229, 0.224, 0.225]}
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

    def __init__(self, models: Path | None = None, min_confidence: float = MIN_CONFIDENCE, passes: int = 1,
                 craft: Path | None = None, detector: Path | None = None):
        self.models = Path(models) if models is not None else bundled_models()
        needed = [name for kind, name in MODEL_FILES.items() if kind != "det" or detector is None]
        missing = [name for name in needed if not (self.models / name).is_file()]
        if missing:
            raise RetrievalError(f"The OCR models {', '.join(missing)} are not in {self.models}. Reinstall the "
                                 "rapidocr package (`pip install --force-reinstall rapidocr`); it carries them.")
        if passes not in PASSES:
            raise RetrievalError(f"OCR_PASSES={passes}: use 1 (one look for lines of words) or 2 (a second look "
                                 "too, which finds a few more at about 1.5 times the cost).")
        self.min_confidence, self.passes = min_confidence, passes
        self.detector = self.models / MODEL_FILES["det"] if detector is None else checked_detector(Path(detector))
        # Another PP-OCR detector (OCR_DETECTOR) is another look: photos read before are read again.
        self._detector_mark = file_fingerprint(self.detector)[:12] if detector is not None else None
        self._local = threading.local()
        self.craft = None
        if craft is not None:  # loaded now, so a wrong file is said before any photo is read
            from .craft import CraftDetector

            self.craft = CraftDetector(craft)

    @property
    def looks(self) -> tuple[str, ...]:
        """The detectors that look at each photo, as a record keeps them."""
        named = (lambda look: f"{look}:{self._detector_mark}") if self._detector_mark else str
        return (named(PP_LOOK), *((named(PP_SECOND_LOOK),) if self.passes == 2 else ()),
                *((CRAFT_LOOK,) if self.craft is not None else ()))

    @classmethod
    def of(cls, settings) -> "OcrReader":
        """The reader the settings ask for (OCR_PASSES, OCR_CRAFT, OCR_DETECTOR)."""
        from .craft import weights_file

        return cls(passes=settings.ocr_passes, craft=weights_file(settings.ocr_craft) if settings.ocr_craft else None,
                   detector=Path(settings.ocr_detector).expanduser() if settings.ocr_detector else None)

    def _engine(self, extra: dict[str, Any] | None = None):
        import logging

        from rapidocr import RapidOCR

        engine = RapidOCR(params={
            "Global.log_level": "error", "Global.text_score": 0.0,  # the threshold is applied here
            "Det.model_path": str(self.detector),
            "Rec.model_path": str(self.models / MODEL_FILES["rec"]),
            "Cls.model_path": str(self.models / MODEL_FILES["cls"]),
            "Det.limit_type": "max", "Det.limit_side_len": DETECT_SIDE,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            **(extra or {}),
        })
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        return engine

    def _engines(self) -> list:
        engines = getattr(self._local, "engines", None)
        if engines is None:
            engines = [self._engine()] + ([self._engine(SECOND_LOOK)] if self.passes == 2 else [])
            self._local.engines = engines
        return engines

    def _boxes(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The lines the detector finds (four corners each, in ``rgb``'s pixels): the first look's,
        then the second look's that are not the first's, then CRAFT's words."""
        boxes: list[np.ndarray] = []
        for look, engine in enumerate(self._engines()):
            found = engine(rgb if look == 0 else np.ascontiguousarray(rgb[:, :, ::-1]),
                           use_det=True, use_cls=False, use_rec=False)
            earlier = list(boxes)
            for corners in found.boxes if found.boxes is not None else ():
                corners = np.asarray(corners, dtype=np.float32)
                if not any(_overlap(corners, other) > SAME_LINE for other in earlier):
                    boxes.append(corners)
        if self.craft is not None:  # all of its words: one may lie in a line the others found but misread
            boxes += self.craft.boxes(rgb)
        return boxes

    def read(self, image: Image.Image, width: int, height: int) -> list[Line]:
        """The lines of text in ``image`` (the upright photo, maybe decoded reduced), boxes in
        pixels of the ``width`` x ``height`` photo."""
        from rapidocr.utils.process_img import get_rotate_crop_image

        scale = min(1.0, DETECT_SIDE / max(image.size))
        if scale < 1.0:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.BILINEAR)
        # RGB as it comes: given PaddleOCR's BGR order, the first look read fewer painted words (0.83
        # against 0.89 on the evaluation's exploration seed), so that order is left to the second look.
        rgb = np.asarray(image.convert("RGB"))
        boxes = self._boxes(rgb)
        if not boxes:
            return []
        longer_boxes = [lengthened(box, rgb.shape[1], rgb.shape[0]) for box in boxes]
        crops = [get_rotate_crop_image(rgb, box.copy()) for box in boxes + longer_boxes]
        engine = self._engines()[0]
        crops, _ = engine.cls_and_rotate(crops)
        found = engine.recognize_txt(crops)
        readings = [(" ".join(str(text).split()), float(score)) for text, score in zip(found.txts, found.scores)]
        back = width / image.width  # detector pixels -> the full photo's
        lines, said = [], []
        for number, corners in enumerate(boxes):  # each line, then its lengthened reading
            for found_at, (text, confidence) in ((corners, readings[number]),
                                                 (longer_boxes[number], readings[number + len(boxes)])):
                if not self._keeps(text, confidence):
                    continue
                # A reading that an earlier one of the same place holds says nothing new.
                letters = "".join(c for c in text.casefold() if c.isalnum())
                if any(letters in earlier and _overlap(found_at, place) > SAME_LINE for place, earlier in said):
                    continue
                said.append((found_at, letters))
                xs, ys = found_at[:, 0], found_at[:, 1]
                box = (max(0, int(xs.min() * back)), max(0, int(ys.min() * back)),
                       min(width, round(float(xs.max()) * back)), min(height, round(float(ys.max()) * back)))
                lines.append(Line(text, box, confidence))
        return lines

    def _keeps(self, text: str, confidence: float) -> bool:
        return sum(c.isalnum() for c in text) >= MIN_CHARACTERS and confidence >= self.min_confidence


def checked_detector(path: Path) -> Path:
    """``path`` when it is a PP-OCR text detection model in ONNX (a photo in, a map of text scores
    of the photo's size out), else an error that says what it is not."""
    advice = ("give the path of a PP-OCR text detection model in ONNX (such as PaddleOCR's PP-OCRv5 server "
              "detector), or leave OCR_DETECTOR unset for the small one inside rapidocr.")
    if not path.is_file():
        raise RetrievalError(f"OCR_DETECTOR={path}: there is no file there; {advice}")
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (photo,) = session.get_inputs()
        scores = session.run(None, {photo.name: np.zeros((1, 3, 64, 96), np.float32)})[0]
    except Exception as exc:  # noqa: BLE001 - a foreign file or graph fails in many ways
        raise RetrievalError(f"OCR_DETECTOR={path} is not a text detection model ONNX Runtime can run "
                             f"({type(exc).__name__}); {advice}") from None
    if scores.shape != (1, 1, 64, 96):
        raise RetrievalError(f"OCR_DETECTOR={path} answers a 64 x 96 photo with {tuple(scores.shape)}, not a map "
                             f"of text scores (1, 1, 64, 96): it is not a text detection model; {advice}")
    return path


def lengthened(corners: np.ndarray, width: int, height: int) -> np.ndarray:
    """A line's four corners (top-left, top-right, bottom-right, bottom-left) moved out along the
    line by ``LENGTHEN`` of its height at each end, within the photo. A box taller than long (a
    word written downwards, or one letter) is left as it is."""
    left, right = (corners[0] + corners[3]) / 2, (corners[1] + corners[2]) / 2
    length = float(np.linalg.norm(right - left))
    tall = float(np.linalg.norm(corners[3] - corners[0]) + np.linalg.norm(corners[2] - corners[1])) / 2
    moved = corners.copy()
    if length > tall > 0:
        step = (right - left) / length * LENGTHEN * tall
        moved[[0, 3]] -= step
        moved[[1, 2]] += step
        moved[:, 0] = moved[:, 0].clip(0, width - 1)
        moved[:, 1] = moved[:, 1].clip(0, height - 1)
    return moved


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """How much of the smaller of two boxes' upright rectangles the other covers."""
    (ax0, ay0), (ax1, ay1) = a.min(0), a.max(0)
    (bx0, by0), (bx1, by1) = b.min(0), b.max(0)
    shared = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    smaller = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
    return float(shared / smaller) if smaller > 0 else 0.0


def ocr_fields(lines: list[Line], looks: tuple[str, ...] = (PP_LOOK,)) -> dict[str, Any]:
    """The fields a photo's record gets from its words (the count says it was read; ``looks``, by
    which detectors)."""
    fields: dict[str, Any] = {OCR_COUNT_FIELD: len(lines), OCR_LOOKS_FIELD: ",".join(looks)}
    if lines:
        fields[OCR_TEXT_FIELD] = " ".join(line.text for line in lines)
        rows = [[line.text, *line.box, round(line.confidence, 3)] for line in lines[:MAX_LINES]]
        while len(json.dumps(rows, ensure_ascii=False)) > MAX_TEXT_CHARS:  # whole lines, never cut JSON
            rows = rows[: len(rows) * 3 // 4]
        fields[OCR_WORDS_FIELD] = json.dumps(rows, ensure_ascii=False)
    return fields


def looks_of(metadata: dict[str, Any]) -> set[str]:
    """The detectors that looked at a stored photo (one PP-OCR look for one read before they were kept)."""
    return set(str(metadata.get(OCR_LOOKS_FIELD) or PP_LOOK).split(","))


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
