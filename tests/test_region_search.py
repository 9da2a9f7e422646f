"""Objects and regions: indexed beside their photos, searched with them, one result per photo
with the box that matched; kept in step with their photos through prune, edits and kills."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cli_runs import run_until_committed
from photos import random_photo, scene_photo
from retrieval import Settings
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.indexing.regions import cut_regions, usable_boxes
from retrieval.regions.proposals import Box, SegmentProposer
from retrieval.regions.records import REGION_COUNT_FIELD
from retrieval.regions.sam import SamProposer
from retrieval.search.searcher import QueryTerm, SearchRequest
from retrieval.store.contract import REGION_PHOTO_FIELD
from tiny_models import build_tiny_sam
from conftest import every_family

PASTED = Box(420, 90, 516, 186)  # where the small picture goes in the scene


def small_picture() -> Image.Image:
    """A distinctive little picture with a frame (so it stands out from any background)."""
    picture = random_photo(77, size=(96, 96))
    ImageDraw.Draw(picture).rectangle((0, 0, 95, 95), outline=(0, 0, 0), width=4)
    return picture


def write_collection(folder, with_scene: bool = True) -> dict[str, object]:
    """A street-like scene with the small picture pasted into it, and other photos."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    if with_scene:
        scene = Image.new("RGB", (640, 480), (200, 205, 210))
        scene.paste(small_picture(), (PASTED.left, PASTED.top))
        scene.save(folder / "scene.png")
        paths["scene"] = folder / "scene.png"
    for seed in range(5):
        scene_photo(seed, size=(320, 240)).save(folder / f"other{seed}.png")
        paths[f"other{seed}"] = folder / f"other{seed}.png"
    return paths


def image_query(path, **options) -> SearchRequest:
    return SearchRequest(terms=[QueryTerm("image", str(path))], **options)


def region_invariants(engine: Engine) -> dict[str, int]:
    """No region without its photo, and every photo that promises regions has exactly those."""
    photos = {r.id: r.metadata for r in engine.store.iter_all()}
    held: dict[str, int] = {}
    for region in engine.store.regions.iter_all():
        owner = region.metadata[REGION_PHOTO_FIELD]
        assert owner in photos, f"region {region.id} outlived its photo"
        held[owner] = held.get(owner, 0) + 1
    for photo_id, metadata in photos.items():
        if REGION_COUNT_FIELD in metadata:
            assert held.get(photo_id, 0) == metadata[REGION_COUNT_FIELD], photo_id
    return held


@every_family
def test_a_pasted_picture_is_found_in_its_scene_with_a_box(store_settings, tiny_model, tmp_path):
    engine = Engine(store_settings.with_overrides(model=str(tiny_model), batch_size=4))
    paths = write_collection(tmp_path / "photos")
    small_picture().save(tmp_path / "query.png")
    report = engine.index([tmp_path / "photos"], regions=True)
    assert report.photos_given_regions == 6 and report.regions_added == engine.store.regions.count() > 6

    whole_only = engine.search(image_query(tmp_path / "query.png", k=6, regions=False))
    assert whole_only[0].path != str(paths["scene"]), "the whole photo alone must not find the scene first"

    results = engine.search(image_query(tmp_path / "query.png", k=6))
    first = results[0]
    assert first.path == str(paths["scene"])
    assert Box(*first.matched_box).iou(PASTED) >= 0.5
    assert first.photo_score == pytest.approx(next(r.score for r in whole_only if r.id == first.id), abs=1e-4)
    assert first.to_dict()["matched_box"] == first.matched_box
    assert len({r.id for r in results}) == len(results) == 6  # one result per photo, never a region
    for result in results:  # a region only speaks when it beats the whole photo by the margin
        if result.matched_box is not None:
            assert result.score > result.photo_score


def test_regions_keep_filters_paging_and_scores_meaning(tiny_model, tmp_path):
    engine = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4))
    paths = write_collection(tmp_path / "photos")
    small_picture().save(tmp_path / "query.png")
    engine.index([tmp_path / "photos"], regions=True, metadata=lambda p: {"kind": p.stem.rstrip("0123456789")})

    others = engine.search(image_query(tmp_path / "query.png", k=10, filters={"kind": "other"}))
    assert len(others) == 5 and all(r.metadata["kind"] == "other" for r in others)  # the scene's region can't sneak in
    everything = engine.search(image_query(tmp_path / "query.png", k=10))
    assert len(everything) == 6
    pages = [engine.search(image_query(tmp_path / "query.png", k=2, offset=o)) for o in (0, 2, 4)]
    assert [r.id for page in pages for r in page] == [r.id for r in everything]
    floor = everything[2].score
    assert [r.id for r in engine.search(image_query(tmp_path / "query.png", k=10, min_score=floor))] == \
        [r.id for r in everything[:3]]
    scene_id = everything[0].id
    like = engine.search(SearchRequest(terms=[QueryTerm("record", scene_id)], exclude_ids={scene_id}, k=10))
    assert scene_id not in {r.id for r in like} and len(like) == 5
    tagged = engine.search(SearchRequest(tags=["nothing-has-this"], k=10))
    assert tagged == []
    assert paths["scene"].exists()


def test_regions_can_be_added_later_and_follow_prune_and_edits(tiny_model, tmp_path):
    engine = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4))
    folder = tmp_path / "photos"
    paths = write_collection(folder)
    first = engine.index([folder])
    assert len(first.added) == 6 and engine.store.regions.count() == 0

    later = engine.index([folder], regions=True)  # indexed photos: only their regions are embedded
    assert later.added == [] and later.photos_given_regions == 6
    held = region_invariants(engine)
    assert sum(held.values()) == later.regions_added
    assert engine.index([folder], regions=True).regions_added == 0  # nothing left to do

    paths["other0"].unlink()
    pruned = engine.index([folder], prune=True, regions=True)
    assert pruned.pruned == 1
    gone_id = next(i for i in held if i not in {r.id for r in engine.store.iter_all()})
    assert sum(region_invariants(engine).values()) == later.regions_added - held[gone_id]

    scene_photo(99, size=(320, 240)).save(paths["other1"])  # edited in place: new bytes, new regions
    old_id = next(r.id for r in engine.store.iter_all() if r.metadata["path"] == str(paths["other1"]))
    edited = engine.index([folder], regions=True)
    assert edited.replaced == 1 and edited.photos_given_regions == 1
    held = region_invariants(engine)
    assert old_id not in held and len(held) == 5


def test_a_reembedded_collection_gives_its_regions_again(tiny_model, other_tiny_model, tmp_path):
    engine = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4))
    write_collection(tmp_path / "photos", with_scene=False)
    engine.index([tmp_path / "photos"], regions=True)
    engine.reembed(str(other_tiny_model), switch=True)
    moved = Engine(Settings(model=str(other_tiny_model), chroma_path=tmp_path / "store", batch_size=4))
    assert moved.store.regions.count() == 0  # the old model's regions stay with the old collection
    assert all(REGION_COUNT_FIELD not in r.metadata for r in moved.store.iter_all())
    assert moved.index([tmp_path / "photos"], regions=True).photos_given_regions == 5
    region_invariants(moved)


def test_an_export_from_before_regions_travelled_gets_its_regions_again(tiny_model, tmp_path):
    import json

    engine = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4))
    write_collection(tmp_path / "photos", with_scene=False)
    engine.index([tmp_path / "photos"], regions=True)
    engine.export_collection(tmp_path / "export")
    manifest_path = tmp_path / "export" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for name in manifest.pop("region_shards"):  # as an export written before regions were part of one
        (tmp_path / "export" / name).unlink()
    manifest_path.write_text(json.dumps(manifest))
    elsewhere = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "elsewhere", batch_size=4))
    elsewhere.import_collection(tmp_path / "export")
    assert elsewhere.store.count() == 5 and elsewhere.store.regions.count() == 0
    assert all(REGION_COUNT_FIELD not in r.metadata for r in elsewhere.store.iter_all())
    assert elsewhere.index([tmp_path / "photos"], regions=True).photos_given_regions == 5
    region_invariants(elsewhere)


def test_a_photo_whose_regions_fail_is_still_indexed(tiny_model, tmp_path):
    class Failing(SegmentProposer):
        def propose(self, image, limit):
            raise ValueError("no segments today")

    from retrieval.indexing.ingest import Indexer
    from retrieval.indexing.regions import RegionIndexer

    engine = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4))
    write_collection(tmp_path / "photos", with_scene=False)
    indexer = Indexer(engine.store, engine.embedder, batch_size=4, decode_workers=1, max_image_pixels=10**8,
                      regions=lambda: RegionIndexer(engine.store, engine.embedder, Failing(), per_photo=8,
                                                    batch_size=4, decode_workers=1, max_image_pixels=10**8))
    report = indexer.run([tmp_path / "photos"])
    assert len(report.added) == 5 and report.photos_given_regions == 0
    assert len(report.region_failures) == 5 and "no segments today" in report.region_failures[0].detail
    assert all(REGION_COUNT_FIELD not in r.metadata for r in engine.store.iter_all())  # retried next run


@pytest.mark.slow
def test_killed_while_adding_regions_leaves_no_orphans_and_resumes(tiny_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(60):
        scene_photo(seed, size=(320, 240)).save(folder / f"p{seed:03d}.png")
    settings = Settings(model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4)
    Engine(settings).index([folder])
    env = dict(os.environ, MODEL=str(tiny_model), CHROMA_PATH=str(tmp_path / "store"), BATCH_SIZE="4",
               TORCH_THREADS="1", DECODE_WORKERS="1", PYTHONUNBUFFERED="1")
    process = run_until_committed(["index", str(folder), "--regions"], env, batches=3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    engine = Engine(settings)
    held = region_invariants(engine)
    stamped = sum(REGION_COUNT_FIELD in r.metadata for r in engine.store.iter_all())
    assert 3 <= stamped < 60, "the run was not stopped part-way"
    resumed = engine.index([folder], regions=True)
    assert resumed.added == [] and resumed.photos_given_regions == 60 - stamped
    held = region_invariants(engine)
    assert len(held) == 60 and all(REGION_COUNT_FIELD in r.metadata for r in engine.store.iter_all())


def test_boxes_are_cut_from_the_photo_at_any_decode_size():
    photo = Image.new("RGB", (640, 480), (200, 205, 210))
    photo.paste(small_picture(), (PASTED.left, PASTED.top))
    reduced = photo.resize((320, 240))  # as a JPEG decoded with a draft size comes out
    boxes, crops = cut_regions(reduced, 640, 480, SegmentProposer(), 8)
    assert max(box.iou(PASTED) for box in boxes) >= 0.9  # in the full photo's pixels
    best = max(range(len(boxes)), key=lambda n: boxes[n].iou(PASTED))
    assert abs(crops[best].width - 48) <= 2 and abs(crops[best].height - 48) <= 2
    kept = usable_boxes([Box(0, 0, 640, 480), Box(5, 5, 635, 475), Box(5, 5, 300, 9), Box(0, 0, 100, 100),
                         Box(-5, -5, 100, 100)], 640, 480, 8)
    assert kept == [Box(0, 0, 100, 100)]  # whole, nearly whole, thin and repeated boxes dropped


def test_sam_boxes_from_hand_made_masks(tmp_path):
    proposer = SamProposer.load(str(build_tiny_sam(tmp_path / "sam")))
    logits = torch.full((2, 3, 32, 32), -20.0)
    logits[0, 1, 4:12, 8:24] = 20.0  # point 0: its second mask is best, a box in the top half
    logits[1, 0, 16:32, 0:32] = 20.0  # point 1: the bottom half, but SAM is unsure of it
    quality = torch.tensor([[0.5, 0.95, 0.1], [0.6, 0.1, 0.1]])
    # The model reads 64 px (2 px per mask cell); the photo is 128 x 64, so 0.5 model px per photo px.
    found = proposer._boxes(logits, quality, 64.0, 0.5, 128, 64)
    assert [box for _, box in found] == [Box(32, 16, 96, 48)]


def test_sam_regions_end_to_end_with_a_tiny_model(tiny_model, tmp_path):
    sam = build_tiny_sam(tmp_path / "sam")
    proposer = SamProposer.load(str(sam))
    photo = scene_photo(3, size=(320, 240))
    boxes = proposer.propose(photo, 16)
    assert boxes and all(0 <= b.left < b.right <= 320 and 0 <= b.top < b.bottom <= 240 for b in boxes)
    assert all(a.iou(b) <= 0.7 for n, a in enumerate(boxes) for b in boxes[n + 1:])
    folder = tmp_path / "photos"
    folder.mkdir()
    photo.save(folder / "a.png")
    engine = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4,
                             region_proposer=str(sam)))
    report = engine.index([folder], regions=True)
    assert report.photos_given_regions == 1 and report.region_failures == []
    stamp = next(engine.store.iter_all()).metadata[REGION_COUNT_FIELD]
    assert stamp == engine.store.regions.count() == len(usable_boxes(boxes, 320, 240, 16))


def test_a_region_model_that_cant_be_had_says_what_to_do(tmp_path):
    with pytest.raises(RetrievalError, match="--proposer segments"):
        SamProposer.load(str(tmp_path / "no-such-sam"))


def test_an_export_carries_every_region_with_its_box(settings, tmp_path):
    engine = Engine(settings)
    paths = write_collection(tmp_path / "photos")
    small_picture().save(tmp_path / "query.png")
    engine.index([tmp_path / "photos"], regions=True)
    exported = engine.export_collection(tmp_path / "export", shard_rows=5)
    regions = {r.id: (r.metadata, r.embedding) for r in engine.store.regions.iter_all(with_embeddings=True)}
    assert exported.regions == len(regions) > 6

    other = Engine(settings.with_overrides(chroma_path=tmp_path / "elsewhere"))
    imported = other.import_collection(tmp_path / "export")
    assert imported.records == 6 and imported.regions == len(regions)
    moved = {r.id: (r.metadata, r.embedding) for r in other.store.regions.iter_all(with_embeddings=True)}
    assert moved.keys() == regions.keys()
    for region_id, (metadata, vector) in regions.items():
        assert moved[region_id][0] == metadata  # its photo and its box
        np.testing.assert_allclose(moved[region_id][1], vector, atol=1e-7)
    assert region_invariants(other) == region_invariants(engine)  # each photo keeps its regions
    here = engine.search(image_query(tmp_path / "query.png", k=3))
    there = other.search(image_query(tmp_path / "query.png", k=3))
    assert [(r.id, r.matched_box) for r in there] == [(r.id, r.matched_box) for r in here]
    assert there[0].path == str(paths["scene"]) and there[0].matched_box is not None


def test_region_counts_follow_the_photos_size(settings, tmp_path):
    from retrieval.indexing.regions import MIN_PHOTO_SIDE, regions_for

    assert regions_for(640, 480, 16) == 16 and regions_for(4000, 3000, 16) == 16  # the full count from 640x480
    assert regions_for(320, 240, 16) == 4 and regions_for(200, 150, 16) == 2  # in proportion, at least two
    assert regions_for(MIN_PHOTO_SIDE - 1, 400, 16) == 0  # too narrow for a part to hold an object

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, size in (("large.jpg", (640, 480)), ("small.jpg", (320, 240)), ("tiny.jpg", (120, 90))):
        scene_photo(3, size=size).save(folder / name, quality=92)
    engine = Engine(settings)
    report = engine.index([folder], regions=True)
    assert report.photos_given_regions == 3 and report.stage_failures == []
    counts = {r.metadata["filename"]: r.metadata[REGION_COUNT_FIELD] for r in engine.store.iter_all()}
    assert counts["tiny.jpg"] == 0 and 0 < counts["small.jpg"] <= 4 < counts["large.jpg"] <= 16
    region_invariants(engine)
    assert engine.index([folder], regions=True).photos_given_regions == 0  # a photo with none is done too


PICTURE_AT = Box(400, 300, 560, 420)


def framed_picture() -> Image.Image:
    picture = random_photo(77, size=(160, 120))
    ImageDraw.Draw(picture).rectangle((0, 0, 159, 119), outline=(0, 0, 0), width=4)
    return picture


def test_a_picture_query_finds_its_scene_and_the_box_on_the_picture(tmp_path):
    """The issue's case: the region that matched is a loose window (a grid proposer here); the box
    returned is where the picture is (IoU >= 0.7), found at query time."""
    from tiny_models import build_tiny_clip

    from retrieval.search.searcher import Searcher

    model = build_tiny_clip(tmp_path / "clip-224", image_size=224, patch_size=32)
    folder = tmp_path / "photos"
    folder.mkdir()
    scene = scene_photo(20, size=(640, 480))
    scene.paste(framed_picture(), (PICTURE_AT.left, PICTURE_AT.top))
    scene.save(folder / "scene.png")
    for seed in range(5):
        scene_photo(seed, size=(320, 240)).save(folder / f"other{seed}.png")
    framed_picture().save(tmp_path / "query.png")
    engine = Engine(Settings(model=str(model), chroma_path=tmp_path / "store", batch_size=4, region_proposer="grid"))
    engine.index([folder], regions=True)
    request = image_query(tmp_path / "query.png", k=3)

    stored = Searcher(engine.store, engine._embed_term).search(request)  # the same search, boxes as stored
    assert stored[0].path == str(folder / "scene.png") and Box(*stored[0].matched_box).iou(PICTURE_AT) < 0.5
    found = engine.search(request)
    assert [r.id for r in found] == [r.id for r in stored]  # the order is the search's own
    assert Box(*found[0].matched_box).iou(PICTURE_AT) >= 0.7
    assert found[0].score == stored[0].score
    # A text query has no picture to look for: its boxes stay as stored.
    words = engine.search(SearchRequest(terms=[QueryTerm("text", "a framed picture")], k=6))
    plain = Searcher(engine.store, engine._embed_term).search(SearchRequest(terms=[QueryTerm("text", "a framed picture")], k=6))
    assert [r.matched_box for r in words] == [r.matched_box for r in plain]


def test_locating_a_picture_in_a_photo():
    from retrieval.regions.refine import MATCH_FLOOR, locate

    scene = scene_photo(20, size=(640, 480))
    bigger = framed_picture().resize((200, 150))
    scene.paste(bigger, (60, 40))
    box, score = locate(framed_picture(), scene, 640, 480, Box(0, 0, 320, 240))  # another size than the query
    assert Box(*box.to_list()).iou(Box(60, 40, 260, 190)) >= 0.85 and score >= MATCH_FLOOR
    # The photo decoded at half size: the box is still in the full photo's pixels.
    half = scene.resize((320, 240))
    box, _ = locate(framed_picture(), half, 640, 480, Box(0, 0, 320, 240))
    assert box.iou(Box(60, 40, 260, 190)) >= 0.8
    assert locate(framed_picture(), scene_photo(21, size=(640, 480)), 640, 480, Box(0, 0, 320, 240)) is None
    assert locate(Image.new("RGB", (160, 120), (90, 90, 90)), scene, 640, 480, Box(0, 0, 320, 240)) is None
