"""Fidelity of every output of a model, and the worst of them: what plain-tensor models are judged by, and
the part of every task's report that compares raw outputs."""

from __future__ import annotations

import numpy as np

from inferopt.accuracy.measures import argmax_agreement, fidelity, has_classes
from inferopt.accuracy.report import BY_NAME

FIDELITY_MEASURES = ("mean_cosine", "p1_cosine", "min_cosine", "sqnr_db", "max_abs_error")


def output_measures(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | None]:
    """One output's fidelity, plus argmax agreement where the output holds class scores."""
    values: dict[str, float | None] = {
        k: v for k, v in fidelity(reference, candidate).to_dict().items() if k in FIDELITY_MEASURES
    }
    values["argmax_agreement"] = argmax_agreement(reference, candidate) if has_classes(reference) else None
    return values


def compare_outputs(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
) -> tuple[dict[str, float | None], dict[str, dict[str, float | None]]]:
    """(worst over the outputs, per output). A variant is as good as its worst output."""
    missing = set(reference) - set(candidate)
    if missing:
        raise ValueError(f"the candidate lacks the outputs {sorted(missing)}")
    per_output = {name: output_measures(reference[name], candidate[name]) for name in reference}
    names = [*FIDELITY_MEASURES, "argmax_agreement"]
    worst = {n: BY_NAME[n].worst([m[n] for m in per_output.values()]) for n in names}
    return worst, per_output
