"""Words in photos, read by the real PP-OCR models that come with the rapidocr wheel."""

from __future__ import annotations

import io
import os
import signal

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from cli_runs import run_in_process, run_until_committed
from photos import scene_photo
from retrieval.engine import Engine
from retrieval.indexing.photo import FAILED_STAGES_FIELD
from retrieval.indexing.stages import OcrWords
from retrieval.photos.images import decode_image
from retrieval.errors import RetrievalError
from retrieval.settings import Settings
from retrieval.text.ocr import LENGTHEN, OCR_COUNT_FIELD, OCR_TEXT_FIELD, OcrReader, lengthened, lines_of



def sign(word: str, seed: int = 0, size=(640, 480), height: int = 64, at=(60, 120)) -> tuple[Image.Image, tuple]:
    """A photo with ``word`` painted on a light board: the photo, and the word's box."""
    photo = scene_photo(seed, size=size)
    draw = ImageDraw.Draw(photo)
    font = ImageFont.load_default(size=height)
    left, top, right, bottom = draw.textbbox(at, word, font=font)
    draw.rectangle((left - 16, top - 16, right + 16, bottom + 16), fill=(245, 240, 230))
    draw.text(at, word, font=font, fill=(20, 20, 30))
    return photo, (left, top, right, bottom)


WORDS = ("WRAPPED", "STATION", "PHARMACY", "BAKERY", "MARKET", "GARDEN", "HARBOUR")


def turned_word(seed: int) -> tuple[Image.Image, str]:
    """A word in Pillow's own font, 40-90 px, any colour, turned by up to 25 degrees, straight on
    a photo of shapes (no board behind it): harder to find than a sign. The photo, and the word."""
    rng = np.random.default_rng(seed)
    photo = scene_photo(seed, size=(640, 480))
    word = WORDS[seed % len(WORDS)]
    layer = Image.new("RGBA", (600, 160), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((10, 10), word, font=ImageFont.load_default(size=int(rng.integers(40, 90))),
                               fill=(*(int(x) for x in rng.integers(0, 256, 3)), 255))
    layer = layer.rotate(float(rng.uniform(-25, 25)), expand=True)
    photo.paste(layer, (int(rng.integers(0, 100)), int(rng.integers(0, 300))), layer)
    return photo, word.casefold()


def reads(lines, word: str) -> bool:
    return any(word in line.text.casefold() for line in lines)


def overlap(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / ((b[2] - b[0]) * (b[3] - b[1]))


@pytest.fixture(scope="module")
def reader() -> OcrReader:
    return OcrReader()


def by_name(engine: Engine) -> dict[str, dict]:
    return {r.metadata["filename"]: r.metadata for r in engine.store.iter_all()}


def test_a_painted_word_is_read_with_its_box(reader):
    photo, box = sign("BAKERY")
    lines = reader.read(photo, *photo.size)
    found = [line for line in lines if "bakery" in line.text.casefold()]
    assert found and found[0].confidence >= 0.5
    assert overlap(found[0].box, box) >= 0.6


def test_boxes_are_in_pixels_of_the_full_photo_when_read_reduced(reader):
    photo, box = sign("MARKET", size=(1920, 1440), height=160, at=(300, 500))
    lines = reader.read(photo.resize((480, 360)), 1920, 1440)  # as decoded at a quarter
    found = [line for line in lines if "market" in line.text.casefold()]
    assert found and overlap(found[0].box, box) >= 0.6


def test_a_line_the_detector_cuts_short_is_read_whole_from_its_lengthened_box(reader):
    # Each of these words is found by the detector a letter or two short ("STATIO", "MARKI",
    # "HARBOU"): its own box alone never reads it whole.
    whole = 0
    for seed in (22, 60, 69):
        photo, word = turned_word(seed)
        lines = reader.read(photo, *photo.size)
        own, longer = lines[0], next((line for line in lines if word in line.text.casefold()), None)
        assert word not in own.text.casefold() and len(own.text) < len(word)
        if longer is not None:
            whole += 1
            assert overlap(longer.box, own.box) > 0.9 and longer.box[2] - longer.box[0] > own.box[2] - own.box[0]
    assert whole >= 2  # a recogniser's reading of a case at the edge may differ on another CPU


def test_a_lengthened_box_grows_along_its_line_by_its_height_and_stays_in_the_photo():
    level = np.array([[100, 50], [300, 50], [300, 90], [100, 90]], dtype=np.float32)  # 40 px tall
    grown = lengthened(level, 1000, 1000)
    assert np.allclose(grown[:, 0], [100 - 40 * LENGTHEN, 300 + 40 * LENGTHEN, 300 + 40 * LENGTHEN, 100 - 40 * LENGTHEN])
    assert np.allclose(grown[:, 1], level[:, 1])
    turned = np.array([[0, 0], [30, 40], [22, 46], [-8, 6]], dtype=np.float32)  # 50 long, 10 tall, at 53 degrees
    step = (turned[1] - turned[0]) / 50 * 10 * LENGTHEN
    assert np.allclose(lengthened(turned + 100, 1000, 1000), turned + 100 + np.array([-step, step, step, -step]))
    assert lengthened(level, 320, 1000)[:, 0].max() == 319 and lengthened(level, 1000, 1000)[:, 0].min() >= 0
    upright = np.array([[10, 10], [30, 10], [30, 90], [10, 90]], dtype=np.float32)  # taller than long
    assert np.array_equal(lengthened(upright, 1000, 1000), upright)


def test_a_second_look_finds_words_the_first_misses():
    one, two = OcrReader(passes=1), OcrReader(passes=2)
    missed = found = 0
    for seed in (39, 55, 58):
        photo, word = turned_word(seed)
        missed += not reads(one.read(photo, *photo.size), word)
        found += reads(two.read(photo, *photo.size), word)
    assert missed == 3 and found >= 2  # a reading at the edge may differ on another CPU
    # A line both looks find is kept once.
    photo, _box = sign("BAKERY")
    assert [line.text for line in two.read(photo, *photo.size)].count("BAKERY") == 1


def test_the_number_of_looks_is_a_setting_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("OCR_PASSES", "2")
    assert Settings.from_env().ocr_passes == 2
    monkeypatch.setenv("OCR_PASSES", "3")
    with pytest.raises(RetrievalError, match="OCR_PASSES=3: use 1"):
        Settings.from_env()
    with pytest.raises(RetrievalError, match="OCR_PASSES=0"):
        OcrReader(passes=0)


def test_a_photo_without_words_gives_none(reader):
    assert reader.read(scene_photo(4, size=(640, 480)), 640, 480) == []


def test_a_photo_turned_by_its_exif_is_read_upright(reader):
    photo, _box = sign("STATION", seed=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter; shown turned back
    buffer = io.BytesIO()
    photo.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=92, exif=exif)
    decoded = decode_image(buffer.getvalue(), 10**8)
    assert (decoded.width, decoded.height) == (640, 480)
    lines = reader.read(decoded.image, decoded.width, decoded.height)
    assert any("station" in line.text.casefold() for line in lines)


def write_signs(folder) -> None:
    folder.mkdir()
    sign("BAKERY", seed=1)[0].save(folder / "bakery.jpg", quality=92)
    sign("PHARMACY", seed=3)[0].save(folder / "pharmacy.jpg", quality=92)
    scene_photo(5, size=(640, 480)).save(folder / "plain.jpg", quality=92)


def test_index_with_ocr_keeps_the_words_and_a_textless_or_broken_photo_fails_nothing(settings, tmp_path):
    folder = tmp_path / "photos"
    write_signs(folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    report = Engine(settings).index([folder], ocr=True)
    assert len(report.added) == 3 and report.skipped_counts == {"corrupt image": 1}
    assert report.stage_failures == [] and report.stages["ocr"]["photos"] == 3
    stored = by_name(Engine(settings))
    assert "BAKERY" in stored["bakery.jpg"][OCR_TEXT_FIELD].upper()
    assert "PHARMACY" in stored["pharmacy.jpg"][OCR_TEXT_FIELD].upper()
    assert stored["plain.jpg"][OCR_COUNT_FIELD] == 0 and OCR_TEXT_FIELD not in stored["plain.jpg"]
    assert lines_of(stored["bakery.jpg"])[0].box[2] <= 640


def test_ocr_is_added_later_to_indexed_photos_without_embedding_again(settings, tmp_path):
    folder = tmp_path / "photos"
    write_signs(folder)
    Engine(settings).index([folder])
    assert all(OCR_COUNT_FIELD not in m for m in by_name(Engine(settings)).values())
    later = Engine(settings)
    report = later.index([folder], ocr=True)
    assert report.added == [] and report.facts_read == 3
    assert later._embedder is None, "reading words embeds nothing"
    assert "BAKERY" in by_name(later)["bakery.jpg"][OCR_TEXT_FIELD].upper()
    assert Engine(settings).index([folder], ocr=True).facts_read == 0


def test_ocr_failing_on_one_photo_leaves_it_indexed_and_the_next_run_reads_it(settings, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    write_signs(folder)
    works = OcrWords.run

    def run(self, photo):
        if photo.path.name == "pharmacy.jpg":
            raise RuntimeError("onnx session lost")
        works(self, photo)

    monkeypatch.setattr(OcrWords, "run", run)
    report = Engine(settings).index([folder], ocr=True)
    assert len(report.added) == 3
    assert [(f.stage, f.reason) for f in report.stage_failures] == [("ocr", "RuntimeError: onnx session lost")]
    assert by_name(Engine(settings))["pharmacy.jpg"][FAILED_STAGES_FIELD] == ["ocr: RuntimeError: onnx session lost"]
    monkeypatch.undo()
    again = Engine(settings).index([folder], ocr=True)
    assert again.facts_read == 1 and again.stage_failures == []
    stored = by_name(Engine(settings))["pharmacy.jpg"]
    assert "PHARMACY" in stored[OCR_TEXT_FIELD].upper() and FAILED_STAGES_FIELD not in stored


def test_index_ocr_from_the_command_line(settings, tmp_path):
    folder = tmp_path / "photos"
    write_signs(folder)
    code, out, err = run_in_process(settings, "index", str(folder), "--ocr")
    assert code == 0, err
    assert "Added 3 photos" in out
    assert "BAKERY" in by_name(Engine(settings))["bakery.jpg"][OCR_TEXT_FIELD].upper()
    code, out, err = run_in_process(settings, "search", "bakery")
    assert code == 0, err
    first = out.splitlines()[0]
    assert "bakery.jpg" in first and "[words: bakery]" in first
    code, out, err = run_in_process(settings, "search", "--contains", "pharmacy")
    assert code == 0 and "pharmacy.jpg" in out and "bakery.jpg" not in out


@pytest.mark.slow
def test_reading_words_killed_part_way_resumes_where_it_stopped(settings, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(24):
        sign(f"SHOP {seed}", seed=seed, size=(320, 240), height=32, at=(20, 40))[0].save(folder / f"s{seed:02d}.jpg")
    Engine(settings.with_overrides(batch_size=2)).index([folder])
    env = dict(os.environ, MODEL=str(settings.model), CHROMA_PATH=str(settings.chroma_path), BATCH_SIZE="2",
               DECODE_WORKERS="1", PYTHONUNBUFFERED="1")
    process = run_until_committed(["index", str(folder), "--ocr"], env, batches=3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    read = sum(OCR_COUNT_FIELD in m for m in by_name(Engine(settings)).values())
    assert 4 <= read < 24, "the run was not stopped part-way"
    resumed = Engine(settings).index([folder], ocr=True)
    assert resumed.added == [] and resumed.facts_read == 24 - read
    assert all(OCR_COUNT_FIELD in m for m in by_name(Engine(settings)).values())


def test_the_lines_holding_a_searched_word_are_boxed_on_the_page(settings, tmp_path):
    from gradio_client import Client

    from app import build_app
    from retrieval.text.ocr import lines_holding
    from retrieval.ui.startup import launch

    folder = tmp_path / "photos"
    write_signs(folder)
    engine = Engine(settings)
    engine.index([folder], ocr=True)
    app = launch(build_app(engine), engine, server_name="127.0.0.1", server_port=None, prevent_thread_lock=True,
                 quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        gallery, _status, results, _spoken = client.predict("bakery", "", 3, 0, None, None, "", "", "", "best match",
                                                            False, api_name="/search_text")
    finally:
        app.close()
    assert results[0]["filename"] == "bakery.jpg" and results[0]["matched_words"] == ["bakery"]
    [line] = lines_holding(results[0], ["bakery"])
    drawn = Image.open(gallery[0]["image"]).convert("RGB")  # the thumbnail, 320 wide
    scale = drawn.width / 640
    edge = drawn.getpixel((int(line.box[0] * scale), int((line.box[1] + line.box[3]) / 2 * scale)))
    assert edge[0] < 80 and edge[1] > 150 and edge[2] > 200  # the words' cyan line
    # A word one letter off is boxed as the words channel matched it; another word is not.
    assert lines_holding(results[0], ["bakory"]) == [line] and lines_holding(results[0], ["pharmacy"]) == []
