"""Web app: search the photo collection by text or by an example image.

Thin by design: it parses input, calls the engine and renders results. Settings
come from the same environment variables as the CLI (see README).
"""

from __future__ import annotations

import argparse
import logging
import os

import gradio as gr
from PIL import Image

from retrieval import Engine, RetrievalError, Settings
from retrieval.images import ImageRejected, open_image_file
from retrieval.search import SearchResult

log = logging.getLogger("retrieval.app")
THUMBNAIL_SIZE = (384, 384)


def caption(result: SearchResult) -> str:
    title = result.metadata.get("description") or result.metadata.get("filename") or result.id[:12]
    by = result.metadata.get("photographer")
    return f"{title}" + (f" — {by}" if by else "") + f" · {result.score:.3f}"


def thumbnail(result: SearchResult, max_pixels: int) -> Image.Image | None:
    if not result.path:
        return None  # a record known only by its URL
    try:
        image = open_image_file(result.path, max_pixels).image
    except ImageRejected:
        return None  # the file moved away since it was indexed
    image.thumbnail(THUMBNAIL_SIZE)
    return image


def build_app(engine: Engine) -> gr.Blocks:
    def render(results: list[SearchResult]):
        gallery = []
        for result in results:
            image = thumbnail(result, engine.settings.max_image_pixels)
            if image is not None:
                gallery.append((image, caption(result)))
        return gallery

    def guarded(search):
        def run(*args):
            try:
                return render(search(*args))
            except RetrievalError as exc:
                raise gr.Error(str(exc)) from None
        return run

    def by_text(text: str, k: int):
        return engine.search_text(text or "", k=int(k))

    def by_image(image: Image.Image | None, k: int):
        if image is None:
            raise RetrievalError("Upload or paste an image to search with.")
        return engine.search_image(image, k=int(k))

    stats = engine.stats()
    with gr.Blocks(title="Photo search") as app:
        gr.Markdown(f"# Photo search\n{stats['count']} photos · model `{stats['model']}`")
        k = gr.Slider(1, 100, value=12, step=1, label="Number of results")
        with gr.Tab("Text"):
            query = gr.Textbox(label="Describe the photo", placeholder="a dog running on the beach")
            text_button = gr.Button("Search", variant="primary")
        with gr.Tab("Image"):
            image = gr.Image(type="pil", label="Find photos like this one",
                             sources=["upload", "clipboard", "webcam"])
            image_button = gr.Button("Search", variant="primary")
        gallery = gr.Gallery(label="Results", columns=4, height="auto")
        gr.on([text_button.click, query.submit], guarded(by_text), [query, k], gallery, api_name="search_text")
        image_button.click(guarded(by_image), [image, k], gallery, api_name="search_image")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Photo search web app")
    parser.add_argument("--host", default=os.environ.get("APP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("APP_PORT", "7860")))
    parser.add_argument("--share", action="store_true", default=os.environ.get("APP_SHARE") == "1",
                        help="also serve on a public gradio.live link")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        engine = Engine(Settings.from_env())
        engine.preload()  # the first search is then as fast as the others
    except RetrievalError as exc:
        raise SystemExit(f"error: {exc}") from None
    build_app(engine).queue().launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
