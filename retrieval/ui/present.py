"""How results look in the app: captions, the details panel, text read aloud.

Metadata comes from data sets and uploads, so every value that reaches HTML is
escaped here, and only http(s) links are made clickable.
"""

from __future__ import annotations

import html
from typing import Any

from ..photos.web_urls import web_url

escape = html.escape

# Shown in the details panel in this order; other fields follow alphabetically.
_DETAIL_ORDER = ("description", "ai_description", "caption", "photographer", "tags", "ocr_text", "location", "taken", "camera", "lens",
                 "focal_length_mm", "source", "url", "width", "height", "filename", "added_at", "id", "score", "matched_words", "meaning_score", "matched_box",
                 "photo_score")
_HIDDEN = {"path", "mtime", "size", "image_url"}  # file-system details: never leave the server
# In the details panel in a friendlier form (taken, camera, the place) or not at all.
_NOT_LISTED = _HIDDEN | {"taken_at", "taken_utc", "taken_from", "camera_make", "camera_model", "gps_lat", "gps_lon", "gps_alt",
                         "phash", "ocr_words", "meaning_of"}


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
    if result.get("matched_words"):  # early: the reason a photo with a low picture score is here
        parts.append("words: " + ", ".join(result["matched_words"]))
    if result.get("photographer"):
        parts.append(f"by {result['photographer']}")
    parts.append(title(result))
    if result.get("similar"):
        parts.append(f"+{len(result['similar'])} similar")
    if result.get("meaning_score") is not None and not result.get("matched_words"):
        parts.append("described alike")  # found by what its description says, in other words
    if result.get("matched_box"):
        parts.append("matched in the box")
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
    return web_url(url)


def details_html(result: dict[str, Any]) -> str:
    """All metadata of one result as an escaped HTML table, with its source link."""
    keys = [k for k in _DETAIL_ORDER if k in result]
    keys += sorted(k for k in result if k not in _DETAIL_ORDER and k not in _NOT_LISTED)
    rows = []
    for key in keys:
        value = result[key]
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if key in ("score", "photo_score", "meaning_score"):
            value = f"{float(value):.4f}"
        if key == "taken" and result.get("taken_from") == "file time":
            value = f"{value} (the file's time: no date in the photo)"
        rows.append(f"<tr><th>{html.escape(_LABELS.get(key, key))}</th><td>{html.escape(str(value))}</td></tr>")
    place = map_link(result)
    if place:
        rows.append(f'<tr><th>place</th><td><a href="{html.escape(place, quote=True)}" target="_blank" '
                    f'rel="noopener noreferrer" class="map-link">{result["gps_lat"]:.5f}, {result["gps_lon"]:.5f}'
                    f'</a>{_altitude(result)}</td></tr>')
    link = _safe_link(result.get("url"))
    heading = f"<h3>{html.escape(title(result))}</h3>"
    source = (f'<p><a href="{html.escape(link, quote=True)}" target="_blank" rel="noopener noreferrer">'
              "Open the source page</a></p>") if link else ""
    return f'<div class="photo-details">{heading}{source}<table>{"".join(rows)}</table></div>'


_LABELS = {"focal_length_mm": "focal length (mm)", "matched_box": "matched region (left, top, right, bottom)",
           "photo_score": "whole photo's score", "regions": "regions indexed", "ocr_text": "words in the photo",
           "ocr": "lines of words read", "ocr_looks": "words looked for by", "matched_words": "words it matched",
           "caption": "Caption (generated)", "ai_description": "AI description",
           "meaning_score": "its description's nearness in meaning", "captioned_by": "caption written by",
           "failed_stages": "not done yet (the next index tries again)"}


def map_link(result: dict[str, Any]) -> str | None:
    """Where the photo was taken, on OpenStreetMap (when it has GPS)."""
    lat, lon = result.get("gps_lat"), result.get("gps_lon")
    if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
        return None
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=16/{lat:.6f}/{lon:.6f}"


def _altitude(result: dict[str, Any]) -> str:
    altitude = result.get("gps_alt")
    return f" · {altitude:.0f} m" if isinstance(altitude, (int, float)) else ""


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
