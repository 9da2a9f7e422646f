"""Server mode: the engine against a real `chroma run` on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest

from photos import write_photos
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.settings import Settings
from store_backends import CHROMA_COMMAND

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chroma_server(chroma_process):
    return chroma_process[1]


@pytest.fixture
def chroma_process(tmp_path):
    """A `chroma run` process and its port."""
    port = free_port()
    log = (tmp_path / "chroma.log").open("w")
    process = subprocess.Popen([*CHROMA_COMMAND, "run", "--path", str(tmp_path / "server-data"),
                                "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("chroma run did not start: " + (tmp_path / "chroma.log").read_text()[-2000:])
            time.sleep(0.2)
    yield process, port
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def test_index_and_search_through_a_chroma_server(chroma_server, tiny_model, other_tiny_model, tmp_path):
    settings = Settings(model=str(tiny_model), chroma_host="127.0.0.1", chroma_port=chroma_server,
                        batch_size=4)
    engine = Engine(settings)
    paths = write_photos(tmp_path / "photos", 9)
    report = engine.index([tmp_path / "photos"])
    assert len(report.added) == 9
    assert engine.stats() == {"count": 9, "regions": 0, "model": str(tiny_model), "dim": engine.embedder.dim,
                              "languages": engine.embedder.languages.description,
                              "precision": engine.stats()["precision"],
                              "store": f"http://127.0.0.1:{chroma_server}", "collection": "photos"}
    top = engine.search_image(paths[4], k=2)
    assert top[0].path == str(paths[4]) and top[0].score == pytest.approx(1.0, abs=1e-4)

    # A second client (another process would do the same) sees the same collection.
    again = Engine(settings)
    assert again.index([tmp_path / "photos"]).unchanged == 9

    with pytest.raises(RetrievalError, match="was built with the model"):
        Engine(settings.with_overrides(model=str(other_tiny_model))).search_text("dog")


def test_a_server_killed_mid_index_is_a_clear_message(chroma_process, tiny_model, tmp_path):
    """The server dies while photos are being added: one message naming the server, no traceback,
    and what was committed is there when the server is back."""
    import os
    import signal

    from cli_runs import index_until_committed

    process, port = chroma_process
    write_photos(tmp_path / "photos", 200, size=(160, 120))
    env = dict(os.environ, MODEL=str(tiny_model), CHROMA_HOST="127.0.0.1", CHROMA_PORT=str(port),
               BATCH_SIZE="4", TORCH_THREADS="1", PYTHONUNBUFFERED="1")
    index = index_until_committed(tmp_path / "photos", env, batches=2)
    process.send_signal(signal.SIGKILL)
    rest = index.communicate(timeout=120)[1]
    assert index.returncode == 1
    assert f"The Chroma server at http://127.0.0.1:{port} is unreachable" in rest
    assert "Traceback" not in rest and "everything committed so far is kept" in rest

    settings = Settings(model=str(tiny_model), chroma_host="127.0.0.1", chroma_port=port)
    with pytest.raises(RetrievalError, match="is unreachable"):
        Engine(settings).stats()
