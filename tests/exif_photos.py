"""Photos written with known EXIF facts (capture time with offset, camera, lens, GPS), and DNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, TiffImagePlugin

from photos import random_photo


def _rational(value: float) -> TiffImagePlugin.IFDRational:
    return TiffImagePlugin.IFDRational(round(value * 10000), 10000)


def exif_block(taken: str | None = None, offset: str | None = None, make: str | None = None,
               model: str | None = None, lens: str | None = None, focal: float | None = None,
               gps: tuple[float, float, float] | None = None) -> Image.Exif:
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    main = exif.get_ifd(ExifTags.IFD.Exif)
    if taken:
        main[0x9003] = taken
    if offset:
        main[0x9011] = offset
    if lens:
        main[0xA434] = lens
    if focal:
        main[0x920A] = _rational(focal)
    if gps:
        lat, lon, alt = gps
        where = exif.get_ifd(ExifTags.IFD.GPSInfo)

        def dms(value: float):
            degrees = int(abs(value))
            minutes = int((abs(value) - degrees) * 60)
            seconds = (abs(value) - degrees - minutes / 60) * 3600
            return (_rational(degrees), _rational(minutes), _rational(seconds))

        where[1], where[2] = ("N" if lat >= 0 else "S"), dms(lat)
        where[3], where[4] = ("E" if lon >= 0 else "W"), dms(lon)
        where[5], where[6] = (b"\x00" if alt >= 0 else b"\x01"), _rational(abs(alt))
    return exif


def write_exif_photo(path: Path, seed: int, size=(64, 48), **facts) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    random_photo(seed, size).save(path, exif=exif_block(**facts))
    return path


def write_dng(path: Path, seed: int, size=(96, 64), make="Testmaker", model="Testmaker Sensor One",
              taken="2023:05:04 10:11:12") -> Path:
    """A small uncompressed Bayer (RGGB) DNG, as a camera without a preview writes it."""
    import tifffile

    rgb = np.asarray(random_photo(seed, size), dtype=np.uint16) * 16  # 12-bit
    bayer = np.zeros(rgb.shape[:2], dtype=np.uint16)
    bayer[0::2, 0::2] = rgb[0::2, 0::2, 0]
    bayer[0::2, 1::2] = rgb[0::2, 1::2, 1]
    bayer[1::2, 0::2] = rgb[1::2, 0::2, 1]
    bayer[1::2, 1::2] = rgb[1::2, 1::2, 2]
    identity = [x for v in (1, 0, 0, 0, 1, 0, 0, 0, 1) for x in (v * 10000, 10000)]
    tags = [(50706, "B", 4, (1, 4, 0, 0), False), (50707, "B", 4, (1, 1, 0, 0), False),
            (33421, "H", 2, (2, 2), False), (33422, "B", 4, (0, 1, 1, 2), False),
            (50708, "s", 0, model, False), (271, "s", 0, make, False), (272, "s", 0, model, False),
            (50717, "I", 1, 4095, False), (50714, "I", 1, 0, False),
            (50721, "2i", 9, identity, False), (50778, "H", 1, 21, False), (306, "s", 0, taken, False)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, bayer, photometric=32803, extratags=tags, compression=None)
    return path
