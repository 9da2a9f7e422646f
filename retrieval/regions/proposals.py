"""Region proposals: boxes where an object may be, through one small interface.

``SegmentProposer`` needs no weights and works offline: the photo is over-segmented
by colour (Felzenszwalb's graph-based segmentation, from scikit-image) at several
scales, neighbouring segments are merged step by step, most similar colours first
(the grouping of selective search), and every segment and merge gives a box. The
boxes are ranked by how much they stand out from a ring around them, weighted
towards bigger ones; a coarse grid of windows at three scales follows for what
segmentation misses; overlapping boxes are dropped and the first N kept.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORK_SIDE = 320  # segmentation runs on the photo scaled to this longer side: boxes, not outlines, are wanted


@dataclass(frozen=True)
class Box:
    """Pixel coordinates of the upright photo; right and bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)

    def iou(self, other: "Box") -> float:
        width = min(self.right, other.right) - max(self.left, other.left)
        height = min(self.bottom, other.bottom) - max(self.top, other.top)
        if width <= 0 or height <= 0:
            return 0.0
        inter = width * height
        return inter / (self.area + other.area - inter)

    def to_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


class Proposer(ABC):
    name: str

    @abstractmethod
    def propose(self, image: Image.Image, limit: int) -> list[Box]:
        """At most ``limit`` boxes, most promising first."""


def suppress_overlaps(boxes: list[Box], limit: int, max_iou: float = 0.7) -> list[Box]:
    """Boxes in order, leaving out each that overlaps a kept one by more than ``max_iou``."""
    kept: list[Box] = []
    for box in boxes:
        if all(box.iou(other) <= max_iou for other in kept):
            kept.append(box)
            if len(kept) >= limit:
                break
    return kept


def grid_boxes(width: int, height: int) -> list[Box]:
    """Windows of a half, a third and two thirds of each side, overlapping by half, big ones first."""
    boxes = []
    for fraction in (2 / 3, 1 / 2, 1 / 3):
        w, h = max(1, round(width * fraction)), max(1, round(height * fraction))
        xs = np.unique(np.linspace(0, width - w, max(1, round(2 / fraction) - 1)).round().astype(int))
        ys = np.unique(np.linspace(0, height - h, max(1, round(2 / fraction) - 1)).round().astype(int))
        boxes += [Box(int(x), int(y), int(x) + w, int(y) + h) for y in ys for x in xs]
    return boxes


class GridProposer(Proposer):
    name = "grid"

    def propose(self, image: Image.Image, limit: int) -> list[Box]:
        return grid_boxes(*image.size)[:limit]


def _contrast(pixels: np.ndarray, factor: float):
    """How much a box's mean colour differs from that of a ring around it (an object stands out
    from what surrounds it), from integral images of the scaled photo."""
    height, width = pixels.shape[:2]
    table = np.zeros((height + 1, width + 1, 3))
    table[1:, 1:] = pixels.cumsum(0).cumsum(1)

    def total(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]

    def score(box: Box) -> float:
        x0, y0 = int(box.left * factor), int(box.top * factor)
        x1, y1 = max(x0 + 1, min(width, int(np.ceil(box.right * factor)))), max(y0 + 1, min(height, int(np.ceil(box.bottom * factor))))
        pad_x, pad_y = max(1, (x1 - x0) // 4), max(1, (y1 - y0) // 4)
        ox0, oy0, ox1, oy1 = max(0, x0 - pad_x), max(0, y0 - pad_y), min(width, x1 + pad_x), min(height, y1 + pad_y)
        inner_area = (x1 - x0) * (y1 - y0)
        ring_area = (ox1 - ox0) * (oy1 - oy0) - inner_area
        if ring_area <= 0:
            return 0.0
        inner = total(x0, y0, x1, y1)
        ring = total(ox0, oy0, ox1, oy1) - inner
        return float(np.abs(inner / inner_area - ring / ring_area).sum())

    return score


class SegmentProposer(Proposer):
    """Felzenszwalb segments merged by colour, then grid windows; no weights."""

    name = "segments"

    def __init__(self, scales: tuple[int, ...] = (80, 200, 500), min_area: float = 0.001):
        self.scales, self.min_area = scales, min_area

    def propose(self, image: Image.Image, limit: int) -> list[Box]:
        width, height = image.size
        factor = WORK_SIDE / max(width, height)
        small = image.convert("RGB").resize((max(1, round(width * factor)), max(1, round(height * factor))),
                                            Image.BILINEAR)
        pixels = np.asarray(small, dtype=np.float32) / 255.0
        candidates: list[Box] = []
        for scale in self.scales:
            candidates += [box for _, box in self._merged_boxes(pixels, scale, factor, width, height)
                           if box.area >= self.min_area * width * height]
        contrast, whole = _contrast(pixels, factor), width * height
        # Contrast with the surroundings, weighted towards bigger boxes (the square root of the share
        # of the photo: the best sum of medium and large recall on the tuning photos).
        boxes = sorted(set(candidates), key=lambda box: -contrast(box) * (box.area / whole) ** 0.5)
        boxes += grid_boxes(width, height)
        return suppress_overlaps(boxes, limit)

    @staticmethod
    def _merged_boxes(pixels: np.ndarray, scale: int, factor: float, width: int, height: int):
        from skimage.segmentation import felzenszwalb

        labels = felzenszwalb(pixels, scale=scale, sigma=0.8, min_size=max(10, scale // 4))
        count = int(labels.max()) + 1
        flat = labels.ravel()
        ys, xs = np.divmod(np.arange(flat.size), labels.shape[1])
        sizes = np.bincount(flat, minlength=count).astype(np.float64)
        colours = np.stack([np.bincount(flat, weights=pixels[..., c].ravel(), minlength=count)
                            for c in range(3)], axis=1) / np.maximum(sizes, 1)[:, None]
        bounds = np.stack([np.full(count, labels.shape[1]), np.full(count, labels.shape[0]),
                           np.zeros(count), np.zeros(count)], axis=1)
        np.minimum.at(bounds[:, 0], flat, xs)
        np.minimum.at(bounds[:, 1], flat, ys)
        np.maximum.at(bounds[:, 2], flat, xs + 1)
        np.maximum.at(bounds[:, 3], flat, ys + 1)
        # Neighbouring segments (right and below), merged greedily, closest colours first.
        pairs = set()
        for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
            differ = a != b
            pairs.update(zip(np.minimum(a[differ], b[differ]).tolist(), np.maximum(a[differ], b[differ]).tolist()))
        parent = list(range(count))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        found = [(0.0, bounds[i].copy()) for i in range(count)]  # rank: 0 for a segment, then merge order
        order = sorted(pairs, key=lambda p: float(np.abs(colours[p[0]] - colours[p[1]]).sum()))
        for step, (a, b) in enumerate(order):
            ra, rb = root(a), root(b)
            if ra == rb:
                continue
            parent[rb] = ra
            bounds[ra, :2] = np.minimum(bounds[ra, :2], bounds[rb, :2])
            bounds[ra, 2:] = np.maximum(bounds[ra, 2:], bounds[rb, 2:])
            found.append((1.0 + step / max(len(order), 1), bounds[ra].copy()))
        boxes = []
        for rank, (x0, y0, x1, y1) in found:
            box = Box(int(x0 / factor), int(y0 / factor), min(width, int(np.ceil(x1 / factor))),
                      min(height, int(np.ceil(y1 / factor))))
            if box.area and box.area < 0.9 * width * height:
                boxes.append((rank, box))
        return boxes


class SelectiveSearchProposer(Proposer):
    """OpenCV's selective search (fast mode), its boxes ranked as ``segments`` ranks its own, then
    grid windows; needs ``opencv-contrib-python-headless`` (``cv2.ximgproc``), which is not a
    requirement: it was measured against ``segments`` and not chosen (README, "Objects and regions")."""

    name = "selective-search"

    def propose(self, image: Image.Image, limit: int) -> list[Box]:
        import cv2

        if not hasattr(cv2, "ximgproc"):
            from ..errors import RetrievalError

            raise RetrievalError("REGION_PROPOSER=selective-search needs OpenCV's contributed modules: "
                                 "pip install opencv-contrib-python-headless (or use segments).")
        width, height = image.size
        factor = WORK_SIDE / max(width, height)
        small = image.convert("RGB").resize((max(1, round(width * factor)), max(1, round(height * factor))),
                                            Image.BILINEAR)
        search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(np.ascontiguousarray(np.asarray(small)[:, :, ::-1]))
        search.switchToSelectiveSearchFast()
        boxes = {Box(int(x / factor), int(y / factor), min(width, round((x + w) / factor)),
                     min(height, round((y + h) / factor))) for x, y, w, h in search.process()}
        # Ranked as ``segments`` ranks its own (OpenCV's order is the hierarchy's, small parts first).
        contrast, whole = _contrast(np.asarray(small, dtype=np.float32) / 255.0, factor), width * height
        ranked = sorted(boxes, key=lambda box: (-contrast(box) * (box.area / whole) ** 0.5, box.to_list()))
        return suppress_overlaps(ranked + grid_boxes(width, height), limit)


PROPOSERS = {"segments": SegmentProposer, "grid": GridProposer, "selective-search": SelectiveSearchProposer}
