"""Picking a reproducible subset before anything is downloaded."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from ..errors import RetrievalError

T = TypeVar("T")
SAMPLE_MODES = ("first", "random")


def sample(items: Sequence[T], limit: int | None, how: str = "first", seed: int = 0) -> list[T]:
    """``limit`` items: the first ones, or a random choice fixed by ``seed``.

    The chosen items keep their original order, so the same call always gives
    the same list in the same order.
    """
    if how not in SAMPLE_MODES:
        raise RetrievalError(f"--sample must be one of {', '.join(SAMPLE_MODES)}, got {how!r}.")
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise RetrievalError(f"--limit must be at least 1, got {limit}.")
    if how == "first":
        return list(items[:limit])
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]
