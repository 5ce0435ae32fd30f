"""Drift on live traffic: rolling windows of the task's signals for every item the model ran, compared with the
reference the artifact carries (drift/reference.py), as Prometheus gauges and as `GET /v1/drift`.

The window holds the last --drift-window items, and none older than --drift-max-age-s (a quiet hour does not
leave a morning's traffic standing for now). Figures are reported once it holds --drift-min-items: PSI on the
reference's bins and the two-sample KS statistic per signal (drift/stats.py). They are computed at most once a
second, off the event loop, when /metrics or /v1/drift asks; the batcher threads only append to the window.

Only items the model ran are counted: a cache hit repeats an input already in the window. So the window is the
distribution of distinct inputs (per cache TTL), not of requests.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily

from inferopt.drift.reference import DriftReference
from inferopt.drift.stats import bin_counts, ks, psi
from inferopt.runtime.base import Arrays
from inferopt.tasks.base import Item

REFRESH_S = 1.0  # figures are recomputed at most this often
Extract = Callable[[Sequence[Item], Arrays], dict[str, np.ndarray]]


class DriftMonitor:
    def __init__(
        self,
        reference: DriftReference,
        extract: Extract,
        *,
        window: int,
        min_items: int,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reference = reference
        self.extract = extract
        self.window, self.min_items, self.max_age_s = window, min_items, max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._values = {name: np.zeros(window, np.float64) for name in reference.signals}
        self._times = np.full(window, -math.inf)  # when each slot was written
        self._next = 0  # the slot the next value goes to
        self._figures: dict[str, Any] | None = None
        self._figured_at = -math.inf

    # -- the batcher threads' side --------------------------------------------------------------------------

    def observe(self, items: Sequence[Item], outputs: Arrays) -> None:
        """Append a batch's signals to the window (the batcher's output observer)."""
        signals = self.reference.watch(self.extract(items, outputs))
        n = min(len(items), self.window)
        now = self._clock()
        with self._lock:
            slots = (self._next + np.arange(n)) % self.window
            for name, store in self._values.items():
                values = signals.get(name)
                if values is not None:
                    store[slots] = values[-n:]
            self._times[slots] = now
            self._next = int((self._next + n) % self.window)

    # -- the readers' side ----------------------------------------------------------------------------------

    async def current(self) -> dict[str, Any]:
        """The figures, recomputed in a thread when older than a second."""
        if self._clock() - self._figured_at >= REFRESH_S or self._figures is None:
            self._figures = await asyncio.to_thread(self.compute)
            self._figured_at = self._clock()
        return self._figures

    def compute(self) -> dict[str, Any]:
        with self._lock:
            fresh = self._times >= self._clock() - self.max_age_s
            live = {name: store[fresh] for name, store in self._values.items()}
        items = int(fresh.sum())
        figures: dict[str, Any] = {
            "window": {"items": items, "max_items": self.window, "max_age_s": self.max_age_s},
            "min_items": self.min_items,
            "ready": items >= self.min_items,
            "reference": {"items": self.reference.items, "data": self.reference.data},
            "signals": {},
        }
        if items < self.min_items:
            return figures
        for name, values in live.items():
            ref = self.reference.signals[name]
            statistic, pvalue = ks(ref.sample, values)
            figures["signals"][name] = {
                "psi": round(psi(ref.shares, bin_counts(ref.edges, values)), 6),
                "ks": round(statistic, 6),
                "ks_pvalue": float(f"{pvalue:.4g}"),
                "live_mean": round(float(values.mean()), 6),
                "reference_mean": round(ref.mean, 6),
            }
        return figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, from the last figures (refreshed by the /metrics route before it renders)."""
        figures = self._figures or self.compute()
        items = GaugeMetricFamily("inferopt_drift_window_items", "Items in the live drift window")
        items.add_metric([], figures["window"]["items"])
        yield items
        psi_family = GaugeMetricFamily(
            "inferopt_drift_psi",
            "Population stability index of the live window against the reference",
            labels=["signal"],
        )
        ks_family = GaugeMetricFamily(
            "inferopt_drift_ks", "Two-sample Kolmogorov-Smirnov statistic, live window vs reference", labels=["signal"]
        )
        for name, signal in figures["signals"].items():
            psi_family.add_metric([name], signal["psi"])
            ks_family.add_metric([name], signal["ks"])
        yield psi_family
        yield ks_family
