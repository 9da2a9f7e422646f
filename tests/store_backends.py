"""The store backends the store suite runs against, as one parametrised fixture.

``store_settings`` gives Settings for a fresh, empty collection on: embedded Chroma,
a `chroma run` server, Milvus Lite in a folder, and a Milvus server (the Milvus Lite
gRPC server in its own process, which speaks the same protocol as a Milvus server).
The servers start once per test process, on 127.0.0.1, and each test gets its own
collection on them.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from retrieval.settings import Settings

BACKENDS = ("chroma", "chroma-server", "milvus-lite", "milvus-server")
# A server process per test process: the fast tier runs the in-process backends, CI all four.
BACKEND_PARAMS = [pytest.param(backend, marks=pytest.mark.slow) if backend.endswith("-server") else backend
                  for backend in BACKENDS]
_names = itertools.count()

# The servers' console scripts, run by this interpreter: found without an activated virtualenv.
CHROMA_COMMAND = [sys.executable, "-c", "import sys; from chromadb.cli.cli import app; sys.argv[0] = 'chroma'; app()"]
MILVUS_LITE_COMMAND = [sys.executable, "-c",
                       "import sys; from milvus_lite.cmdline import main; sys.argv[0] = 'milvus-lite'; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serve(folder: Path, command: list[str], ready, what: str):
    """Run ``command`` (a server) until the session ends, once ``ready()`` says it answers."""
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"{what} did not start: " + log_path.read_text()[-2000:])
            time.sleep(0.2)
        yield
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def chroma_server_port(tmp_path_factory):
    folder, port = tmp_path_factory.mktemp("chroma-server"), free_port()

    def ready() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).read()
            return True
        except OSError:
            return False

    command = [*CHROMA_COMMAND, "run", "--path", str(folder / "data"), "--host", "127.0.0.1",
               "--port", str(port)]
    with _serve(folder, command, ready, "chroma run"):
        yield port


@pytest.fixture(scope="session")
def milvus_server_port(tmp_path_factory):
    folder, port = tmp_path_factory.mktemp("milvus-server"), free_port()

    def ready() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    command = [*MILVUS_LITE_COMMAND, "server", "--data-dir", str(folder / "data"), "--host",
               "127.0.0.1", "--port", str(port)]
    with _serve(folder, command, ready, "milvus-lite server"):
        yield port


def settings_for(backend: str, folder: Path, request) -> Settings:
    collection = f"photos-{next(_names)}"
    if backend == "chroma":
        return Settings(chroma_path=folder / "store", collection=collection)
    if backend == "chroma-server":
        port = request.getfixturevalue("chroma_server_port")
        return Settings(chroma_path=folder / "store", chroma_host="127.0.0.1", chroma_port=port,
                        collection=collection)
    if backend == "milvus-lite":
        return Settings(store=f"milvus:{folder / 'milvus'}", chroma_path=folder / "store",
                        collection=collection)
    if backend == "milvus-server":
        port = request.getfixturevalue("milvus_server_port")
        return Settings(store=f"milvus://127.0.0.1:{port}", chroma_path=folder / "store",
                        collection=collection)
    raise ValueError(backend)


@pytest.fixture(params=BACKEND_PARAMS)
def store_settings(request, tmp_path) -> Settings:
    return settings_for(request.param, tmp_path, request)
