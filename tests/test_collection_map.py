"""The map of the collection: the layout, kept until the collection changes, drawn as PNG and HTML."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from cli_runs import run_in_process
from photos import write_photos
from retrieval.views.collection_map import build_map, layout
from retrieval.engine import Engine
from retrieval.model_signature import ModelSignature
from retrieval.store import open_store


def clustered(n_per: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:2] * 3
    labels = np.repeat([0, 1], n_per)
    vectors = centres[labels] + 0.1 * rng.standard_normal((2 * n_per, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), labels


def separated(xy: np.ndarray, labels: np.ndarray) -> bool:
    """Whether a straight line parts the two groups (their boxes don't overlap on some axis)."""
    a, b = xy[labels == 0], xy[labels == 1]
    return any(a[:, d].max() < b[:, d].min() or b[:, d].max() < a[:, d].min() for d in (0, 1))


def test_pca_keeps_similar_photos_together():
    vectors, labels = clustered(40)
    xy, method = layout(vectors, "auto")
    assert method == "PCA" and xy.shape == (80, 2)
    assert xy.min() == 0.0 and xy.max() == 1.0
    assert separated(xy, labels)
    assert np.array_equal(layout(vectors)[0], xy)  # the same map every time
    assert layout(vectors[:1])[0].shape == (1, 2) and layout(vectors[:0])[0].shape == (0, 2)


@pytest.mark.slow
def test_umap_lays_out_big_collections():
    vectors, labels = clustered(1000)
    xy, method = layout(vectors, "auto")
    assert method == "UMAP" and xy.shape == (2000, 2)
    assert 0.0 <= xy.min() and xy.max() <= 1.0
    assert separated(xy, labels)


def test_the_layout_is_kept_until_the_collection_changes(tmp_path):
    from retrieval.settings import Settings

    store = open_store(Settings(chroma_path=tmp_path / "store", collection="map"))
    store.bind(ModelSignature("hand-made", 16, "beef"))
    vectors, _ = clustered(10)
    store.upsert([f"p{i}" for i in range(20)], vectors, [{"tags": ["a" if i < 10 else "b"]} for i in range(20)])
    cache = tmp_path / "map.npz"
    first = build_map(store, cache)
    assert not first.from_cache and cache.is_file()
    again = build_map(store, cache)
    assert again.from_cache and np.array_equal(again.xy, first.xy) and again.ids == first.ids
    store.upsert(["new"], vectors[:1], [{"tags": ["c"]}])
    changed = build_map(store, cache)
    assert not changed.from_cache and "new" in changed.ids and len(changed) == 21


def run(settings, *arguments) -> tuple[int, str]:
    code, out, err = run_in_process(settings, *arguments)
    return code, out + err


def test_map_command_draws_png_and_html(clip_settings, tmp_path):
    assert run(clip_settings, "map", "--out", str(tmp_path / "empty.png"))[0] == 1  # nothing to draw yet
    write_photos(tmp_path / "photos", 9)
    Engine(clip_settings).index([tmp_path / "photos"])
    code, out = run(clip_settings, "map", "--out", str(tmp_path / "map.png"), "--json")
    assert code == 0, out
    facts = json.loads(out)
    assert facts["photos"] == 9 and facts["method"] == "PCA" and not facts["from_cache"]
    with Image.open(tmp_path / "map.png") as picture:
        assert picture.size == (2000, 2000)
        assert len(set(picture.convert("RGB").getdata())) > 100  # thumbnails were drawn, not only dots
    code, out = run(clip_settings, "map", "--out", str(tmp_path / "map.html"), "--colour-by", "source")
    assert code == 0 and "the kept layout" in out
    page = (tmp_path / "map.html").read_text()
    assert len(re.findall(r'data-map-id="[0-9a-f]{64}"', page)) == 9
    assert page.count("data:image/jpeg;base64,") == 9
    code, out = run(clip_settings, "map", "--out", str(tmp_path / "map.gif"))
    assert code == 1 and ".png or an .html" in out
