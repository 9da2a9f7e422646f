"""A real HTTP server on 127.0.0.1 that serves photos the way the internet does:
mostly fine, sometimes with errors, slow bodies or bodies cut short.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FlakyPhotoServer:
    """``files`` maps a path (``/photos/abc.jpg``) to bytes. ``plan`` maps a path to
    what its successive requests get: "ok", "slow", "truncated" or an HTTP status
    such as "503"; once a plan runs out, requests get "ok" (or ``default``)."""

    def __init__(self, slow_seconds: float = 3.0):
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, list[str]] = defaultdict(list)
        self.always: dict[str, str] = {}  # path -> behaviour for every request
        self.requests: Counter = Counter()
        self.queries: list[str] = []
        self.slow_seconds = slow_seconds
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                with server._lock:
                    server.requests[url.path] += 1
                    server.queries.append(url.query)
                    queued = server.plan.get(url.path)
                    behaviour = queued.pop(0) if queued else server.always.get(url.path, "ok")
                body = server.files.get(url.path)
                if body is None:
                    behaviour = "404"
                if behaviour.isdigit():
                    self.send_response(int(behaviour))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                half = len(body) // 2
                if behaviour == "truncated":
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if behaviour == "slow":
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    time.sleep(server.slow_seconds)
                    try:
                        self.wfile.write(body[half:])
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FlakyPhotoServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
