"""The drift reference an artifact carries (`drift_reference.json`): for each signal the task watches (its
outputs; input lengths for text, pixel statistics for images, the input features of a tabular model), the
quantile bins and shares PSI compares with, and a sample of reference values KS compares with, all measured on
the eval data at optimize time (FP32 outputs).

A task gives a signal as one value per item (n,) or as columns (n, d), an embedding or a logit row: of those
the reference keeps the MAX_COLUMNS columns that vary most on the eval data (the ones a shift shows in first),
by index, and the server watches the same ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import ArtifactError

FILE = "drift_reference.json"
VERSION = 1
BINS = 10  # deciles
DISCRETE = 20  # a signal with at most this many distinct reference values gets a bin per value
SAMPLE = 2000  # reference values kept for KS
MAX_COLUMNS = 8


@dataclass(frozen=True)
class SignalReference:
    edges: np.ndarray  # cut points between bins (len = bins - 1)
    shares: np.ndarray  # each bin's share of the reference
    sample: np.ndarray  # sorted reference values (at most SAMPLE, evenly spaced quantiles beyond)
    mean: float
    std: float

    @classmethod
    def of(cls, values: np.ndarray) -> SignalReference:
        values = np.sort(values.astype(np.float64))
        distinct = np.unique(values)
        if len(distinct) <= DISCRETE:
            edges = (distinct[:-1] + distinct[1:]) / 2  # one bin per value seen
        else:
            edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        sample = values if len(values) <= SAMPLE else np.quantile(values, np.linspace(0, 1, SAMPLE))
        return cls(edges, counts / len(values), sample, float(values.mean()), float(values.std()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": _floats(self.edges),
            "shares": _floats(self.shares),
            "sample": _floats(self.sample),
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignalReference:
        edges, shares = np.array(data["edges"], np.float64), np.array(data["shares"], np.float64)
        sample = np.array(data["sample"], np.float64)
        if edges.ndim != 1 or shares.shape != (len(edges) + 1,) or sample.ndim != 1 or not len(sample):
            raise ValueError("edges, shares and sample do not fit together")
        return cls(edges, shares, sample, float(data["mean"]), float(data["std"]))


@dataclass(frozen=True)
class DriftReference:
    signals: dict[str, SignalReference]
    columns: dict[str, list[int]]  # a column signal's watched columns
    items: int  # eval items it was measured on
    data: str  # which eval data

    @classmethod
    def build(cls, raw: Mapping[str, np.ndarray], data: str) -> DriftReference:
        """From the task's signals of the whole eval set."""
        columns = {name: _most_varied(values) for name, values in raw.items() if values.ndim == 2}
        named = flatten(raw, columns)
        items = len(next(iter(named.values()))) if named else 0
        return cls({name: SignalReference.of(values) for name, values in named.items()}, columns, items, data)

    def watch(self, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The task's signals of some items, as this reference's named (n,) values."""
        return {name: values for name, values in flatten(raw, self.columns).items() if name in self.signals}

    def write(self, path: Path) -> Path:
        payload = {
            "version": VERSION,
            "data": self.data,
            "items": self.items,
            "columns": self.columns,
            "signals": {name: ref.to_dict() for name, ref in self.signals.items()},
        }
        path.write_text(json.dumps(payload, indent=1))  # into optimize's work folder: staged, never half-published
        return path

    @classmethod
    def read(cls, path: Path) -> DriftReference:
        try:
            data = json.loads(path.read_text())
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, this inferopt reads {VERSION}")
            signals = {name: SignalReference.from_dict(ref) for name, ref in data["signals"].items()}
            columns = {name: [int(i) for i in idx] for name, idx in data["columns"].items()}
            return cls(signals, columns, int(data["items"]), str(data["data"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(
                f"{path.name} in the artifact is malformed ({exc})", "re-run inferopt optimize to rebuild it"
            ) from None


def flatten(raw: Mapping[str, np.ndarray], columns: Mapping[str, list[int]]) -> dict[str, np.ndarray]:
    """(n,) signals as they are; (n, d) ones as their watched columns, named `signal[j]`."""
    named = {}
    for name, values in raw.items():
        if values.ndim == 1:
            named[name] = values
        else:
            for j in columns.get(name, ()):
                named[f"{name}[{j}]"] = values[:, j]
    return named


def _most_varied(values: np.ndarray) -> list[int]:
    spread = values.astype(np.float64).var(axis=0)
    return sorted(int(j) for j in np.argsort(-spread, kind="stable")[:MAX_COLUMNS])


def _floats(values: np.ndarray) -> list[float]:
    return [float(f"{v:.6g}") for v in values]
