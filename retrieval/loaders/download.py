"""Downloading many files politely: several at a time, retries with back-off,
a size cap, and nothing half-written left under a final name.

A file already on disk is not fetched again, so an interrupted run resumes
where it stopped.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import httpx

log = logging.getLogger(__name__)

USER_AGENT = "photo-search-loader/1.0 (+https://github.com/)"
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(Exception):
    def __init__(self, reason: str, retryable: bool):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass
class DownloadFailure:
    url: str
    target: str
    reason: str


@dataclass
class DownloadReport:
    downloaded: int = 0
    already_there: int = 0
    failures: list[DownloadFailure] = field(default_factory=list)


@dataclass
class Downloader:
    workers: int = 8
    retries: int = 3  # attempts after the first
    timeout: float = 20.0  # seconds without a byte, and a quarter of the whole-file deadline
    max_bytes: int = 25_000_000
    backoff: float = 0.5  # seconds before the first retry; doubles each time

    def fetch(self, url: str, target: Path, client: httpx.Client | None = None) -> None:
        """Download ``url`` to ``target``; raises DownloadError after the last attempt fails."""
        own = client is None
        client = client or self._client()
        try:
            for attempt in range(self.retries + 1):
                try:
                    self._fetch_once(client, url, target)
                    return
                except DownloadError as exc:
                    if not exc.retryable or attempt == self.retries:
                        raise
                    delay = self.backoff * 2**attempt * (1 + random.random() / 4)
                    log.info("retrying %s in %.1f s: %s", url, delay, exc.reason)
                    time.sleep(delay)
        finally:
            if own:
                client.close()

    def fetch_all(self, jobs: Iterable[tuple[str, Path]],
                  progress: Callable[[int], None] | None = None) -> DownloadReport:
        """Fetch (url, target) pairs concurrently; failures are listed, not raised."""
        report = DownloadReport()
        pending = []
        for url, target in jobs:
            if target.is_file() and target.stat().st_size > 0:
                report.already_there += 1
                if progress:
                    progress(1)
            else:
                pending.append((url, target))

        def run(job: tuple[str, Path]) -> DownloadFailure | None:
            url, target = job
            try:
                self.fetch(url, target, client)
                return None
            except DownloadError as exc:
                return DownloadFailure(url, str(target), exc.reason)
            finally:
                if progress:
                    progress(1)

        with self._client() as client, ThreadPoolExecutor(max(1, self.workers)) as pool:
            for failure in pool.map(run, pending):
                if failure is None:
                    report.downloaded += 1
                else:
                    report.failures.append(failure)
        return report

    def _client(self) -> httpx.Client:
        return httpx.Client(follow_redirects=True, headers={"User-Agent": USER_AGENT},
                            timeout=httpx.Timeout(self.timeout))

    def _fetch_once(self, client: httpx.Client, url: str, target: Path) -> None:
        partial = target.with_name(target.name + ".part")
        deadline = time.monotonic() + 4 * self.timeout
        try:
            with client.stream("GET", url) as response:
                if response.status_code in _RETRYABLE_STATUS:
                    raise DownloadError(f"HTTP {response.status_code}", retryable=True)
                if response.status_code >= 400:
                    raise DownloadError(f"HTTP {response.status_code}", retryable=False)
                expected = int(response.headers.get("content-length") or 0)
                if expected > self.max_bytes:
                    raise DownloadError(f"{expected:,} bytes is over the {self.max_bytes:,}-byte cap", False)
                target.parent.mkdir(parents=True, exist_ok=True)
                received = 0
                with open(partial, "wb") as out:
                    for chunk in response.iter_bytes():
                        received += len(chunk)
                        if received > self.max_bytes:
                            raise DownloadError(f"over the {self.max_bytes:,}-byte cap", retryable=False)
                        if time.monotonic() > deadline:
                            raise DownloadError("too slow (whole-file deadline passed)", retryable=True)
                        out.write(chunk)
            if expected and received != expected:
                raise DownloadError(f"truncated: {received:,} of {expected:,} bytes", retryable=True)
            if received == 0:
                raise DownloadError("empty response", retryable=True)
            partial.replace(target)
        except httpx.TimeoutException:
            raise DownloadError("timed out", retryable=True) from None
        except httpx.TransportError as exc:  # connection refused/reset, body cut short
            raise DownloadError(f"connection failed ({type(exc).__name__})", retryable=True) from None
        except httpx.InvalidURL as exc:
            raise DownloadError(f"invalid URL ({exc})", retryable=False) from None
        finally:
            partial.unlink(missing_ok=True)
