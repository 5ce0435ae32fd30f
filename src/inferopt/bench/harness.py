"""In-process benchmark of one variant, for any task: single-request latency, then throughput over a batch-size
sweep for each thread layout (one instance with N intra-op threads vs N instances with one thread each), with
model size, peak memory and cost.

Every point is warmed up first; throughput passes run the eval inputs through the same engine the artifact is
served with (cost-sorted batches, the task's own preprocessing), so the chosen settings are the ones that
were measured. `interleaved_rounds` re-measures the fastest few side by side (A B C A B C ...), so that
optimize can tell a real difference from the host's drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from inferopt.bench.cost import cost_per_million
from inferopt.bench.memory import PeakRss
from inferopt.bench.stats import latency_summary
from inferopt.config import BenchPlan
from inferopt.engine import Predictor
from inferopt.recipes.base import Variant
from inferopt.runtime.base import Backend, RuntimeSettings
from inferopt.tasks.base import Task

LATENCY_WARMUP = 20


@dataclass(frozen=True)
class SweepPoint:
    sessions: int
    intra_op_threads: int
    batch_size: int
    items_per_second: float
    items: int
    seconds: float

    @property
    def settings(self) -> RuntimeSettings:
        return RuntimeSettings(self.sessions, self.intra_op_threads, self.batch_size)


@dataclass
class BenchResult:
    latency_ms: dict[str, float | None]
    latency_samples_ms: list[float]
    sweep: list[SweepPoint]
    size_bytes: int
    peak_rss_mb: float
    added_rss_mb: float
    price_per_hour: float
    layouts: list[tuple[int, int]] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # items/s of the best point, per interleaved final round

    @property
    def best(self) -> SweepPoint:
        return max(self.sweep, key=lambda p: p.items_per_second)

    @property
    def cost_per_million(self) -> float | None:
        return cost_per_million(self.best.items_per_second, self.price_per_hour)

    def to_dict(self) -> dict[str, object]:
        return {
            "latency_ms": self.latency_ms,
            "sweep": [asdict(p) for p in self.sweep],
            "best": asdict(self.best),
            "rounds_items_per_second": self.rounds,
            "size_bytes": self.size_bytes,
            "peak_rss_mb": self.peak_rss_mb,
            "added_rss_mb": self.added_rss_mb,
            "cost_per_million_usd": self.cost_per_million,
            "price_per_hour_usd": self.price_per_hour,
        }


def warmed(backend: Backend, task: Task, sample: Sequence[Any]) -> Backend:
    """`backend` after its warm-up, as serve warms it: a bucketed one (TensorRT) builds its largest shape then,
    so no engine build lands inside a timed window."""
    backend.warmup(task.collate(task.preprocess(list(sample[:1]))))
    return backend


def thread_layouts(variant: Variant, cores: int) -> list[tuple[int, int]]:
    """(instances, intra-op threads each). Torch keeps one process-wide thread pool: one layout only. On a GPU
    one CPU thread feeds each session, and a second session (its own CUDA stream) overlaps one batch's copies and
    host-side work with the other's kernels."""
    if variant.placement.on_gpu:
        return [(1, 1), (2, 1)]
    layouts = [(1, cores)]
    if variant.multi_session and cores > 1:
        layouts.append((cores, 1))
    return layouts


def representative_sample(inputs: Sequence[Any], size: int) -> list[Any]:
    """`size` inputs spread evenly over the whole eval set, in its order. Not its first `size`: data files are
    often grouped by source (STS-B dev's first third is short captions, 11.6 tokens against 16.4 overall), and
    a throughput measured on one group would flatter every variant. Short sets are cycled up to `size`, so
    that large batches are measured over many batches, not two."""
    inputs = list(inputs)
    if len(inputs) <= size:
        return (inputs * -(-size // len(inputs)))[:size]
    step = len(inputs) / size
    return [inputs[int(i * step)] for i in range(size)]


def measure_latency(backend: Backend, task: Task, inputs: list[Any], samples: int) -> list[float]:
    """Seconds per single-input request, preprocessing included, cycling through `inputs` in order."""
    timings = []
    for i in range(LATENCY_WARMUP + samples):
        raw = inputs[i % len(inputs)]
        started = time.perf_counter()
        backend.run(task.collate(task.preprocess([raw])))
        if i >= LATENCY_WARMUP:
            timings.append(time.perf_counter() - started)
    return timings


def measure_throughput(predictor: Predictor, inputs: list[Any], seconds: float) -> tuple[int, float]:
    """Items run and time taken, repeating whole passes until `seconds` have passed (at least one)."""
    predictor.outputs(inputs[: min(len(inputs), 4 * predictor.batch_size)])  # warm the shapes this point uses
    items, started = 0, time.perf_counter()
    while True:
        predictor.outputs(inputs)
        items += len(inputs)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return items, elapsed


def benchmark_variant(
    variant: Variant,
    task: Task,
    inputs: Sequence[Any],
    plan: BenchPlan,
    *,
    cores: int,
    price_per_hour: float,
    advance: Callable[[], None] = lambda: None,
) -> BenchResult:
    sample = representative_sample(inputs, min(plan.max_texts, task.bench_inputs))
    with PeakRss() as rss:
        single = warmed(variant.make_backend(cores), task, sample)
        samples = measure_latency(single, task, sample, plan.latency_samples)
        advance()
        sweep = []
        layouts = thread_layouts(variant, cores)
        for sessions, threads in layouts:
            backends = (
                [single]
                if (sessions, threads) == (1, cores)
                else [warmed(variant.make_backend(threads), task, sample) for _ in range(sessions)]
            )
            for batch_size in plan.batch_sizes:
                with Predictor(task, backends, batch_size=batch_size) as predictor:
                    items, elapsed = measure_throughput(predictor, sample, plan.sweep_seconds)
                sweep.append(SweepPoint(sessions, threads, batch_size, items / elapsed, items, elapsed))
                advance()
    return BenchResult(
        latency_ms=latency_summary(samples),
        latency_samples_ms=[s * 1000.0 for s in samples],
        sweep=sweep,
        size_bytes=variant.size_bytes,
        peak_rss_mb=rss.peak_mb,
        added_rss_mb=rss.added_mb,
        price_per_hour=price_per_hour,
        layouts=layouts,
    )


def steps_for(variant: Variant, plan: BenchPlan, cores: int) -> int:
    """Progress steps benchmark_variant will report."""
    return 1 + len(thread_layouts(variant, cores)) * len(plan.batch_sizes)


def interleaved_rounds(
    contenders: dict[str, tuple[Variant, RuntimeSettings]],
    task: Task,
    inputs: Sequence[Any],
    plan: BenchPlan,
    advance: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Items/s of each contender at its chosen settings, measured in `plan.final_rounds` rounds that take them in
    turn (the order rotating each round): drift of the host between rounds affects them all alike."""
    sample = representative_sample(inputs, min(plan.max_texts, task.bench_inputs))
    predictors = {
        name: Predictor(
            task,
            [warmed(variant.make_backend(settings.intra_op_threads), task, sample) for _ in range(settings.sessions)],
            batch_size=settings.batch_size,
        )
        for name, (variant, settings) in contenders.items()
    }
    names = list(predictors)
    rates: dict[str, list[float]] = {name: [] for name in names}
    try:
        for r in range(plan.final_rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                items, elapsed = measure_throughput(predictors[name], sample, plan.sweep_seconds)
                rates[name].append(items / elapsed)
            advance()
    finally:
        for predictor in predictors.values():
            predictor.close()
    return rates
