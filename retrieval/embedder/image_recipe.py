"""A model's image preprocessing written out as numbers, applied with PIL and numpy alone.

The image side's ONNX export (``image_export.py``) must not need transformers to
turn a photo into the model's input. The loaded processor's settings (resize,
crop, rescale, normalise) are read once, at export time, into an
:class:`ImageRecipe`; applying it repeats what transformers' PIL backend does,
step for step (the same PIL resampling, the same integer arithmetic for sizes
and the crop, the same float64 rescale and float32 normalisation), and the
export's check compares the two on photos of several sizes before it is kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImageRecipe:
    shortest_edge: int | None  # resize the short side to this, keeping the aspect ratio (CLIP)
    height: int | None  # or resize to exactly height x width (SigLIP)
    width: int | None
    resample: int  # PIL's resampling filter number
    crop: tuple[int, int] | None  # (height, width) cut from the middle, or None
    rescale_factor: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_processor(cls, processor) -> "ImageRecipe":
        """The recipe of a transformers image processor (PIL backend); ValueError for one it can't
        write out (the export is then not made)."""
        size = dict(processor.size or {}) if getattr(processor, "do_resize", True) else {}
        if set(size) - {"shortest_edge", "height", "width"} or (size.get("shortest_edge") and
                                                                getattr(processor, "default_to_square", False)):
            raise ValueError(f"its image processor resizes as {size}, which the export does not repeat")
        if getattr(processor, "do_pad", False):
            raise ValueError("its image processor pads images, which the export does not repeat")
        crop = dict(processor.crop_size or {}) if getattr(processor, "do_center_crop", False) else {}
        normalise = getattr(processor, "do_normalize", True)
        return cls(
            shortest_edge=size.get("shortest_edge"), height=size.get("height"), width=size.get("width"),
            resample=int(processor.resample if processor.resample is not None else Image.Resampling.BILINEAR),
            crop=(int(crop["height"]), int(crop["width"])) if crop else None,
            rescale_factor=float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else None,
            mean=tuple(float(v) for v in _three(processor.image_mean)) if normalise else None,
            std=tuple(float(v) for v in _three(processor.image_std)) if normalise else None)

    @classmethod
    def from_dict(cls, raw: dict) -> "ImageRecipe":
        raw = dict(raw)
        for name in ("crop", "mean", "std"):
            raw[name] = tuple(raw[name]) if raw.get(name) is not None else None
        return cls(**raw)

    def to_dict(self) -> dict:
        return asdict(self)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize, with transformers' integer arithmetic."""
        if self.shortest_edge:
            short, long = (width, height) if width <= height else (height, width)
            new_long = int(self.shortest_edge * long / short)
            return (self.shortest_edge, new_long) if width <= height else (new_long, self.shortest_edge)
        if self.height and self.width:
            return self.width, self.height
        return width, height

    def pixels(self, image: Image.Image) -> np.ndarray:
        """The model's input for one image: float32, channels first."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        size = self.resized_size(*image.size)
        if size != image.size:
            image = image.resize(size, resample=self.resample)
        if self.crop is not None:
            image = _centre_crop(image, *self.crop)
        array = np.asarray(image)
        if self.rescale_factor is not None:
            array = (array.astype(np.float64) * self.rescale_factor).astype(np.float32)
        else:
            array = array.astype(np.float32)
        if self.mean is not None:
            array = (array - np.array(self.mean, dtype=np.float32)) / np.array(self.std, dtype=np.float32)
        return np.ascontiguousarray(array.transpose(2, 0, 1))

    @property
    def input_side(self) -> int:
        """The side of the square the model reads."""
        if self.crop is not None:
            return self.crop[0]
        return self.height or self.shortest_edge or 224

    @property
    def draft_size(self) -> tuple[int, int]:
        return draft_size(self.shortest_edge or max(self.height or 0, self.width or 0) or self.input_side)

    def seen_area(self, width: int, height: int) -> tuple[int, int, int, int]:
        return seen_area(width, height, crops=self.crop is not None)


def draft_size(resized_side: int) -> tuple[int, int]:
    """How small a JPEG may be decoded for a model that resizes it to ``resized_side``. JPEG decoders scale
    by 1/2, 1/4 or 1/8 almost for free; keeping at least 1.5 times that side, the processor's antialiased
    resize gives practically the same pixels as from the full-size decode (cosine >= 0.99999 on 12 MP
    photos)."""
    return int(resized_side * 1.5), int(resized_side * 1.5)


def seen_area(width: int, height: int, crops: bool) -> tuple[int, int, int, int]:
    """The part of a photo the model sees: the middle square when its processor crops (CLIP: shortest side
    resized, then the middle cut out), else all of it (SigLIP: resized whole)."""
    if not crops:
        return 0, 0, width, height
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def _three(value) -> list[float]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * 3


def _centre_crop(image: Image.Image, crop_height: int, crop_width: int) -> Image.Image:
    """transformers' centre crop: the top-left corner at half the excess, rounded down; padded with
    black where the image is smaller than the crop."""
    width, height = image.size
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    if top >= 0 and left >= 0:
        return image.crop((left, top, left + crop_width, top + crop_height))
    canvas = Image.new("RGB", (max(width, crop_width), max(height, crop_height)))
    canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
    return _centre_crop(canvas, crop_height, crop_width)
