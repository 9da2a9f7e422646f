"""The runner: photos from a reader, through the stages, in batches to a writer.

Every kind of indexing run is this one loop with different parts:

    index            files under folders -> read, decode, preprocess, facts, hash -> IndexWriter
    completing       stored photos that lack a stage's fields -> read, decode, those stages -> IndexWriter
    regions          stored photos without regions -> read, decode, regions -> RegionWriter
    reembed          the store's records -> read (file or URL), decode, preprocess -> ReembedWriter
    index --ray      the same stages on Ray actors, which embed too (cluster.py) -> IndexWriter

The stages run on a pool of threads (or on Ray), the photos come back in the reader's order,
and the writer embeds and commits each batch (``Writer``), so a killed run loses at most the
batch in flight.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from .photo import Photo
from .stages import Stage, StageTimes, run_stages

if TYPE_CHECKING:
    from ..embedder import Embedder


class Writer(Protocol):
    def take(self, photo: Photo) -> bool:
        """Deal with a photo the stages are done with; True: it waits for the next batch."""

    def commit(self, batch: list[Photo]) -> None:
        """Embed (if need be) and store a batch, as one unit a killed run loses at most."""


def ordered_prefetch(fn, items: Iterable, workers: int, window: int) -> Iterator:
    """``map(fn, items)`` on a thread pool, in order, with at most ``window`` in flight.

    When the consumer stops early (Ctrl-C, an error), work not yet started is
    cancelled rather than waited for, so the run ends at once.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stages")
    pending: deque = deque()
    try:
        iterator = iter(items)
        for item in iterator:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            next_item = next(iterator, None)
            if next_item is not None:
                pending.append(pool.submit(fn, next_item))
            yield result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class ThreadRunner:
    """Runs the stages on a pool of this process's threads (decoding releases the GIL)."""

    def __init__(self, workers: int, window: int):
        self.workers, self.window = workers, window

    def prepare(self, photos: Iterable[Photo], stages: Sequence[Stage]) -> Iterator[Photo]:
        return ordered_prefetch(partial(run_stages, stages=stages), photos, self.workers, self.window)


def drive(prepared: Iterator[Photo], writer: Writer, batch_size: int, times: StageTimes) -> None:
    """Hand each prepared photo to the writer, committing every ``batch_size`` it keeps."""
    batch: list[Photo] = []
    with contextlib.closing(prepared) if hasattr(prepared, "close") else contextlib.nullcontext():
        for photo in prepared:
            times.count(photo)
            if writer.take(photo):
                batch.append(photo)
                if len(batch) >= batch_size:
                    writer.commit(batch)
                    batch = []
    writer.commit(batch)


class EmbedStep:
    """The model run on a batch of inputs, its time counted as the ``embed`` stage. ``embedder``:
    the model, or a function that loads it (called at the first batch)."""

    def __init__(self, embedder: Embedder | Callable[[], Embedder], times: StageTimes):
        self._embedder, self.times = embedder, times

    @property
    def embedder(self) -> Embedder:
        if callable(self._embedder):
            self._embedder = self._embedder()
        return self._embedder

    def __call__(self, pixels: list[np.ndarray], photos: int) -> np.ndarray:
        if not pixels:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        started = time.perf_counter()
        vectors = self.embedder.embed_pixels(pixels)
        self.times.add("embed", time.perf_counter() - started, photos=photos)
        return vectors


@contextlib.contextmanager
def timed(times: StageTimes, name: str, photos: int):
    """Count a writer's store writes as the ``name`` stage."""
    started = time.perf_counter()
    try:
        yield
    finally:
        times.add(name, time.perf_counter() - started, photos=photos)
