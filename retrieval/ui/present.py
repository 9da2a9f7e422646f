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


def shorten(text: str, limit: int = 80) -> str:
    """A long text cut at a word, with an ellipsis, for one line of the page."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut + "…"


def caption(result: dict[str, Any], wanted_tags: int = 0) -> str:
    """Under each photo, most important first so a cut caption still shows it: the score
    (or, for a tag search, how many of the wanted tags it has), the photographer, the title."""
    if wanted_tags:
        have = round(float(result.get("score", 0.0)) * wanted_tags)
        parts = [f"{have}/{wanted_tags} tags"]
    else:
        parts = [f"{float(result.get('score', 0.0)):.3f}"]
    if result.get("photographer"):
        parts.append(f"by {result['photographer']}")
    parts.append(title(result))
    return " · ".join(parts)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def spoken_summary(results: list[dict[str, Any]], limit: int = 5) -> str:
    """What "read results aloud" says: the top results' descriptions."""
    if not results:
        return "No photos found."
    lines = [f"{count(len(results), 'photo')} found."]
    for place, result in enumerate(results[:limit], start=1):
        lines.append(_sentence(f"Result {place}: {title(result)}"))
        if result.get("photographer"):
            lines.append(_sentence(f"By {result['photographer']}"))
    return " ".join(lines)


def count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


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


def results_status(shown: list[dict[str, Any]], new: int, collection_size: int, what: str,
                   model_problem: str = "", ranked_by_tags: bool = False) -> str:
    """The line above the results: how many, for what, and the range of their scores."""
    what = escape(what)  # callers shorten what they quote
    if collection_size == 0:
        if model_problem:
            return ("**The collection is empty, and the search model could not be loaded** (see the notice "
                    "at the top): fix the model setting first, then add photos.")
        return ("**The collection is empty.** Add photos in the *Add photos* tab, index a folder with "
                "`python -m retrieval index FOLDER`, or load a data set with `python scripts/load_dataset.py`.")
    if not shown:
        return f"No photos matched {what}. Lower the minimum score, remove filters, or try other words."
    if new == 0:
        return f"No more results for {what}."
    if ranked_by_tags:
        order = "most of the wanted tags first, then in the order they were added"
    else:
        scores = [float(r.get("score", 0.0)) for r in shown]
        order = f"scores {min(scores):.3f} to {max(scores):.3f}"
    return f"Showing {count(len(shown), 'photo')} for {what} ({order}). Select one to view it."
