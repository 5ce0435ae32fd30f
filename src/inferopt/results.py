"""What an optimize run found, in one structure that the reports and the artifact manifest read from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferopt.accuracy import AccuracyReport
from inferopt.bench.harness import BenchResult
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recipe": self.recipe,
            "runtime": self.runtime,
            "servable": self.servable,
            "build_seconds": self.build_seconds,
            "notes": self.notes,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "bench": self.bench.to_dict() if self.bench else None,
            "error": self.error,
        }


@dataclass
class RunResult:
    model_name: str
    model_dir: str
    data_name: str
    data_texts: int
    data_pairs: int
    budget: dict[str, Any]
    environment: dict[str, Any]
    export: dict[str, Any]
    variants: list[VariantResult]
    selection: Selection | None = None
    seconds: float = 0.0

    @property
    def measured(self) -> list[VariantResult]:
        return [v for v in self.variants if v.accuracy is not None and v.bench is not None]

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)

    def to_dict(self) -> dict[str, Any]:
        selection = self.selection
        return {
            "model": {"name": self.model_name, "dir": self.model_dir},
            "data": {"name": self.data_name, "texts": self.data_texts, "pairs": self.data_pairs},
            "budget": self.budget,
            "environment": self.environment,
            "export": self.export,
            "variants": [v.to_dict() for v in self.variants],
            "selection": None if selection is None else {"chosen": selection.chosen, "failures": selection.failures},
            "seconds": self.seconds,
        }
