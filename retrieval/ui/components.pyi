"""Gradio components with the product's own messages for bad input."""

from __future__ import annotations

import gradio as gr
from PIL import UnidentifiedImageError

NOT_AN_IMAGE = ("That file is not a picture that can be read. Use a JPEG, PNG, WebP, AVIF, GIF, BMP or TIFF "
                "photo.")

from gradio.events import Dependency

class PhotoInput(gr.Image):
    """``gr.Image`` whose decoding failures are a clear message, not a bare "Error" badge
    in the page, a traceback in the log and a generic error for API callers."""

    is_template = True  # drawn by the page as gr.Image itself

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise gr.Error(NOT_AN_IMAGE) from None
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component