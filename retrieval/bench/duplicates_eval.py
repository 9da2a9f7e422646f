"""How well near-duplicate grouping works, on copies made from real photos.

From each real photo: five or six copies a library really holds (resized to 50%,
JPEG quality 40, 5% cropped off the edges, brightness +15%, re-encoded as PNG and
as WebP), which belong in the photo's group; and two other framings of the same
scene (the left and the right 70% of it, as a second shot from a step aside
would be), which are distinct photos and must stay out of it. Every signal is
scored by pairwise precision and recall of its groups over all photos and copies.

The photos are split in two by name: thresholds are chosen on the first half,
the figures reported on the second (held out).
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable

from PIL import Image, ImageEnhance

from .report import show_and_keep
from ..errors import RetrievalError
from ..photos.files import walk_images
from ..photos.near_duplicates import group_indices

COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {}


def _copy(name):
    def register(fn):
        COPIES[name] = fn
        return fn
    return register


def _reencoded(image: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@_copy("resize 50%")
def _half(image):
    return _reencoded(image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.LANCZOS),
                      "JPEG", quality=90)


@_copy("JPEG quality 40")
def _jpeg40(image):
    return _reencoded(image, "JPEG", quality=40)


@_copy("crop 5%")
def _crop(image):
    dx, dy = round(image.width * 0.025), round(image.height * 0.025)  # 5% of each side in all
    return _reencoded(image.crop((dx, dy, image.width - dx, image.height - dy)), "JPEG", quality=90)


@_copy("brightness +15%")
def _bright(image):
    return _reencoded(ImageEnhance.Brightness(image).enhance(1.15), "JPEG", quality=90)


@_copy("PNG")
def _png(image):
    return _reencoded(image, "PNG")


@_copy("WebP")
def _webp(image):
    return _reencoded(image, "WEBP", quality=80)


def other_shots(image: Image.Image) -> list[Image.Image]:
    """Two other framings of the scene in the camera's proportions (its top-left and bottom-right
    70%, as a second shot a step aside and closer): the shape rule can't tell them from a copy."""
    width, height = image.size
    return [image.crop((0, 0, round(width * 0.7), round(height * 0.7))),
            image.crop((round(width * 0.3), round(height * 0.3), width, height))]


def _signals():
    import imagehash

    return {
        "phash (DCT)": lambda im: str(imagehash.phash(im)),
        "dhash (gradient)": lambda im: str(imagehash.dhash(im)),
        "average hash": lambda im: str(imagehash.average_hash(im)),
    }


@dataclass
class Labelled:
    group: list[int]  # true group of each picture (a photo and its copies share one)
    kind: list[str]  # "photo", a copy's name, or "other shot"
    hashes: dict[str, list[str]]  # signal -> hash of each picture
    seconds: dict[str, float]  # signal -> hashing time per picture
    shapes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of each picture


def build(photos: list[Path]) -> Labelled:
    signals = _signals()
    group, kind, pictures = [], [], []
    for number, path in enumerate(photos):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        for name, picture in [("photo", image)] + [(n, fn(image)) for n, fn in COPIES.items()]:
            group.append(number)
            kind.append(name)
            pictures.append(picture)
        for shot, picture in enumerate(other_shots(image)):
            group.append(len(photos) * (shot + 1) + number)  # each a photo of its own
            kind.append("other shot")
            pictures.append(picture)
    hashes, seconds = {}, {}
    for name, fn in signals.items():
        started = time.perf_counter()
        hashes[name] = [fn(p) for p in pictures]
        seconds[name] = (time.perf_counter() - started) / len(pictures)
    return Labelled(group, kind, hashes, seconds, [p.size for p in pictures])


def pair_scores(groups: list[list[int]], truth: list[int]) -> tuple[float, float]:
    """Pairwise precision and recall of found groups against the true ones."""
    found = {pair for members in groups for pair in combinations(sorted(members), 2)}
    by_truth: dict[int, list[int]] = {}
    for i, g in enumerate(truth):
        by_truth.setdefault(g, []).append(i)
    true = {pair for members in by_truth.values() for pair in combinations(members, 2)}
    hits = len(found & true)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(true) if true else 1.0
    return precision, recall


def _subset(labelled: Labelled, keep: Callable[[int], bool]):
    """(true groups, hashes by signal, shapes) of the pictures whose group ``keep`` keeps."""
    index = [i for i in range(len(labelled.group)) if keep(labelled.group[i])]
    return ([labelled.group[i] for i in index], {s: [h[i] for i in index] for s, h in labelled.hashes.items()},
            [labelled.shapes[i] for i in index])


def _false_pairs(labelled: Labelled, signal: str, threshold: int, keep: Callable[[int], bool]) -> dict:
    """On a library without copies (the held-out photos themselves, each a different photo):
    how many pairs are grouped, by the hash alone and with the shape rule."""
    index = [i for i in range(len(labelled.group)) if labelled.kind[i] == "photo" and keep(labelled.group[i])]
    hashes, shapes = [labelled.hashes[signal][i] for i in index], [labelled.shapes[i] for i in index]
    pairs = len(index) * (len(index) - 1) // 2

    def grouped(groups: list[list[int]]) -> int:
        return sum(len(members) * (len(members) - 1) // 2 for members in groups)

    hash_only, with_shape = grouped(group_indices(hashes, threshold)), grouped(group_indices(hashes, threshold, shapes))
    return {"photos": len(index), "pairs": pairs, "false_pairs_hash_only": hash_only,
            "false_pairs_with_shape_rule": with_shape,
            "false_pair_rate": with_shape / pairs if pairs else 0.0}


def evaluate(photos: list[Path], thresholds=range(0, 25)) -> dict:
    if len(photos) < 4:
        raise RetrievalError("The duplicate evaluation needs at least 4 photos.")
    photos = sorted(photos)
    labelled = build(photos)
    half = len(photos) // 2

    def in_tuning(g: int) -> bool:
        return g % len(photos) < half

    tune_truth, tune_hashes, tune_shapes = _subset(labelled, in_tuning)
    test_truth, test_hashes, test_shapes = _subset(labelled, lambda g: not in_tuning(g))
    report = {"photos": len(photos), "pictures": len(labelled.group), "tuning_photos": half,
              "held_out_photos": len(photos) - half, "copies": list(COPIES), "signals": {}}
    for signal in labelled.hashes:
        sweep = []
        for threshold in thresholds:
            p, r = pair_scores(group_indices(tune_hashes[signal], threshold, tune_shapes), tune_truth)
            sweep.append({"threshold": threshold, "precision": p, "recall": r, "f1": _f1(p, r)})
        best = max(sweep, key=lambda row: (row["f1"], -row["threshold"]))
        precision, recall = pair_scores(group_indices(test_hashes[signal], best["threshold"], test_shapes),
                                        test_truth)
        report["signals"][signal] = {
            "threshold": best["threshold"], "tuning": {"precision": best["precision"], "recall": best["recall"]},
            "held_out": {"precision": precision, "recall": recall},
            "per_copy_recall": _per_copy_recall(labelled, signal, best["threshold"], lambda g: not in_tuning(g)),
            "ms_per_picture": labelled.seconds[signal] * 1000, "sweep": sweep,
            "copy_free": _false_pairs(labelled, signal, best["threshold"], lambda g: not in_tuning(g)),
        }
    return report


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _per_copy_recall(labelled: Labelled, signal: str, threshold: int, keep) -> dict[str, float]:
    """For each kind of copy: the share of held-out copies grouped with their photo."""
    index = [i for i in range(len(labelled.group)) if keep(labelled.group[i])]
    hashes = [labelled.hashes[signal][i] for i in index]
    together: dict[int, int] = {}
    for number, members in enumerate(group_indices(hashes, threshold, [labelled.shapes[i] for i in index])):
        for m in members:
            together[index[m]] = number
    photo_of = {labelled.group[i]: i for i in index if labelled.kind[i] == "photo"}
    shares = {}
    for name in COPIES:
        copies = [i for i in index if labelled.kind[i] == name]
        grouped = sum(1 for i in copies if i in together and together.get(photo_of[labelled.group[i]]) == together[i])
        shares[name] = grouped / len(copies) if copies else 0.0
    return shares


def table(report: dict) -> str:
    lines = [f"{report['photos']} real photos -> {report['pictures']} pictures (each photo, "
             f"{len(report['copies'])} copies, 2 other shots); thresholds tuned on {report['tuning_photos']} photos, "
             f"figures on the {report['held_out_photos']} held out",
             "", "signal           | bits | precision | recall | ms/photo",
             "-----------------+------+-----------+--------+---------"]
    for name, row in report["signals"].items():
        lines.append(f"{name:<16} | {row['threshold']:>4} | {row['held_out']['precision']:>9.3f} | "
                     f"{row['held_out']['recall']:>6.3f} | {row['ms_per_picture']:>8.2f}")
    lines += ["", "copy-free library (the held-out photos alone, no copies): pairs wrongly grouped"]
    for name, row in report["signals"].items():
        free = row["copy_free"]
        lines.append(f"  {name}: {free['false_pairs_with_shape_rule']} of {free['pairs']:,} pairs "
                     f"({free['photos']} photos; {free['false_pairs_hash_only']} by the hash alone, without the "
                     "shape rule)")
    lines += ["", "held-out copies grouped with their photo:"]
    for name, row in report["signals"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in row["per_copy_recall"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python scripts/evaluate_duplicates.py",
                                     description="Precision and recall of near-duplicate grouping on copies "
                                                 "made from real photos.")
    parser.add_argument("photos", type=Path, nargs="+", help="folders of real photos")
    parser.add_argument("--limit", type=int, help="use at most this many photos")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        photos = sorted(walk_images(args.photos))[:args.limit]
        report = evaluate(photos)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    show_and_keep(table(report), report, args.out)
    return 0
