"""The web app, started for real on 127.0.0.1 and driven through gradio_client."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file

from photos import write_photos

pytestmark = pytest.mark.slow


@pytest.fixture
def running_app(engine, tmp_path):
    from app import build_app

    paths = write_photos(tmp_path / "photos", 6)
    engine.index([tmp_path / "photos"])
    app = build_app(engine).queue()
    app.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(app.local_url, verbose=False), paths
    finally:
        app.close()


def test_text_and_image_search_endpoints(running_app):
    client, paths = running_app
    gallery = client.predict("a red barn", 4, api_name="/search_text")
    assert len(gallery) == 4
    assert all("·" in item["caption"] for item in gallery)  # name and score under each photo

    similar = client.predict(handle_file(str(paths[3])), 2, api_name="/search_image")
    assert similar[0]["caption"].startswith(paths[3].name)
    assert similar[0]["caption"].endswith("1.000")


def test_empty_query_is_an_error_message_not_a_traceback(running_app):
    client, _ = running_app
    with pytest.raises(Exception) as caught:
        client.predict("   ", 4, api_name="/search_text")
    assert "empty" in str(caught.value)
