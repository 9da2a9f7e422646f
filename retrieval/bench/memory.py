"""Peak memory (resident set size) of the process during one phase."""

from __future__ import annotations

import threading

import psutil


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.mib``: the highest RSS seen.

    A sampler thread reads the RSS every few milliseconds; the phase's start
    value counts too, so a phase that frees memory reports what it started with.
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self._process = psutil.Process()
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)

    @property
    def mib(self) -> float:
        return round(self._peak / 2**20, 1)
