"""Typed configuration: one frozen dataclass per verb, the single source of truth the CLI is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferopt.accuracy.budget import Budget
from inferopt.errors import InputError
from inferopt.tasks.base import ModelOptions

__all__ = ["BenchPlan", "Budget", "OptimizeConfig"]


@dataclass(frozen=True)
class BenchPlan:
    """How long to measure. The quick plan trades tail precision for time (p99 becomes n/a)."""

    latency_samples: int = 700  # >= 660 so that p99 exists
    batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64)
    sweep_seconds: float = 0.6  # per (batch size, layout) point, after one warm pass
    max_texts: int = 512  # inputs per throughput pass, spread over the eval set (a sweep point runs >= 1 pass)
    final_rounds: int = 5  # interleaved re-measurements of the fastest variants within budget

    @classmethod
    def quick(cls) -> BenchPlan:
        return cls(latency_samples=150, batch_sizes=(1, 32), sweep_seconds=0.3, max_texts=256, final_rounds=3)


@dataclass(frozen=True)
class OptimizeConfig:
    model: str | None = None  # a model folder, module:function, or a .onnx file; None: the bundled MiniLM
    task: str | None = None  # None: told from `model`
    model_options: ModelOptions = field(default_factory=ModelOptions)  # --example, --dynamic-axes, --image-size...
    data: Path | None = None
    out: Path = Path("inferopt-out")
    budget: Budget = field(default_factory=Budget)  # limits over the task's default budget
    price_per_hour: float = 0.05
    quick: bool = False
    force: bool = False
    recipes: tuple[Any, ...] | None = None  # recipe configs; None: the default set (quick or full)
    variant: str | None = None  # ship this variant (if it meets the budget) instead of the fastest
    max_eval_texts: int = 3000
    seed: int = 0
    distill_minutes: float = 2.0  # training budget of each distilled student; 0: no students (see cli.py)

    def __post_init__(self) -> None:
        if self.price_per_hour < 0:
            raise InputError(f"--price-per-hour {self.price_per_hour} is negative", "give $/hour >= 0")
        if not 0 <= self.distill_minutes <= 24 * 60:
            raise InputError(
                f"--distill-minutes {self.distill_minutes:g} is outside 0..1440", "give minutes (0: no students)"
            )

    @property
    def bench_plan(self) -> BenchPlan:
        return BenchPlan.quick() if self.quick else BenchPlan()
