"""One result per photo: the better of its whole-photo score and its best region's.

A region wins only by a clear margin (``REGION_MARGIN``): when the photo as a whole
matches about as well, the whole photo is the answer, and no box is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..store import Match
from ..store.contract import REGION_PHOTO_FIELD
from .records import box_of

REGION_MARGIN = 0.02  # cosine similarity
REGION_READ_FACTOR = 8  # region matches read per result wanted (a photo's regions crowd each other)
MAX_REGION_READ = 4000


@dataclass(frozen=True)
class RegionHit:
    photo_id: str
    score: float
    box: list[int]


def best_region_per_photo(matches: list[Match]) -> dict[str, RegionHit]:
    """Each photo's best-scoring region among ``matches`` (region records)."""
    best: dict[str, RegionHit] = {}
    for match in matches:
        photo = match.metadata.get(REGION_PHOTO_FIELD)
        if photo is None:
            continue
        if photo not in best or match.score > best[photo].score:
            best[photo] = RegionHit(photo, match.score, box_of(match.metadata).to_list())
    return best


def region_wins(whole_score: float, region_score: float, margin: float = REGION_MARGIN) -> bool:
    return region_score > whole_score + margin
