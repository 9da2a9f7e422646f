"""Where a query picture sits in a photo found by one of its regions.

A stored region is one of a few proposals cut when the photo was indexed, and the object the
query shows rarely fills it exactly. When the query is a picture and the photo holds that very
picture (a crop, a pasted or a re-framed copy, the commonest reason to search by a picture), its
place is found by normalised cross-correlation (OpenCV's ``matchTemplate``) at a few sizes around
the matched region's, on both taken small; a match this strong is the picture itself, and its box
replaces the region's. Anything weaker leaves the region's box as it was.

Refining the box with the model instead (crops around the region embedded and scored against the
query, edges moved while the score rose) was measured on held-out pasted scenes with random
weights and made boxes worse at about 16 times the cost (README, "Objects and regions"), so it is not
done.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .proposals import Box

MAX_LOCATED = 5  # photos of a page whose box is found anew for a picture query (each costs a decode)
MATCH_FLOOR = 0.8  # normalised cross-correlation: above this, the picture is there
WORK_SIDE = 480  # the photo's longer side while matching
COARSE_SCALES = np.geomspace(0.5, 2.0, 13)  # the query's width, as a share of the matched region's
FINE_SCALES = np.geomspace(0.9, 1.1, 9)  # then around the best coarse width
BLUR = 1.5  # pixels of the matching copy
MIN_SIDE = 12  # pixels of the scaled query: smaller says nothing


def box_the_picture(results, picture: Image.Image, *, draft: tuple[int, int], max_file_bytes: int,
                    max_image_pixels: int) -> None:
    """The boxes of the first ``MAX_LOCATED`` results found by a region (``SearchResult``s),
    moved to where ``picture`` sits in their photo when it is there (each photo decoded at about
    ``draft``, as its regions were cut)."""
    from ..photos.images import ImageRejected, decode_image, read_file_bytes

    boxed = [r for r in results if r.matched_box is not None and r.metadata.get("path")]
    for result in boxed[:MAX_LOCATED]:
        path = Path(result.metadata["path"])
        try:
            decoded = decode_image(read_file_bytes(path, max_file_bytes), max_image_pixels, draft=draft,
                                   name=path.name)
        except (OSError, ImageRejected):
            continue  # the file moved or changed since: the stored box stands
        found = locate(picture, decoded.image, decoded.width, decoded.height, Box(*result.matched_box))
        if found is not None:
            result.matched_box = found[0].to_list()


def locate(picture: Image.Image, photo: Image.Image, width: int, height: int, region: Box) -> tuple[Box, float] | None:
    """The box (pixels of the ``width`` x ``height`` upright photo, of which ``photo`` is a
    decoded copy at any size) where ``picture`` sits, and how well it matches, when it matches at
    least ``MATCH_FLOOR``; ``region``, the box that matched, sets the sizes tried: a coarse sweep,
    then a fine one around the best (a copy's size is rarely one of a few)."""
    factor = WORK_SIDE / max(photo.size)
    scene = _grey(photo.resize((max(1, round(photo.width * factor)), max(1, round(photo.height * factor))),
                               Image.BILINEAR))
    to_scene = scene.shape[1] / width  # full-photo pixels to the matching copy's
    region_width = (region.right - region.left) * to_scene
    coarse = _best(picture, scene, [region_width * s for s in COARSE_SCALES])
    if coarse is None:
        return None
    fine = _best(picture, scene, [coarse[2] * s for s in FINE_SCALES]) or coarse
    score, (x, y, w, h) = fine[0], fine[1]
    if score < MATCH_FLOOR:
        return None
    return Box(int(x / to_scene), int(y / to_scene), min(width, round((x + w) / to_scene)),
               min(height, round((y + h) / to_scene))), score


def _best(picture: Image.Image, scene: np.ndarray, widths) -> tuple[float, tuple[int, int, int, int], float] | None:
    """The best match of ``picture`` at each of ``widths`` (pixels of ``scene``): (score, (x, y, w,
    h), width), or None when no width fits."""
    import cv2

    best = None
    for wanted in widths:
        w = int(round(wanted))
        h = int(round(w * picture.height / picture.width))
        if min(w, h) < MIN_SIDE or w > scene.shape[1] or h > scene.shape[0]:
            continue
        template = _grey(picture.resize((w, h), Image.BILINEAR))
        if float(template.std()) < 1e-3:
            continue  # a flat picture matches anything
        _low, score, _where_low, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(scene, template, cv2.TM_CCOEFF_NORMED))
        if best is None or score > best[0]:
            best = (float(score), (x, y, w, h), wanted)
    return best


def _grey(image: Image.Image) -> np.ndarray:
    """Grey levels, softened a little: a copy a few percent larger or smaller still matches."""
    import cv2

    return cv2.GaussianBlur(np.asarray(image.convert("L"), dtype=np.float32), (0, 0), BLUR)
