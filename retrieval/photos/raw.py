"""Camera RAW files (CR2, CR3, NEF, ARW, DNG, RAF, ORF, RW2) through LibRaw (``rawpy``).

Most RAW files carry a full-size JPEG preview made by the camera: it is what the
photographer saw, and reading it is a hundred times faster than demosaicing, so
it is used when it is at least ``MIN_PREVIEW_SIDE`` on its shorter side. Otherwise
the sensor data is demosaiced (half size, camera white balance: the model sees
224-512 px anyway).
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageOps

from .formats import SkipReason
from .facts import facts_of_exif

MIN_PREVIEW_SIDE = 640


def decode_raw(data: bytes, error) -> tuple[Image.Image, dict[str, Any], tuple[int, int]]:
    """The upright picture of a RAW file, its facts and its full size (upright);
    ``error(reason, detail)`` makes the exception to raise (the caller's ``ImageRejected``)."""
    try:
        import rawpy
    except ImportError:
        raise error(SkipReason.UNSUPPORTED, "camera RAW needs rawpy: pip install rawpy") from None
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            full = (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)
            preview = _preview(raw, rawpy)
            if preview is not None:
                facts = facts_of_exif(preview.getexif()) or _tiff_facts(data)
                return ImageOps.exif_transpose(preview).convert("RGB"), facts, full
            pixels = raw.postprocess(use_camera_wb=True, half_size=True, output_bps=8)
            # postprocess applies the file's orientation (LibRaw's "flip") itself.
            return Image.fromarray(pixels, mode="RGB"), _tiff_facts(data), full
    except error:
        raise
    except Exception as exc:  # noqa: BLE001 - LibRaw's many error types all mean "can't read this"
        raise error(SkipReason.CORRUPT, f"camera RAW: {type(exc).__name__}: {exc}") from None


def _preview(raw, rawpy) -> Image.Image | None:
    try:
        thumb = raw.extract_thumb()
    except Exception:  # noqa: BLE001 - no preview, or one LibRaw can't unpack: demosaic instead
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        image = Image.open(io.BytesIO(thumb.data))
    elif thumb.format == rawpy.ThumbFormat.BITMAP:
        image = Image.fromarray(thumb.data)
    else:
        return None
    return image if min(image.size) >= MIN_PREVIEW_SIDE else None


def _tiff_facts(data: bytes) -> dict[str, Any]:
    """Most RAW formats are TIFF inside: their first directory holds the EXIF."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return {}
    try:
        exif = Image.Exif()
        exif.load(data)
        return facts_of_exif(exif)
    except Exception:  # noqa: BLE001 - no readable EXIF: no facts
        return {}
