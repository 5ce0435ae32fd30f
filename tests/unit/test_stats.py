import numpy as np
import pytest

from inferopt.bench.stats import format_ms, latency_summary, min_samples_for


def test_min_samples_follow_the_tail_rule() -> None:
    assert min_samples_for(99.0) == 660
    assert min_samples_for(99.9) == 6600
    assert min_samples_for(50.0) == 14


def test_p99_is_na_below_660_samples_and_exact_above() -> None:
    few = latency_summary([0.001] * 659)
    assert few["p99"] is None and few["p50"] == pytest.approx(1.0)
    values = np.arange(1, 1001) / 1000.0  # 1..1000 ms
    many = latency_summary(values)
    assert many["p99"] == pytest.approx(np.percentile(values * 1000, 99))
    assert many["p99_9"] is None
    assert many["n"] == 1000 and many["max"] == pytest.approx(1000.0)


def test_empty_and_format() -> None:
    empty = latency_summary([])
    assert empty["p50"] is None and empty["n"] == 0
    assert format_ms(None) == "n/a" and format_ms(1.234) == "1.23"
