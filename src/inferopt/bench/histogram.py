"""HDR-histogram-backed latency recording: bounded memory, 3 significant digits from 1 µs to an hour.

Load runs can record millions of latencies; an HDR histogram keeps them in a few kilobytes with a relative
error of 0.1%, merges across sender processes, and can be shipped as a base64 string in JSON so that other
tools (HdrHistogram's plotters, a later run) can re-read the full distribution. The n/a rules of `stats.py`
apply: a percentile is reported only when enough samples lie beyond it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from inferopt.bench.stats import PERCENTILES, min_samples_for, percentile_key

LOWEST_US = 1
HIGHEST_US = 3600 * 1_000_000
SIGNIFICANT_DIGITS = 3


class LatencyHistogram:
    """Latencies recorded in microseconds; summaries come back in milliseconds."""

    def __init__(self) -> None:
        from hdrh.histogram import HdrHistogram

        self._hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)

    @classmethod
    def of(cls, samples_s: Iterable[float] | np.ndarray) -> LatencyHistogram:
        hist = cls()
        hist.record_many(samples_s)
        return hist

    def record_many(self, samples_s: Iterable[float] | np.ndarray) -> None:
        micros = np.asarray(samples_s, dtype=np.float64) * 1e6
        # Clamp rather than drop: a value outside the trackable range is still a request that happened.
        micros = np.clip(np.rint(micros), LOWEST_US, HIGHEST_US).astype(np.int64)
        values, counts = np.unique(micros, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self._hist.record_value(value, count)

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def percentile_ms(self, percentile: float) -> float | None:
        if self.count < min_samples_for(percentile):
            return None
        return float(self._hist.get_value_at_percentile(percentile)) / 1000.0

    def summary(self, percentiles: tuple[float, ...] = PERCENTILES) -> dict[str, float | None]:
        """Same keys as `stats.latency_summary`: n, p50 ... p99_9 (None = too few samples), mean, min, max."""
        summary: dict[str, float | None] = {"n": float(self.count)}
        for p in percentiles:
            summary[percentile_key(p)] = self.percentile_ms(p)
        if self.count == 0:
            return summary | {"mean": None, "min": None, "max": None}
        return summary | {
            "mean": float(self._hist.get_mean_value()) / 1000.0,
            "min": float(self._hist.get_min_value()) / 1000.0,
            "max": float(self._hist.get_max_value()) / 1000.0,
        }

    def encode(self) -> str:
        """The compressed, base64 HdrHistogram encoding (readable by every HdrHistogram implementation)."""
        encoded = self._hist.encode()
        return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)

    @classmethod
    def decode(cls, encoded: str) -> LatencyHistogram:
        from hdrh.histogram import HdrHistogram

        hist = cls()
        hist._hist = HdrHistogram.decode(encoded)
        return hist
