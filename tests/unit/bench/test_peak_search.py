"""find-peak's search, driven by a model server instead of real runs: fast and exact."""

import pytest

from inferopt.bench.load_result import OPEN_LOOP, LoadResult
from inferopt.bench.loadgen import LoadConfig
from inferopt.bench.peak import PeakSearch, find_peak, step_config
from inferopt.errors import InputError

BASE = LoadConfig("http://127.0.0.1:1", rate=10, duration_s=5.0, warmup_s=1.0)


def fake_result(
    rate: float, p99: float, *, late: float = 0.0, errors: int = 0, partial: str | None = None
) -> LoadResult:
    n = 1000
    latency = {"n": float(n), "p50": p99 / 2, "p90": p99 * 0.8, "p95": p99 * 0.9, "p99": p99, "p99_9": None}
    return LoadResult(OPEN_LOOP, rate, rate, 4.0, n, n - errors, {"500": errors} if errors else {}, latency, latency,
                      {"p99": 0.1}, late, 4, partial)  # fmt: skip


def capacity_model(capacity: float, seen: list[float], **extra: object):
    def run(config: LoadConfig) -> LoadResult:
        assert config.rate is not None
        seen.append(config.rate)
        return fake_result(config.rate, 5.0 if config.rate <= capacity else 400.0, **extra)  # type: ignore[arg-type]

    return run


def test_grows_then_bisects_to_within_tolerance() -> None:
    seen: list[float] = []
    peak = find_peak(BASE, PeakSearch(50.0, start_rate=100, tolerance=0.05), runner=capacity_model(730, seen))
    assert seen[:5] == [100, 200, 400, 800, 600]  # doubling until 800 fails, then halfway back
    assert peak.peak_rate is not None and 730 / 1.05 <= peak.peak_rate <= 730
    assert peak.limited_by is None
    curve = peak.to_dict()["curve"]
    assert [c["rate"] for c in curve] == sorted(seen)
    assert all(c["passed"] == (c["rate"] <= 730) for c in curve)


def test_start_rate_over_capacity_halves_down() -> None:
    seen: list[float] = []
    peak = find_peak(BASE, PeakSearch(50.0, start_rate=1000, tolerance=0.1), runner=capacity_model(300, seen))
    assert seen[:3] == [1000, 500, 250]
    assert peak.peak_rate is not None and 300 / 1.1 <= peak.peak_rate <= 300


def test_bisection_ends_when_rates_are_a_rounding_step_apart() -> None:
    """lo = 1.0, hi = 1.1 once made the rounded midpoint 1.1 again, forever."""
    seen: list[float] = []
    peak = find_peak(BASE, PeakSearch(50.0, start_rate=10, tolerance=0.01), runner=capacity_model(1.05, seen))
    assert len(seen) < 30 and len(seen) == len(set(seen))  # every step a new rate: the interval always narrows
    assert peak.peak_rate is not None and 1.05 / 1.01 <= peak.peak_rate <= 1.05


def test_nothing_meets_the_slo() -> None:
    peak = find_peak(BASE, PeakSearch(50.0, start_rate=160), runner=capacity_model(1, []))
    assert peak.peak_rate is None and peak.limited_by == "even 10 req/s broke the SLO"


def test_max_rate_caps_the_search() -> None:
    peak = find_peak(BASE, PeakSearch(50.0, start_rate=100, max_rate=300), runner=capacity_model(10_000, []))
    assert peak.peak_rate == 300 and "reached --max-rate 300" in (peak.limited_by or "")


def test_invalid_steps_are_retried_once_then_stop_the_search() -> None:
    seen: list[float] = []

    def run(config: LoadConfig) -> LoadResult:
        assert config.rate is not None
        seen.append(config.rate)
        return fake_result(config.rate, 5.0, late=0.0 if config.rate < 400 else 0.05)

    peak = find_peak(BASE, PeakSearch(50.0, start_rate=100), runner=run)
    assert seen == [100, 200, 400, 400]
    assert peak.peak_rate == 200 and "could not offer 400 req/s" in (peak.limited_by or "")


def test_errors_fail_a_step_and_interruption_stops() -> None:
    peak = find_peak(BASE, PeakSearch(50.0, start_rate=100), runner=capacity_model(10_000, [], errors=50))
    assert peak.steps[0].reason == "5.0% errors" and not peak.steps[0].passed
    stopped = find_peak(BASE, PeakSearch(50.0, start_rate=100), runner=capacity_model(10_000, [], partial="x"))
    assert len(stopped.steps) == 1 and stopped.limited_by == "interrupted at 100 req/s"


def test_steps_run_long_enough_for_a_p99() -> None:
    assert step_config(BASE, 1000).duration_s == 5.0
    slow = step_config(BASE, 50)
    assert (slow.duration_s - slow.warmup_s) * 50 >= 660
    assert slow.rate == 50 and slow.concurrency is None


@pytest.mark.parametrize("kwargs", [{"slo_p99_ms": 0}, {"start_rate": 0}, {"max_rate": 5}, {"tolerance": 1.5}])
def test_bad_search_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(InputError):
        PeakSearch(**({"slo_p99_ms": 50.0, "start_rate": 10.0} | kwargs))


def test_an_invalid_step_whose_service_time_breaks_the_slo_is_a_plain_failure() -> None:
    """Overload makes the generator late too (hundreds of connections to open), but then the server's own
    service time is already over the SLO: that step fails on the server's account and the search goes on."""
    seen: list[float] = []

    def run(config: LoadConfig) -> LoadResult:
        assert config.rate is not None
        seen.append(config.rate)
        over = config.rate > 300
        return fake_result(config.rate, 400.0 if over else 5.0, late=0.05 if over else 0.0)

    peak = find_peak(BASE, PeakSearch(50.0, start_rate=100, tolerance=0.1), runner=run)
    assert seen[:4] == [100, 200, 400, 300]
    assert peak.peak_rate is not None and 300 / 1.1 <= peak.peak_rate <= 300 and peak.limited_by is None
    assert peak.steps[2].reason == "service p99 400.0 ms > 50 ms"


def test_errors_fail_a_step_even_when_the_generator_was_late() -> None:
    """Timeouts under overload are the server's failure; the search must not stop on the INVALID flag."""

    def run(config: LoadConfig) -> LoadResult:
        assert config.rate is not None
        if config.rate > 300:
            return fake_result(config.rate, 5.0, late=0.05, errors=600)
        return fake_result(config.rate, 5.0)

    peak = find_peak(BASE, PeakSearch(50.0, start_rate=100, tolerance=0.1), runner=run)
    assert peak.steps[2].reason == "60.0% errors" and peak.limited_by is None
    assert peak.peak_rate is not None and 300 / 1.1 <= peak.peak_rate <= 300
