"""KServe v1 / TF-Serving's JSON predict protocol: `{"instances": [...]}` -> `{"predictions": [...]}`.

Each instance is one raw input, in the task's own JSON form (a string or {"text": ...} for text, an object of
input name -> nested list for tensors); each prediction is the task's postprocessed result for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferopt.serve.errors import InvalidField, PayloadTooLarge
from inferopt.serve.wire.json_body import decode_json, kind
from inferopt.tasks.base import InvalidInput, Task


def parse_predict(body: bytes, task: Task, *, max_items: int) -> list[Any]:
    """The raw inputs of a :predict body; MalformedBody (400), PayloadTooLarge (413) or InvalidField (422)."""
    data = decode_json(body)
    if not isinstance(data, dict):
        raise InvalidField(f"the request body must be a JSON object, got {kind(data)}", param="body")
    if "instances" not in data:
        hint = " (the columnar 'inputs' form is not supported)" if "inputs" in data else ""
        raise InvalidField(f'the body needs "instances": a list of inputs{hint}', param="instances")
    instances = data["instances"]
    if not isinstance(instances, list):
        raise InvalidField(f"instances must be a list, got {kind(instances)}", param="instances")
    if not instances:
        raise InvalidField("instances is an empty list; send at least one input", param="instances")
    if len(instances) > max_items:
        raise PayloadTooLarge(
            f"instances has {len(instances)} items; this server takes at most {max_items} per request",
            param="instances",
        )
    try:
        return [task.instance(value, f"instances[{i}]") for i, value in enumerate(instances)]
    except InvalidInput as exc:
        raise InvalidField(exc.message, param=exc.field) from None


def predict_response(results: Sequence[bytes]) -> bytes:
    """`results`: each item's result, already encoded as JSON (the cache keeps them so)."""
    return b'{"predictions":[' + b",".join(results) + b"]}"
