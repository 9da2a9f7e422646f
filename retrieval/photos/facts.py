"""When, where and with what a photo was taken, read from its EXIF.

The facts become flat, filterable metadata fields:

- ``taken_at``: the capture time as a sortable number: seconds since 1970 of the
  *local* clock time where the photo was taken (the time the camera showed), so
  that "photos of 1 June" means the photographer's 1 June wherever that was.
  ``taken`` is the same time readable ("2024-06-01 14:03:07 +02:00", the offset
  when the camera recorded one), ``taken_utc`` the true instant when it did.
  ``taken_from`` says where the time came from: ``exif`` or ``file time`` (the
  file's modification time, for photos without one).
- ``camera_make``, ``camera_model``, ``camera`` ("Canon EOS R5"), ``lens``,
  ``focal_length_mm``.
- ``gps_lat``, ``gps_lon`` (decimal degrees, south and west negative),
  ``gps_alt`` (metres, below sea level negative).

Reading never fails a photo: a field that is missing or malformed is left out.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from PIL import ExifTags, Image

FACTS_FIELDS = ("taken_at", "taken", "taken_utc", "taken_from", "camera_make", "camera_model", "camera",
                "lens", "focal_length_mm", "gps_lat", "gps_lon", "gps_alt")
FROM_EXIF, FROM_FILE_TIME = "exif", "file time"
MARKER = "taken_from"  # every record read for facts has it: one without is read on the next index

_MAKE, _MODEL = 0x010F, 0x0110
_DATE_TIME = 0x0132  # IFD0 DateTime: when the file was last written, a last resort before the file time
_ORIGINAL, _DIGITISED = 0x9003, 0x9004
_OFFSET_ORIGINAL, _OFFSET_DIGITISED, _OFFSET = 0x9011, 0x9012, 0x9010
_SUBSEC_ORIGINAL = 0x9291
_FOCAL_LENGTH, _LENS_MAKE, _LENS_MODEL = 0x920A, 0xA433, 0xA434
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_ALT_REF, _GPS_ALT = 1, 2, 3, 4, 5, 6
_OFFSET_TEXT = re.compile(r"^\s*([+-])(\d{1,2}):?(\d{2})\s*$")
_EPOCH = datetime(1970, 1, 1)


def read_facts(image: Image.Image) -> dict[str, Any]:
    """The facts an opened image's EXIF gives (no ``taken_from`` fallback here)."""
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - a malformed EXIF block is "no facts", never a failed photo
        return {}
    return facts_of_exif(exif)


def facts_of_exif(exif: Image.Exif) -> dict[str, Any]:
    try:
        main = exif.get_ifd(ExifTags.IFD.Exif)
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # noqa: BLE001 - a malformed EXIF block is "no facts", never a failed photo
        return {}
    facts: dict[str, Any] = {}
    facts.update(_capture_time(main, exif))
    facts.update(_camera(exif, main))
    facts.update(_position(gps))
    return facts


def with_file_time(facts: dict[str, Any], mtime: float) -> dict[str, Any]:
    """``facts``, with the file's modification time as the capture time when EXIF had none."""
    if facts.get("taken_at") is not None:
        return facts
    try:
        local = datetime.fromtimestamp(mtime)
    except (OverflowError, OSError, ValueError):
        return {**facts, MARKER: FROM_FILE_TIME}
    return {**facts, "taken_at": wall_clock_seconds(local), "taken": local.strftime("%Y-%m-%d %H:%M:%S"),
            MARKER: FROM_FILE_TIME}


def wall_clock_seconds(moment: datetime) -> float:
    """The sortable number of a clock time (``taken_at``'s scale): its time zone is not counted."""
    return (moment.replace(tzinfo=None) - _EPOCH) / timedelta(seconds=1)


MAX_FACT_CHARS = 120  # a camera, lens or model name; EXIF writers have put 30,000 characters there


def _text(value: Any) -> str | None:
    """EXIF text as it can be shown: control and escape characters (a terminal's colour codes, a
    NUL) dropped, runs of spaces made one, at most ``MAX_FACT_CHARS`` characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    printable = "".join(c if c.isprintable() else " " for c in value.replace("\x1b", " "))
    value = " ".join(printable.split())
    if len(value) > MAX_FACT_CHARS:
        value = value[: MAX_FACT_CHARS - 1].rstrip() + "…"
    return value or None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _capture_time(main, exif) -> dict[str, Any]:
    for tag, offset_tag in ((_ORIGINAL, _OFFSET_ORIGINAL), (_DIGITISED, _OFFSET_DIGITISED), (_DATE_TIME, _OFFSET)):
        source = exif if tag == _DATE_TIME else main
        moment = _parse_exif_time(_text(source.get(tag)))
        if moment is None:
            continue
        if tag == _ORIGINAL:
            subsec = _text(main.get(_SUBSEC_ORIGINAL))
            if subsec and subsec.isdigit():
                moment = moment.replace(microsecond=int(subsec[:6].ljust(6, "0")))
        facts: dict[str, Any] = {"taken_at": wall_clock_seconds(moment), MARKER: FROM_EXIF}
        readable = moment.strftime("%Y-%m-%d %H:%M:%S")
        offset = _parse_offset(_text(main.get(offset_tag)))
        if offset is not None:
            hours, minutes = divmod(abs(int(offset.total_seconds())) // 60, 60)
            readable += f" {'-' if offset < timedelta(0) else '+'}{hours:02d}:{minutes:02d}"
            facts["taken_utc"] = (moment.replace(tzinfo=timezone(offset)).astimezone(timezone.utc)
                                  .strftime("%Y-%m-%dT%H:%M:%SZ"))
        facts["taken"] = readable
        return facts
    return {}


def _parse_exif_time(text: str | None) -> datetime | None:
    """EXIF's "YYYY:MM:DD HH:MM:SS" (some cameras write dashes, or blanks for unknown)."""
    if not text or text.startswith("0000"):
        return None
    digits = re.findall(r"\d+", text)
    if len(digits) < 3:
        return None
    try:
        parts = [int(d) for d in digits[:6]] + [0] * (6 - min(len(digits), 6))
        return datetime(*parts[:6])
    except ValueError:
        return None


def _parse_offset(text: str | None) -> timedelta | None:
    match = _OFFSET_TEXT.match(text or "")
    if not match:
        return None
    sign = -1 if match.group(1) == "-" else 1
    offset = sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
    return offset if abs(offset) <= timedelta(hours=14) else None


def _camera(exif, main) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    if make:
        facts["camera_make"] = make
    if model:
        facts["camera_model"] = model
    if make or model:
        # "Canon" + "Canon EOS R5" reads "Canon EOS R5"; "NIKON CORPORATION" + "NIKON D750" too.
        brand = (make or "").split()[0] if make else ""
        facts["camera"] = model if model and brand and model.lower().startswith(brand.lower()) else \
            " ".join(p for p in (make, model) if p)
    lens = _text(main.get(_LENS_MODEL))
    if lens:
        facts["lens"] = lens
    focal = _number(main.get(_FOCAL_LENGTH))
    if focal is not None and focal > 0:
        facts["focal_length_mm"] = round(focal, 2)
    return facts


def _degrees(value: Any) -> float | None:
    """Degrees, minutes, seconds (three rationals) as decimal degrees."""
    try:
        parts = [_number(v) for v in value]
    except TypeError:
        return _number(value)
    if not parts or any(p is None for p in parts):
        return None
    parts = (parts + [0.0, 0.0])[:3]
    return parts[0] + parts[1] / 60 + parts[2] / 3600


def _position(gps) -> dict[str, Any]:
    if not gps:
        return {}
    lat, lon = _degrees(gps.get(_GPS_LAT)), _degrees(gps.get(_GPS_LON))
    if lat is None or lon is None or (lat == 0 and lon == 0):  # 0,0: a receiver without a fix
        return {}
    if (_text(gps.get(_GPS_LAT_REF)) or "N").upper().startswith("S"):
        lat = -lat
    if (_text(gps.get(_GPS_LON_REF)) or "E").upper().startswith("W"):
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return {}
    facts: dict[str, Any] = {"gps_lat": round(lat, 7), "gps_lon": round(lon, 7)}
    altitude = _number(gps.get(_GPS_ALT))
    if altitude is not None:
        below = gps.get(_GPS_ALT_REF)
        below = below[0] if isinstance(below, bytes) and below else below
        facts["gps_alt"] = round(-altitude if below == 1 else altitude, 2)
    return facts
