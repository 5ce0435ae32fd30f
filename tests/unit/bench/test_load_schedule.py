import numpy as np
import pytest

from inferopt.bench.schedule import arrival_offsets, input_sequence, zipf_weights


def test_poisson_counts_have_mean_and_variance_rate_times_window() -> None:
    rate, duration = 500.0, 200.0
    offsets = arrival_offsets(rate, duration, "poisson", seed=1)
    counts = np.bincount(offsets.astype(np.int64), minlength=int(duration))  # arrivals per 1 s window
    assert counts.mean() == pytest.approx(rate, rel=0.01)
    assert counts.var(ddof=1) == pytest.approx(rate, rel=0.25)  # Poisson: variance = mean
    gaps = np.diff(offsets)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.01)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.02)  # exponential gaps: CV = 1
    assert np.all(gaps >= 0) and offsets[0] >= 0 and offsets[-1] < duration


def test_schedules_are_reproducible_from_the_seed() -> None:
    a = arrival_offsets(300, 10, "poisson", seed=7)
    b = arrival_offsets(300, 10, "poisson", seed=7)
    c = arrival_offsets(300, 10, "poisson", seed=8)
    np.testing.assert_array_equal(a, b)
    assert a.size != c.size or not np.array_equal(a, c)
    np.testing.assert_array_equal(input_sequence(100, 7, seed=7), input_sequence(100, 7, seed=7))


def test_constant_arrivals_are_evenly_spaced() -> None:
    offsets = arrival_offsets(250, 2.0, "constant")
    assert offsets.size == 500
    np.testing.assert_allclose(np.diff(offsets), 1 / 250)
    assert offsets[0] == 0.0


def test_poisson_schedule_tops_up_when_the_first_draw_falls_short() -> None:
    # 1 expected arrival: the first chunk of gaps is small, so long runs must be extended correctly.
    sizes = [arrival_offsets(1.0, 1.0, "poisson", seed=s).size for s in range(400)]
    assert np.mean(sizes) == pytest.approx(1.0, abs=0.15)


def test_uniform_inputs_are_dealt_evenly_and_zipf_is_skewed() -> None:
    even = np.bincount(input_sequence(1000, 10, seed=0), minlength=10)
    assert even.min() == even.max() == 100
    skewed = np.bincount(input_sequence(200_000, 1000, zipf=1.1, seed=0), minlength=1000)
    assert skewed[0] / skewed[1] == pytest.approx(2**1.1, rel=0.05)
    assert skewed[0] / 200_000 == pytest.approx(zipf_weights(1000, 1.1)[0], rel=0.05)


@pytest.mark.parametrize(("rate", "duration", "arrival"), [(0, 1, "poisson"), (10, 0, "poisson"), (10, 1, "bursty")])
def test_bad_schedule_arguments_raise(rate: float, duration: float, arrival: str) -> None:
    with pytest.raises(ValueError):
        arrival_offsets(rate, duration, arrival)  # type: ignore[arg-type]
