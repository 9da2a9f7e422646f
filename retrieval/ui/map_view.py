"""The page's map of the collection: laid out in the background, drawn on demand.

The layout (``collection_map.py``) starts when the app starts and again after photos
are added, so the Map tab usually finds it ready; a request that comes sooner
waits for it. Thumbnails of the drawn photos are made in the same background run.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import quote

from ..views.collection_map import CollectionMap
from ..engine import Engine
from ..views.map_render import MAX_DRAWN, drawn, map_svg
from .media import MediaFolder
from ..photos.web_urls import web_url

log = logging.getLogger("retrieval.app")


class MapLayout:
    def __init__(self, engine: Engine, media: MediaFolder, start: bool = True):
        self.engine, self.media = engine, media
        self._map: CollectionMap | None = None
        self._error = ""
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._again = False
        self._running = False
        if start:
            self.refresh()

    def refresh(self) -> None:
        """Lay the map out again (after a change); one run at a time, the latest change last."""
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
            self._ready.clear()
        threading.Thread(target=self._lay_out, name="map-layout", daemon=True).start()

    def _lay_out(self) -> None:
        while True:
            try:
                cmap = self.engine.collection_map()
                for n in drawn(cmap, set(), MAX_DRAWN):  # thumbnails ready before the tab is opened
                    self._picture(cmap, n)
                error = ""
            except Exception as exc:  # noqa: BLE001 - the tab says so; searching is unaffected
                log.exception("could not lay out the map")
                cmap, error = None, f"The map could not be made ({type(exc).__name__}: {exc})."
            with self._lock:
                self._map, self._error = cmap, error
                if not self._again:
                    self._running = False
                    self._ready.set()
                    return
                self._again = False

    def get(self, timeout: float | None = None) -> tuple[CollectionMap | None, str]:
        if not self._ready.is_set() and not self._running:
            self.refresh()
        self._ready.wait(timeout)
        with self._lock:
            return self._map, self._error

    def _picture(self, cmap: CollectionMap, n: int) -> str | None:
        metadata = cmap.metadata[n]
        thumbnail = self.media.map_thumbnail(cmap.ids[n], lambda: metadata.get("path"))
        if thumbnail is not None:
            return "gradio_api/file=" + quote(str(thumbnail))
        return web_url(metadata.get("image_url"))

    def html(self, colour_field: str, highlight: set[str]) -> str:
        cmap, error = self.get()
        if cmap is None:
            return f"<p>{error or 'The map is not ready.'}</p>"
        if len(cmap) == 0:
            return "<p>The collection is empty: add photos, then they appear here, similar ones together.</p>"
        note = (f'<p class="map-note">{len(cmap)} photos laid out by {cmap.method}'
                + (f"; {MAX_DRAWN} of them drawn" if len(cmap) > MAX_DRAWN else "")
                + (f"; the {len(highlight)} results of the last search ringed" if highlight else "")
                + ". Select a photo to open it.</p>")
        return note + map_svg(cmap, lambda n: self._picture(cmap, n), colour_field, highlight)
