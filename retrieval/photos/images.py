"""Turning image bytes into an RGB picture, or a precise reason why not.

Every Pillow mode is brought to 8-bit RGB the way a person would expect to see
it: EXIF orientation applied, transparent areas on white, 16-bit greyscale
scaled rather than clipped, the first frame of an animation.
"""

from __future__ import annotations

import io
import re
import os
import stat
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..settings import DEFAULT_MAX_FILE_MB
from .formats import (IMAGE_EXTENSIONS, MAX_ASPECT_RATIO, RAW_EXTENSIONS,
                      UNSUPPORTED_IMAGE_EXTENSIONS, SkipReason)
from .facts import facts_of_exif

__all__ = ["IMAGE_EXTENSIONS", "UNSUPPORTED_IMAGE_EXTENSIONS", "SkipReason", "ImageRejected", "decode_image"]

# Leading bytes of the formats above: a file that starts like an image but does
# not decode is "corrupt"; one that does not even start like one is "not an image".
_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"\x00\x00\x00\x1cftypavif",  # AVIF (ISO base media; the box size varies)
    b"\x00\x00\x00\x20ftypavif",
)


try:  # HEIC / HEIF (phones): Pillow reads them once pillow-heif registers its opener
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # then HEIC files are reported as not decodable, with the package to install
    pass

# RAW containers that do not start like a TIFF (those that do need their file name to be told apart).
_RAW_SIGNATURES = (b"FUJIFILMCCD-RAW", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")

_EXIF_ORIENTATION_SWAPS_SIDES = {5, 6, 7, 8}  # the transposing and 90-degree rotations


class ImageRejected(Exception):
    """An image that cannot be used; ``reason`` says which kind of failure it is."""

    def __init__(self, reason: SkipReason, detail: str = ""):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # 8-bit RGB, orientation applied; maybe reduced when decoded with a draft size
    width: int  # the full size, upright
    height: int
    format: str | None
    facts: dict = field(default_factory=dict)  # what a camera RAW file's own reader found
    exif: Image.Exif | None = None  # read for its facts by an indexing stage of their own

    def read_facts(self) -> dict:
        """When, where and with what it was taken (``facts.py``); may raise on odd EXIF."""
        return facts_of_exif(self.exif) if self.exif is not None else dict(self.facts)


def _looks_like_image(data: bytes) -> bool:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    if data[4:12] == b"ftypavif":
        return True
    return any(data.startswith(sig) for sig in _SIGNATURES)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's own conversion clips 16-bit values at 255; scale instead.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def upright_rgb(image: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, as 8-bit RGB: how a viewer shows it."""
    image.seek(0)
    image.load()
    return to_rgb(ImageOps.exif_transpose(image))


def is_raw(data: bytes, name: str = "") -> bool:
    suffix = os.path.splitext(name)[1].lower()
    return suffix in RAW_EXTENSIONS or data[4:12] == b"ftypcrx " or data.startswith(_RAW_SIGNATURES)


def decode_image(data: bytes, max_pixels: int, draft: tuple[int, int] | None = None,
                 name: str = "") -> DecodedImage:
    """Decode image bytes into RGB, raising :class:`ImageRejected` with a reason.

    ``draft`` lets a JPEG decode at a reduced scale that is still at least that
    size (much faster for thumbnails); other formats ignore it. ``name``, the
    file's name, tells a camera RAW file from a TIFF.
    """
    if not data:
        raise ImageRejected(SkipReason.EMPTY)
    if is_raw(data, name):
        return _decode_raw(data, max_pixels)
    try:
        with warnings.catch_warnings():
            # Our own pixel cap below replaces Pillow's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow stops at a header claiming billions
        size = f"{int(claimed.group(1)):,} pixels" if claimed else "its size"
        raise ImageRejected(SkipReason.TOO_LARGE, f"{size} is over the cap of {max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        reason = SkipReason.CORRUPT if _looks_like_image(data) else SkipReason.NOT_AN_IMAGE
        raise ImageRejected(reason) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected(SkipReason.CORRUPT, str(exc)) from None

    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            SkipReason.TOO_LARGE, f"{width}x{height} is over the cap of {max_pixels:,} pixels"
        )
    if width == 0 or height == 0:
        raise ImageRejected(SkipReason.CORRUPT, "zero-sized image")
    check_proportions(width, height)

    image_format = image.format
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - a malformed EXIF block means no facts, never a failed photo
        exif = None
    try:
        if _EXIF_ORIENTATION_SWAPS_SIDES.intersection({image.getexif().get(0x0112)}):
            width, height = height, width  # as shown upright
        if draft is not None and image_format == "JPEG":
            image.draft("RGB", draft)
        rgb = upright_rgb(image)
    except OSError as exc:
        message = str(exc).lower()
        truncated = "truncated" in message or "broken data stream" in message or "premature" in message
        raise ImageRejected(SkipReason.TRUNCATED if truncated else SkipReason.CORRUPT, str(exc)) from None
    except (ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageRejected(SkipReason.CORRUPT, str(exc)) from None
    return DecodedImage(image=rgb, width=width, height=height, format=image_format, exif=exif)


def _decode_raw(data: bytes, max_pixels: int) -> DecodedImage:
    from .raw import decode_raw

    image, facts, (width, height) = decode_raw(data, ImageRejected)
    if width * height > max_pixels:
        raise ImageRejected(SkipReason.TOO_LARGE, f"{width}x{height} is over the cap of {max_pixels:,} pixels")
    check_proportions(width, height)
    return DecodedImage(image=image, width=width, height=height, format="RAW", facts=facts)


def check_proportions(width: int, height: int) -> None:
    """Refuse strips: their cost after the model's resize has nothing to do with their size."""
    if width and height and max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageRejected(
            SkipReason.BAD_PROPORTIONS,
            f"{width}x{height} is more than {MAX_ASPECT_RATIO} times longer than it is wide",
        )


def read_file_bytes(path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, or :class:`ImageRejected`.

    A FIFO, a device (a link to /dev/zero) or a socket would block or never end,
    so the file is opened without blocking and checked before a byte is read.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageRejected(SkipReason.UNREADABLE, exc.strerror or str(exc)) from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else
                    "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                    "a socket" if stat.S_ISSOCK(info.st_mode) else "not a file")
            raise ImageRejected(SkipReason.NOT_A_FILE, kind)
        if info.st_size > max_bytes:
            raise ImageRejected(SkipReason.FILE_TOO_BIG,
                                f"{info.st_size / 1e6:.0f} MB is over the {max_bytes / 1e6:.0f} MB cap (MAX_FILE_MB)")
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ImageRejected(SkipReason.UNREADABLE, exc.strerror or str(exc)) from None
    if len(data) > max_bytes:  # grew while being read
        raise ImageRejected(SkipReason.FILE_TOO_BIG, f"over the {max_bytes / 1e6:.0f} MB cap (MAX_FILE_MB)")
    return data


DEFAULT_MAX_FILE_BYTES = DEFAULT_MAX_FILE_MB * 1_000_000


def open_image_file(path, max_pixels: int, draft: tuple[int, int] | None = None,
                    max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> DecodedImage:
    """Read and decode a file; I/O problems become :class:`ImageRejected` too."""
    return decode_image(read_file_bytes(path, max_bytes), max_pixels, draft, name=str(path))

