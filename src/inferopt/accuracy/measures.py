"""Fidelity measures: how close a variant's outputs stay to the FP32 reference, each a small named function.

Outputs are compared item by item: row i of each array is item i (any trailing shape, flattened).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def as_rows(values: np.ndarray) -> np.ndarray:
    """(items, ...) -> (items, features) in float64: one flattened row per item."""
    return np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `a` with the same row of `b` (rows flattened). Two all-zero rows count
    as identical (1.0): a model that answers zero where FP32 did is exact, not undefined."""
    a64, b64 = as_rows(a), as_rows(b)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    cos = (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-12)
    both_zero = (np.abs(a64).max(axis=1, initial=0.0) == 0) & (np.abs(b64).max(axis=1, initial=0.0) == 0)
    return np.where(both_zero, 1.0, cos)


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio; > 20 dB is the usual floor for a usable quantized model."""
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((ref - candidate) ** 2))
    signal = float(np.sum(ref**2))
    return float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-300) / noise)


def max_abs_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(reference, np.float64) - candidate), initial=0.0))


def argmax_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share of items whose largest output (class) is the same as FP32's, over the last axis."""
    return float(np.mean(np.argmax(reference, axis=-1) == np.argmax(candidate, axis=-1)))


def has_classes(values: np.ndarray) -> bool:
    """Whether argmax agreement means something: float scores over >= 2 classes per item."""
    return values.ndim == 2 and values.shape[1] >= 2 and np.issubdtype(values.dtype, np.floating)


@dataclass(frozen=True)
class Fidelity:
    mean_cosine: float
    p1_cosine: float
    min_cosine: float
    sqnr_db: float
    max_abs_error: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fidelity(reference: np.ndarray, candidate: np.ndarray) -> Fidelity:
    """Per-item cosine (mean, 1st percentile, min), SQNR and max abs error of `candidate` against `reference`.

    Items of a single value have no direction: their cosine is taken over the whole column instead."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}")
    per_item = as_rows(reference).shape[1] > 1
    cos = (
        row_cosine(candidate, reference) if per_item else row_cosine(candidate.reshape(1, -1), reference.reshape(1, -1))
    )
    return Fidelity(
        mean_cosine=float(cos.mean()),
        p1_cosine=float(np.percentile(cos, 1)),
        min_cosine=float(cos.min()),
        sqnr_db=sqnr_db(reference, candidate),
        max_abs_error=max_abs_error(reference, candidate),
        n=int(reference.shape[0]),
    )
