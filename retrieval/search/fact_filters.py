"""Filters on the photo facts (``photos/facts.py``): a date range, a camera, a place.

``--after 2024-06`` keeps photos taken in June 2024 or later, ``--before 2024-06``
those taken before June 2024: a date names the start of its day, month or year.
Both compare the photo's own clock time (``taken_at``).

``--near LAT,LON --within KM`` becomes a box of latitude and longitude the store
can filter on; the search then keeps only what is truly within the distance.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import RetrievalError
from ..store.filters import AllOf, Compare
from ..photos.facts import wall_clock_seconds

EARTH_RADIUS_KM = 6371.0088
_DATE = re.compile(r"^\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?)?)?\s*$")


def parse_date(text: str) -> datetime:
    """The start of the day, month or year written (``2024``, ``2024-06``, ``2024-06-01``,
    ``2024-06-01 14:30``)."""
    match = _DATE.match(text or "")
    if not match:
        raise RetrievalError(f"'{text}' is not a date: write it as 2024, 2024-06, 2024-06-01 or 2024-06-01 14:30.")
    parts = [int(p) if p else default for p, default in zip(match.groups(), (0, 1, 1, 0, 0, 0))]
    try:
        return datetime(*parts)
    except ValueError as exc:
        raise RetrievalError(f"'{text}' is not a date ({exc}).") from None


def date_range(after: str | None = None, before: str | None = None) -> AllOf | None:
    """The ``taken_at`` condition for photos taken at or after ``after`` and before ``before``."""
    low = wall_clock_seconds(parse_date(after)) if after and after.strip() else None
    high = wall_clock_seconds(parse_date(before)) if before and before.strip() else None
    if low is None and high is None:
        return None
    if low is not None and high is not None and low >= high:
        raise RetrievalError(f"Nothing is taken after {after.strip()} and before {before.strip()}: "
                             "the first date must be the earlier one.")
    return AllOf.between(low, high)


@dataclass(frozen=True)
class Place:
    """Photos taken within ``km`` of a point."""

    lat: float
    lon: float
    km: float

    @classmethod
    def parse(cls, near: str, within_km: float | None) -> "Place":
        try:
            lat, lon = (float(part) for part in near.replace(" ", "").split(","))
        except ValueError:
            raise RetrievalError(f"'{near}' is not a place: write it as LAT,LON in degrees, "
                                 "for example 48.8584,2.2945.") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise RetrievalError(f"{near}: latitude goes from -90 to 90, longitude from -180 to 180.")
        km = 1.0 if within_km is None else within_km
        if not (math.isfinite(km) and km > 0):
            raise RetrievalError(f"The distance must be a positive number of kilometres, got {within_km}.")
        return cls(lat, lon, km)

    def box(self) -> dict[str, AllOf]:
        """Latitude and longitude ranges around the circle (a filter the store can run)."""
        lat_span = math.degrees(self.km / EARTH_RADIUS_KM)
        low_lat, high_lat = max(-90.0, self.lat - lat_span), min(90.0, self.lat + lat_span)
        filters = {"gps_lat": AllOf((Compare(">=", low_lat), Compare("<=", high_lat)))}
        widest = max(abs(low_lat), abs(high_lat))
        if widest < 89.9:
            lon_span = math.degrees(self.km / (EARTH_RADIUS_KM * math.cos(math.radians(widest))))
            if lon_span < 180 and -180 <= self.lon - lon_span and self.lon + lon_span <= 180:
                filters["gps_lon"] = AllOf((Compare(">=", self.lon - lon_span), Compare("<=", self.lon + lon_span)))
            # A box across the date line, or one around a pole, keeps every longitude: the exact
            # check below still decides.
        return filters

    def holds(self, metadata: dict[str, Any]) -> bool:
        lat, lon = metadata.get("gps_lat"), metadata.get("gps_lon")
        if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
            return False
        return distance_km(self.lat, self.lon, float(lat), float(lon)) <= self.km


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi, d_lambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


# -- cameras: "iPhone 15 Pro" finds "Apple iPhone 15 Pro", "canon" every Canon ---------------

def _words(text: str) -> list[str]:
    return re.findall(r"[\w-]+", text.lower())


def matching_cameras(wanted: str, cameras: dict[str, str]) -> list[str]:
    """The cameras (as stored in ``camera``) that ``wanted`` names: itself when it is one of them
    (in any case), else every camera whose name and make hold each of its words. ``cameras``:
    each stored camera name with its make."""
    asked = " ".join(_words(wanted))
    exact = [camera for camera in cameras if " ".join(_words(camera)) == asked]
    if exact:
        return exact
    words = _words(wanted)
    return sorted(camera for camera, make in cameras.items()
                  if words and all(word in _words(f"{make} {camera}") for word in words))


def no_camera_matches(wanted: str, cameras: dict[str, str]) -> RetrievalError:
    import difflib

    names = sorted(cameras)
    if not names:
        return RetrievalError(f"No photo in this collection records its camera, so none matches '{wanted}'.")
    lowered = {name.lower(): name for name in names}
    closest = [lowered[n] for n in difflib.get_close_matches(wanted.lower(), list(lowered), n=3, cutoff=0.3)]
    suggestion = ", ".join(closest or names[:3])
    return RetrievalError(f"No camera in this collection matches '{wanted}'. The closest: {suggestion}"
                          f"{'' if len(names) <= 3 else f' ({len(names)} cameras in all)'}.")
