"""Peak resident memory while a piece of work runs, sampled from a background thread."""

from __future__ import annotations

import threading
from types import TracebackType


class PeakRss:
    """`with PeakRss() as rss: ...` then `rss.peak_mb` and `rss.added_mb` (peak minus RSS at entry)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="inferopt-rss")
        self.start_bytes = self.peak_bytes = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.start_bytes = self.peak_bytes = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def added_mb(self) -> float:
        return (self.peak_bytes - self.start_bytes) / 2**20
