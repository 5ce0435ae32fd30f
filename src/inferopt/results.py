"""What an optimize run found, in one structure that the reports and the artifact manifest read from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferopt.accuracy.report import AccuracyReport, Measure
from inferopt.bench.harness import BenchResult
from inferopt.runtime.placement import Placement
from inferopt.select import Selection


@dataclass
class VariantResult:
    name: str
    recipe: dict[str, Any]
    runtime: str
    servable: bool
    build_seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    accuracy: AccuracyReport | None = None
    bench: BenchResult | None = None
    error: str | None = None  # a recipe that could not be built on this model/machine
    model_path: Path | None = None  # where the built model lies during the run (not reported)
    placement: dict[str, Any] = field(default_factory=lambda: Placement.cpu().to_dict())  # where it was measured

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recipe": self.recipe,
            "runtime": self.runtime,
            "servable": self.servable,
            "placement": self.placement,
            "build_seconds": self.build_seconds,
            "notes": self.notes,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "bench": self.bench.to_dict() if self.bench else None,
            "error": self.error,
        }


@dataclass
class RunResult:
    task: str
    model_name: str
    model_location: str
    data_name: str
    data_summary: str
    data_items: int
    budget: dict[str, float]
    measures: tuple[Measure, ...]  # the task's, in display order
    environment: dict[str, Any]
    export: dict[str, Any]
    variants: list[VariantResult]
    selection: Selection | None = None
    seconds: float = 0.0
    export_error: str | None = None  # the module did not export: only the PyTorch variants were measured

    @property
    def measured(self) -> list[VariantResult]:
        return [v for v in self.variants if v.accuracy is not None and v.bench is not None]

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)

    @property
    def metric_name(self) -> str | None:
        return next((v.accuracy.metric_name for v in self.measured if v.accuracy and v.accuracy.metric_name), None)

    def to_dict(self) -> dict[str, Any]:
        selection = self.selection
        return {
            "task": self.task,
            "model": {"name": self.model_name, "location": self.model_location},
            "data": {"name": self.data_name, "summary": self.data_summary, "items": self.data_items},
            "budget": self.budget,
            "environment": self.environment,
            "export": self.export,
            "export_error": self.export_error,
            "variants": [v.to_dict() for v in self.variants],
            "selection": None
            if selection is None
            else {
                "chosen": selection.chosen,
                "failures": selection.failures,
                "tied": selection.tied,
                "tie_tolerance": selection.noise,
                "pinned": selection.pinned,
            },
            "seconds": self.seconds,
        }
