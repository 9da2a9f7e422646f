"""Near-duplicate photos: resized, recompressed, re-encoded, lightly cropped or edited copies.

The signal is a perceptual hash (DCT hash, ``imagehash.phash``, 64 bits) of each
photo, stored as ``phash`` when it is indexed; two photos are near-duplicates when
their hashes differ in at most ``threshold`` bits, and groups are the connected
sets of such pairs. Chosen by measurement (``scripts/evaluate_duplicates.py``, in
the README): on copies made from real photos it and the gradient hash both group
every copy and keep other shots apart, and it does so over the widest range of
thresholds (8-13 bits), so the default is far from either edge. It is independent
of the model: a collection keeps its groups when it changes models.

The hash is taken of the photo squeezed to a square, so it ignores shape: a
portrait and a landscape of similar tones can hash alike. A copy keeps its
photo's proportions (resized, recompressed, lightly cropped), so two photos whose
width-to-height ratios differ by more than ``MAX_ASPECT_CHANGE`` are never paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

HASH_FIELD = "phash"
DEFAULT_THRESHOLD = 12  # bits of 64: the evaluation's choice, in the middle of a wide safe range
MAX_ASPECT_CHANGE = 1.2  # a 5% crop on two sides changes none; 4:3 against 3:4 is 1.78
_CHUNK = 2048


def same_shape(a, b) -> bool:
    """Whether two (width, height) pairs could be one photo and its copy; unknown shapes pass."""
    if not a or not b or not all(a) or not all(b):
        return True
    ratio = (a[0] / a[1]) / (b[0] / b[1])
    return max(ratio, 1 / ratio) <= MAX_ASPECT_CHANGE


def shape_of(metadata: dict):
    width, height = metadata.get("width"), metadata.get("height")
    return (width, height) if isinstance(width, (int, float)) and isinstance(height, (int, float)) else None


def _dct_rows(size: int, kept: int) -> np.ndarray:
    """The first ``kept`` rows of the (unnormalised) DCT-II of ``size`` points, as scipy computes it."""
    k, n = np.arange(kept)[:, None], np.arange(size)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))


_HASH_SIDE = 8
_DCT = _dct_rows(4 * _HASH_SIDE, _HASH_SIDE)


def perceptual_hash(image: Image.Image) -> str:
    """The photo's DCT hash as 16 hex digits: ``imagehash.phash``'s bits, with its two DCTs written
    as one product of small matrices, as importing scipy for them cost 0.25 s of CPU in every
    indexing run (2 cores of an AMD EPYC)."""
    import imagehash

    side = 4 * _HASH_SIDE
    pixels = np.asarray(image.convert("RGB").convert("L").resize((side, side), Image.LANCZOS), dtype=np.float64)
    low = _DCT @ pixels @ _DCT.T  # the hash's 8 x 8 lowest frequencies
    return str(imagehash.ImageHash(low > np.median(low)))


def _as_bits(hashes: Sequence[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def close_pairs(hashes: Sequence[str], threshold: int) -> Iterable[tuple[int, int]]:
    """Index pairs (i < j) whose hashes differ in at most ``threshold`` bits."""
    bits = _as_bits(hashes)
    for start in range(0, len(bits), _CHUNK):
        block = bits[start:start + _CHUNK]
        for other in range(start, len(bits), _CHUNK):  # only j >= i; blocks keep memory at 32 MB
            distances = np.bitwise_count(block[:, None] ^ bits[None, other:other + _CHUNK])
            rows, cols = np.nonzero(distances <= threshold)
            for i, j in zip(rows + start, cols + other):
                if i < j:
                    yield int(i), int(j)


def group_indices(hashes: Sequence[str], threshold: int = DEFAULT_THRESHOLD,
                  shapes: Sequence | None = None) -> list[list[int]]:
    """Groups of two or more near-identical photos (positions in ``hashes``), biggest first;
    with ``shapes`` ((width, height) of each), pairs of different proportions are refused."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in close_pairs(hashes, threshold):
        if shapes is not None and not same_shape(shapes[i], shapes[j]):
            continue
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        groups.setdefault(root(i), []).append(i)
    found = [members for members in groups.values() if len(members) > 1]
    found.sort(key=lambda members: (-len(members), members[0]))
    return found


@dataclass
class DuplicateGroup:
    ids: list[str]  # the first is the one to keep: the largest photo
    metadata: list[dict]

    def to_dict(self) -> dict:
        return {"size": len(self.ids),
                "photos": [{"id": i, **{k: m.get(k) for k in ("path", "url", "width", "height", "size", "phash")
                                        if m.get(k) is not None}}
                           for i, m in zip(self.ids, self.metadata)]}


def find_groups(records: Iterable, threshold: int = DEFAULT_THRESHOLD) -> tuple[list[DuplicateGroup], int]:
    """Near-duplicate groups of stored records, and how many records have no hash yet."""
    hashed, unhashed = [], 0
    for record in records:
        if record.metadata.get(HASH_FIELD):
            hashed.append(record)
        else:
            unhashed += 1
    groups = []
    for members in group_indices([r.metadata[HASH_FIELD] for r in hashed], threshold,
                                 [shape_of(r.metadata) for r in hashed]):
        chosen = sorted((hashed[i] for i in members),
                        key=lambda r: (-(r.metadata.get("width") or 0) * (r.metadata.get("height") or 0),
                                       -(r.metadata.get("size") or 0), r.metadata.get("path") or r.id))
        groups.append(DuplicateGroup([r.id for r in chosen], [r.metadata for r in chosen]))
    return groups, unhashed
