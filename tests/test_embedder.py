"""The product's vectors equal the reference CLIP output with the model's own processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from transformers import AutoProcessor, CLIPModel

from photos import random_photo
from retrieval.embedder import ClipEmbedder
from retrieval.errors import RetrievalError


@pytest.fixture(scope="module")
def reference(tiny_model):
    model = CLIPModel.from_pretrained(tiny_model).eval()
    processor = AutoProcessor.from_pretrained(tiny_model)

    def image_vector(image: Image.Image) -> np.ndarray:
        with torch.no_grad():
            features = model.get_image_features(**processor(images=image, return_tensors="pt")).pooler_output
        return torch.nn.functional.normalize(features, dim=-1)[0].numpy()

    def text_vector(text: str) -> np.ndarray:
        tokens = processor.tokenizer([text], truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad():
            features = model.get_text_features(**tokens).pooler_output
        return torch.nn.functional.normalize(features, dim=-1)[0].numpy()

    return image_vector, text_vector


def on_white(image: Image.Image) -> Image.Image:
    """What a person expects of a transparent image: its transparent parts on white."""
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")


def _transparent(mode: str) -> Image.Image:
    photo = random_photo(11).convert("RGBA")
    alpha = Image.linear_gradient("L").resize(photo.size)
    dark = Image.new("RGBA", photo.size, (0, 0, 0, 0))  # hidden pixels are black, not white
    return Image.composite(photo, dark, alpha).convert(mode)


def _sixteen_bit() -> Image.Image:
    grey = np.asarray(random_photo(12).convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(grey)


def _palette_with_transparency() -> Image.Image:
    image = random_photo(13).quantize(64)
    image.info["transparency"] = 0
    return image


def _animated() -> list[Image.Image]:
    return [random_photo(14), random_photo(15), random_photo(16)]


# mode -> (how to save it, what a person expects to see)
CASES = {
    "RGB": (lambda p: random_photo(10).save(p / "x.jpg"), "x.jpg",
            lambda img: img.convert("RGB")),
    "RGBA": (lambda p: _transparent("RGBA").save(p / "x.png"), "x.png", on_white),
    "LA": (lambda p: _transparent("LA").save(p / "x.png"), "x.png", on_white),
    "L": (lambda p: random_photo(17).convert("L").save(p / "x.png"), "x.png",
          lambda img: img.convert("RGB")),
    "P": (lambda p: _palette_with_transparency().save(p / "x.png", transparency=0), "x.png", on_white),
    "CMYK": (lambda p: random_photo(18).convert("CMYK").save(p / "x.tif"), "x.tif",
             lambda img: img.convert("RGB")),
    "I;16": (lambda p: _sixteen_bit().save(p / "x.png"), "x.png",
             lambda img: Image.fromarray(
                 np.round(np.asarray(img, dtype=np.float64) / 65535 * 255).astype(np.uint8)).convert("RGB")),
    "animated": (lambda p: _animated()[0].save(p / "x.gif", save_all=True, append_images=_animated()[1:]),
                 "x.gif", lambda img: (img.seek(0), img.convert("RGB"))[1]),
    "EXIF-rotated": (lambda p: random_photo(19, (60, 30)).save(p / "x.jpg", exif=_rotation_exif()), "x.jpg",
                     lambda img: ImageOps.exif_transpose(img).convert("RGB")),
}


def _rotation_exif():
    exif = Image.Exif()
    exif[0x0112] = 8
    return exif


def cosine(a, b) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("case", sorted(CASES))
def test_indexed_vectors_equal_the_reference(case, engine, reference, tmp_path):
    save, name, expected_view = CASES[case]
    folder = tmp_path / "photos"
    folder.mkdir()
    save(folder)
    report = engine.index([folder])
    assert len(report.added) == 1, report.to_dict()
    stored = engine.store.get(report.added, with_embeddings=True)[0].embedding
    image_vector, _ = reference
    with Image.open(folder / name) as original:
        expected = image_vector(expected_view(original))
    assert cosine(stored, expected) >= 0.9999
    # The query path (an uploaded image) gives the same vector as the indexing path.
    query = engine.image_vector(Image.open(folder / name))
    assert cosine(query, expected) >= 0.9999


def test_naive_conversion_would_fail_the_reference_check(reference):
    """The check above can fail: RGBA converted naively (black under the alpha) differs."""
    image_vector, _ = reference
    transparent = _transparent("RGBA")
    assert cosine(image_vector(transparent.convert("RGB")), image_vector(on_white(transparent))) < 0.9999


def test_batched_text_vectors_equal_the_reference(embedder, reference):
    _, text_vector = reference
    texts = ["a cat", "the dog and the cat on a long sandy beach at sunset", "x"]
    batch = embedder.embed_texts(texts)
    for text, vector in zip(texts, batch):
        assert cosine(vector, text_vector(text)) >= 0.9999


def test_vectors_are_unit_length_float32(embedder):
    texts = embedder.embed_texts(["one", "two words"])
    images = embedder.embed_images([random_photo(1), random_photo(2, (300, 100))])
    for array in (texts, images):
        assert array.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-5)
    assert texts.shape[1] == images.shape[1] == embedder.dim


def test_long_text_is_truncated_not_an_error(embedder, reference):
    _, text_vector = reference
    long_text = "the cat sat on the mat and looked at the dog " * 40
    vector = embedder.embed_text(long_text)
    assert cosine(vector, text_vector(long_text)) >= 0.9999


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_a_clear_error(embedder, text):
    with pytest.raises(RetrievalError, match="empty"):
        embedder.embed_text(text)


def test_missing_local_model_names_the_setting(tmp_path):
    with pytest.raises(RetrievalError) as caught:
        ClipEmbedder(str(tmp_path / "no-such-model"))
    message = str(caught.value)
    assert "no-such-model" in message and "CLIP_MODEL" in message


def test_unreachable_hub_model_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RetrievalError) as caught:
        ClipEmbedder("someone/clip-that-is-not-cached")
    message = str(caught.value)
    assert "someone/clip-that-is-not-cached" in message and "CLIP_MODEL" in message


def test_folder_that_is_not_a_clip_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RetrievalError, match="Could not load"):
        ClipEmbedder(str(tmp_path))


@pytest.mark.parametrize("size", [(3000, 2000), (1200, 1600)])
def test_large_jpegs_decoded_at_draft_size_keep_the_reference_vector(size, engine, reference, tmp_path):
    """Indexing decodes big JPEGs at a reduced scale (fast); the vector must not change."""
    folder = tmp_path / "big"
    folder.mkdir()
    random_photo(11, size).save(folder / "big.jpg", quality=92)
    report = engine.index([folder])
    record = engine.store.get(report.added, with_embeddings=True)[0]
    image_vector, _ = reference
    with Image.open(folder / "big.jpg") as original:
        expected = image_vector(original.convert("RGB"))  # the full-size decode
    assert cosine(record.embedding, expected) >= 0.9999
    assert (record.metadata["width"], record.metadata["height"]) == size  # the real size is recorded


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_vectors_match_the_reference_at_either_precision(tiny_model, reference, precision):
    embedder = ClipEmbedder(str(tiny_model), precision=precision)
    assert embedder.dtype == getattr(torch, precision)
    _, text_vector = reference
    for text in ("a dog on the beach", "two red apples"):
        assert cosine(embedder.embed_text(text), text_vector(text)) >= 0.9999


def test_unknown_query_precision_is_a_clear_error(tiny_model):
    with pytest.raises(RetrievalError, match="PRECISION"):
        ClipEmbedder(str(tiny_model), precision="int4")
