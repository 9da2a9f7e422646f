"""A tidy library: HEIC, AVIF and camera RAW files; near-duplicate groups; folders left out."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from cli_runs import run_in_process
from exif_photos import exif_block, write_dng
from photos import random_photo, scene_photo, write_photos
from retrieval.engine import Engine


def cli(settings, *arguments) -> tuple[int, str]:
    code, out, _ = run_in_process(settings, *arguments)
    return code, out


def stored_vector(engine: Engine, filename: str) -> np.ndarray:
    for record in engine.store.iter_all(with_embeddings=True):
        if record.metadata["filename"] == filename:
            return record.embedding
    raise AssertionError(f"{filename} was not indexed")


def reference_vector(engine: Engine, image: Image.Image) -> np.ndarray:
    embedder = engine.embedder
    return embedder.embed_pixels([embedder.preprocess_image(image.convert("RGB"))])[0]


def test_heic_and_avif_are_indexed_as_their_decoded_pixels(clip_settings, tmp_path):
    import pillow_heif

    folder = tmp_path / "phone"
    folder.mkdir()
    source = random_photo(7, size=(96, 72))
    exif = exif_block(taken="2025:08:09 10:11:12", offset="+01:00", make="Apple", model="iPhone 15")
    heif = pillow_heif.from_pillow(source)
    heif.save(folder / "IMG_0001.HEIC", quality=90, exif=exif.tobytes())
    source.save(folder / "IMG_0002.avif", quality=90, exif=exif)
    engine = Engine(clip_settings)
    report = engine.index([folder])
    assert len(report.added) == 2 and not report.skipped

    # The reference decodes: libheif's own reader for HEIC, libavif through Pillow for AVIF.
    heic_pixels = pillow_heif.open_heif(folder / "IMG_0001.HEIC").to_pillow()
    avif_pixels = Image.open(folder / "IMG_0002.avif")
    for name, pixels in (("IMG_0001.HEIC", heic_pixels), ("IMG_0002.avif", avif_pixels)):
        assert np.abs(np.asarray(pixels.convert("RGB"), float) - np.asarray(source, float)).mean() < 12
        np.testing.assert_allclose(stored_vector(engine, name), reference_vector(engine, pixels), atol=1e-5)
    facts = {r.metadata["filename"]: r.metadata for r in engine.store.iter_all()}
    for name in ("IMG_0001.HEIC", "IMG_0002.avif"):
        assert facts[name]["camera"] == "Apple iPhone 15"  # the make joins a model without it
        assert facts[name]["taken"] == "2025-08-09 10:11:12 +01:00"
        assert (facts[name]["width"], facts[name]["height"]) == (96, 72)


def test_a_camera_raw_file_is_demosaiced_with_its_facts(clip_settings, tmp_path):
    import rawpy

    folder = tmp_path / "camera"
    path = write_dng(folder / "DSC_0001.DNG", 3)
    engine = Engine(clip_settings)
    report = engine.index([folder])
    assert len(report.added) == 1 and not report.skipped
    with rawpy.imread(str(path)) as raw:  # the reference: LibRaw's own demosaic of the sensor data
        reference = Image.fromarray(raw.postprocess(use_camera_wb=True, half_size=True, output_bps=8))
    np.testing.assert_allclose(stored_vector(engine, "DSC_0001.DNG"), reference_vector(engine, reference), atol=1e-5)
    metadata = next(engine.store.iter_all()).metadata
    assert metadata["camera"] == "Testmaker Sensor One"
    assert metadata["taken"] == "2023-05-04 10:11:12" and metadata["taken_from"] == "exif"
    assert (metadata["width"], metadata["height"]) == (96, 64)


def test_a_broken_raw_file_is_skipped_with_a_reason(clip_settings, tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    (folder / "broken.CR2").write_bytes(b"II*\x00" + os.urandom(2000))
    write_photos(folder, 1)
    report = Engine(clip_settings).index([folder])
    assert len(report.added) == 1
    assert [(os.path.basename(s.path), s.reason) for s in report.skipped] == [("broken.CR2", "corrupt image")]
    assert "camera RAW" in report.skipped[0].detail


def _save_copies(folder, seed: int) -> list[str]:
    original = scene_photo(seed)
    names = [f"s{seed}_original.jpg", f"s{seed}_half.jpg", f"s{seed}_q40.jpg", f"s{seed}_copy.png",
             f"s{seed}_cropped.webp"]
    original.save(folder / names[0], quality=95)
    original.resize((160, 120), Image.LANCZOS).save(folder / names[1], quality=90)
    original.save(folder / names[2], quality=40)
    original.save(folder / names[3])
    original.crop((4, 3, 316, 237)).save(folder / names[4], quality=85)
    return names


def test_near_duplicates_are_grouped_biggest_first(clip_settings, tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    five = _save_copies(folder, 1)
    two = _save_copies(folder, 2)[:2]
    for name in _save_copies(folder, 2)[2:]:
        (folder / name).unlink()
    for seed in range(10, 16):  # distinct photos
        scene_photo(seed).save(folder / f"other_{seed}.jpg")
    Engine(clip_settings).index([folder])
    code, out = cli(clip_settings, "duplicates", "--json")
    assert code == 0
    found = json.loads(out)
    groups = [sorted(os.path.basename(p["path"]) for p in g["photos"]) for g in found["groups"]]
    assert groups == [sorted(five), sorted(two)]
    assert os.path.basename(found["groups"][0]["photos"][0]["path"]) in (five[0], five[3])  # the largest first
    assert found["without_hash"] == 0
    code, text = cli(clip_settings, "duplicates")
    assert code == 0 and "2 groups of near-identical photos (5 copies beyond the first of each)" in text
    code, _ = cli(clip_settings, "duplicates", "--threshold", "0")
    assert code == 0
    assert cli(clip_settings, "duplicates", "--threshold", "65")[0] != 0

    # Searching with --collapse folds each group into its best-placed photo.
    code, out = cli(clip_settings, "search", "a picture", "-k", "20", "--json")
    spread = json.loads(out)
    assert len(spread) == 13 and not any("similar" in r for r in spread)
    code, out = cli(clip_settings, "search", "a picture", "-k", "20", "--collapse", "--json")
    folded = json.loads(out)
    assert len(folded) == 13 - 4 - 1  # one result for the five copies, one for the two
    by_name = {r["id"]: os.path.basename(r["path"]) for r in spread}
    groups = sorted(sorted([by_name[r["id"]], *(by_name[i] for i in r["similar"])]) for r in folded if "similar" in r)
    assert groups == sorted([sorted(two), sorted(five)])
    leader = next(r for r in folded if len(r.get("similar", [])) == 4)
    assert [r["id"] for r in spread].index(leader["id"]) < min(
        [r["id"] for r in spread].index(i) for i in leader["similar"])  # the best placed of its group shows
    code, text = cli(clip_settings, "search", "a picture", "-k", "20", "--collapse")
    assert "(+4 similar)" in text and "(+1 similar)" in text


def test_a_portrait_and_a_landscape_are_never_near_duplicates():
    """The hash ignores shape, so a portrait and a landscape of the same tones hash alike; a copy
    keeps its proportions (a 5% crop on every side changes none of them)."""
    from PIL import Image

    from retrieval.photos.near_duplicates import group_indices, perceptual_hash

    landscape = scene_photo(3).resize((640, 480))
    portrait = landscape.resize((480, 640))
    cropped = landscape.crop((32, 24, 608, 456))
    half = landscape.resize((320, 240), Image.LANCZOS)
    pictures = [landscape, portrait, cropped, half]
    hashes = [perceptual_hash(p) for p in pictures]
    assert group_indices(hashes) == [[0, 1, 2, 3]]  # the hash alone groups the portrait too
    assert group_indices(hashes, shapes=[p.size for p in pictures]) == [[0, 2, 3]]
    assert group_indices(hashes, shapes=[None, None, None, None]) == [[0, 1, 2, 3]]  # unknown shapes pass


def test_exclusions_from_flags_and_the_ignore_file_also_prune(clip_settings, tmp_path):
    folder = tmp_path / "library"
    write_photos(folder / "trips", 2)
    write_photos(folder / "raw_exports", 2, start=10)
    write_photos(folder / "trips" / "private", 1, start=20)
    write_photos(folder, 1, start=30, ext=".png")
    (folder / ".photoignore").write_text("# kept out of search\nprivate/\n")
    engine = Engine(clip_settings)
    report = engine.index([folder], exclude=["raw_exports/"])
    indexed = sorted(os.path.relpath(r.metadata["path"], folder) for r in engine.store.iter_all())
    assert indexed == ["photo_0030.png", "trips/photo_0000.jpg", "trips/photo_0001.jpg"]
    assert report.excluded == 2  # two folders

    # A pattern added later takes its photos out at the next pruning run.
    report = engine.index([folder], exclude=["raw_exports/", "*.png"], prune=True)
    assert report.pruned == 1
    assert sorted(os.path.basename(r.metadata["path"]) for r in engine.store.iter_all()) == \
        ["photo_0000.jpg", "photo_0001.jpg"]
    code, out = cli(clip_settings, "index", str(folder), "--exclude", "*.png", "--exclude", "raw_exports/", "--json")
    assert code == 0 and json.loads(out)["excluded"] == 3


@pytest.mark.parametrize("pattern", ["", "   ", "# only a comment"])
def test_empty_patterns_leave_everything_in(clip_settings, tmp_path, pattern):
    folder = tmp_path / "library"
    write_photos(folder, 2)
    report = Engine(clip_settings).index([folder], exclude=[pattern])
    assert len(report.added) == 2 and report.excluded == 0


def test_the_perceptual_hash_has_imagehash_phash_bits():
    """The hash is imagehash.phash's, with its DCTs in numpy: collections hashed before keep matching."""
    import imagehash

    from retrieval.embedder.image_export import check_photos
    from retrieval.photos.near_duplicates import perceptual_hash

    photos = [random_photo(seed, (40 + 37 * seed, 90 - 3 * seed)) for seed in range(20)]
    photos += [scene_photo(seed) for seed in range(10)] + check_photos()
    photos += [photos[0].convert(mode) for mode in ("L", "RGBA", "P", "CMYK")]
    for photo in photos:
        assert perceptual_hash(photo) == str(imagehash.phash(photo.convert("RGB")))
