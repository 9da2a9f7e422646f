"""Which stored URLs may be shown or followed.

A record's ``image_url`` and ``url`` come from whatever made the record: a metadata
table, an export, a data set. Handed to the page as they are, a local path
(``/…/chroma.sqlite3``, ``../../etc/passwd``, ``file://…``) would make the web server
copy that file into its cache and serve it. Only web addresses pass; everything
else is shown as no picture (the "file missing" placeholder) or no link.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def web_url(value: Any) -> str | None:
    """``value`` if it is an ``http(s)://`` address with a host, else ``None``."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if any(c.isspace() or ord(c) < 32 for c in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return text
