"""A collection exported as Parquet and imported elsewhere: on another backend, in a fresh
store, and as the collection the app starts from (photos shown by their image URLs)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from cli_runs import REPO
from dataset_server import FlakyPhotoServer
from photos import write_photos
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.model_signature import ModelSignature
from retrieval.settings import Settings
from store_backends import settings_for

QUERIES = ["a red barn", "a dog on the beach", "ein Hund im Schnee", "night city lights"]


@pytest.fixture
def indexed(clip_settings, tmp_path):
    """Eight photos with a metadata table (numbers, text, tags, image URLs), in embedded Chroma."""
    paths = write_photos(tmp_path / "photos", 8)
    rows = [{"filename": p.name, "photographer": ["Ana", "Ben"][i % 2], "tags": "beach,dog" if i % 3 else "city",
             "description": f"photo {i} \"quoted\" — ünïcode", "image_url": f"http://127.0.0.1:9/{i}.jpg"}
            for i, p in enumerate(paths)]
    (tmp_path / "meta.json").write_text(json.dumps(rows))
    engine = Engine(clip_settings)
    engine.index([tmp_path / "photos"], metadata_file=tmp_path / "meta.json")
    return engine, paths


def results(engine: Engine, paths) -> list:
    found = [[(r.id, round(r.score, 5)) for r in engine.search_text(q, k=8)] for q in QUERIES]
    found.append([(r.id, round(r.score, 5)) for r in engine.search_image(paths[2], k=5)])
    found.append([r.id for r in engine.search_tags(["beach", "dog"], match_all=True, k=8)])
    return found


@pytest.mark.parametrize("target", ["chroma", "milvus-lite"])
def test_an_export_imported_elsewhere_gives_identical_results(indexed, tmp_path, target, request):
    engine, paths = indexed
    report = engine.export_collection(tmp_path / "export", shard_rows=3)
    assert report.records == 8 and report.shards == 3
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["model"]["model"] == engine.settings.model and manifest["count"] == 8

    moved = tmp_path / "moved-export"  # as if copied to another machine
    shutil.copytree(tmp_path / "export", moved)
    # the same model object: what is compared is the store's transfer, not two loads' last float bits
    other = Engine(settings_for(target, tmp_path / "elsewhere", request).with_overrides(model=engine.settings.model),
                   embedder=engine.embedder)
    assert other.import_collection(moved).records == 8
    assert other.store.count() == 8
    before = {r.id: (r.metadata, r.embedding) for r in engine.store.iter_all(with_embeddings=True)}
    after = {r.id: (r.metadata, r.embedding) for r in other.store.iter_all(with_embeddings=True)}
    assert before.keys() == after.keys()
    for record_id, (metadata, vector) in before.items():
        assert after[record_id][0] == metadata
        np.testing.assert_allclose(after[record_id][1], vector, atol=1e-7)  # Milvus normalises: last bit
    if target == "chroma":
        assert results(other, paths) == results(engine, paths)  # identical, scores and order
    else:  # the same photos and scores; equal tag scores are listed in each backend's own order
        for theirs, ours in zip(results(other, paths), results(engine, paths)):
            assert sorted(map(str, theirs)) == sorted(map(str, ours))

    assert other.import_collection(moved).records == 8  # again: nothing doubled
    assert other.store.count() == 8
    assert other.import_collection(moved, only_if_needed=True).skipped


def test_a_store_of_another_model_refuses_the_import(indexed, tmp_path):
    engine, _ = indexed
    engine.export_collection(tmp_path / "export")
    other = Engine(Settings(chroma_path=tmp_path / "other-store"))
    other.store.bind(ModelSignature("another-model", 4, "beef"))
    other.store.upsert(["x"], np.ones((1, 4), dtype=np.float32), [{"title": "x"}])
    with pytest.raises(RetrievalError, match="reembed"):
        other.import_collection(tmp_path / "export")
    assert other.store.count() == 1  # nothing written


def test_exports_that_can_not_be_made_or_read_are_clear_errors(indexed, tmp_path):
    engine, _ = indexed
    with pytest.raises(RetrievalError, match="empty"):
        Engine(Settings(chroma_path=tmp_path / "empty")).export_collection(tmp_path / "x")
    engine.export_collection(tmp_path / "export")
    with pytest.raises(RetrievalError, match="holds an export already"):
        engine.export_collection(tmp_path / "export")
    (tmp_path / "export" / "manifest.json").unlink()  # as if the export had been cut short
    with pytest.raises(RetrievalError, match="did not finish"):
        engine.import_collection(tmp_path / "export")
    with pytest.raises(RetrievalError, match="does not exist"):
        engine.import_collection(tmp_path / "nowhere")
    with pytest.raises(RetrievalError, match="Hugging Face"):
        engine.import_collection("someone/some-collection")  # the hub is unreachable in tests


def _rewrite_shard(folder, change) -> None:
    """Read the export's one shard, let ``change`` edit its columns, write it back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = folder / "part-00000.parquet"
    columns = pq.read_table(shard).to_pydict()
    change(columns)
    vectors = pa.array(columns["vector"], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": columns["id"], "vector": vectors, "metadata": columns["metadata"]}), shard)


def test_a_bad_export_is_named_with_its_row_and_changes_nothing(indexed, tmp_path):
    """Shards outside the export folder are never read; bad rows are the export's fault, named by
    shard and row, and the target store is left as it was."""
    engine, _ = indexed
    engine.export_collection(tmp_path / "export")
    other = Engine(engine.settings.with_overrides(chroma_path=tmp_path / "other"))
    manifest_path = tmp_path / "export" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    shutil.copytree(tmp_path / "export", tmp_path / "elsewhere")
    for outside in ["../elsewhere/part-00000.parquet", "/etc/passwd", str(tmp_path / "elsewhere" / "part-00000.parquet")]:
        manifest_path.write_text(json.dumps(dict(manifest, shards=[outside])))
        with pytest.raises(RetrievalError, match="names a shard outside its folder"):
            other.import_collection(tmp_path / "export")
    manifest_path.write_text(json.dumps(dict(manifest, shards="part-00000.parquet", count="many")))
    with pytest.raises(RetrievalError, match="manifest.json is damaged"):
        other.import_collection(tmp_path / "export")
    manifest_path.write_text(json.dumps(manifest))
    original = (tmp_path / "export" / "part-00000.parquet").read_bytes()

    def restore():
        (tmp_path / "export" / "part-00000.parquet").write_bytes(original)

    def metadata_not_json(columns):
        columns["metadata"][3] = "{not json"

    def empty_id(columns):
        columns["id"][5] = ""

    def repeated_id(columns):
        columns["id"][6] = columns["id"][2]

    def not_finite(columns):
        columns["vector"][4] = [float("nan")] * len(columns["vector"][4])

    for change, words in [(metadata_not_json, "row 4 of part-00000.parquet .* metadata that is not JSON"),
                          (empty_id, "row 6 of part-00000.parquet has no id"),
                          (repeated_id, "row 7 of part-00000.parquet repeats the id"),
                          (not_finite, "row 5 of part-00000.parquet .* NaN or infinite")]:
        restore()
        _rewrite_shard(tmp_path / "export", change)
        with pytest.raises(RetrievalError, match=f"The export at .* is bad: {words}") as caught:
            other.import_collection(tmp_path / "export")
        assert "damaged" not in str(caught.value)
        assert other.store.count() == 0  # nothing written, not even the rows before the bad one
    (tmp_path / "export" / "part-00000.parquet").write_text("not parquet")
    with pytest.raises(RetrievalError, match="part-00000.parquet of the export .* can't be read"):
        other.import_collection(tmp_path / "export")
    restore()
    assert other.import_collection(tmp_path / "export").records == 8


def test_export_and_import_commands(indexed, tmp_path):
    engine, _ = indexed
    env = dict(os.environ, MODEL=engine.settings.model, CHROMA_PATH=str(engine.settings.chroma_path))
    done = subprocess.run([sys.executable, "-m", "retrieval", "export", str(tmp_path / "out"), "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"] == 8
    env["STORE"] = f"milvus:{tmp_path / 'milvus'}"
    done = subprocess.run([sys.executable, "-m", "retrieval", "import", str(tmp_path / "out"), "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["count"] == 8


@pytest.mark.slow
def test_the_app_starts_from_an_export_and_shows_photos_by_their_urls(clip_settings, tmp_path, monkeypatch):
    """A Space: no photo files, an ephemeral store, COLLECTION_IMPORT naming an export."""
    from gradio_client import Client

    from app import build_app
    from retrieval.ui.startup import launch, prepare_collection
    from retrieval.indexing.transfer import start_from_export
    from retrieval.ui.media import MediaFolder

    paths = write_photos(tmp_path / "photos", 5)
    with FlakyPhotoServer() as server:
        rows = []
        for i, path in enumerate(paths):
            buffer = io.BytesIO()
            Image.open(path).save(buffer, "JPEG")
            server.files[f"/photos/{i}.jpg"] = buffer.getvalue()
            rows.append({"filename": path.name, "description": f"photo {i}",
                         "image_url": f"{server.base_url}/photos/{i}.jpg"})
        (tmp_path / "meta.json").write_text(json.dumps(rows))
        builder = Engine(clip_settings)
        builder.index([tmp_path / "photos"], metadata_file=tmp_path / "meta.json")
        builder.export_collection(tmp_path / "export")
        shutil.rmtree(tmp_path / "photos")  # the Space has none of the files

        monkeypatch.delenv("MODEL", raising=False)  # the export names its model
        space = Settings(chroma_path=tmp_path / "space-store", collection_import=str(tmp_path / "export"),
                         model="not-this-one")
        settings, export = start_from_export(space, os.environ)
        assert settings.model == clip_settings.model
        engine = Engine(settings)
        media = MediaFolder(settings.media_folder, settings.max_image_pixels)
        assert prepare_collection(engine, media, export) == ""  # no starter photos, no model problem
        assert engine.store.count() == 5
        app = launch(build_app(engine, media), engine, server_name="127.0.0.1", server_port=None,
                     prevent_thread_lock=True, quiet=True)
        try:
            # As the browser sees it: the pictures are the photos' URLs, fetched from there.
            client = Client(app.local_url, verbose=False, download_files=False)
            gallery, status, found, _ = client.predict("photo", "", 5, 0, None, None, "", "", "", "best match", False, api_name="/search_text")
            assert len(found) == 5 and "Showing 5 photos" in status
            by_description = {r["description"]: i for i, r in enumerate(found)}
            for i in range(5):
                picture = gallery[by_description[f"photo {i}"]]["image"]
                assert picture["url"] == f"{server.base_url}/photos/{i}.jpg"
                assert Image.open(io.BytesIO(httpx.get(picture["url"]).content)).size == Image.open(
                    io.BytesIO(server.files[f"/photos/{i}.jpg"])).size
        finally:
            app.close()
        assert prepare_collection(engine, media, export) == ""  # a restart imports nothing again
        assert engine.store.count() == 5
