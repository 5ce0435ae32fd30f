"""Find the highest request rate a server sustains with its p99 under a latency SLO.

Open-loop steps: grow the rate (doubling) until a step fails, then binary-search between the last rate that
passed and the first that failed until they are within `tolerance` of each other. A step passes when the
run is valid (the generator kept its schedule), p99 <= SLO and at most `max_error_fraction` of requests
failed. Every step is kept, so the whole latency-vs-load curve comes back, not just the answer.

Each step runs long enough for a p99 to exist (about 700 measured requests), so low rates take longer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from inferopt.bench.load_result import LoadResult
from inferopt.bench.loadgen import LoadConfig, ProgressCallback, run_load
from inferopt.bench.stats import min_samples_for
from inferopt.errors import InputError

GROWTH = 2.0
MAX_SHRINKS = 4  # if the start rate already fails, halve it at most this often before giving up
INVALID_RETRIES = 1  # a step the generator fell behind on (a busy machine) is run once more before giving up
SAMPLE_MARGIN = 1.1  # run a bit longer than the bare 660 requests a p99 needs: arrivals are random
UNDECIDED = "invalid: the generator fell behind"


@dataclass
class PeakStep:
    rate: float
    passed: bool
    reason: str  # why it failed, or "ok"
    result: LoadResult

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "rate": self.rate,
            "passed": self.passed,
            "reason": self.reason,
            "achieved_rate": r.achieved_rate,
            "latency_ms": r.latency_ms,
            "error_fraction": r.error_fraction,
            "valid": r.valid,
            "late_fraction": r.late_fraction,
        }


@dataclass
class PeakResult:
    slo_p99_ms: float
    peak_rate: float | None  # highest rate that passed; None if none did
    steps: list[PeakStep] = field(default_factory=list)
    limited_by: str | None = None  # a reason the search stopped short of a server-side answer
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_step(self) -> PeakStep | None:
        passed = [s for s in self.steps if s.passed and s.rate == self.peak_rate]
        return passed[-1] if passed else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "slo_p99_ms": self.slo_p99_ms,
            "peak_rate": self.peak_rate,
            "limited_by": self.limited_by,
            "curve": [s.to_dict() for s in sorted(self.steps, key=lambda s: s.rate)],
            "config": self.config,
        }


@dataclass(frozen=True)
class PeakSearch:
    slo_p99_ms: float
    start_rate: float = 50.0
    max_rate: float | None = None
    tolerance: float = 0.05  # stop when the passing and failing rates are within 5% of each other
    max_error_fraction: float = 0.01

    def __post_init__(self) -> None:
        if not self.slo_p99_ms > 0:
            raise InputError(f"--slo-p99-ms must be > 0, got {self.slo_p99_ms:g}", "e.g. --slo-p99-ms 50")
        if not self.start_rate > 0:
            raise InputError(f"the start rate (--rate) must be > 0, got {self.start_rate:g}", "")
        if self.max_rate is not None and self.max_rate < self.start_rate:
            raise InputError(f"--max-rate {self.max_rate:g} is below the start rate {self.start_rate:g}", "")
        if not 0 < self.tolerance < 1:
            raise InputError(f"--tolerance must be between 0 and 1, got {self.tolerance:g}", "e.g. 0.05")


StepCallback = Callable[[PeakStep], None]
StepRunner = Callable[[LoadConfig], LoadResult]


def step_config(base: LoadConfig, rate: float) -> LoadConfig:
    """`base` at `rate`, lengthened if needed so the measured window holds enough requests for a p99."""
    needed_s = SAMPLE_MARGIN * min_samples_for(99.0) / rate
    duration = max(base.duration_s, base.warmup_s + needed_s)
    return replace(base.with_rate(rate), duration_s=math.ceil(duration * 10) / 10)


def judge(result: LoadResult, search: PeakSearch) -> tuple[bool, str]:
    """(passed, why). Errors and timeouts are the server's doing whatever the generator did, and so is a
    service time (counted from the actual send, so without the generator's lateness) over the SLO; only
    when neither settles it does an INVALID run leave the step undecided."""
    if result.partial:
        return False, f"partial run ({result.partial})"
    if result.error_fraction > search.max_error_fraction:
        return False, f"{result.error_fraction:.1%} errors"
    if not result.valid:
        service_p99 = result.service_ms.get("p99")
        if service_p99 is not None and service_p99 > search.slo_p99_ms:
            return False, f"service p99 {service_p99:.1f} ms > {search.slo_p99_ms:g} ms"
        return False, UNDECIDED
    p99 = result.latency_ms.get("p99")
    if p99 is None:
        return False, "too few successful requests for a p99"
    if p99 > search.slo_p99_ms:
        return False, f"p99 {p99:.1f} ms > {search.slo_p99_ms:g} ms"
    return True, "ok"


def find_peak(
    base: LoadConfig,
    search: PeakSearch,
    *,
    on_step: StepCallback | None = None,
    on_progress: ProgressCallback | None = None,
    runner: StepRunner | None = None,
) -> PeakResult:
    """Grow, then bisect. Stops early (and says why in `limited_by`) if the generator cannot offer a rate,
    a step was interrupted, or even a much lower rate breaks the SLO."""
    run = runner or (lambda config: run_load(config, on_progress))
    config = asdict(base) | {"inputs": str(base.inputs or "built-in corpus"), "search": asdict(search)}
    outcome = PeakResult(search.slo_p99_ms, None, config=config)

    def attempt(rate: float) -> bool | None:
        """True/False for pass/fail; None when the search must stop (outcome.limited_by says why)."""
        for _ in range(1 + INVALID_RETRIES):
            result = run(step_config(base, rate))
            passed, reason = judge(result, search)
            step = PeakStep(rate, passed, reason, result)
            outcome.steps.append(step)
            if on_step is not None:
                on_step(step)
            if reason != UNDECIDED:
                break
        if result.partial:
            outcome.limited_by = f"interrupted at {rate:g} req/s"
            return None
        if reason == UNDECIDED:
            outcome.limited_by = f"the load generator could not offer {rate:g} req/s (add --workers)"
            return None
        return passed

    lo, hi = _grow(attempt, search, outcome)
    if lo is not None and hi is not None and outcome.limited_by is None:
        lo = _bisect(attempt, lo, hi, search)
    outcome.peak_rate = lo
    return outcome


def _grow(
    attempt: Callable[[float], bool | None], search: PeakSearch, outcome: PeakResult
) -> tuple[float | None, float | None]:
    """(highest passing rate, lowest failing rate) after doubling up from the start rate, or halving
    down from it when it already fails."""
    rate, lo, hi = search.start_rate, None, None
    for _ in range(64):
        verdict = attempt(rate)
        if verdict is None:
            return lo, None
        if verdict:
            lo = rate
            if hi is not None or (search.max_rate is not None and rate >= search.max_rate):
                if hi is None:
                    outcome.limited_by = f"reached --max-rate {search.max_rate:g} req/s with the SLO still met"
                return lo, hi
            rate = rate * GROWTH if search.max_rate is None else min(rate * GROWTH, search.max_rate)
        else:
            hi = rate
            if lo is not None:
                return lo, hi
            if rate <= search.start_rate / GROWTH**MAX_SHRINKS:
                outcome.limited_by = f"even {rate:g} req/s broke the SLO"
                return None, hi
            rate /= GROWTH
    return lo, hi


def _bisect(attempt: Callable[[float], bool | None], lo: float, hi: float, search: PeakSearch) -> float:
    while hi / lo > 1.0 + search.tolerance:
        mid = _midpoint(lo, hi)
        verdict = attempt(mid)
        if verdict is None:
            break
        if verdict:
            lo = mid
        else:
            hi = mid
    return lo


def _midpoint(lo: float, hi: float) -> float:
    """Halfway, rounded to 0.1 req/s for readable curves, unless rounding would land on an end already tried
    (lo = 1.0, hi = 1.1): then the exact middle, so every step narrows the interval."""
    mid = (lo + hi) / 2.0
    rounded = round(mid, 1)
    return rounded if lo < rounded < hi else mid
