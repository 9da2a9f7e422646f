"""Captions written by a model: a tiny BLIP built from a config, loaded by the product's own
loader, through the indexing pipeline, the record's text, the command line and the details panel."""

from __future__ import annotations

import json
import os
import signal

import pytest
from PIL import Image

from cli_runs import run_in_process, run_until_committed
from photos import write_photos
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.indexing.photo import FAILED_STAGES_FIELD
from retrieval.indexing.stages import Caption
from retrieval.photos.images import decode_image, read_file_bytes
from retrieval.store.documents import document_of
from retrieval.text.captions import CAPTION_FIELD, CAPTION_SIDE, CAPTIONED_BY_FIELD, TransformersCaptioner
from retrieval.ui.present import details_html
from tiny_models import build_tiny_blip, build_tiny_git


@pytest.fixture(scope="module")
def tiny_captioner(tmp_path_factory):
    return build_tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")


@pytest.fixture
def captioning(settings, tiny_captioner):
    return settings.with_overrides(caption_model=str(tiny_captioner))


def by_name(engine: Engine) -> dict[str, dict]:
    return {r.metadata["filename"]: r.metadata for r in engine.store.iter_all()}


def test_a_caption_is_the_models_own_greedy_generation(tiny_captioner):
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    photos = [Image.new("RGB", (64 + 8 * n, 48), (40 * n, 200 - 30 * n, 90)) for n in range(4)]
    ours = TransformersCaptioner(str(tiny_captioner)).caption(photos)
    processor = BlipProcessor.from_pretrained(tiny_captioner)
    model = BlipForConditionalGeneration.from_pretrained(tiny_captioner).eval()
    with torch.no_grad():
        generated = model.generate(**processor(images=photos, return_tensors="pt"), max_new_tokens=30)
    assert ours == [" ".join(t.split()) for t in processor.batch_decode(generated, skip_special_tokens=True)]
    assert all(ours), "the tiny model wrote nothing: the comparison would show nothing"


def test_the_architecture_comes_from_the_checkpoint(tiny_captioner, tmp_path):
    blip, git = TransformersCaptioner(str(tiny_captioner)), TransformersCaptioner(str(build_tiny_git(tmp_path / "git")))
    assert (type(blip._model).__name__, type(git._model).__name__) == ("BlipForConditionalGeneration", "GitForCausalLM")
    photo = Image.new("RGB", (64, 48), (200, 30, 30))
    assert blip.caption([photo])[0] and git.caption([photo])[0]


def test_index_captions_from_the_command_line_and_search_shows_them(captioning, tiny_captioner, tmp_path):
    folder = tmp_path / "photos"
    paths = write_photos(folder, 3)
    code, out, err = run_in_process(captioning, "index", str(folder), "--captions", "--caption-model",
                                    str(tiny_captioner))
    assert code == 0, err
    assert "Added 3 photos" in out
    stored = by_name(Engine(captioning))
    captioner = TransformersCaptioner(str(tiny_captioner))
    for path in paths:
        metadata = stored[path.name]
        assert metadata[CAPTIONED_BY_FIELD] == str(tiny_captioner)
        decoded = decode_image(read_file_bytes(path, 10**8), 10**8, draft=(CAPTION_SIDE, CAPTION_SIDE)).image
        assert metadata[CAPTION_FIELD] == captioner.caption([decoded])[0]
        assert f" {metadata[CAPTION_FIELD]} " in document_of(metadata)  # searched like any text of the photo
    code, out, err = run_in_process(captioning, "search", "a photo", "--json")
    assert code == 0, err
    results = json.loads(out)
    assert len(results) == 3 and all(r[CAPTION_FIELD] for r in results)
    again = Engine(captioning).index([folder], captions=True)
    assert again.added == [] and again.facts_read == 0, "every photo is stamped: none is captioned twice"


def test_captions_are_added_later_without_embedding_again(captioning, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 3)
    Engine(captioning).index([folder])
    later = Engine(captioning)
    report = later.index([folder], captions=True)
    assert report.added == [] and report.facts_read == 3
    assert later._embedder is None, "captioning embeds nothing"
    assert all(CAPTION_FIELD in m for m in by_name(later).values())


def test_a_caption_failing_on_one_photo_leaves_it_indexed_and_the_next_run_writes_it(captioning, tmp_path,
                                                                                    monkeypatch):
    folder = tmp_path / "photos"
    paths = write_photos(folder, 3)
    works = Caption.run

    def run(self, photo):
        if photo.path.name == paths[1].name:
            raise RuntimeError("the decoder ran out of memory")
        works(self, photo)

    monkeypatch.setattr(Caption, "run", run)
    report = Engine(captioning).index([folder], captions=True)
    assert len(report.added) == 3
    assert [(f.stage, f.reason) for f in report.stage_failures] == [
        ("caption", "RuntimeError: the decoder ran out of memory")]
    assert by_name(Engine(captioning))[paths[1].name][FAILED_STAGES_FIELD] == [
        "caption: RuntimeError: the decoder ran out of memory"]
    monkeypatch.undo()
    again = Engine(captioning).index([folder], captions=True)
    assert again.facts_read == 1 and again.stage_failures == []
    stored = by_name(Engine(captioning))[paths[1].name]
    assert stored[CAPTION_FIELD] and FAILED_STAGES_FIELD not in stored


def test_a_captioning_model_that_cannot_be_had_is_named_and_the_photos_are_indexed(settings, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 2)
    code, out, err = run_in_process(settings, "index", str(folder), "--captions", "--caption-model",
                                    str(tmp_path / "no-such-captioner"))
    assert code == 0 and "Added 2 photos" in out
    assert "captioning model" in err and "CAPTION_MODEL" in err and "Traceback" not in err
    assert "indexed without captions" in err
    assert all(CAPTIONED_BY_FIELD not in m for m in by_name(Engine(settings)).values())
    with pytest.raises(RetrievalError, match="CAPTION_MODEL"):
        TransformersCaptioner("someone/no-such-captioner")  # the suite runs offline (HF_HUB_OFFLINE)


def test_the_details_panel_shows_a_caption_apart_from_descriptions():
    shown = details_html({"id": "x", "filename": "a.jpg", "caption": "a dog on a beach",
                          "captioned_by": "microsoft/git-base-coco"})
    assert "Caption (generated)" in shown and "a dog on a beach" in shown
    assert "<h3>a.jpg</h3>" in shown  # the title stays the file name: a caption is not a description


@pytest.mark.slow
def test_captioning_killed_part_way_resumes_where_it_stopped(captioning, tiny_captioner, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 24)
    Engine(captioning.with_overrides(batch_size=2)).index([folder])
    env = dict(os.environ, MODEL=str(captioning.model), CHROMA_PATH=str(captioning.chroma_path), BATCH_SIZE="2",
               DECODE_WORKERS="1", PYTHONUNBUFFERED="1", CAPTION_MODEL=str(tiny_captioner))
    process = run_until_committed(["index", str(folder), "--captions"], env, batches=3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sum(CAPTIONED_BY_FIELD in m for m in by_name(Engine(captioning)).values())
    assert 4 <= done < 24, "the run was not stopped part-way"
    resumed = Engine(captioning).index([folder], captions=True)
    assert resumed.added == [] and resumed.facts_read == 24 - done
    assert all(CAPTIONED_BY_FIELD in m for m in by_name(Engine(captioning)).values())
