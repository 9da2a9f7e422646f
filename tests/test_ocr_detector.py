"""Another PP-OCR text detector by path (OCR_DETECTOR): used when it is one, refused with a clear
message when it is not, and photos read by another detector are read again."""

from __future__ import annotations

import shutil

import pytest

from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.settings import Settings
from retrieval.text.ocr import MODEL_FILES, OcrReader, bundled_models, looks_of

from test_ocr import reads, sign


@pytest.fixture
def own_detector(tmp_path):
    """A detector of the user's own, as a file elsewhere (the bundled one, copied and renamed)."""
    path = tmp_path / "models" / "my-detector.onnx"
    path.parent.mkdir()
    shutil.copyfile(bundled_models() / MODEL_FILES["det"], path)
    return path


def test_another_detector_reads_and_is_named_among_the_looks(own_detector):
    reader = OcrReader(detector=own_detector)
    photo, _box = sign("BAKERY")
    assert reads(reader.read(photo, *photo.size), "bakery")
    (look,) = reader.looks
    assert look.startswith("pp-ocr:") and look != "pp-ocr"
    assert OcrReader().looks == ("pp-ocr",)
    assert OcrReader(detector=own_detector, passes=2).looks == (look, look.replace("pp-ocr", "pp-ocr-imagenet"))


@pytest.mark.parametrize("model, message", [
    (None, "there is no file there"),
    (MODEL_FILES["rec"], "is not a text detection model"),  # a recogniser: a sequence of letters out
    (MODEL_FILES["cls"], r"answers a 64 x 96 photo with \(1, 2\)"),  # the orientation classifier
    ("README", "is not a text detection model ONNX Runtime can run"),
])
def test_what_is_not_a_text_detector_is_refused_with_what_to_do(tmp_path, model, message):
    if model is None:
        path = tmp_path / "nowhere.onnx"
    elif model == "README":
        path = tmp_path / "notes.onnx"
        path.write_text("not a model")
    else:
        path = bundled_models() / model
    with pytest.raises(RetrievalError, match=message) as refused:
        OcrReader(detector=path)
    assert "leave OCR_DETECTOR unset" in str(refused.value)


def test_the_setting_names_the_detector(monkeypatch, own_detector):
    monkeypatch.setenv("OCR_DETECTOR", str(own_detector))
    settings = Settings.from_env()
    assert settings.ocr_detector == str(own_detector)
    assert OcrReader.of(settings).detector == own_detector
    monkeypatch.delenv("OCR_DETECTOR")
    assert OcrReader.of(Settings.from_env()).detector == bundled_models() / MODEL_FILES["det"]


def test_photos_read_by_another_detector_are_read_again(settings, tmp_path, own_detector):
    folder = tmp_path / "photos"
    folder.mkdir()
    sign("BAKERY")[0].save(folder / "bakery.png")
    assert len(Engine(settings).index([folder], ocr=True).added) == 1
    assert Engine(settings).index([folder], ocr=True).facts_read == 0
    other = Engine(settings.with_overrides(ocr_detector=str(own_detector)))
    assert other.index([folder], ocr=True).facts_read == 1  # read again, by the detector now asked for
    (record,) = list(other.store.iter_all())
    assert looks_of(record.metadata) == set(OcrReader(detector=own_detector).looks)
    assert "BAKERY" in record.metadata["ocr_text"]


def test_a_wrong_detector_stops_the_command_with_its_message(settings, tmp_path):
    from cli_runs import run_in_process

    folder = tmp_path / "photos"
    folder.mkdir()
    sign("BAKERY")[0].save(folder / "bakery.png")
    code, out, err = run_in_process(settings, "index", str(folder), "--ocr",
                                    env={"OCR_DETECTOR": str(tmp_path / "nowhere.onnx")})
    assert code != 0 and "OCR_DETECTOR=" in err and "there is no file there" in err and "Traceback" not in err
