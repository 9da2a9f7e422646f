"""Regions from Segment Anything (SAM) through ``transformers``: automatic mask generation
(a grid of point prompts over the photo) and each kept mask's bounding box.

Loaded by Hugging Face id or folder like the search model (``facebook/sam-vit-base``,
or a lighter SAM checkpoint in the same format); a model that can't be had is a
clear error. Masks are filtered by the model's predicted quality and stability,
overlaps suppressed, and the biggest confident ones kept first.
"""

from __future__ import annotations

import threading

import numpy as np

from PIL import Image

from ..errors import RetrievalError, first_line
from .proposals import Box, Proposer, suppress_overlaps

POINTS_PER_SIDE = 16  # 256 point prompts: SAM's default is 32 (1,024), four times the decoder work
MIN_AREA_SHARE = 0.002  # masks smaller than this share of the photo are specks


class SamProposer(Proposer):
    """SAM's automatic mask generation, written out (``transformers``' own pipeline needs
    torchvision for its suppression step; boxes need no full-size masks): the photo embedded
    once, a grid of point prompts decoded in batches, each point's best of SAM's three
    masks kept when its predicted quality and stability pass, and its box read from the
    low-resolution mask."""

    name = "sam"

    def __init__(self, model, processor, pred_iou_thresh: float = 0.86, stability_score_thresh: float = 0.9,
                 points_per_side: int = POINTS_PER_SIDE):
        self.model, self.processor = model.eval(), processor
        self.pred_iou_thresh, self.stability_score_thresh = pred_iou_thresh, stability_score_thresh
        self.points_per_side = points_per_side
        self._lock = threading.Lock()  # one photo at a time through the model

    @classmethod
    def load(cls, model: str, device: str = "cpu", threads: int | None = None) -> "SamProposer":
        from transformers import SamImageProcessorPil, SamModel  # Pillow's processor: no torchvision

        from ..embedder.loading import from_cache_or_hub, load_failure_message
        from ..embedder.runtime import resolve_device, use_threads

        placed = resolve_device(device)
        use_threads(threads)
        policy = dict(setting="REGION_PROPOSER", example="facebook/sam-vit-base", flag="--proposer")
        advice = " Or use --proposer segments, which needs no download."

        def load(source: str, **options):
            return SamImageProcessorPil.from_pretrained(source, **options), SamModel.from_pretrained(source, **options)

        try:
            processor, loaded = from_cache_or_hub(model, load, advice=advice, **policy)
        except OSError as exc:
            raise RetrievalError(load_failure_message(model, f"{first_line(exc)}.{advice}", **policy)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise RetrievalError(f"'{model}' is not a SAM model ({first_line(exc)}); --proposer takes segments, "
                                 "grid, or a SAM model.") from None
        if placed != "cpu":
            loaded = loaded.to(placed)
        return cls(loaded, processor)

    def propose(self, image: Image.Image, limit: int) -> list[Box]:
        import torch

        image = image.convert("RGB")
        width, height = image.size
        inputs = self.processor(images=image, return_tensors="pt")
        device = next(self.model.parameters()).device
        side = float(self.processor.size.get("longest_edge", 1024))
        scale = side / max(width, height)  # the photo as the model reads it, padded to side x side
        steps = (torch.arange(self.points_per_side, dtype=torch.float32) + 0.5) / self.points_per_side
        grid = torch.stack(torch.meshgrid(steps * width * scale, steps * height * scale, indexing="xy"), -1).reshape(-1, 2)
        found: list[tuple[float, Box]] = []
        with self._lock, torch.inference_mode():
            embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(device))
            for start in range(0, len(grid), 64):
                points = grid[start:start + 64].to(device)
                out = self.model(image_embeddings=embeddings, input_points=points[None, :, None, :],
                                 input_labels=torch.ones((1, len(points), 1), dtype=torch.long, device=device),
                                 multimask_output=True)
                found += self._boxes(out.pred_masks[0].float(), out.iou_scores[0].float(), side, scale,
                                     width, height)
        found.sort(key=lambda pair: -pair[0])
        return suppress_overlaps([box for _, box in found], limit)

    def _boxes(self, masks, quality, side: float, scale: float, width: int, height: int) -> list[tuple[float, Box]]:
        """For each point: its best mask's box (photo pixels) and rank, when it passes the filters."""
        import torch

        best = quality.argmax(-1)
        rows = torch.arange(len(best))
        logits, scores = masks[rows, best], quality[rows, best]  # (points, h, w), (points,)
        stable = (logits > 1.0).flatten(1).sum(-1) / (logits > -1.0).flatten(1).sum(-1).clamp(min=1)
        cell = side / logits.shape[-1]  # input pixels per mask pixel
        kept = []
        for logit, score, stability in zip(logits, scores.tolist(), stable.tolist()):
            if score < self.pred_iou_thresh or stability < self.stability_score_thresh:
                continue
            ys, xs = torch.nonzero(logit > 0, as_tuple=True)
            if not len(xs):
                continue
            box = Box(max(0, int(xs.min() * cell / scale)), max(0, int(ys.min() * cell / scale)),
                      min(width, int(np.ceil((xs.max() + 1) * cell / scale))),
                      min(height, int(np.ceil((ys.max() + 1) * cell / scale))))
            share = box.area / (width * height)
            if share >= MIN_AREA_SHARE:
                kept.append((score * share ** 0.25, box))
        return kept
