"""Region proposals and their box recall, on pictures whose objects the test placed."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw

from photos import random_photo
from retrieval.bench.box_recall import coco_boxes, evaluate, main
from retrieval.regions.proposals import Box, GridProposer, SegmentProposer, grid_boxes, suppress_overlaps


def test_box_arithmetic():
    a, b = Box(0, 0, 10, 10), Box(5, 0, 15, 10)
    assert a.area == 100 and a.iou(a) == 1.0
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 30, 30)) == 0.0
    kept = suppress_overlaps([a, Box(1, 0, 11, 10), b, Box(20, 20, 30, 30)], limit=3, max_iou=0.7)
    assert kept == [a, b, Box(20, 20, 30, 30)]
    windows = grid_boxes(640, 480)
    assert all(0 <= w.left < w.right <= 640 and 0 <= w.top < w.bottom <= 480 for w in windows)
    assert len(set(windows)) == len(windows) and GridProposer().propose(Image.new("RGB", (640, 480)), 5) == windows[:5]


def scene_with_objects(path):
    """A smooth background with three flat objects at known places (small, medium, large)."""
    image = random_photo(9, size=(640, 480))
    draw = ImageDraw.Draw(image)
    objects = {"small": Box(40, 40, 64, 64), "medium": Box(400, 60, 470, 130), "large": Box(120, 220, 360, 440)}
    for colour, box in zip(((250, 20, 20), (20, 20, 250), (20, 200, 20)), objects.values()):
        draw.rectangle((box.left, box.top, box.right - 1, box.bottom - 1), fill=colour)
    image.save(path)
    return objects


def test_the_segment_proposer_finds_clear_objects(tmp_path):
    objects = scene_with_objects(tmp_path / "scene.png")
    with Image.open(tmp_path / "scene.png") as opened:
        boxes = SegmentProposer().propose(opened.convert("RGB"), 32)
    assert 0 < len(boxes) <= 32
    for name in ("medium", "large"):
        assert max(box.iou(objects[name]) for box in boxes) >= 0.5, name


def test_box_recall_on_a_coco_style_file(tmp_path, capsys):
    objects = scene_with_objects(tmp_path / "scene.png")
    notes = [{"id": n, "image_id": 1, "bbox": [b.left, b.top, b.right - b.left, b.bottom - b.top],
              "area": b.area, "iscrowd": 0} for n, b in enumerate(objects.values())]
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps({"images": [{"id": 1, "file_name": "scene.png"}, {"id": 2, "file_name": "gone.png"}],
                                       "annotations": notes + [{"id": 9, "image_id": 2, "bbox": [0, 0, 9, 9],
                                                                "area": 81, "iscrowd": 0}]}))
    photos = coco_boxes(annotations, tmp_path)
    assert len(photos) == 1 and sorted(size for _, size in photos[0][1]) == ["large", "medium", "small"]
    report = evaluate(photos, ["segments", "grid"])
    assert report["objects"] == {"small": 1, "medium": 1, "large": 1}
    assert report["proposers"]["segments"]["recall"]["32"]["large"] == 1.0
    assert main([str(annotations), str(tmp_path), "--out", str(tmp_path / "r.json")]) == 0
    from tiny_models import build_tiny_sam

    sam = build_tiny_sam(tmp_path / "tiny-sam")  # a SAM model's recall is measured the same way
    assert main([str(annotations), str(tmp_path), "--proposers", f"segments,{sam}", "--out", str(tmp_path / "s.json")]) == 0
    assert set(json.loads((tmp_path / "s.json").read_text())["proposers"]) == {"segments", "tiny-sam"}
    assert main([str(annotations), str(tmp_path), "--proposers", str(tmp_path / "no-sam")]) == 1
    assert "segments" in capsys.readouterr().out and (tmp_path / "r.json").is_file()
    assert main([str(annotations), str(tmp_path), "--proposers", "sam"]) == 1


def test_selective_search_needs_the_contributed_opencv_or_says_so(tmp_path):
    import cv2

    from retrieval.errors import RetrievalError
    from retrieval.regions.choice import load_proposer

    scene_with_objects(tmp_path / "scene.png")
    proposer = load_proposer("selective-search")
    with Image.open(tmp_path / "scene.png") as opened:
        image = opened.convert("RGB")
    if hasattr(cv2, "ximgproc"):  # opencv-contrib-python-headless installed: it proposes
        assert 0 < len(proposer.propose(image, 16)) <= 16
    else:
        with pytest.raises(RetrievalError, match="opencv-contrib-python-headless"):
            proposer.propose(image, 16)


def test_pasted_scenes_evaluation_smoke_run(tiny_model, tmp_path):
    """Objects of one folder pasted into the photos of another, found with their box (``scripts/
    evaluate_regions.py pasted``)."""
    from retrieval.bench import pasted_scenes

    objects, scenes = tmp_path / "objects", tmp_path / "scenes"
    objects.mkdir()
    scenes.mkdir()
    notes, images = [], []
    for number in range(3):
        found = scene_with_objects(objects / f"o{number}.png")
        images.append({"id": number, "file_name": f"o{number}.png"})
        notes += [{"id": 10 * number + n, "image_id": number, "area": b.area, "iscrowd": 0,
                   "bbox": [b.left, b.top, b.right - b.left, b.bottom - b.top]} for n, b in enumerate(found.values())]
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps({"images": images, "annotations": notes}))
    for seed in range(4):
        random_photo(30 + seed, size=(320, 240)).save(scenes / f"s{seed}.jpg")
    out = tmp_path / "pasted.json"
    assert pasted_scenes.main([str(annotations), str(objects), str(scenes), "--model", str(tiny_model),
                               "--count", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["scenes"] == 2 and figures["distractors"] == 2
    for row in ("stored", "refined"):
        assert 0 <= figures[row]["iou_0.5"] <= figures[row]["rank5"] <= 1
    assert figures["refined"]["mean_iou_when_found"] >= figures["stored"]["mean_iou_when_found"]
