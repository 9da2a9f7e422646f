"""Drawing "why this matched": the model's heat map over the photo.

The map (``Embedder.explain``) is a coarse grid over the part of the photo the model
sees; it is enlarged smoothly to that part and laid over the photo in warm colours,
with the rest of the photo (what a cropping model never saw) dimmed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Transparent at 0; through orange to a strong red at 1.
_COLOURS = np.array([[255, 255, 0], [255, 140, 0], [230, 20, 20]], dtype=np.float32)


def overlay(photo: Image.Image, grid: np.ndarray, area: tuple[int, int, int, int]) -> Image.Image:
    """``photo`` (RGB) with ``grid`` (values 0..1) laid over ``area`` (left, top, right, bottom)."""
    photo = photo.convert("RGB")
    left, top, right, bottom = area
    size = (max(1, right - left), max(1, bottom - top))
    heat = np.asarray(Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).resize(
        size, Image.BICUBIC), dtype=np.float32) / 255.0
    heat = np.clip(heat, 0, 1)
    position = heat * (len(_COLOURS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_COLOURS) - 2)
    mix = (position - low)[..., None]
    colour = _COLOURS[low] * (1 - mix) + _COLOURS[low + 1] * mix
    base = np.asarray(photo, dtype=np.float32)
    result = base * 0.55  # outside what the model saw: dimmed
    region = base[top:bottom, left:right]
    alpha = (0.15 + 0.6 * heat)[..., None]
    result[top:bottom, left:right] = region * (1 - alpha) + colour * alpha
    return Image.fromarray(result.clip(0, 255).astype(np.uint8), "RGB")
