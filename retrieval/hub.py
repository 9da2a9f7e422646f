"""Whether the Hugging Face Hub can be reached, asked before any download."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub can't be reached, or ``None`` if it can.

    Checked up front because the hub client retries for about half a minute
    before giving up, which is a long wait for a message we can give now.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host} can't be reached ({exc.strerror or exc})"
    return None
