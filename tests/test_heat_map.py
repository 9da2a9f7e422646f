""""Why this matched": the Grad-CAM heat map, against autograd written out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cli_runs import run_in_process
from photos import random_photo, write_photos
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.search.searcher import QueryTerm
from conftest import every_family


def reference_cam(model_folder, photo: Image.Image, query: np.ndarray) -> np.ndarray:
    """Grad-CAM by hand: the score's gradient at the last vision block's input, from the model's
    own hidden states (no hooks), weighted by channel over the patches."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_folder).eval()
    processor = CLIPProcessor.from_pretrained(model_folder)
    pixels = processor(images=photo.convert("RGB"), return_tensors="pt")["pixel_values"]
    out = model.vision_model(pixel_values=pixels, output_hidden_states=True)
    features = model.visual_projection(out.pooler_output)[0]
    score = (features / features.norm()) @ torch.from_numpy(query)
    hidden = out.hidden_states[-2]  # the input of the last block
    (gradient,) = torch.autograd.grad(score, hidden)
    patches, grads = hidden[0, 1:], gradient[0, 1:]  # after the class token
    cam = torch.relu(patches @ grads.mean(dim=0))
    side = int(round(cam.numel() ** 0.5))
    cam = cam.reshape(side, side)
    return (cam / cam.max()).detach().numpy() if float(cam.max()) > 0 else cam.detach().numpy()


def test_heat_map_matches_grad_cam_written_out(clip_settings, clip_model, tmp_path):
    engine = Engine(clip_settings)
    photo = random_photo(3, size=(80, 60))
    query = engine.embedder.embed_text("a red square")
    grid = engine.embedder.explain(photo, query)
    assert grid.shape == (4, 4) and grid.dtype == np.float32  # 32 px in patches of 8
    assert grid.min() >= 0 and np.isclose(grid.max(), 1.0)
    np.testing.assert_allclose(grid, reference_cam(clip_model, photo, query), atol=1e-4)
    other = engine.embedder.explain(photo, engine.embedder.embed_text("two dogs on a beach at night"))
    assert not np.allclose(grid, other, atol=1e-3), "the map must move when the query moves"
    # CLIP sees the middle square of a landscape photo: the map covers that part.
    assert engine.embedder.seen_area(80, 60) == (10, 0, 70, 60)


@every_family
def test_every_family_gives_a_map_of_its_patch_grid(engine):
    photo = random_photo(4, size=(64, 64))
    grid = engine.embedder.explain(photo, engine.embedder.embed_text("a photo"))
    assert grid.ndim == 2 and grid.shape[0] == grid.shape[1] >= 2
    assert 0 <= grid.min() and grid.max() <= 1.0


def test_explain_command_and_its_errors(clip_settings, tmp_path):
    paths = write_photos(tmp_path / "photos", 3, size=(96, 64))
    engine = Engine(clip_settings)
    engine.index([tmp_path / "photos"])
    record = next(r for r in engine.store.iter_all() if r.metadata["path"] == str(paths[1]))
    out = tmp_path / "why.png"
    code, text, err = run_in_process(clip_settings, "explain", record.id, "a", "photo", "--out", str(out))
    assert code == 0, err
    assert "warmest patch" in text
    with Image.open(out) as picture:
        assert picture.size == (96, 64)
        assert not np.array_equal(np.asarray(picture.convert("RGB")), np.asarray(Image.open(paths[1]).convert("RGB")))
    before = out.read_bytes()
    out.unlink()
    code, _, err = run_in_process(clip_settings, "explain", record.id, "--out", str(out), "a", "photo")
    assert code == 0, err  # the query after the options, as `search` takes it
    assert out.read_bytes() == before
    with pytest.raises(SystemExit) as refused:  # argparse's own exit, after its message
        run_in_process(clip_settings, "explain", record.id, "--out", str(out), "a", "--nope")
    assert refused.value.code == 2
    code, _, err = run_in_process(clip_settings, "explain", "no-such-id", "a photo", "--out", str(out))
    assert code == 1 and "No photo with id" in err
    code, _, err = run_in_process(clip_settings, "explain", record.id, "--out", str(out))
    assert code == 1 and "Give the query" in err
    stored = engine.store.get([record.id], with_embeddings=True)[0]
    engine.store.upsert([record.id], stored.embedding[None], [{"url": "https://example.org/x"}])  # URL only
    with pytest.raises(RetrievalError, match="file is needed"):
        engine.explain(record.id, [QueryTerm("text", "a photo")])
