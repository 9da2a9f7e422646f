"""The web app, started for real on 127.0.0.1 and driven through gradio_client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from photos import write_bad_files, write_photos
from conftest import every_family

pytestmark = pytest.mark.slow

PEOPLE = ["Ana Lima", "Bo Chen"]
TAGS = [["beach", "sunset"], ["beach"], ["forest"], ["city", "night"], ["beach", "night"], ["forest", "fog"]]


def write_collection(folder):
    """Six photos with a metadata table, like a small Unsplash-style data set."""
    paths = write_photos(folder / "photos", 6)
    rows = [
        {
            "filename": path.name,
            "description": f"<b>photo</b> number {i}" if i == 5 else f"photo number {i}",
            "photographer": PEOPLE[i % 2],
            "tags": ",".join(TAGS[i]),
            "url": f"https://example.org/photos/{i}",
        }
        for i, path in enumerate(paths)
    ]
    table = folder / "photos.json"
    table.write_text(json.dumps(rows))
    return paths, table


@pytest.fixture
def running_app(engine, tmp_path):
    from app import build_app
    from retrieval.ui.startup import launch

    paths, table = write_collection(tmp_path)
    engine.index([tmp_path / "photos"], metadata_file=table)
    app = launch(build_app(engine), engine, server_name="127.0.0.1", server_port=None,
                 prevent_thread_lock=True, quiet=True)
    try:
        yield Client(app.local_url, verbose=False), paths, app
    finally:
        app.close()


UNSET = ("", "", "", "best match", False)  # camera, taken from, taken before, order, near-identical as one
OPTIONS = (12, 0, None, None, *UNSET)  # k, min_score, photographer, source, then those


def test_text_search_shows_caption_photographer_and_score(running_app):
    client, _, _ = running_app
    gallery, status, results, spoken = client.predict("a red barn", "", 4, 0, None, None, *UNSET, api_name="/search_text")
    assert len(gallery) == len(results) == 4
    first = results[0]
    assert gallery[0]["caption"] == f"{first['score']:.3f} · by {first['photographer']} · {first['description']}"
    assert "path" not in first  # file-system details stay on the server
    assert "Showing 4 photos" in status
    low, high = min(r["score"] for r in results), max(r["score"] for r in results)
    assert f"scores {low:.3f} to {high:.3f}" in status
    assert spoken.startswith("4 photos found. Result 1: " + first["description"])


def test_negative_text_changes_the_ranking(running_app):
    client, _, _ = running_app
    _, _, plain, _ = client.predict("sky", "", 6, 0, None, None, *UNSET, api_name="/search_text")
    _, _, steered, _ = client.predict("sky", "sea", 6, 0, None, None, *UNSET, api_name="/search_text")
    assert [r["score"] for r in plain] != [r["score"] for r in steered]


def test_image_search_finds_the_photo_itself_first(running_app):
    client, paths, _ = running_app
    gallery, _, results, _ = client.predict(handle_file(str(paths[3])), *OPTIONS, api_name="/search_image")
    assert results[0]["filename"] == paths[3].name
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    with Image.open(gallery[0]["image"]) as thumbnail:  # downloaded by the client
        assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 320


def test_tag_search_all_and_any(running_app):
    client, _, _ = running_app
    _, _, any_results, _ = client.predict(["beach", "night"], "any", *OPTIONS, api_name="/search_tags")
    _, _, all_results, _ = client.predict(["beach", "night"], "all", *OPTIONS, api_name="/search_tags")
    assert {r["description"] for r in any_results} == {f"photo number {i}" for i in (0, 1, 3, 4)}
    assert [r["description"] for r in all_results] == ["photo number 4"]


def test_filters_and_min_score_apply_to_every_tab(running_app):
    client, _, _ = running_app
    _, _, results, _ = client.predict("photo", "", 12, 0, "Bo Chen", None, *UNSET, api_name="/search_text")
    assert len(results) == 3 and {r["photographer"] for r in results} == {"Bo Chen"}
    _, status, results, _ = client.predict("photo", "", 12, 0.999, None, None, *UNSET, api_name="/search_text")
    assert results == [] and "No photos matched" in status


def test_composed_search_weights_image_against_text(running_app):
    client, paths, _ = running_app
    photo = handle_file(str(paths[2]))
    _, _, image_only, _ = client.predict(photo, "at night", 0.0, *OPTIONS, api_name="/search_image_text")
    _, _, text_only, _ = client.predict(photo, "at night", 1.0, *OPTIONS, api_name="/search_image_text")
    _, _, text_search, _ = client.predict("at night", "", *OPTIONS, api_name="/search_text")
    assert image_only[0]["filename"] == paths[2].name and image_only[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert [r["id"] for r in text_only] == [r["id"] for r in text_search]


def test_more_like_this_and_paging(running_app):
    client, _, _ = running_app
    _, _, first_page, _ = client.predict("photo", "", 2, 0, None, None, *UNSET, api_name="/search_text")
    _, _, both_pages, _ = client.predict(api_name="/more_results")
    assert both_pages[:2] == first_page and len(both_pages) == 4
    assert len({r["id"] for r in both_pages}) == 4  # no photo twice

    chosen = first_page[0]["id"]
    _, status, similar, _ = client.predict(chosen, 5, 0, None, None, *UNSET, api_name="/more_like_this")
    assert chosen not in {r["id"] for r in similar} and len(similar) == 5
    assert "like the selected one" in status


def test_why_this_matched_draws_the_heat_map_of_the_last_query(running_app):
    client, paths, _ = running_app
    with pytest.raises(Exception, match="Search first"):
        Client(client.src, verbose=False).predict("some-id", api_name="/why_this_matched")  # a fresh session
    _, _, results, _ = client.predict("a photo", "", 3, 0, None, None, *UNSET, api_name="/search_text")
    picture = client.predict(results[0]["id"], api_name="/why_this_matched")
    with Image.open(picture) as heat:
        assert heat.size == (results[0]["width"], results[0]["height"])
    client.predict(["beach"], "any", *OPTIONS, api_name="/search_tags")
    with pytest.raises(Exception, match="tag search"):
        client.predict(results[0]["id"], api_name="/why_this_matched")


def test_adding_photos_reports_added_duplicate_and_rejected(running_app, tmp_path, engine):
    client, paths, _ = running_app
    new = write_photos(tmp_path / "new", 2, start=50)
    bad = write_bad_files(tmp_path / "bad")
    table = tmp_path / "new.csv"
    table.write_text(f"filename,description,tags\n{new[0].name},a brand new photo,\"fresh,upload\"\n")
    before = engine.store.count()
    files = [handle_file(str(p)) for p in [*new, paths[0], bad["not an image"], bad["truncated image"]]]
    summary, collection, *_ = client.predict(files, handle_file(str(table)), api_name="/add_photos")
    assert "**Added 2**" in summary and "already in the collection 1" in summary and "rejected 2" in summary
    assert "notes.jpg: not an image" in summary and "truncated.jpg: truncated image" in summary
    assert engine.store.count() == before + 2
    assert f"**{before + 2} photos**" in collection

    _, _, found, _ = client.predict(["fresh"], "any", *OPTIONS, api_name="/search_tags")
    assert [r["description"] for r in found] == ["a brand new photo"]
    assert found[0]["filename"] == new[0].name and found[0]["source"] == "upload"
    stored = engine.store.get([found[0]["id"]])[0].metadata["path"]
    assert stored.startswith(str(engine.settings.media_folder / "uploads")) and found[0]["id"] in stored


def test_photos_added_with_their_meaning_are_found_by_a_paraphrase(running_app, tmp_path, engine):
    from retrieval.search.searcher import MEANING_FLOOR

    client, _, _ = running_app
    new = write_photos(tmp_path / "described", 3, start=80)
    table = tmp_path / "described.csv"
    table.write_text(f"filename,description\n{new[0].name},A surfer on the ocean\n"
                     f"{new[1].name},A plate of pasta with tomato sauce\n{new[2].name},Two giraffes in a zoo\n")
    summary, *_ = client.predict([handle_file(str(p)) for p in new], handle_file(str(table)), False, False, False,
                                 True, api_name="/add_photos")
    assert "**Added 3**" in summary and "3 descriptions embedded by meaning" in summary
    gallery, _, results, _ = client.predict("man riding waves on a surfboard", "", *OPTIONS, api_name="/search_text")
    assert results[0]["description"] == "A surfer on the ocean" and results[0]["meaning_score"] >= MEANING_FLOOR
    assert "described alike" in gallery[0]["caption"]
    from retrieval.ui.present import details_html

    assert "its description&#x27;s nearness in meaning" in details_html(results[0])


def test_photos_added_with_regions_show_the_box_that_matched(running_app, tmp_path, engine):
    from test_region_search import PASTED, small_picture, write_collection as write_scenes

    from retrieval.regions.proposals import Box

    client, _, _ = running_app
    scenes = write_scenes(tmp_path / "scenes")
    small_picture().save(tmp_path / "query.png")
    summary, *_ = client.predict([handle_file(str(p)) for p in scenes.values()], None, True, api_name="/add_photos")
    assert "**Added 6**" in summary and "regions found" in summary
    gallery, _, results, _ = client.predict(handle_file(str(tmp_path / "query.png")), *OPTIONS,
                                            api_name="/search_image")
    first = results[0]
    assert first["filename"] == "scene.png" and Box(*first["matched_box"]).iou(PASTED) >= 0.5
    assert first["score"] > first["photo_score"] and gallery[0]["caption"].endswith("matched in the box")
    drawn = Image.open(gallery[0]["image"]).convert("RGB")  # the thumbnail (320 wide) with the box on it
    scale = drawn.width / 640
    edge = drawn.getpixel((int(PASTED.left * scale), int((PASTED.top + PASTED.bottom) / 2 * scale)))
    assert edge[0] > 200 and edge[1] > 150 and edge[2] < 80  # the box's amber line
    plain = [r for r in results if not r.get("matched_box")]
    assert all(not g["caption"].endswith("matched in the box") for g, r in zip(gallery, results) if r in plain)
    # Photos added without the box checked get no regions.
    before = engine.store.regions.count()
    client.predict([handle_file(str(p)) for p in write_photos(tmp_path / "more", 2, start=70)], None,
                   api_name="/add_photos")
    assert engine.store.regions.count() == before


def test_voice_search_transcribes_then_searches(running_app, tmp_path):
    from speech_clips import speak, write_wav

    client, _, _ = running_app
    clip = speak("a dog running on the beach", tmp_path / "query.wav")
    transcript, gallery, status, results, spoken = client.predict(
        handle_file(str(clip)), "auto", *OPTIONS, api_name="/search_voice")
    assert "beach" in transcript.lower()
    assert len(results) == len(gallery) == 6 and status.startswith("Heard “")
    # the same results as typing what was heard
    _, _, typed, _ = client.predict(transcript, "", *OPTIONS, api_name="/search_text")
    assert [r["id"] for r in typed] == [r["id"] for r in results]
    # an edited transcript searches again
    _, _, edited, _ = client.predict("a cat on the beach", *OPTIONS, api_name="/search_transcript")
    assert len(edited) == 6

    silence = write_wav(tmp_path / "silence.wav", [0.0] * 16_000)
    transcript, gallery, status, results, _ = client.predict(handle_file(str(silence)), "auto", *OPTIONS,
                                                             api_name="/search_voice")
    assert transcript == "" and results == [] and "No speech detected" in status


def test_errors_are_messages_not_tracebacks(running_app):
    client, _, _ = running_app
    for call, args in [("/search_text", ("   ", "", *OPTIONS)), ("/search_tags", ([], "any", *OPTIONS)),
                       ("/search_image", (None, *OPTIONS)), ("/more_like_this", ("", *OPTIONS)),
                       ("/add_photos", (None, None)), ("/search_voice", (None, "auto", *OPTIONS))]:
        with pytest.raises(Exception) as caught:
            client.predict(*args, api_name=call)
        message = str(caught.value)
        assert "Traceback" not in message and len(message) < 300, call
    with pytest.raises(Exception, match="No photo with id"):
        client.predict("ab" * 32, *OPTIONS, api_name="/more_like_this")


def test_only_the_media_folder_is_served(running_app, engine, tmp_path):
    client, paths, app = running_app
    client.predict("photo", "", 1, 0, None, None, *UNSET, api_name="/search_text")  # makes a thumbnail
    base = app.local_url.rstrip("/") + "/gradio_api/file="
    with httpx.Client() as http:
        thumbs = engine.settings.media_folder / "thumbs"
        served = next(thumbs.iterdir())
        assert http.get(base + str(served)).status_code == 200
        secret = tmp_path / "secret.txt"
        secret.write_text("private")
        attempts = [
            str(paths[0]),  # an original photo: only copies are served
            str(secret),
            str(engine.settings.chroma_path.resolve() / "chroma.sqlite3"),
            str(thumbs) + "/../../chroma.sqlite3",
            str(thumbs) + "/%2e%2e/%2e%2e/chroma.sqlite3",
            "../../../../../../etc/passwd",
            "/etc/passwd",
        ]
        for attempt in attempts:
            response = http.get(base + attempt)
            assert response.status_code in (403, 404), attempt
            assert b"private" not in response.content and b"SQLite" not in response.content


def test_details_are_escaped_and_link_only_http():
    from retrieval.ui.present import details_html

    html = details_html({"id": "ab", "score": 0.5, "description": "<script>alert(1)</script>",
                         "url": "javascript:alert(1)", "tags": ["a&b"]})
    assert "<script>" not in html and "&lt;script&gt;" in html and "a&amp;b" in html
    assert "href" not in html
    linked = details_html({"id": "ab", "score": 0.5, "url": "https://unsplash.com/photos/x\"onmouseover=1"})
    assert 'href="https://unsplash.com/photos/x&quot;onmouseover=1"' in linked


def test_first_run_adds_the_starter_gallery_once(engine):
    from retrieval.ui.startup import prepare_collection
    from retrieval.ui.media import MediaFolder
    from retrieval.ui.starter import STARTER_PHOTOS

    media = MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels)
    notice = prepare_collection(engine, media)
    assert engine.store.count() == len(STARTER_PHOTOS)
    assert f"{len(STARTER_PHOTOS)} sample photos" in notice and "STARTER_GALLERY=0" in notice
    cat = engine.search_tags(["cat"])
    assert [r.metadata["description"] for r in cat] == ["Chelsea the tabby cat lying down"]
    assert cat[0].metadata["source"] == "starter" and cat[0].path.startswith(str(media.starter))
    assert prepare_collection(engine, media) == ""  # not empty any more: nothing added
    assert engine.store.count() == len(STARTER_PHOTOS)


def test_starter_gallery_can_be_turned_off(settings):
    from app import build_app
    from retrieval.ui.startup import launch, prepare_collection
    from retrieval.engine import Engine
    from retrieval.ui.media import MediaFolder

    engine = Engine(settings.with_overrides(starter_gallery=False))
    assert prepare_collection(engine, MediaFolder(settings.media_folder, settings.max_image_pixels)) == ""
    assert engine.store.count() == 0
    app = launch(build_app(engine), engine, server_name="127.0.0.1", server_port=None,
                 prevent_thread_lock=True, quiet=True)
    try:
        _, status, results, _ = Client(app.local_url, verbose=False).predict(
            "a cat", "", *OPTIONS, api_name="/search_text")
        assert results == [] and "collection is empty" in status and "Add photos" in status
    finally:
        app.close()


def test_a_missing_model_is_explained_in_the_page(settings, tmp_path):
    from app import build_app
    from retrieval.ui.startup import launch, prepare_collection
    from retrieval.engine import Engine
    from retrieval.ui.media import MediaFolder

    engine = Engine(settings.with_overrides(model=str(tmp_path / "no-such-model")))
    notice = prepare_collection(engine, MediaFolder(settings.media_folder, settings.max_image_pixels))
    assert "could not be loaded" in notice and "MODEL" in notice
    app = launch(build_app(engine, notice=notice), engine, server_name="127.0.0.1", server_port=None,
                 prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        with pytest.raises(Exception, match="MODEL"):
            client.predict("a cat", "", *OPTIONS, api_name="/search_text")
    finally:
        app.close()


def test_dropdown_counts_are_counted_once_then_kept_up_to_date(engine, tmp_path):
    from retrieval.ui.handlers import SearchPage
    from retrieval.ui.media import MediaFolder

    _, table = write_collection(tmp_path)
    engine.index([tmp_path / "photos"], metadata_file=table)
    page = SearchPage(engine, MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels))
    assert page.facets.choices("tags")[0] == ("beach (3)", "beach")
    assert ("Ana Lima (3)", "Ana Lima") in page.facets.choices("photographer")
    new = write_photos(tmp_path / "new", 1, start=90)
    report = engine.index(new, metadata=lambda _path: {"tags": ["beach", "kite"], "photographer": "Cy"})
    page.facets.add(report.added)
    assert page.facets.choices("tags")[:1] == [("beach (4)", "beach")]
    assert ("kite (1)", "kite") in page.facets.choices("tags")
    assert ("Cy (1)", "Cy") in page.facets.choices("photographer")


def test_every_result_has_a_picture_in_its_own_place(engine, tmp_path):
    """Files gone since indexing: one with a stored image URL, one without. The gallery still
    has one picture per result, in order, and selecting position i opens result i."""
    import html
    import io

    import gradio as gr

    from retrieval.ui.handlers import SearchPage
    from dataset_server import FlakyPhotoServer
    from retrieval.ui.media import MediaFolder

    paths, table = write_collection(tmp_path)
    with FlakyPhotoServer() as server:
        buffer = io.BytesIO()
        Image.open(paths[1]).save(buffer, "JPEG")
        server.files["/remote/1.jpg"] = buffer.getvalue()
        remote = server.base_url + "/remote/1.jpg"
        rows = json.loads(table.read_text())
        rows[1]["image_url"] = remote
        table.write_text(json.dumps(rows))
        engine.index([tmp_path / "photos"], metadata_file=table)
        paths[1].unlink()  # has an image URL
        paths[4].unlink()  # has nothing
        media = MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels)
        page = SearchPage(engine, media)
        from retrieval.ui.controls import ResultControls

        gallery, status, results, _, _ = page.by_text("photo", "", ResultControls(k=6))
        assert len(gallery) == len(results) == 6 and "Showing 6 photos" in status
        by_file = {r["filename"]: i for i, r in enumerate(results)}
        assert gallery[by_file[paths[1].name]][0] == remote
        assert gallery[by_file[paths[4].name]][0] == str(media.placeholder())
        for i, result in enumerate(results):
            assert gallery[i][1] == present_caption(result)
            picture, details, selected, index, _ = page.details(results, gr.SelectData(None, {"index": i, "value": None}))
            assert index == i and f"{i + 1} of 6" in details
            assert selected == result["id"] and html.escape(result["description"]) in details
        assert picture is not None


def present_caption(result):
    from retrieval.ui.present import caption

    return caption(result)


def test_searches_keep_working_when_thumbnails_cannot_be_written(engine, tmp_path):
    from retrieval.ui.handlers import SearchPage
    from retrieval.ui.media import MediaFolder

    paths, table = write_collection(tmp_path)
    engine.index([tmp_path / "photos"], metadata_file=table)
    media = MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels)
    thumbs = engine.settings.media_folder / "thumbs"
    thumbs.rmdir()
    thumbs.write_text("a file where the folder was: every thumbnail write fails, like a full disk")
    from retrieval.ui.controls import ResultControls

    gallery, status, results, _, _ = SearchPage(engine, media).by_text("photo", "", ResultControls(k=6))
    assert len(gallery) == len(results) == 6
    assert {picture for picture, _ in gallery} == {str(media.placeholder())}


def test_one_bad_file_among_many_uploads_blocks_nothing(running_app, tmp_path, engine):
    client, _, _ = running_app
    new = write_photos(tmp_path / "batch", 19, start=300)
    odd = tmp_path / "batch" / "notes.txt"
    odd.write_text("meeting notes")
    before = engine.store.count()
    summary, *_ = client.predict([handle_file(str(p)) for p in [*new, odd]], None, api_name="/add_photos")
    assert "**Added 19**" in summary and "rejected 1" in summary and "notes.txt: not an image" in summary
    assert engine.store.count() == before + 19


def test_searches_run_side_by_side(running_app):
    """Eight clients at once: every one gets its own, correct results."""
    from concurrent.futures import ThreadPoolExecutor

    client, paths, app = running_app

    def search(i):
        own = Client(app.local_url, verbose=False)
        _, _, results, _ = own.predict(handle_file(str(paths[i % len(paths)])), *OPTIONS,
                                       api_name="/search_image")
        return results[0]["filename"]

    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(search, range(8)))
    assert found == [paths[i % len(paths)].name for i in range(8)]


def test_the_app_listens_where_a_space_tells_gradio_to(tiny_model, tmp_path):
    """A Hugging Face Space sets GRADIO_SERVER_NAME=0.0.0.0 and GRADIO_SERVER_PORT. The check
    reads the socket table and talks to the app on 127.0.0.1 only."""
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    from conftest import bundled_whisper

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port),
           "MODEL": str(tiny_model), "CHROMA_PATH": str(tmp_path / "store"), "STARTER_GALLERY": "0",
           "ASR_MODEL": bundled_whisper(), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    for name in ("APP_HOST", "APP_PORT", "CHROMA_HOST"):
        env.pop(name, None)
    app = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parents[1] / "app.py")], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        listening = []
        while not listening and time.monotonic() < deadline:
            assert app.poll() is None, app.stderr.read()[-2000:]
            listening = [c.laddr for c in psutil.net_connections("tcp")
                         if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
            time.sleep(0.3)
        assert [(a.ip, a.port) for a in listening] == [("0.0.0.0", port)]
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        app.terminate()
        app.wait(timeout=20)


def test_a_non_image_given_as_a_query_image_is_our_message(running_app, tmp_path):
    client, _, _ = running_app
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    with pytest.raises(Exception, match=r"The query image can't be used \(not an image\)"):
        client.predict(handle_file(str(notes)), *OPTIONS, api_name="/search_image")


def png_bomb(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A few hundred bytes of PNG whose header claims ``width`` x ``height`` pixels."""
    import struct
    import zlib

    rows = zlib.compress(b"\x00" * (1 + width // 8) * 16)  # the first rows of a 1-bit image
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_every_door_of_the_page_checks_the_size_before_decoding(settings, tmp_path):
    """MAX_IMAGE_PIXELS holds in the Image tab, Image + Text and Add photos, with the CLI's message;
    a PNG bomb is refused the same way, not with Gradio's generic error."""
    from app import build_app
    from retrieval.ui.startup import launch
    from cli_runs import run_in_process
    from retrieval.engine import Engine

    small = settings.with_overrides(max_image_pixels=10_000)
    engine = Engine(small)
    engine.index(write_photos(tmp_path / "photos", 2))
    big = tmp_path / "big.jpg"
    Image.new("RGB", (200, 200), "white").save(big)
    bomb = png_bomb(tmp_path / "bomb.png")
    code, _, cli_error = run_in_process(small, "search", "--image", str(big), env={"MAX_IMAGE_PIXELS": "10000"})
    assert code == 1
    cli_message = cli_error.removeprefix("error: ").strip()
    app = launch(build_app(engine), engine, server_name="127.0.0.1", server_port=None,
                 prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        for picture, detail in [(big, "200x200 is over the cap of 10,000 pixels"),
                                (bomb, "1,600,000,000 pixels is over the cap of 10,000 pixels")]:
            for call, args in [("/search_image", (handle_file(str(picture)), *OPTIONS)),
                               ("/search_image_text", (handle_file(str(picture)), "at night", 0.5, *OPTIONS))]:
                with pytest.raises(Exception) as caught:
                    client.predict(*args, api_name=call)
                assert "The query image can't be used" in str(caught.value) and detail in str(caught.value), call
                if picture == big:
                    assert cli_message in str(caught.value)
            summary, *_ = client.predict([handle_file(str(picture))], None, api_name="/add_photos")
            assert "rejected 1" in summary and detail in summary
    finally:
        app.close()
    assert engine.store.count() == 2


def test_tag_only_results_show_how_many_tags_they_carry(running_app):
    client, _, _ = running_app
    gallery, status, results, _ = client.predict(["beach", "night"], "any", *OPTIONS, api_name="/search_tags")
    assert gallery[0]["caption"].startswith("2/2 tags") and gallery[-1]["caption"].startswith("1/2 tags")
    assert "most of the wanted tags first" in status


def test_plural_and_full_stops():
    from retrieval.ui.present import results_status, spoken_summary

    one = [{"id": "a", "score": 0.3, "description": "A dog.", "photographer": "Ana"}]
    assert "Showing 1 photo for" in results_status(one, 1, 10, "“dog”")
    spoken = spoken_summary(one)
    assert spoken == "1 photo found. Result 1: A dog. By Ana." and ".." not in spoken
    assert "model could not be loaded" in results_status([], 0, 0, "x", model_problem="no model")


@every_family
def test_the_page_says_what_the_model_reads_and_where_its_good_scores_start(engine, model_family):
    from retrieval.ui.handlers import SearchPage
    from retrieval.ui.media import MediaFolder

    page = SearchPage(engine, MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels))
    note, slider = page.search_model()
    multilingual = model_family == "siglip2"
    assert note.startswith("Type in any language" if multilingual else "Type in English")
    assert Path(engine.settings.model).name in note
    expected = "own match probability passes 50%" if model_family.startswith("siglip") else "typical for CLIP"
    assert expected in slider.info


def test_dates_order_and_camera_through_the_api(clip_settings, tmp_path):
    from app import build_app
    from retrieval.ui.startup import launch
    from exif_photos import write_exif_photo
    from retrieval.engine import Engine

    folder = tmp_path / "trip"
    taken = {"a.jpg": ("2023:05:01 10:00:00", "Canon EOS R5"), "b.jpg": ("2024:06:15 10:00:00", "NIKON Z 6"),
             "c.jpg": ("2024:06:20 10:00:00", "Canon EOS R5"), "d.jpg": ("2024:08:01 10:00:00", "Canon EOS R5")}
    for n, (name, (when, model)) in enumerate(taken.items()):
        write_exif_photo(folder / name, n, taken=when, make=model.split()[0], model=model)
    engine = Engine(clip_settings.with_overrides(starter_gallery=False))
    engine.index([folder])
    app = launch(build_app(engine), engine, server_name="127.0.0.1", server_port=None,
                 prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)

        def names(*options):
            _, _, results, _ = client.predict("a photo", "", 12, 0, None, None, *options, api_name="/search_text")
            return [r["filename"] for r in results]

        assert names("", "", "", "oldest first", False) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
        assert names("", "", "", "newest first", False) == ["d.jpg", "c.jpg", "b.jpg", "a.jpg"]
        assert sorted(names("", "2024-06", "2024-07", "best match", False)) == ["b.jpg", "c.jpg"]
        assert names("Canon EOS R5", "2024", "", "oldest first", False) == ["c.jpg", "d.jpg"]
        with pytest.raises(Exception) as caught:
            names("", "June", "", "best match", False)
        assert "not a date" in str(caught.value) and "Traceback" not in str(caught.value)
        _, _, results, _ = client.predict("a photo", "", 1, 0, None, None, *UNSET, api_name="/search_text")
        assert results[0]["taken"].startswith("20") and "camera" in results[0] and "path" not in results[0]
    finally:
        app.close()


def test_image_urls_that_are_not_web_addresses_are_never_served(engine, tmp_path):
    """Records whose file is gone and whose image URL is a local path, a relative path, a file://
    URL, or a web address: the search succeeds, the web address is shown, every other one gets the
    placeholder, and no route hands out the bytes of a file outside the media folder."""
    from app import build_app
    from retrieval.ui.startup import launch
    from dataset_server import FlakyPhotoServer

    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    store_file = engine.settings.chroma_path.resolve() / "chroma.sqlite3"
    paths = write_photos(tmp_path / "photos", 6)
    with FlakyPhotoServer() as server:
        import io
        buffer = io.BytesIO()
        Image.open(paths[0]).save(buffer, "JPEG")
        server.files["/web.jpg"] = buffer.getvalue()
        urls = [server.base_url + "/web.jpg", str(store_file), str(secret), "../../../../etc/passwd",
                f"file://{secret}", "/etc/hostname"]
        rows = [{"filename": p.name, "image_url": url, "description": f"photo {i}"}
                for i, (p, url) in enumerate(zip(paths, urls))]
        table = tmp_path / "urls.json"
        table.write_text(json.dumps(rows))
        engine.index([tmp_path / "photos"], metadata_file=table)
        for path in paths:
            path.unlink()
        app = launch(build_app(engine), engine, server_name="127.0.0.1", server_port=None,
                     prevent_thread_lock=True, quiet=True)
        try:
            client = Client(app.local_url, verbose=False, download_files=False)
            gallery, _, results, _ = client.predict("photo", "", 6, 0, None, None, *UNSET,
                                                    api_name="/search_text")
            assert len(gallery) == len(results) == 6
            placeholder = (engine.settings.media_folder / "missing.png").read_bytes()
            for item, result in zip(gallery, results):
                shown = httpx.get(item["image"]["url"]).content  # what a browser gets
                assert b"private" not in shown and b"SQLite" not in shown
                if result["description"] == "photo 0":
                    assert shown == server.files["/web.jpg"]
                else:
                    assert shown == placeholder, result["description"]
            import gradio as gr

            from retrieval.ui.handlers import SearchPage
            from retrieval.ui.media import MediaFolder

            page = SearchPage(engine, MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels))
            for i, result in enumerate(results):  # the viewer
                picture, *_ = page.details(results, gr.SelectData(None, {"index": i, "value": None}))
                expected = urls[0] if result["description"] == "photo 0" else str(page.media.placeholder())
                assert picture == expected
            with httpx.Client() as http:
                for attempt in urls[1:]:
                    response = http.get(app.local_url.rstrip("/") + "/gradio_api/file=" + attempt)
                    assert b"private" not in response.content and b"SQLite" not in response.content
        finally:
            app.close()

    from retrieval.views.collection_map import build_map
    from retrieval.views.map_render import write_html

    out = tmp_path / "map.html"
    write_html(build_map(engine.store), out, "tags")
    written = out.read_text()
    assert str(secret) not in written and "file://" not in written and "etc/passwd" not in written
    assert server.base_url + "/web.jpg" in written


def test_every_search_endpoint_takes_only_what_a_client_names(running_app, tmp_path):
    """The result controls are optional and named: a client passes the query and k, nothing else."""
    from speech_clips import speak

    client, paths, _ = running_app
    calls = {
        "/search_text": dict(query="photo"),
        "/search_transcript": dict(query="photo"),
        "/search_image": dict(image=handle_file(str(paths[0]))),
        "/search_tags": dict(tags=["beach"]),
        "/search_image_text": dict(image=handle_file(str(paths[0])), text="at night"),
        "/more_like_this": dict(record_id=client.predict(query="photo", k=1, api_name="/search_text")[2][0]["id"]),
        "/search_voice": dict(audio=handle_file(str(speak("a dog running on the beach", tmp_path / "q.wav")))),
    }
    for endpoint, named in calls.items():
        found = client.predict(**named, k=2, api_name=endpoint)
        results = found[3] if endpoint == "/search_voice" else found[2]
        assert 1 <= len(results) <= 2, endpoint
    _, _, three, _ = client.predict(query="photo", k=3, order="newest first", api_name="/search_text")
    assert len(three) == 3
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/search_text"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["query", "without", "k", "min_score", "photographer", "source",
                                                         "camera", "after", "before", "order", "collapse",
                                                         "contains", "words"]


def test_words_in_photos_text_filter_and_rank_through_the_page(running_app):
    client, _, _ = running_app
    gallery, status, results, _ = client.predict("a barn", k=6, contains="number 2", api_name="/search_text")
    assert [r["description"] for r in results] == ["photo number 2"]
    gallery, _, results, _ = client.predict("number", k=6, api_name="/search_text")
    assert len(results) == 6 and all(r["matched_words"] == ["number"] for r in results)
    assert all(" · words: number · " in item["caption"] for item in gallery)
    gallery, _, results, _ = client.predict("number", k=6, words=False, api_name="/search_text")
    assert not any("matched_words" in r for r in results) and not any("words:" in g["caption"] for g in gallery)


def test_the_tags_hint_names_the_most_used_tags(engine, tmp_path):
    from retrieval.ui.handlers import SearchPage
    from retrieval.ui.media import MediaFolder

    page = SearchPage(engine, MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels))
    assert page.tags_hint().startswith("No photo has tags yet")
    paths, table = write_collection(tmp_path)
    engine.index([tmp_path / "photos"], metadata_file=table)
    page = SearchPage(engine, MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels))
    assert page.tags_hint() == "Type a tag or pick from the list. Most used: beach (3), forest (2), night (2), " \
                               "sunset (1), city (1)"


def test_the_page_answers_while_the_model_loads_and_a_search_then_runs(settings, tmp_path):
    """The model's load is held (the engine's own lock, as a slow load holds it): the page is served and
    says the model is loading; a search asked for meanwhile waits and runs when the model is in."""
    from app import build_app
    from retrieval.engine import Engine
    from retrieval.ui.loading import LOADING_NOTICE, ModelLoading
    from retrieval.ui.media import MediaFolder
    from retrieval.ui.startup import launch, prepare_collection

    writer = Engine(settings)
    paths, table = write_collection(tmp_path)
    writer.index([tmp_path / "photos"], metadata_file=table)
    engine = Engine(settings)  # a fresh process's engine: no model loaded yet
    media = MediaFolder(settings.media_folder, settings.max_image_pixels)
    with engine._load_lock:
        loading = ModelLoading(lambda: prepare_collection(engine, media)).start()
        app = launch(build_app(engine, media, loading=loading), engine, server_name="127.0.0.1", server_port=None,
                     prevent_thread_lock=True, quiet=True)
        try:
            page = httpx.get(app.local_url, timeout=10)
            assert page.status_code == 200
            config = httpx.get(app.local_url.rstrip("/") + "/config", timeout=10).json()
            assert any(c.get("props", {}).get("value") == LOADING_NOTICE for c in config["components"])
            client = Client(app.local_url, verbose=False)
            job = client.submit("a red barn", "", 4, 0, None, None, *UNSET, api_name="/search_text")
            time.sleep(1.5)
            assert not job.done() and not loading.done
        except BaseException:
            app.close()
            raise
    try:
        _, status, results, _ = job.result(timeout=60)
        assert len(results) == 4 and "Showing 4 photos" in status
        assert loading.wait(30) and loading.notice == ""  # a collection with photos: nothing more to say
    finally:
        app.close()
