"""Finding an object inside another photo: held-out pasted scenes, with and without box refinement.

Objects are cut from the photos of one folder by their COCO boxes (``--objects``, e.g. train2017)
and pasted into photos of another (``--scenes``, e.g. val2017: other people's photos), each covering
10-25% of its scene at a random place; the scenes' other photos stay as they are, as distractors.
Every photo is indexed with regions by the product (``Engine.index(regions=True)``); each object is
then the image query that should find its scene. Reported: the share of queries whose scene comes
first and within the first five, and the share whose returned box overlaps the pasted area with
IoU >= 0.5 (and the mean IoU), with the box found anew at query time where the query picture sits
(``regions/refine.py``) and as stored; and the cost per query of each. Nothing here tuned the
proposer, the region ranking or the matching's constants.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import RetrievalError
from ..regions.proposals import Box
from .box_recall import coco_boxes
from .report import show_and_keep

AREA_SHARE = (0.10, 0.25)  # of the scene an object covers
MIN_OBJECT_SIDE = 48  # pixels of the object's own box: smaller ones are cut too blurry to be found


def make_scenes(objects: list[tuple[Path, list]], scenes: list[Path], count: int, out: Path,
                seed: int) -> list[dict[str, Any]]:
    """``count`` scenes, each one photo of ``scenes`` with one object of ``objects`` pasted in:
    [{"scene": path written, "query": the object's own picture, "box": where it went}]."""
    rng = random.Random(seed)
    cut = [(path, box) for path, boxes in objects for box, _size in boxes
           if min(box.right - box.left, box.bottom - box.top) >= MIN_OBJECT_SIDE]
    if len(cut) < count or len(scenes) < count:
        raise RetrievalError(f"Not enough objects ({len(cut)}) or scenes ({len(scenes)}) for {count} pasted scenes.")
    picked, hosts = rng.sample(cut, count), rng.sample(scenes, count)
    made = []
    for number, ((source, box), host) in enumerate(zip(picked, hosts)):
        with Image.open(source) as opened:
            piece = opened.convert("RGB").crop((box.left, box.top, box.right, box.bottom))
        with Image.open(host) as opened:
            scene = opened.convert("RGB")
        share = rng.uniform(*AREA_SHARE)
        scale = (share * scene.width * scene.height / (piece.width * piece.height)) ** 0.5
        size = (max(8, min(scene.width, round(piece.width * scale))), max(8, min(scene.height, round(piece.height * scale))))
        piece = piece.resize(size, Image.Resampling.LANCZOS)
        left, top = rng.randint(0, scene.width - size[0]), rng.randint(0, scene.height - size[1])
        scene.paste(piece, (left, top))
        scene_path, query_path = out / "scenes" / f"pasted-{number:03d}.jpg", out / "queries" / f"object-{number:03d}.png"
        scene.save(scene_path, quality=92)
        piece.save(query_path)
        made.append({"scene": scene_path, "query": query_path, "box": Box(left, top, left + size[0], top + size[1]),
                     "host": host})
    return made


def evaluate(objects_annotations: Path, objects_root: Path, scenes_root: Path, settings, count: int = 60,
             seed: int = 0) -> dict[str, Any]:
    from ..engine import Engine
    from ..search.searcher import QueryTerm, SearchRequest, Searcher

    objects = coco_boxes(objects_annotations, objects_root)
    hosts = sorted(p for p in scenes_root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    with tempfile.TemporaryDirectory(prefix="pasted-") as work:
        work = Path(work)
        (work / "scenes").mkdir()
        (work / "queries").mkdir()
        made = make_scenes(objects, hosts, count, work, seed)
        used = {item["host"] for item in made}
        distractors = [p for p in hosts if p not in used]
        for path in distractors:
            (work / "scenes" / path.name).symlink_to(path.resolve())
        engine = Engine(settings.with_overrides(chroma_path=work / "store", collection="pasted"))
        engine.index([work / "scenes"], regions=True)
        plain = Searcher(engine.store, engine._embed_term)  # the same search, boxes as stored
        rows: dict[str, list] = {"refined": [], "stored": []}
        seconds = {"refined": 0.0, "stored": 0.0}
        for item in made:
            request = SearchRequest(terms=[QueryTerm("image", str(item["query"]))], k=5)
            for name, search in (("stored", plain.search), ("refined", engine.search)):
                started = time.perf_counter()
                results = search(request)
                seconds[name] += time.perf_counter() - started
                rank = next((n for n, r in enumerate(results, 1) if r.path == str(item["scene"])), None)
                found = results[rank - 1] if rank else None
                iou = Box(*found.matched_box).iou(item["box"]) if found and found.matched_box else 0.0
                rows[name].append((rank, iou))
    figures = {"scenes": count, "distractors": len(distractors), "model": settings.model,
               "regions_per_photo": settings.regions_per_photo, "seed": seed}
    for name, found in rows.items():
        figures[name] = {"rank1": _share(r == 1 for r, _ in found), "rank5": _share(r is not None for r, _ in found),
                         "iou_0.5": _share(iou >= 0.5 for _, iou in found),
                         "mean_iou_when_found": round(sum(iou for r, iou in found if r) / max(1, sum(1 for r, _ in found if r)), 3),
                         "ms_per_query": round(1000 * seconds[name] / count, 1)}
    return figures


def _share(flags) -> float:
    flags = list(flags)
    return round(sum(flags) / len(flags), 3) if flags else 0.0


def table(figures: dict[str, Any]) -> str:
    lines = [f"Pasted scenes: {figures['scenes']} objects pasted into other photos, {figures['distractors']} "
             f"distractors; model {figures['model']}; seed {figures['seed']}", "",
             "| boxes | scene first | in the first 5 | box IoU >= 0.5 | mean IoU (scene found) | ms per query |",
             "|---|---|---|---|---|---|"]
    for name, label in (("stored", "as stored"), ("refined", "picture located at query time")):
        row = figures[name]
        lines.append(f"| {label} | {row['rank1']:.3f} | {row['rank5']:.3f} | {row['iou_0.5']:.3f} | "
                     f"{row['mean_iou_when_found']:.3f} | {row['ms_per_query']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .random_model import add_model_arguments, evaluated_settings

    parser = argparse.ArgumentParser(prog="python scripts/evaluate_regions.py pasted",
                                     description="Objects of one photo folder pasted into the photos of another: "
                                                 "is the scene found, and the box on the object?")
    parser.add_argument("annotations", type=Path, help="COCO instances_*.json of the objects' photos")
    parser.add_argument("objects", type=Path, help="the folder of the objects' photos (e.g. train2017)")
    parser.add_argument("scenes", type=Path, help="the folder of the photos to paste into (e.g. val2017)")
    add_model_arguments(parser)
    parser.add_argument("--count", type=int, default=60, help="pasted scenes (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        with evaluated_settings(args) as settings:
            figures = evaluate(args.annotations, args.objects, args.scenes, settings, args.count, args.seed)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    show_and_keep(table(figures), figures, args.out)
    return 0
