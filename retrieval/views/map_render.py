"""Drawing a collection map: an SVG of thumbnails (the page and ``map --out x.html``)
and a PNG (``map --out x.png``).

Every photo of the map is placed; at most ``max_points`` are drawn as thumbnails
(an even sample by id, always with the current search's results), so that the
page stays quick with a big collection.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw

from .collection_map import OTHER, CollectionMap, colour_values, legend
from ..photos.web_urls import web_url

MAX_DRAWN = 1500
_SIDE = 1000  # the SVG's own coordinates; the page scales it to its width
_MIN_THUMB, _MAX_THUMB = 46, 130  # in the SVG's units: about 3% to 13% of its side


def thumb_side(count: int) -> int:
    """Thumbnails as big as the number drawn leaves room for: a few large, many small."""
    return int(max(_MIN_THUMB, min(_MAX_THUMB, 320 / max(count, 1) ** 0.5)))


def drawn(cmap: CollectionMap, highlight: set[str], max_points: int = MAX_DRAWN) -> list[int]:
    """Positions in the map to draw: the results, then an even sample of the rest."""
    chosen = [n for n, i in enumerate(cmap.ids) if i in highlight]
    rest = [n for n, i in enumerate(cmap.ids) if i not in highlight]
    room = max(0, max_points - len(chosen))
    if len(rest) > room:  # the same sample every time: by a hash of the id
        rest = sorted(rest, key=lambda n: hashlib.blake2b(cmap.ids[n].encode(), digest_size=8).digest())[:room]
    return sorted(rest) + chosen  # results last: drawn on top


def _legend_html(colours: dict[str, str], field_name: str) -> str:
    items = "".join(f'<span class="map-key"><i style="background:{c}"></i>{html.escape(v)}</span>'
                    for v, c in colours.items())
    return f'<div class="map-legend"><b>{html.escape(field_name)}:</b> {items}' \
           f'<span class="map-key"><i style="background:{OTHER}"></i>other</span></div>'


def map_svg(cmap: CollectionMap, picture: Callable[[int], str | None], colour_field: str = "tags",
            highlight: set[str] | None = None, max_points: int = MAX_DRAWN) -> str:
    """The map as HTML: an SVG where each drawn photo is a thumbnail framed in its colour,
    carrying ``data-map-id`` (a click opens it); results are ringed, the rest dimmed."""
    highlight = highlight or set()
    values = colour_values(cmap.metadata, colour_field)
    colours = legend(values)
    shown = drawn(cmap, highlight, max_points)
    side = thumb_side(len(shown))
    margin = side
    parts = []
    for n in shown:
        x = margin + float(cmap.xy[n, 0]) * (_SIDE - 2 * margin) - side / 2
        y = margin + (1 - float(cmap.xy[n, 1])) * (_SIDE - 2 * margin) - side / 2
        colour = colours.get(values[n], OTHER)
        record_id = html.escape(cmap.ids[n], quote=True)
        label = html.escape(cmap.metadata[n].get("description") or cmap.metadata[n].get("filename") or cmap.ids[n])
        classes = "map-photo" + (" map-hit" if cmap.ids[n] in highlight else " map-dim" if highlight else "")
        href = picture(n)
        inner = (f'<image href="{html.escape(href, quote=True)}" width="{side}" height="{side}" '
                 'preserveAspectRatio="xMidYMid slice"/>' if href else
                 f'<circle cx="{side / 2}" cy="{side / 2}" r="{side / 3}" fill="{colour}"/>')
        parts.append(f'<g class="{classes}" data-map-id="{record_id}" transform="translate({x:.1f},{y:.1f})">'
                     f'<title>{label}</title>{inner}<rect width="{side}" height="{side}" fill="none" '
                     f'stroke="{colour}" stroke-width="3"/></g>')
    svg = (f'<svg class="collection-map" viewBox="0 0 {_SIDE} {_SIDE}" role="img" '
           f'aria-label="Map of {len(cmap)} photos">{"".join(parts)}</svg>')
    return f'<div class="map-frame">{_legend_html(colours, colour_field)}{svg}</div>'


def data_uri(path: str | None, size: int = 96) -> str | None:
    """A small JPEG of the photo at ``path``, inline (for a map file that stands alone)."""
    if not path:
        return None
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            picture = image.convert("RGB")
            picture.thumbnail((size, size))
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=80)
    except Exception:  # noqa: BLE001 - a photo that can't be read any more is a dot
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_html(cmap: CollectionMap, out: Path, colour_field: str, max_points: int = MAX_DRAWN) -> None:
    def picture(n: int) -> str | None:
        metadata = cmap.metadata[n]
        return data_uri(metadata.get("path")) or web_url(metadata.get("image_url"))

    body = map_svg(cmap, picture, colour_field, max_points=max_points)
    out.write_text(
        "<!doctype html><meta charset=utf-8><title>Photo map</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1rem}.collection-map{width:100%;max-width:1000px}"
        ".map-photo:hover{transform-box:fill-box}.map-legend{margin:.5rem 0}"
        ".map-key{margin-right:.8rem}.map-key i{display:inline-block;width:.8rem;height:.8rem;margin-right:.25rem}"
        f"</style><h1>{len(cmap)} photos ({cmap.method})</h1>{body}", encoding="utf-8")


def write_png(cmap: CollectionMap, out: Path, colour_field: str, size: int = 2000,
              max_points: int = MAX_DRAWN) -> None:
    """Thumbnails placed on a canvas (photos without a readable file are dots)."""
    canvas = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    values = colour_values(cmap.metadata, colour_field)
    colours = legend(values)
    thumb = max(24, size // 30)
    margin = thumb
    for n in drawn(cmap, set(), max_points):
        x = int(margin + float(cmap.xy[n, 0]) * (size - 2 * margin) - thumb / 2)
        y = int(margin + (1 - float(cmap.xy[n, 1])) * (size - 2 * margin) - thumb / 2)
        colour = colours.get(values[n], OTHER)
        try:
            with Image.open(cmap.metadata[n].get("path") or "") as image:
                image.draft("RGB", (thumb, thumb))
                picture = image.convert("RGB")
                picture.thumbnail((thumb, thumb))
            canvas.paste(picture, (x, y))
            draw.rectangle((x - 2, y - 2, x + picture.width + 1, y + picture.height + 1), outline=colour, width=3)
        except Exception:  # noqa: BLE001 - no readable file: a dot in its colour
            draw.ellipse((x + thumb // 4, y + thumb // 4, x + 3 * thumb // 4, y + 3 * thumb // 4), fill=colour)
    y = 8
    for value, colour in colours.items():
        draw.rectangle((8, y, 24, y + 16), fill=colour)
        draw.text((30, y), value[:40], fill=(40, 40, 40), font_size=16)
        y += 22
    canvas.save(out)
