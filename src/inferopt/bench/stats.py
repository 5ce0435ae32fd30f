"""Latency statistics with honest tails: a percentile needs enough samples to exist.

A p99 is reported only from ~660 samples up (so that at least ~6-7 samples lie beyond it), a p99.9 from
~6,600; below that it is None and printed as n/a, never extrapolated.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
TAIL_SAMPLES_NEEDED = 6.6  # samples that must lie beyond a percentile for it to be reported


def min_samples_for(percentile: float) -> int:
    """Samples needed before `percentile` is reported (p99 -> 660, p99.9 -> 6,600, p50 -> 14)."""
    return int(np.ceil(TAIL_SAMPLES_NEEDED / (1.0 - percentile / 100.0) - 1e-9))


def percentile_key(percentile: float) -> str:
    return "p" + (f"{percentile:g}".replace(".", "_"))


def latency_summary(
    samples_s: Iterable[float], percentiles: tuple[float, ...] = PERCENTILES
) -> dict[str, float | None]:
    """Percentiles in milliseconds (None where there are too few samples), plus n, mean, min and max."""
    values = np.asarray(list(samples_s), dtype=np.float64) * 1000.0
    summary: dict[str, float | None] = {"n": float(values.size)}
    if values.size == 0:
        return summary | {percentile_key(p): None for p in percentiles} | {"mean": None, "min": None, "max": None}
    for p in percentiles:
        enough = values.size >= min_samples_for(p)
        summary[percentile_key(p)] = float(np.percentile(values, p)) if enough else None
    summary |= {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
    return summary


def format_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
