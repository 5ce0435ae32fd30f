"""The drift measures, the defaults of Evidently and NannyML for a numerical signal.

PSI (population stability index) over the reference's quantile bins: sum over bins of (live - ref) * ln(live /
ref) on the bins' shares. Rule of thumb: below 0.1 stable, 0.1-0.2 a moderate shift, above 0.2 a significant
one. KS: the largest gap between the two empirical CDFs (0 identical, 1 disjoint), with its p-value.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp

PSI_FLOOR = 1e-4  # an empty bin's share: ln(0) would make any bin the live window misses infinite


def bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many values fall in each of the len(edges) + 1 bins the cut points `edges` make."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def psi(reference_shares: np.ndarray, live_counts: np.ndarray) -> float:
    expected = np.maximum(reference_shares, PSI_FLOOR)
    actual = np.maximum(live_counts / max(int(live_counts.sum()), 1), PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(reference_sample: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample KS test."""
    result = ks_2samp(reference_sample, live, method="asymp")
    return float(result.statistic), float(result.pvalue)
