"""Recommendation queries from Open Inference Protocol v2 tensors: user_id INT64 [n] (a user's items) or item_id
INT64 [n] (similar items), and optionally k INT64 [n] (one value for all rows: the response is one tensor per
output), candidates INT64 [n, c], exclude_seen BOOL [n]. Each mistake names the tensor."""

from __future__ import annotations

from typing import Any

import numpy as np

from inferopt.tasks.base import InvalidInput

V2_INPUTS = ("user_id", "item_id", "k", "candidates", "exclude_seen")


def queries_from_tensors(task: Any, tensors: dict[str, Any]) -> list[Any]:
    unknown = sorted(set(tensors) - set(V2_INPUTS))
    if unknown or ("user_id" in tensors) == ("item_id" in tensors):
        names = ", ".join(sorted(tensors)) or "none"
        raise InvalidInput(
            f"this model takes user_id or item_id, and optionally k, candidates, exclude_seen; got {names}", "inputs"
        )
    entity = "user_id" if "user_id" in tensors else "item_id"
    ids = _integers(tensors[entity], entity, 1)
    n = len(ids)
    candidates = _integers(tensors["candidates"], "candidates", 2) if "candidates" in tensors else None
    if candidates is not None and len(candidates) != n:
        raise InvalidInput(f"candidates has {len(candidates)} rows for {n} queries", "candidates")
    ks = _integers(tensors["k"], "k", 1) if "k" in tensors else None
    if ks is not None and (len(ks) != n or len(set(ks.tolist())) > 1):
        raise InvalidInput(
            f"k must hold one value per row, the same for all {n} rows (the response is one tensor)", "k"
        )
    exclude = tensors.get("exclude_seen")
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.dtype != np.bool_ or exclude.shape != (n,):
            raise InvalidInput(f"exclude_seen must be BOOL [{n}]", "exclude_seen")
    queries = []
    for row in range(n):
        instance: dict[str, Any] = {entity: int(ids[row])}
        if candidates is not None:
            instance["candidates"] = [int(i) for i in candidates[row]]
        if ks is not None:
            instance["k"] = int(ks[row])
        if exclude is not None:
            instance["exclude_seen"] = bool(exclude[row])
        queries.append(task.instance(instance, f"row {row}"))
    return queries


def _integers(value: Any, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(value)
    if isinstance(value, list) or array.dtype.kind not in "iu" or array.ndim != ndim:
        raise InvalidInput(f"{name} must be an INT64 tensor of rank {ndim}", name)
    return array
