"""Starting the app: settings, an export to start from, the model loaded before the first
search, the starter gallery, the speech model in the background, and serving only the media
folder. ``app.py`` lays out the page; this gets it running."""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path
from typing import Callable

import gradio as gr

from ..engine import Engine
from ..errors import RetrievalError
from ..indexing.transfer import start_from_export
from ..settings import Settings
from . import present
from .media import MediaFolder
from .page_assets import CSS, HEAD
from .loading import MODEL_PROBLEM, ModelLoading
from .starter import add_starter_gallery

log = logging.getLogger("retrieval.app")



def prepare_collection(engine: Engine, media: MediaFolder, export: Path | None = None) -> str:
    """Import ``export`` (COLLECTION_IMPORT) unless the store holds it already, load the model
    and, for an empty collection, add the starter gallery.

    Returns the notice for the top of the page ("" when there is nothing to say).
    The app still starts when the model can't be loaded: the notice says which
    setting to change, and tag search keeps working.
    """
    if export is not None:
        report = engine.import_collection(export, only_if_needed=True)
        log.info("collection %s: %s records (%s)", export, report.records,
                 "already imported" if report.skipped else "imported")
    try:
        engine.preload()  # the first search is then as fast as the others
    except RetrievalError as exc:
        log.error("%s", exc)
        return f"{MODEL_PROBLEM} {present.escape(str(exc))}"
    if not engine.settings.starter_gallery or engine.store.count() > 0:
        return ""
    report = add_starter_gallery(engine, media.starter)
    if not report or not report.added:
        return ""
    return (f"The collection was empty, so {len(report.added)} sample photos that ship with scikit-image "
            "(public domain or CC0) were added to try things out. Add your own in **Add photos**; set "
            "`STARTER_GALLERY=0` to start with an empty collection.")


def warm_up_speech(engine: Engine) -> None:
    """Load the speech model in the background: the page opens at once, the first voice search is quick."""
    def load() -> None:
        try:
            engine.speech.backend
        except RetrievalError as exc:
            log.warning("voice search is unavailable until this is fixed: %s", exc)

    threading.Thread(target=load, name="load-speech-model", daemon=True).start()


def launch(app: gr.Blocks, engine: Engine, **options) -> gr.Blocks:
    """Serve the app; only the media folder is readable through Gradio's file route."""
    # Thumbnails and previews never change (named by content hash): served in place, not
    # hashed and copied into Gradio's cache for every result of every search.
    gr.set_static_paths([str(engine.settings.media_folder)])
    # Searches run side by side (the engine is thread-safe); each one's model work is short.
    app.queue(default_concurrency_limit=engine.settings.app_concurrency).launch(
        allowed_paths=[str(engine.settings.media_folder)],
        max_file_size=f"{engine.settings.max_upload_mb}mb",
        css=CSS,
        head=HEAD,
        **options,
    )
    return app


def serve(build_app: Callable[[Engine, MediaFolder, str], gr.Blocks]) -> None:
    """``python app.py``: read the settings and flags, prepare the collection, serve the page."""
    parser = argparse.ArgumentParser(description="Photo search web app")
    parser.add_argument("--host", help="address to listen on (APP_HOST, GRADIO_SERVER_NAME; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (APP_PORT, GRADIO_SERVER_PORT; default 7860)")
    parser.add_argument("--share", action="store_true", default=None,
                        help="also serve on a public gradio.live link (APP_SHARE=1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings, export = Settings.from_env().with_overrides(app_host=args.host, app_port=args.port,
                                                               app_share=args.share), None
        if settings.collection_import:
            settings, export = start_from_export(settings, os.environ)
        engine = Engine(settings)
        media = MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels)
        if export is not None:  # the store's content first: the page shows it
            report = engine.import_collection(export, only_if_needed=True)
            log.info("collection %s: %s records (%s)", export, report.records,
                     "already imported" if report.skipped else "imported")
        # The page answers at once; the model loads meanwhile (ui/loading.py).
        loading = ModelLoading(lambda: prepare_collection(engine, media)).start()
        warm_up_speech(engine)
    except RetrievalError as exc:
        raise SystemExit(f"error: {exc}") from None
    served = engine.settings.app
    launch(build_app(engine, media, loading=loading), engine, server_name=served.host, server_port=served.port,
           share=served.share)
