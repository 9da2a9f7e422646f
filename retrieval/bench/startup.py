"""Start-up: from launching ``python app.py`` to a page that answers, and the
first query's latency against the median of those after it."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .report import Report

READY_TARGET_S = 5.0  # the page answers within seconds (the model's exports made by a first `index`)
FIRST_QUERY_TARGET = 2.0  # first query / median query
APP_MEMORY_TARGET_MIB = 4096.0
APP = Path(__file__).resolve().parents[2] / "app.py"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served_app(model: str, store: Path, timeout: float = 180.0, **env_overrides: str):
    """``python app.py`` on a free port of 127.0.0.1; yields (url, seconds from launch to ready, process)."""
    port = _free_port()
    env = {**os.environ, "MODEL": model, "CHROMA_PATH": str(store), "STARTER_GALLERY": "0",
           "APP_PORT": str(port), "APP_HOST": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1",  # the model is on disk; the speech model falls back to the bundled one
           **env_overrides}
    env.pop("CHROMA_HOST", None)
    url = f"http://127.0.0.1:{port}/"
    started = time.perf_counter()
    app = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        yield url, _wait_until_ready(url, app, started + timeout) - started, app
    finally:
        app.terminate()
        try:
            app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.kill()


def text_query(number: int) -> str:
    return f"a photo of a {['dog', 'beach', 'city', 'cat'][number % 4]} number {number}"


def run(report: Report, model: str, store: Path, queries: int = 20, timeout: float = 180.0) -> None:
    """``store`` must hold a collection built with ``model`` (the app then has something to search)."""
    from gradio_client import Client

    import psutil

    with served_app(model, store, timeout) as (url, ready, process):
        client = Client(url, verbose=False)
        timings = []
        for number in range(queries + 1):
            began = time.perf_counter()
            client.predict(text_query(number), k=10, api_name="/search_text")
            timings.append(time.perf_counter() - began)
        app = psutil.Process(process.pid)  # the app and any helpers it started
        resident = sum(p.memory_info().rss for p in [app, *app.children(recursive=True)]) / 2**20
    first, median = timings[0], statistics.median(timings[1:])
    report.add("start-up", "launch to app ready", ready, "s", target=f"<= {READY_TARGET_S:g}",
               met=ready <= READY_TARGET_S)
    report.add("start-up", "first query (through the API)", first * 1000, "ms")
    report.add("start-up", "median query after it", median * 1000, "ms")
    report.add("start-up", "app resident memory after the queries", resident, "MiB",
               target=f"<= {APP_MEMORY_TARGET_MIB:g}", met=resident <= APP_MEMORY_TARGET_MIB)
    share = first / median
    report.add("start-up", "first / median query", share, "x", baseline="median", ratio=share,
               target=f"<= {FIRST_QUERY_TARGET:g}", met=share <= FIRST_QUERY_TARGET)
    report.details["startup"] = {"ready_s": ready, "query_ms": [round(t * 1000, 2) for t in timings]}


def _wait_until_ready(url: str, app: subprocess.Popen, deadline: float) -> float:
    while time.perf_counter() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"the app exited during start-up:\n{app.stderr.read()[-2000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.perf_counter()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the app was not ready within the time limit ({url})")
