"""The event-loop histograms expose exactly what prometheus_client's Histogram would for the same values."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from inferopt.serve.metrics import LoopHistograms, power_of_two_buckets


def samples(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return sorted(line for line in text.splitlines() if line and not line.startswith("#") and "_created" not in line)


def test_loop_histograms_match_prometheus_clients_histogram() -> None:
    bounds = power_of_two_buckets(-16, 6)
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = LoopHistograms("x_seconds", "doc", ("route", "status"), bounds)
    ours_registry.register(ours)
    theirs = Histogram("x_seconds", "doc", ["route", "status"], buckets=bounds, registry=theirs_registry)
    # Below the first bound, exactly on bounds (le is inclusive), between, and past the last (+Inf only).
    values = [1e-7, 2.0**-16, 2.0**-10, 0.0011, 0.5, 64.0, 100.0, 3e-3]
    for i, value in enumerate(values):
        labels = ("/v1/embeddings", "200") if i % 3 else ("/health/live", "503")
        ours.labels(*labels).observe(value)
        theirs.labels(*labels).observe(value)
    assert samples(ours_registry) == samples(theirs_registry)
    assert 'x_seconds_bucket{le="+Inf",route="/v1/embeddings",status="200"} 5.0' in samples(ours_registry)


def test_loop_histograms_refuse_the_wrong_number_of_labels() -> None:
    family = LoopHistograms("y_seconds", "doc", ("stage",), [1.0])
    with pytest.raises(ValueError, match=r"takes labels \('stage',\)"):
        family.labels("tokenize", "extra")
