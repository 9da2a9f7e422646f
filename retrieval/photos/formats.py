"""Which files are photos, and the reasons a file is passed over (no image code here,
so walking folders needs nothing but the standard library)."""

from __future__ import annotations

from enum import Enum

# Extensions the indexer picks up (compared lower-case).
# Camera RAW files: decoded by LibRaw (rawpy), never by Pillow (which would see only a TIFF thumbnail).
RAW_EXTENSIONS = {
    ".cr2": "Canon RAW", ".cr3": "Canon RAW", ".nef": "Nikon RAW", ".arw": "Sony RAW", ".dng": "DNG RAW",
    ".raf": "Fujifilm RAW", ".orf": "Olympus RAW", ".rw2": "Panasonic RAW",
}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif",
                              ".heic", ".heif", *RAW_EXTENSIONS})
# Formats people keep next to photos that can't be read: reported, not silently passed over.
UNSUPPORTED_IMAGE_EXTENSIONS = {".svg": "SVG", ".pdf": "PDF", ".psd": "Photoshop", ".jxl": "JPEG XL"}
# Longer side / shorter side beyond which a picture is a strip, not a photo. The
# model's processor scales the shorter side up to its input size, so a 100000x10
# PNG would become a 224x2,240,000 array (gigabytes) from a 3 MB file. Panoramas
# stay well inside this.
MAX_ASPECT_RATIO = 25

class SkipReason(str, Enum):
    EMPTY = "empty file"
    TRUNCATED = "truncated image"
    CORRUPT = "corrupt image"
    NOT_AN_IMAGE = "not an image"
    TOO_LARGE = "too many pixels"
    FILE_TOO_BIG = "file too big"
    UNREADABLE = "unreadable file"
    BAD_PROPORTIONS = "extreme aspect ratio"
    NOT_A_FILE = "not a regular file"
    UNSUPPORTED = "unsupported format"
    UNREADABLE_FOLDER = "unreadable folder"
