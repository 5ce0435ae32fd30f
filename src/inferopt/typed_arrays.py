"""JSON values into typed arrays, with the checks every protocol needs: rectangular nesting, numbers of the
right kind, and values that fit the type (an int32 input never wraps 3,000,000,000 around to a negative).
Shared by the Open Inference Protocol codec (serve/wire) and the tensor task's KServe v1 instances."""

from __future__ import annotations

from typing import Any

import numpy as np


class ValueProblem(ValueError):
    """What is wrong with the values, in words that follow "the data of X ..."."""


def typed_array(values: Any, dtype: np.dtype) -> np.ndarray:
    """`values` (a number or nested lists of numbers, as JSON decodes them) as an array of `dtype`."""
    try:
        probe = np.asarray(values)
    except ValueError:
        raise ValueProblem("is not a rectangular nested list of numbers") from None
    if probe.size == 0:
        return probe.astype(dtype)
    kind = probe.dtype.kind
    if kind not in "biuf":
        raise ValueProblem(f"must hold {dtype.name} numbers")
    if dtype.kind == "b":
        if kind != "b":
            raise ValueProblem("must hold true/false")
        return probe
    if kind == "b":
        raise ValueProblem(f"must hold {dtype.name} numbers, not true/false")
    if dtype.kind in "iu":
        if kind == "f":
            raise ValueProblem(f"must hold integers ({dtype.name})")
        info = np.iinfo(dtype)
        if probe.min() < info.min or probe.max() > info.max:
            raise ValueProblem(f"has a value outside {dtype.name}'s range [{info.min}, {info.max}]")
        return probe.astype(dtype)
    with np.errstate(over="ignore"):  # an overflow is found just below, and refused in words
        result = probe.astype(dtype)
    if not np.isfinite(result).all() and np.isfinite(probe).all():
        raise ValueProblem(f"has a value too large for {dtype.name}")
    return result
