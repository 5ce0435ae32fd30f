"""The open-loop schedule: when each request is meant to be sent, and which input it carries.

Everything is computed up front from a seed, before the first request leaves. That is what makes the load
open: the send times do not depend on how fast the server answers, so a server stall cannot slow the
arrivals down and hide itself (coordinated omission). The same seed gives the same schedule, so two runs
against two servers offer exactly the same load.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Arrival = Literal["poisson", "constant"]
ARRIVALS: tuple[Arrival, ...] = ("poisson", "constant")


def arrival_offsets(rate: float, duration_s: float, arrival: Arrival = "poisson", seed: int = 0) -> np.ndarray:
    """Intended send times in seconds from the start, in increasing order, all in [0, duration_s).

    Poisson arrivals (independent users) have exponential gaps of mean 1/rate, so the count in a window of
    length t has mean and variance rate * t. Constant arrivals send every 1/rate seconds, starting at 0.
    """
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be positive, got rate={rate}, duration={duration_s}")
    if arrival == "constant":
        return np.arange(int(np.ceil(rate * duration_s - 1e-9)), dtype=np.float64) / rate
    if arrival != "poisson":
        raise ValueError(f"arrival must be one of {ARRIVALS}, got {arrival!r}")
    rng = np.random.default_rng(seed)
    expected = rate * duration_s
    # Draw a few standard deviations more gaps than expected, then top up in the rare case it was not enough.
    chunk = int(expected + 6.0 * np.sqrt(expected) + 16)
    offsets = np.cumsum(rng.exponential(1.0 / rate, chunk))
    while offsets[-1] < duration_s:
        more = offsets[-1] + np.cumsum(rng.exponential(1.0 / rate, chunk))
        offsets = np.concatenate([offsets, more])
    return offsets[offsets < duration_s]


def zipf_weights(distinct: int, exponent: float) -> np.ndarray:
    """P(rank k) proportional to k^-exponent over ranks 1..distinct: a few hot inputs and a long tail."""
    if distinct < 1:
        raise ValueError(f"distinct must be >= 1, got {distinct}")
    if exponent <= 0:
        raise ValueError(f"zipf exponent must be > 0, got {exponent}")
    weights = np.arange(1, distinct + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def input_sequence(count: int, distinct: int, *, zipf: float | None = None, seed: int = 0) -> np.ndarray:
    """Which of `distinct` inputs each of `count` requests carries.

    Without Zipf, the inputs are dealt in shuffled rounds so each is used equally often (no accidental
    hot keys); with Zipf, rank 1 is the hottest input.
    """
    rng = np.random.default_rng(seed + 1)  # separate stream: changing the rate must not change the mix
    if zipf is not None:
        return rng.choice(distinct, size=count, p=zipf_weights(distinct, zipf)).astype(np.int64)
    rounds = -(-count // distinct)
    dealt = rng.permuted(np.tile(np.arange(distinct, dtype=np.int64), (rounds, 1)), axis=1)
    return dealt.ravel()[:count]
