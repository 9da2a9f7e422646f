"""The arithmetic of the benchmark and the evaluation, kept apart so it can be tested."""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean in milliseconds."""
    return {
        "p50_ms": round(percentile(seconds, 50) * 1000, 2),
        "p95_ms": round(percentile(seconds, 95) * 1000, 2),
        "mean_ms": round(sum(seconds) / len(seconds) * 1000, 2),
        "n": len(seconds),
    }


def recall_at_k(found: Iterable[str], truth: Iterable[str], k: int) -> float:
    """The share of the true top-k that the answer's top-k contains."""
    expected = list(truth)[:k]
    if not expected:
        raise ValueError("no true neighbours")
    return len(set(list(found)[:k]) & set(expected)) / len(expected)


def recall_from_ranks(ranks: Sequence[int | None], ks: Iterable[int]) -> dict[int, float]:
    """Recall@k from the 1-based rank of the first right answer of each query (None: not found)."""
    if not ranks:
        raise ValueError("no queries")
    return {k: sum(1 for r in ranks if r is not None and r <= k) / len(ranks) for k in ks}


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("nan")
