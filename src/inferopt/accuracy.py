"""How close a variant stays to FP32 (fidelity), and how well it does the task (metric).

Fidelity: per-item cosine to the FP32 embedding (mean, 1st percentile, min), SQNR in dB, max abs error.
Task metric: Spearman correlation x100 between predicted cosine and gold score on scored pairs (STS).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from inferopt.evaldata import EvalData


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `a` with the same row of `b`."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-12)


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio; > 20 dB is the usual floor for a usable quantized model."""
    noise = float(np.sum((reference.astype(np.float64) - candidate) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


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
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}")
    cos = row_cosine(candidate, reference)
    return Fidelity(
        mean_cosine=float(cos.mean()),
        p1_cosine=float(np.percentile(cos, 1)),
        min_cosine=float(cos.min()),
        sqnr_db=sqnr_db(reference, candidate),
        max_abs_error=float(np.max(np.abs(reference - candidate))),
        n=int(cos.size),
    )


def spearman_x100(data: EvalData, embeddings: np.ndarray) -> float | None:
    """STS-style score: Spearman rank correlation x100 of pair cosine vs gold; None without labels."""
    if not data.labelled:
        return None
    from scipy.stats import spearmanr

    first = np.array([p.first for p in data.pairs])
    second = np.array([p.second for p in data.pairs])
    predicted = row_cosine(embeddings[first], embeddings[second])
    gold = np.array([p.score for p in data.pairs])
    return float(spearmanr(predicted, gold).statistic * 100.0)


@dataclass(frozen=True)
class AccuracyReport:
    fidelity: Fidelity
    metric_name: str | None
    metric: float | None
    metric_drop: float | None  # reference metric minus this variant's, in points

    def to_dict(self) -> dict[str, object]:
        return {
            "fidelity": self.fidelity.to_dict(),
            "metric_name": self.metric_name,
            "metric": self.metric,
            "metric_drop": self.metric_drop,
        }


def evaluate(data: EvalData, reference: np.ndarray, candidate: np.ndarray) -> AccuracyReport:
    metric = spearman_x100(data, candidate)
    reference_metric = spearman_x100(data, reference)
    drop = None if metric is None or reference_metric is None else reference_metric - metric
    return AccuracyReport(fidelity(reference, candidate), "spearman_x100" if data.labelled else None, metric, drop)
