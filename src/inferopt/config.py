"""Typed configuration: one frozen dataclass per verb, the single source of truth the CLI is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inferopt.errors import InputError


@dataclass(frozen=True)
class Budget:
    """How far a variant may drift from FP32 and still be picked."""

    min_mean_cosine: float = 0.99
    min_item_cosine: float | None = None
    max_metric_drop: float | None = None  # task-metric points (Spearman x100), only when the data is labelled

    def __post_init__(self) -> None:
        for name in ("min_mean_cosine", "min_item_cosine"):
            value = getattr(self, name)
            if value is not None and not -1.0 <= value <= 1.0:
                raise InputError(f"--{name.replace('_', '-')} {value} is not a cosine", "give a value in [-1, 1]")
        if self.max_metric_drop is not None and self.max_metric_drop < 0:
            raise InputError(f"--max-metric-drop {self.max_metric_drop} is negative", "give points >= 0")


@dataclass(frozen=True)
class BenchPlan:
    """How long to measure. The quick plan trades tail precision for time (p99 becomes n/a)."""

    latency_samples: int = 700  # >= 660 so that p99 exists
    batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64)
    sweep_seconds: float = 0.6  # per (batch size, layout) point, after one warm pass
    max_texts: int = 512  # texts per throughput pass, spread over the eval set (a sweep point runs >= 1 pass)

    @classmethod
    def quick(cls) -> BenchPlan:
        return cls(latency_samples=150, batch_sizes=(1, 32), sweep_seconds=0.3, max_texts=256)


@dataclass(frozen=True)
class OptimizeConfig:
    model_dir: Path | None = None
    data: Path | None = None
    out: Path = Path("inferopt-out")
    budget: Budget = field(default_factory=Budget)
    price_per_hour: float = 0.05
    quick: bool = False
    force: bool = False
    recipes: tuple[str, ...] | None = None  # None: the default set (quick or full)
    max_eval_texts: int = 3000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.price_per_hour < 0:
            raise InputError(f"--price-per-hour {self.price_per_hour} is negative", "give $/hour >= 0")

    @property
    def bench_plan(self) -> BenchPlan:
        return BenchPlan.quick() if self.quick else BenchPlan()
