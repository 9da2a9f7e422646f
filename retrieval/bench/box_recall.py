"""How many real objects a proposer finds: box recall on COCO's human boxes.

For each photo with COCO instance annotations, a proposer's first N boxes are
compared with the photo's object boxes; an object is found when some box overlaps
it with IoU >= 0.5. Recall is reported for COCO's small (< 32x32 px), medium
(< 96x96) and large objects, at each N, with the proposer's cost per photo.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from PIL import Image

from .report import show_and_keep
from ..errors import RetrievalError
from ..regions.choice import load_proposer
from ..regions.proposals import PROPOSERS, Box

SIZES = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, float("inf")))


def coco_boxes(annotations: Path, images: Path) -> list[tuple[Path, list[tuple[Box, str]]]]:
    """(photo, [(object box, size class)]) for each annotated photo found under ``images``."""
    data = json.loads(Path(annotations).read_text())
    files = {image["id"]: image["file_name"] for image in data["images"]}
    by_image: dict[int, list] = {}
    for note in data["annotations"]:
        if note.get("iscrowd"):
            continue
        x, y, w, h = note["bbox"]
        size = next(name for name, low, high in SIZES if low <= note["area"] < high)
        by_image.setdefault(note["image_id"], []).append((Box(int(x), int(y), int(x + w), int(y + h)), size))
    found = []
    for image_id, boxes in sorted(by_image.items()):
        path = Path(images) / files[image_id]
        if path.is_file():
            found.append((path, boxes))
    return found


def evaluate(photos: list[tuple[Path, list[tuple[Box, str]]]], proposers: list[str],
             ns: tuple[int, ...] = (8, 16, 32)) -> dict:
    if not photos:
        raise RetrievalError("No annotated photos were found: check the annotations file and the images folder.")
    report = {"photos": len(photos), "objects": {name: sum(1 for _, boxes in photos for _, s in boxes if s == name)
                                                for name, _, _ in SIZES}, "proposers": {}}
    for name in proposers:
        proposer = load_proposer(name)
        hits = {n: {size: 0 for size, _, _ in SIZES} for n in ns}
        seconds = 0.0
        for path, objects in photos:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
            started = time.perf_counter()
            boxes = proposer.propose(image, max(ns))
            seconds += time.perf_counter() - started
            for n in ns:
                for target, size in objects:
                    if any(box.iou(target) >= 0.5 for box in boxes[:n]):
                        hits[n][size] += 1
        report["proposers"][Path(name).name if Path(name).is_dir() else name] = {
            "ms_per_photo": 1000 * seconds / len(photos),
            "recall": {str(n): {size: (hits[n][size] / report["objects"][size] if report["objects"][size] else None)
                                for size, _, _ in SIZES} for n in ns}}
    return report


def table(report: dict) -> str:
    lines = [f"{report['photos']} photos; objects: " + ", ".join(f"{v} {k}" for k, v in report["objects"].items()),
             "", "proposer | N  | small | medium | large | ms/photo", "---------+----+-------+--------+-------+---------"]
    for name, row in report["proposers"].items():
        for n, recall in row["recall"].items():
            cells = " | ".join(f"{recall[s]:.3f}" if recall[s] is not None else "  -  " for s, _, _ in SIZES)
            lines.append(f"{name[:24]:<8} | {n:>2} | {cells} | {row['ms_per_photo']:.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python scripts/evaluate_regions.py",
                                     description="Box recall of region proposers on COCO's object boxes.")
    parser.add_argument("annotations", type=Path, help="COCO instances_*.json")
    parser.add_argument("images", type=Path, help="the folder of its photos")
    parser.add_argument("--proposers", default="segments,grid",
                        help=f"any of {','.join(PROPOSERS)} (selective-search needs opencv-contrib-python-headless), "
                             "or a SAM model by Hugging Face id or folder (default segments,grid)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        names = [n.strip() for n in args.proposers.split(",") if n.strip()]
        if not args.annotations.is_file():
            raise RetrievalError(f"{args.annotations} is not a COCO annotations file.")
        report = evaluate(coco_boxes(args.annotations, args.images), names)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    show_and_keep(table(report), report, args.out)
    return 0
