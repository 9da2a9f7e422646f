"""How results look in the app: captions, the details panel, text read aloud.

Metadata comes from data sets and uploads, so every value that reaches HTML is
escaped here, and only http(s) links are made clickable.
"""

from __future__ import annotations

import html
from typing import Any

escape = html.escape

# Shown in the details panel in this order; other fields follow alphabetically.
_DETAIL_ORDER = ("description", "photographer", "tags", "location", "source", "url",
                 "width", "height", "filename", "added_at", "id", "score")
_HIDDEN = {"path", "mtime", "size", "image_url"}


def title(result: dict[str, Any]) -> str:
    return str(result.get("description") or result.get("filename") or str(result.get("id", ""))[:12])


def caption(result: dict[str, Any]) -> str:
    """Under each photo: description (or file name), photographer, score."""
    parts = [title(result)]
    if result.get("photographer"):
        parts.append(f"by {result['photographer']}")
    parts.append(f"{float(result.get('score', 0.0)):.3f}")
    return " · ".join(parts)


def spoken_summary(results: list[dict[str, Any]], limit: int = 5) -> str:
    """What "read results aloud" says: the top results' descriptions."""
    if not results:
        return "No photos found."
    lines = [f"{len(results)} photos found."]
    for place, result in enumerate(results[:limit], start=1):
        line = f"Result {place}: {title(result)}."
        if result.get("photographer"):
            line += f" By {result['photographer']}."
        lines.append(line)
    return " ".join(lines)


def _safe_link(url: Any) -> str | None:
    text = str(url or "").strip()
    return text if text.lower().startswith(("http://", "https://")) else None


def details_html(result: dict[str, Any]) -> str:
    """All metadata of one result as an escaped HTML table, with its source link."""
    keys = [k for k in _DETAIL_ORDER if k in result]
    keys += sorted(k for k in result if k not in _DETAIL_ORDER and k not in _HIDDEN)
    rows = []
    for key in keys:
        value = result[key]
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if key == "score":
            value = f"{float(value):.4f}"
        rows.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>")
    link = _safe_link(result.get("url"))
    heading = f"<h3>{html.escape(title(result))}</h3>"
    source = (f'<p><a href="{html.escape(link, quote=True)}" target="_blank" rel="noopener noreferrer">'
              "Open the source page</a></p>") if link else ""
    return f'<div class="photo-details">{heading}{source}<table>{"".join(rows)}</table></div>'


def public(result: dict[str, Any]) -> dict[str, Any]:
    """A result as pages and API clients see it: no file-system details."""
    return {key: value for key, value in result.items() if key not in _HIDDEN}


def results_status(shown: int, new: int, collection_size: int, what: str) -> str:
    what = escape(what)
    if collection_size == 0:
        return ("**The collection is empty.** Add photos in the *Add photos* tab, index a folder with "
                "`python -m retrieval index FOLDER`, or load a data set with `python scripts/load_dataset.py`.")
    if shown == 0:
        return (f"No photos matched {what}. Lower the minimum score, remove filters, "
                "or try other words.")
    if new == 0:
        return f"No more results for {what}."
    return f"Showing {shown} photos for {what}. Select one for details."
