"""Gradio components with the product's own messages for bad input."""

from __future__ import annotations

import gradio as gr
from PIL import UnidentifiedImageError

NOT_AN_IMAGE = ("That file is not a picture that can be read. Use a JPEG, PNG, WebP, AVIF, GIF, BMP or TIFF "
                "photo.")


class PhotoInput(gr.Image):
    """``gr.Image`` that hands the handler the uploaded file's path, undecoded.

    Gradio would decode the whole picture before any handler runs: a 12000x12000 JPEG
    costs gigabytes, a PNG bomb an exception. Given the path, the engine checks the size
    (MAX_IMAGE_PIXELS, MAX_FILE_MB) before decoding, with the same message as the CLI.
    A pasted or webcam picture arrives as a data URL, which Gradio writes to a file. Made with
    ``type="filepath"`` (Gradio reads the page's settings from the constructor's own arguments,
    so they are not wrapped here)."""

    is_template = True  # drawn by the page as gr.Image itself

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            try:
                return super().preprocess(payload)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                raise gr.Error(NOT_AN_IMAGE) from None
        if payload.path is None:
            raise gr.Error(NOT_AN_IMAGE)
        return payload.path
