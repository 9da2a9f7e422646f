"""For every model family, the product's vectors equal the reference model's output with the
model's own processor, used as its model card shows."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from transformers import AutoModel, AutoProcessor

from photos import random_photo
from retrieval import Settings
from retrieval.embedder import load_embedder
from retrieval.embedder.export_first import ExportFirstEmbedder
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from tiny_models import BUILDERS

# How each family's model card tokenizes text (written out here, not taken from the product).
MODEL_CARD_TEXT = {
    "clip": dict(padding=True),
    "metaclip2": dict(padding=True),
    "siglip": dict(padding="max_length", max_length=64),  # "make sure to set padding='max_length'"
    "siglip2": dict(padding="max_length", max_length=64),
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family_model(request, tmp_path_factory):
    return request.param, BUILDERS[request.param](tmp_path_factory.mktemp("family") / request.param)


def reference_for(folder, family: str, text_options: dict | None = None):
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    text_options = text_options or MODEL_CARD_TEXT[family]

    def image_vector(image: Image.Image) -> np.ndarray:
        with torch.no_grad():
            features = model.get_image_features(**processor(images=image, return_tensors="pt")).pooler_output
        return torch.nn.functional.normalize(features, dim=-1)[0].numpy()

    def text_vector(text: str) -> np.ndarray:
        tokens = processor(text=[text], truncation=True, return_tensors="pt", **text_options)
        with torch.no_grad():
            features = model.get_text_features(**tokens).pooler_output
        return torch.nn.functional.normalize(features, dim=-1)[0].numpy()

    return image_vector, text_vector


@pytest.fixture(scope="module")
def reference(family_model):
    return reference_for(family_model[1], family_model[0])


@pytest.fixture(scope="module", params=["float32", "bfloat16", "image export"])
def family_embedder(request, family_model):
    """The model itself (torch), whether or not its text side was exported on this machine; or, with
    "image export", photos through the image side's checked ONNX export and no torch."""
    if request.param != "image export":
        return load_embedder(str(family_model[1]), precision=request.param, text_export=False)
    full = load_embedder(str(family_model[1]), precision="float32", text_export=False, image_export=False)
    assert full.prepare_image_export()
    exported = load_embedder(str(family_model[1]), text_export=False)
    assert "images in float32 through its checked ONNX export" in exported.precision_note
    return exported


@pytest.fixture
def family_engine(family_embedder, tmp_path):
    settings = Settings(model=family_embedder.name, chroma_path=tmp_path / "store", batch_size=4)
    return Engine(settings, embedder=family_embedder)


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
def test_indexed_vectors_equal_the_reference(case, family_engine, reference, tmp_path):
    engine = family_engine
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
    through_export = "images in float32 through its checked ONNX export" in engine.embedder.precision_note
    assert through_export == isinstance(engine.embedder, ExportFirstEmbedder)  # the run took the export
    # The query path (an uploaded image) gives the same vector as the indexing path.
    query = engine.image_vector(Image.open(folder / name))
    assert cosine(query, expected) >= 0.9999


def test_naive_conversion_would_fail_the_reference_check(reference):
    """The check above can fail: RGBA converted naively (black under the alpha) differs."""
    image_vector, _ = reference
    transparent = _transparent("RGBA")
    assert cosine(image_vector(transparent.convert("RGB")), image_vector(on_white(transparent))) < 0.9999


def test_batched_text_vectors_equal_the_reference(family_embedder, reference):
    _, text_vector = reference
    texts = ["a cat", "the dog and the cat on a long sandy beach at sunset", "x", "ein Hund", "le chien 狗"]
    batch = family_embedder.embed_texts(texts)
    for text, vector in zip(texts, batch):
        assert cosine(vector, text_vector(text)) >= 0.9999


def test_vectors_are_unit_length_float32(embedder):
    texts = embedder.embed_texts(["one", "two words"])
    images = embedder.embed_images([random_photo(1), random_photo(2, (300, 100))])
    for array in (texts, images):
        assert array.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-5)
    assert texts.shape[1] == images.shape[1] == embedder.dim


def test_long_text_is_truncated_not_an_error(family_embedder, reference):
    _, text_vector = reference
    long_text = "the cat sat on the mat and looked at the dog " * 40
    assert not family_embedder.reads_whole(long_text)
    vector = family_embedder.embed_text(long_text)
    assert cosine(vector, text_vector(long_text)) >= 0.9999


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_a_clear_error(embedder, text):
    with pytest.raises(RetrievalError, match="empty"):
        embedder.embed_text(text)


def test_missing_local_model_names_the_setting(tmp_path):
    with pytest.raises(RetrievalError) as caught:
        load_embedder(str(tmp_path / "no-such-model"))
    message = str(caught.value)
    assert "no-such-model" in message and "MODEL=" in message


def test_unreachable_hub_model_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RetrievalError) as caught:
        load_embedder("someone/clip-that-is-not-cached")
    message = str(caught.value)
    assert "someone/clip-that-is-not-cached" in message and "MODEL=" in message


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RetrievalError, match="Could not load"):
        load_embedder(str(tmp_path))


@pytest.fixture(scope="module")
def full_input_size_model(family_model, tmp_path_factory):
    """The family at its real input size (224 or 256 px): draft decoding is sized from it."""
    family, _ = family_model
    side = 256 if family.startswith("siglip") else 224
    return family, BUILDERS[family](tmp_path_factory.mktemp("full-size") / family, image_size=side)


@pytest.mark.parametrize("size", [(3000, 2000), (1200, 1600)])
def test_large_jpegs_decoded_at_draft_size_keep_the_reference_vector(size, full_input_size_model, tmp_path):
    """Indexing decodes big JPEGs at a reduced scale (fast); the vector must not change."""
    family, model = full_input_size_model
    engine = Engine(Settings(model=str(model), chroma_path=tmp_path / "store", batch_size=4))
    folder = tmp_path / "big"
    folder.mkdir()
    random_photo(11, size).save(folder / "big.jpg", quality=92)
    report = engine.index([folder])
    record = engine.store.get(report.added, with_embeddings=True)[0]
    image_vector, _ = reference_for(model, family)
    with Image.open(folder / "big.jpg") as original:
        expected = image_vector(original.convert("RGB"))  # the full-size decode
    assert cosine(record.embedding, expected) >= 0.9999
    assert (record.metadata["width"], record.metadata["height"]) == size  # the real size is recorded


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_precision_asked_for_is_used(tiny_model, precision):
    assert load_embedder(str(tiny_model), precision=precision).precision == precision


def test_unknown_query_precision_is_a_clear_error(tiny_model):
    with pytest.raises(RetrievalError, match="PRECISION"):
        load_embedder(str(tiny_model), precision="int4")
    with pytest.raises(RetrievalError, match="PRECISION=float16 is for GPUs"):
        load_embedder(str(tiny_model), precision="float16", device="cpu")


def test_siglip_padding_to_the_longest_text_would_fail_the_reference_check(tmp_path):
    """The text check can fail: SigLIP tokenized as CLIP is (padding=True) gives other vectors."""
    for family in ("siglip", "siglip2"):
        folder = BUILDERS[family](tmp_path / family)
        _, text_vector = reference_for(folder, family)
        _, padded_to_longest = reference_for(folder, family, dict(padding=True))
        embedder = load_embedder(str(folder), precision="float32")
        for text in ("a dog", "le chien"):
            assert cosine(embedder.embed_text(text), text_vector(text)) >= 0.9999
            assert cosine(padded_to_longest(text), text_vector(text)) < 0.9999


def test_the_family_comes_from_the_checkpoint_and_each_says_what_it_reads(family_model):
    family, folder = family_model
    embedder = load_embedder(str(folder))
    expected = {"clip": ("CLIP", False), "siglip": ("SigLIP", False), "siglip2": ("SigLIP 2", True),
                "metaclip2": ("MetaCLIP 2", True)}[family]
    assert (embedder.family, embedder.languages.multilingual) == expected
    assert embedder.languages.reads("en") and embedder.languages.reads("de") == expected[1]
    from retrieval.embedder import languages_of  # the same answer without loading the model
    assert languages_of(str(folder)) == embedder.languages


def test_a_naflex_checkpoint_is_refused_with_the_fixed_resolution_alternative(tmp_path):
    from transformers import Siglip2Config

    Siglip2Config().save_pretrained(tmp_path)
    with pytest.raises(RetrievalError, match="NaFlex.*siglip2-base-patch32-256"):
        load_embedder(str(tmp_path))


def test_a_model_that_is_not_image_text_is_refused(tmp_path):
    from transformers import BertConfig

    BertConfig().save_pretrained(tmp_path)
    with pytest.raises(RetrievalError, match="model type 'bert' is not an image-text model"):
        load_embedder(str(tmp_path))


def test_device_auto_is_the_cpu_here_and_a_missing_gpu_is_a_clear_error(tiny_model):
    from retrieval.embedder.runtime import resolve_device

    assert not torch.cuda.is_available()  # this check is about a machine without a GPU
    assert resolve_device("auto") == "cpu"
    assert load_embedder(str(tiny_model), device="auto").device == "cpu"
    for device, words in (("cuda", "no CUDA GPU"), ("mps", "MPS"), ("tpu", "DEVICE='tpu'")):
        with pytest.raises(RetrievalError, match=words):
            load_embedder(str(tiny_model), device=device)


@pytest.fixture
def native_bfloat16(monkeypatch, tmp_path):
    """A CPU that says it computes bfloat16 natively, and an empty place to remember trials."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "precision.json"


def test_auto_precision_is_measured_once_then_remembered(tiny_model, native_bfloat16):
    import json

    first = load_embedder(str(tiny_model))
    assert "measured now" in first.precision_note
    (entry,) = json.loads(native_bfloat16.read_text()).values()
    assert first.precision == entry["dtype"]
    cheaper = entry["bfloat16_cpu_ms_per_image"] < 0.85 * entry["float32_cpu_ms_per_image"]
    assert entry["dtype"] == ("bfloat16" if cheaper else "float32")  # the measurement decides
    again = load_embedder(str(tiny_model))
    assert "measured before" in again.precision_note and again.precision == first.precision


@pytest.mark.parametrize("measured, expected", [((40.0, 64.0), torch.float32), ((40.0, 18.0), torch.bfloat16)])
def test_auto_precision_follows_what_was_measured_on_this_machine(tiny_model, native_bfloat16, measured, expected):
    """A CPU with native bfloat16 that runs it slower (an Intel Xeon without AMX) stays in float32."""
    import json

    first = load_embedder(str(tiny_model))  # finds this machine's key
    (key,) = json.loads(native_bfloat16.read_text())
    float32_ms, bfloat16_ms = measured
    native_bfloat16.write_text(json.dumps({key: {"dtype": str(expected).removeprefix("torch."),
                                                 "float32_ms_per_image": float32_ms,
                                                 "bfloat16_ms_per_image": bfloat16_ms}}))
    remembered = load_embedder(str(tiny_model))
    assert remembered.precision == str(expected).removeprefix("torch.") and f"{bfloat16_ms} ms per image in bfloat16" in remembered.precision_note
    assert first.signature == remembered.signature


class _WaitsInBfloat16:
    """An image side that, under bfloat16 autocast, waits (wall time, hardly any CPU), and in float32
    computes for a shorter wall time: what a loaded machine makes of a CPU-cheap precision."""

    def get_image_features(self, pixel_values):
        import time

        if torch.is_autocast_enabled("cpu"):
            time.sleep(0.08)  # longer than 10 ms of CPU takes on a machine busy with other tests
        else:
            started = time.process_time()
            while time.process_time() - started < 0.01:
                pass
        return pixel_values


def test_the_trial_compares_cpu_time_in_interleaved_rounds_not_wall_time():
    from retrieval.embedder.precision_trial import measure

    result = measure(_WaitsInBfloat16(), (3, 8, 8))
    assert result["bfloat16_ms_per_image"] > result["float32_ms_per_image"]  # slower on the wall clock
    assert result["bfloat16_cpu_ms_per_image"] < 0.85 * result["float32_cpu_ms_per_image"]
    assert result["dtype"] == "bfloat16" and result["measured_at"]
    assert measure(_WaitsInBfloat16(), (3, 8, 8))["dtype"] == "bfloat16"  # and again


def test_the_choice_is_shown_by_stats_and_timed_again_on_request(settings, native_bfloat16):
    import json

    from cli_runs import run_in_process

    env = {"CACHE_DIR": str(native_bfloat16.parent)}
    code, out, _ = run_in_process(settings, "stats", env=env)
    assert code == 0 and "measured when the model first loads" in out
    code, out, err = run_in_process(settings, "precision", env=env)
    assert code == 0, err
    (key, entry), = json.loads(native_bfloat16.read_text()).items()
    assert entry["dtype"] in out and "measured now" in out
    entry["dtype"], entry["measured_at"] = "bfloat16" if entry["dtype"] == "float32" else "float32", "2000-01-01"
    native_bfloat16.write_text(json.dumps({key: entry}))
    code, out, _ = run_in_process(settings, "stats", env=env)
    assert code == 0 and f"precision: {entry['dtype']}: the image side used" in out and "2000-01-01" in out
    code, out, _ = run_in_process(settings, "precision", "--retime", env=env)
    assert code == 0 and "measured now" in out
    assert "ONNX Runtime float32 used" in out  # the image export against torch, timed again as well
    assert json.loads(native_bfloat16.read_text())[key]["measured_at"] != "2000-01-01"


def test_a_cpu_without_native_bfloat16_uses_float32_without_a_trial(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    embedder = load_embedder(str(tiny_model))
    assert embedder.precision == "float32" and "no native bfloat16" in embedder.precision_note
    assert not (tmp_path / "cache").exists()


# -- the text side exported to ONNX (a fresh process's text queries need no torch) ----------

# The first SigLIP's SentencePiece tokenizer has no `tokenizers` pipeline to export; the others have one.
EXPORTABLE = sorted(set(BUILDERS) - {"siglip"})


@pytest.fixture(scope="module", params=EXPORTABLE)
def exported(request, tmp_path_factory):
    """(the model, the embedder a later process loads after the export, the reference)."""
    folder = BUILDERS[request.param](tmp_path_factory.mktemp("exported") / request.param)
    full = load_embedder(str(folder), precision="float32", text_export=False)
    assert full.prepare_text_export()
    return full, load_embedder(str(folder)), reference_for(folder, request.param)


def test_the_text_export_embeds_as_the_reference(exported):
    full, later, (_, text_vector) = exported
    assert "ONNX" in later.precision_note and later.signature == full.signature
    texts = ["a cat", "the dog and the cat on a long sandy beach at sunset", "x", "ein Hund", "le chien 狗",
             "a very long caption that goes on " * 20]  # cut to the context as the model's tokenizer cuts
    for text, vector in zip(texts, later.embed_texts(texts)):
        assert cosine(vector, text_vector(text)) >= 0.9999
    assert [later.reads_whole(t) for t in texts] == [full.reads_whole(t) for t in texts] == [True] * 5 + [False]


def test_images_through_a_text_first_embedder_load_the_model_and_match_it(exported):
    _, later, (image_vector, _) = exported
    photo = random_photo(21)
    assert cosine(later.embed_images([photo])[0], image_vector(photo)) >= 0.9999
    assert "ONNX" in later.precision_note  # text keeps going through the export


def test_a_tokenizer_without_a_tokenizers_pipeline_keeps_loading_the_model(tmp_path):
    folder = BUILDERS["siglip"](tmp_path / "siglip")
    full = load_embedder(str(folder), precision="float32", text_export=False)
    assert not full.prepare_text_export()
    assert type(load_embedder(str(folder))) is type(full)


@pytest.mark.parametrize("family", EXPORTABLE)
def test_an_export_that_answers_otherwise_than_the_model_is_not_kept(family, tmp_path, monkeypatch):
    """The check before an export is kept can fail: token ids padded on the wrong side differ."""
    from dataclasses import replace

    from retrieval.embedder import text_export

    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    folder = BUILDERS[family](tmp_path / family)
    full = load_embedder(str(folder), precision="float32", text_export=False)
    original = text_export.export_text_side

    def with_wrong_padding(name, model, tokenizer, facts, announce=None):
        wrong_side = "left" if facts.padding_side == "right" else "right"
        return original(name, model, tokenizer, replace(facts, padding_side=wrong_side), announce)

    monkeypatch.setattr(text_export, "export_text_side", with_wrong_padding)
    assert not full.prepare_text_export()
    assert text_export.load_export(str(folder)) is None
    assert type(load_embedder(str(folder))) is type(full)
    # and the refusal is remembered: later runs do not spend the export's time again
    monkeypatch.setattr(text_export, "export_text_side", original)
    assert not full.prepare_text_export()


def test_changed_checkpoint_files_make_a_new_export(family_model, tmp_path):
    import shutil

    from retrieval.embedder.text_export import export_folder

    folder = shutil.copytree(family_model[1], tmp_path / "model")
    before = export_folder(str(folder))
    assert export_folder(str(folder)) == before
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes() + b"")
    os.utime(folder / "model.safetensors", ns=(1, 1))
    assert export_folder(str(folder)) != before


def test_the_text_export_reports_each_step(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    full = load_embedder(str(tiny_model), precision="float32")
    heard = []
    assert full.prepare_text_export(lambda step, done, total: heard.append((step, done, total)))
    assert heard == [("tracing the text side", 0, 3), ("optimising it for ONNX Runtime", 1, 3),
                     ("checking it against the model", 2, 3), ("done", 3, 3)]
    full.prepare_text_export(lambda *step: heard.append(step))
    assert len(heard) == 4  # exported before: no step again


# -- the image side exported to ONNX (new photos indexed without torch) ------------------------

def test_an_image_export_that_answers_otherwise_than_the_model_is_refused_and_remembered(tiny_model, tmp_path,
                                                                                        monkeypatch):
    """The check before an image export is kept can fail: a recipe with the wrong mean gives other pixels."""
    from dataclasses import replace

    from retrieval.embedder import image_export

    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    full = load_embedder(str(tiny_model), precision="float32", text_export=False, image_export=False)
    original = image_export.export_image_side

    def with_wrong_mean(name, model, processor, facts, *args, **kwargs):
        wrong = replace(facts, recipe=replace(facts.recipe, mean=(0.5, 0.5, 0.5)))
        return original(name, model, processor, wrong, *args, **kwargs)

    monkeypatch.setattr(image_export, "export_image_side", with_wrong_mean)
    assert not full.prepare_image_export()
    assert image_export.find_export(str(tiny_model)) is None
    refusal = image_export.export_folder(str(tiny_model)).with_suffix(".refused")
    assert "other pixels" in refusal.read_text()
    assert type(load_embedder(str(tiny_model), text_export=False)) is type(full)
    # remembered: the right export is not tried again for the same files until the note is deleted
    monkeypatch.setattr(image_export, "export_image_side", original)
    assert not full.prepare_image_export()
    refusal.unlink()
    assert full.prepare_image_export()
    assert isinstance(load_embedder(str(tiny_model), text_export=False), ExportFirstEmbedder)


def test_torch_embeds_a_run_only_when_its_cheaper_photos_pay_for_its_start(tmp_path):
    from retrieval.embedder.image_export import break_even, remember_runtime, uses_export

    figures = {"runtime": "torch", "onnx_cpu_ms_per_image": 90.0, "torch_cpu_ms_per_image": 50.0,
               "torch_start_cpu_s": 4.0, "onnx_start_cpu_s": 0.2, "torch_dtype": "bfloat16"}
    assert break_even(figures) == pytest.approx(95)  # 3.8 s of start / 40 ms saved per photo
    remember_runtime(tmp_path, 2, figures)
    assert uses_export(tmp_path, 2, 94) and not uses_export(tmp_path, 2, 95)
    assert uses_export(tmp_path, 1, 10_000)  # not timed at this thread count: the export spares torch's start
    # both runtimes embed on 2 cores and torch starts on one: a photo saves 20 ms of the run's time
    assert break_even({**figures, "threads": 2}) == pytest.approx(190)
    remember_runtime(tmp_path, 2, {**figures, "runtime": "onnx", "torch_cpu_ms_per_image": 80.0})
    assert uses_export(tmp_path, 2, 10_000)  # torch within the margin: never worth its start


def test_a_large_run_where_torch_is_cheaper_loads_it_in_the_background(tiny_model, tmp_path, monkeypatch):
    from retrieval.embedder.image_export import export_folder, remember_runtime
    from retrieval.embedder.torch_program import PROGRAM_FILE

    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    full = load_embedder(str(tiny_model), precision="float32", text_export=False, image_export=False)
    assert full.prepare_image_export()
    remember_runtime(export_folder(str(tiny_model)), None, {
        "runtime": "torch", "onnx_cpu_ms_per_image": 9.0, "torch_cpu_ms_per_image": 1.0, "torch_dtype": "float32",
        "torch_start_cpu_s": 1.0, "onnx_start_cpu_s": 0.0})  # break-even: 125 photos
    photos = [random_photo(n) for n in range(3)]
    small = load_embedder(str(tiny_model), text_export=False)
    small.expect_images(124)
    assert np.allclose(small.embed_images(photos), full.embed_images(photos), atol=1e-4)
    assert "images in float32 through its checked ONNX export" in small.precision_note
    large = load_embedder(str(tiny_model), text_export=False)
    large.expect_images(125)
    assert np.allclose(large.embed_images(photos), full.embed_images(photos), atol=1e-4)
    # torch, as timed: through the image side traced beside the export, without the full model
    assert "through its checked ONNX export" not in large.precision_note and large.precision == "float32"
    assert "traced for torch" in large.precision_note and large._full is None
    (export_folder(str(tiny_model)) / PROGRAM_FILE).unlink()  # without the program: the full model
    without = load_embedder(str(tiny_model), text_export=False)
    without.expect_images(125)
    assert np.allclose(without.embed_images(photos), full.embed_images(photos), atol=1e-4)
    assert without._full is not None and "traced" not in without.precision_note


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_traced_program_gives_the_models_vectors_in_its_arithmetic(family_model, dtype, tmp_path, monkeypatch):
    """Every family, in float32 and in bfloat16 (autocast, as the model runs on a CPU that chose it)."""
    from retrieval.embedder.image_export import check_photos, export_folder, read_runtimes
    from retrieval.embedder.torch_program import PROGRAM_FILE, TracedImages

    family, folder = family_model
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    full = load_embedder(str(folder), precision=dtype, text_export=False, image_export=False)
    assert full.prepare_image_export(), family
    target = export_folder(str(folder))
    assert (target / PROGRAM_FILE).is_file()
    figures = next(iter(read_runtimes(target).values()))
    assert figures["torch_runs"] == "traced program" and figures["torch_dtype"] == dtype
    photos = check_photos() + [random_photo(n, (90, 70)) for n in range(3)]
    pixels = [full.preprocess_image(photo) for photo in photos]
    traced = TracedImages(target / PROGRAM_FILE).embed(pixels)
    assert min(cosine(a, b) for a, b in zip(traced, full.embed_pixels(pixels))) >= 0.9999


def test_a_traced_program_that_answers_otherwise_than_the_model_is_not_kept(tiny_model, tmp_path, monkeypatch):
    """Fault injection: the traced copy's weights are changed after copying, so its vectors differ."""
    import torch

    from retrieval.embedder import torch_program
    from retrieval.embedder.image_export import export_folder, read_runtimes

    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    copy_image_side = torch_program._image_only

    def changed(model, text_modules, dtype):
        copy = copy_image_side(model, text_modules, dtype)
        with torch.no_grad():
            for parameter in copy.parameters():
                parameter.mul_(-1.0)
        return copy

    monkeypatch.setattr(torch_program, "_image_only", changed)
    full = load_embedder(str(tiny_model), precision="float32", text_export=False, image_export=False)
    assert full.prepare_image_export()  # the ONNX export is kept: only the program is refused
    target = export_folder(str(tiny_model))
    assert not (target / torch_program.PROGRAM_FILE).exists()
    assert next(iter(read_runtimes(target).values()))["torch_runs"] == "model"


def test_int8_is_used_only_when_asked_for(tiny_model, tmp_path, monkeypatch):
    from retrieval.embedder.image_export import INT8_FILE, export_folder, int8_agreement

    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    full = load_embedder(str(tiny_model), precision="float32", text_export=False, image_export=False)
    assert full.prepare_image_export()
    photos = [random_photo(n, (80, 60)) for n in range(4)]
    exact = full.embed_images(photos)
    asked = load_embedder(str(tiny_model), text_export=False, image_int8=True)
    asked.expect_images(10_000)  # however large the run: INT8 was asked for
    quantised = asked.embed_images(photos)
    assert asked.precision == "int8" and "INT8" in asked.precision_note
    folder = export_folder(str(tiny_model))
    assert (folder / INT8_FILE).is_file() and int8_agreement(folder)["min_cosine"] > 0.9
    assert not np.array_equal(quantised, exact)  # quantised: close, not the same
    assert min(cosine(a, b) for a, b in zip(quantised, exact)) > 0.9
    # with the quantised graph made and lying there, nothing else uses it
    plain = load_embedder(str(tiny_model), text_export=False)
    assert plain.precision == "float32" and "INT8" not in plain.precision_note
    assert min(cosine(a, b) for a, b in zip(plain.embed_images(photos), exact)) >= 0.9999
    settings = Settings(model=str(tiny_model), chroma_path=tmp_path / "store")
    assert Engine(settings).embedder.precision == "float32"


def test_a_brief_process_opens_the_exports_without_prepacking_and_gets_the_same_vectors(tiny_model, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    full = load_embedder(str(tiny_model), precision="float32", text_export=False, image_export=False)
    assert full.prepare_text_export() and full.prepare_image_export()
    brief = load_embedder(str(tiny_model), brief=True)
    photos = [random_photo(n) for n in range(3)]
    texts = ["a cat", "the dog on the beach"]
    for ours, theirs in ((brief.embed_images(photos), full.embed_images(photos)),
                         (brief.embed_texts(texts), full.embed_texts(texts))):
        assert min(cosine(a, b) for a, b in zip(ours, theirs)) >= 0.9999
    assert "ONNX" in brief.precision_note


def test_a_commands_text_export_opens_at_its_first_text_and_a_damaged_one_loads_the_model(tiny_model, tmp_path,
                                                                                  monkeypatch):
    from retrieval.embedder.text_export import MODEL_FILE, export_folder

    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    full = load_embedder(str(tiny_model), precision="float32", text_export=False, image_export=False)
    assert full.prepare_text_export() and full.prepare_image_export()
    assert load_embedder(str(tiny_model))._text._session is not None  # a long-lived process: at once
    indexing = load_embedder(str(tiny_model), brief=True)  # one command
    indexing.embed_images([random_photo(1)])
    assert indexing._text._session is None  # photos only: the text side's weights never loaded
    texts = ["a cat", "the dog on the beach"]
    assert min(cosine(a, b) for a, b in zip(indexing.embed_texts(texts), full.embed_texts(texts))) >= 0.9999
    assert indexing._text._session is not None
    graph = export_folder(str(tiny_model)) / MODEL_FILE
    graph.write_bytes(graph.read_bytes()[:100])  # damaged after the process found it
    for brief in (True, False):  # found damaged at the first text, or as the process loads
        damaged = load_embedder(str(tiny_model), brief=brief)
        assert min(cosine(a, b) for a, b in zip(damaged.embed_texts(texts), full.embed_texts(texts))) >= 0.9999
        assert damaged._full is not None and "text in float32 through" not in damaged.precision_note
