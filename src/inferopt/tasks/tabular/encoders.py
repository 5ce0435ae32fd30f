"""The fitted encoders of a tabular model, as JSON (never pickle): numeric features are standardized with the
training split's mean and standard deviation, categorical ones one-hot over the training split's categories.
A missing value (null) is imputed: the training median for a number, the most frequent category otherwise.

`encode` checks every value as it goes, so a bad record is refused naming its field: an absent feature or an
unknown one, a number out of its valid range, a category the model never saw (the message lists the ones it
knows).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferopt.tasks.base import InvalidInput


@dataclass(frozen=True)
class NumericEncoder:
    name: str
    mean: float
    std: float
    median: float
    low: float
    high: float

    def encode(self, value: Any, field: str) -> float:
        if value is None:
            value = self.median
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"{field} must be a number, got {value!r}", field)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise InvalidInput(f"{field} is {value!r}, outside its valid range {self.low:g} .. {self.high:g}", field)
        return (float(value) - self.mean) / self.std


@dataclass(frozen=True)
class CategoryEncoder:
    name: str
    categories: tuple[str, ...]
    most_frequent: str

    def encode(self, value: Any, field: str) -> int:
        """The index of the value's one-hot column."""
        if value is None:
            value = self.most_frequent
        try:
            return self.categories.index(value)
        except ValueError:
            known = ", ".join(repr(c) for c in self.categories)
            raise InvalidInput(f"{field} is {value!r}, not a category the model knows ({known})", field) from None


Encoder = NumericEncoder | CategoryEncoder


class Encoders:
    """Records -> the model's float32 input matrix, one column per number and per category."""

    def __init__(self, encoders: Sequence[Encoder]) -> None:
        self.encoders = tuple(encoders)
        self.names = tuple(e.name for e in self.encoders)
        self._offsets: list[int] = []
        width = 0
        for encoder in self.encoders:
            self._offsets.append(width)
            width += len(encoder.categories) if isinstance(encoder, CategoryEncoder) else 1
        self.width = width

    def decode_columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each feature of encoded rows (n, width): a number standardized as the model sees it, a category as
        its index (the hot column)."""
        columns = {}
        for encoder, offset in zip(self.encoders, self._offsets, strict=True):
            if isinstance(encoder, CategoryEncoder):
                columns[encoder.name] = rows[:, offset : offset + len(encoder.categories)].argmax(axis=1)
            else:
                columns[encoder.name] = rows[:, offset]
        return columns

    @classmethod
    def fit(cls, records: Sequence[dict[str, Any]], ranges: dict[str, tuple[float, float] | None]) -> Encoders:
        """Fitted on `records` (the training split); `ranges`: each feature's valid range, None for a category."""
        encoders: list[Encoder] = []
        for name, valid in ranges.items():
            present = [r[name] for r in records if r.get(name) is not None]
            if valid is not None:
                values = np.asarray(present, np.float64)
                std = float(values.std()) or 1.0
                encoders.append(
                    NumericEncoder(name, float(values.mean()), std, float(np.median(values)), *map(float, valid))
                )
            else:
                counts = Counter(present)
                encoders.append(CategoryEncoder(name, tuple(sorted(counts)), counts.most_common(1)[0][0]))
        return cls(encoders)

    def encode(self, records: Sequence[dict[str, Any]], fields: Sequence[str]) -> np.ndarray:
        """`fields[i]` says where record i came from (`instances[3].features`), for the messages."""
        out = np.zeros((len(records), self.width), np.float32)
        for row, (record, field) in enumerate(zip(records, fields, strict=True)):
            self.check_names(record, field)
            for encoder, offset in zip(self.encoders, self._offsets, strict=True):
                where = f"{field}.{encoder.name}"
                if isinstance(encoder, NumericEncoder):
                    out[row, offset] = encoder.encode(record[encoder.name], where)
                else:
                    out[row, offset + encoder.encode(record[encoder.name], where)] = 1.0
        return out

    def check_names(self, record: dict[str, Any], field: str) -> None:
        missing = [n for n in self.names if n not in record]
        if missing:
            raise InvalidInput(
                f"{field} lacks the features {missing} (send null for a value you do not have)", f"{field}.{missing[0]}"
            )
        unknown = sorted(set(record) - set(self.names))
        if unknown:
            raise InvalidInput(f"{field} has unknown features {unknown}", f"{field}.{unknown[0]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [
                {
                    "name": e.name,
                    "kind": "numeric",
                    **{k: getattr(e, k) for k in ("mean", "std", "median", "low", "high")},
                }
                if isinstance(e, NumericEncoder)
                else {
                    "name": e.name,
                    "kind": "category",
                    "categories": list(e.categories),
                    "most_frequent": e.most_frequent,
                }
                for e in self.encoders
            ]
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Encoders:
        encoders: list[Encoder] = []
        for f in data["features"]:
            if f["kind"] == "numeric":
                encoders.append(
                    NumericEncoder(f["name"], *(float(f[k]) for k in ("mean", "std", "median", "low", "high")))
                )
            else:
                encoders.append(CategoryEncoder(f["name"], tuple(f["categories"]), str(f["most_frequent"])))
        return cls(encoders)
