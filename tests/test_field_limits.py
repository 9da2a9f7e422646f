"""No row, file or upload can make a store unreadable: every record is cut to the limits every
backend can apply, what was cut is reported, and a store an older version broke is mended."""

from __future__ import annotations

import numpy as np
import pytest

from cli_runs import run_in_process
from photos import write_photos
from retrieval.engine import Engine
from retrieval.model_signature import ModelSignature
from retrieval.store import open_store
from retrieval.store.field_limits import (MAX_FIELDS, MAX_LIST_ITEMS, MAX_RECORD_BYTES, MAX_TAG_CHARS,
                                          MAX_TEXT_CHARS, fit_to_limits)

MANY = 20_000  # tags in one cell: embedded Chroma could apply 5,000 but not 6,000


def tags_table(folder, photo_names, tags=MANY):
    table = folder / "tags.csv"
    many = ",".join(f"tag{i}" for i in range(tags))
    table.write_text("filename,tags\n" + f'{photo_names[0]},"{many}"\n'
                     + "".join(f"{name},plain\n" for name in photo_names[1:]))
    return table


def test_a_record_is_cut_to_every_limit_and_says_what_was_cut():
    fitted, notes = fit_to_limits({"tags": [f"t{i}" for i in range(MANY)], "description": "x" * 10**6,
                                   **{f"field{i}": i for i in range(100)}})
    assert len(fitted) == MAX_FIELDS and len(fitted["tags"]) == MAX_LIST_ITEMS
    assert len(fitted["description"]) == MAX_TEXT_CHARS
    assert any("20,000 tags" in note for note in notes) and any("1,000,000 characters" in note for note in notes)
    assert fit_to_limits({"tags": ["dog"], "width": 3}) == ({"tags": ["dog"], "width": 3}, [])

    long_tag, _ = fit_to_limits({"tags": ["y" * 500]})
    assert len(long_tag["tags"][0]) == MAX_TAG_CHARS
    huge, notes = fit_to_limits({f"caption{i}": "z" * MAX_TEXT_CHARS for i in range(40)})
    import json
    assert len(json.dumps(huge).encode()) <= MAX_RECORD_BYTES and any("bytes" in note for note in notes)


def test_every_backend_stays_readable_after_a_record_past_the_limits(store_settings):
    store = open_store(store_settings)
    store.bind(ModelSignature("hand-made", 4, "f00d"))
    vectors = np.eye(4, dtype=np.float32)[:3]
    store.upsert(["big", "keys", "fine"], vectors,
                 [{"tags": [f"t{i}" for i in range(MANY)], "description": "d" * 200_000},
                  {f"k{i}": i for i in range(6_000)},
                  {"tags": ["dog"]}])
    assert store.count() == 3
    got = {record.id: record.metadata for record in store.get(["big", "keys", "fine"])}
    assert len(got["big"]["tags"]) == MAX_LIST_ITEMS and len(got["big"]["description"]) == MAX_TEXT_CHARS
    assert len(got["keys"]) == MAX_FIELDS and got["fine"] == {"tags": ["dog"]}
    assert [match.id for match in store.query(vectors[2], 1)] == ["fine"]
    store.update_metadata(["fine"], [{"tags": [f"u{i}" for i in range(MANY)]}])
    assert len(store.get(["fine"])[0].metadata["tags"]) == MAX_LIST_ITEMS


def test_a_table_with_twenty_thousand_tags_in_one_cell_through_the_command_line(settings, tmp_path):
    paths = write_photos(tmp_path / "photos", 3)
    table = tags_table(tmp_path, [p.name for p in paths])
    code, out, err = run_in_process(settings, "index", str(tmp_path / "photos"), "--metadata", str(table))
    assert code == 0, err
    assert f"row 1 ({paths[0].name}): 20,000 tags, kept the first {MAX_LIST_ITEMS}" in out
    code, out, err = run_in_process(settings, "stats")
    assert code == 0 and "count: 3" in out, err
    code, out, err = run_in_process(settings, "search", "--tags", "tag7")
    assert code == 0 and paths[0].name in out, err
    code, out, err = run_in_process(settings, "index", str(tmp_path / "photos"), "--metadata", str(table))
    assert code == 0, err


def test_a_store_an_older_version_broke_is_mended_by_repair(settings, tmp_path):
    """What versions without limits wrote: a record embedded Chroma commits to its log but can never
    apply, which blocked every read after it. `repair` makes the store read again, keeping it."""
    write_photos(tmp_path / "photos", 3)
    assert run_in_process(settings, "index", str(tmp_path / "photos"))[0] == 0
    _write_unapplicable_record(settings)

    code, _, err = run_in_process(settings, "stats")
    assert code == 1 and "python -m retrieval repair" in err

    code, out, err = run_in_process(settings, "repair")
    assert code == 0, err
    assert "Mended 1 waiting records" in out and "The store reads: 4 records." in out
    code, out, _ = run_in_process(settings, "search", "--tags", "many1")
    assert code == 0 and "poisoned" in out
    code, out, _ = run_in_process(settings, "repair")
    assert code == 0 and "Nothing to mend" in out


def _write_unapplicable_record(settings) -> None:
    """Write through Chroma's own client, around the product, as a version without limits did."""
    import subprocess
    import sys

    script = (
        "import chromadb, numpy as np, sys\n"
        "client = chromadb.PersistentClient(path=sys.argv[1])\n"
        "collection = client.get_collection('photos')\n"
        "dim = len(collection.get(limit=1, include=['embeddings'])['embeddings'][0])\n"
        "collection.upsert(ids=['poisoned'], embeddings=[np.ones(dim, dtype=np.float32)],\n"
        "                  metadatas=[{'path': '/photos/poisoned.jpg', 'filename': 'poisoned.jpg',\n"
        "                              'tags': [f'many{i}' for i in range(20000)]}])\n"
    )
    # In a process of its own: the failed write must not leave this process's Chroma half-open.
    done = subprocess.run([sys.executable, "-c", script, str(settings.chroma_path)], capture_output=True, text=True)
    assert "Failed to apply logs" in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_a_table_with_twenty_thousand_tags_through_the_page_then_a_restart(engine, tmp_path):
    from gradio_client import Client, handle_file

    from app import build_app
    from retrieval.ui.startup import launch

    paths = write_photos(tmp_path / "photos", 3)
    table = tags_table(tmp_path, [p.name for p in paths])
    app = launch(build_app(engine), engine, server_name="127.0.0.1", server_port=None,
                 prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        summary, *_ = client.predict([handle_file(str(p)) for p in paths], handle_file(str(table)),
                                     api_name="/add_photos")
    finally:
        app.close()
    assert "**Added 3**" in summary and f"20,000 tags, kept the first {MAX_LIST_ITEMS}" in summary

    restarted = Engine(engine.settings)
    app = launch(build_app(restarted), restarted, server_name="127.0.0.1", server_port=None,
                 prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        _, _, found, _ = client.predict(["tag9"], "any", 12, 0, None, None, "", "", "", "best match", False,
                                        api_name="/search_tags")
        assert [r["filename"] for r in found] == [paths[0].name]
    finally:
        app.close()
