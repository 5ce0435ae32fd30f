"""KServe v1 / TF-Serving's JSON predict protocol: `{"instances": [...]}` -> `{"predictions": [...]}`.

Each instance is one raw input, in the task's own JSON form (a string or {"text": ...} for text, an object of
input name -> nested list for tensors, {"b64": ...} for an image file); each prediction is the task's
postprocessed result for it. A request's `parameters` (image: top_k) apply to every instance. Image files may
also come as a multipart/form-data upload to the same route.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from inferopt.serve.errors import InvalidField, PayloadTooLarge
from inferopt.serve.wire.json_body import decode_json, kind
from inferopt.serve.wire.multipart import parse_form
from inferopt.tasks.base import InvalidInput, Task


def parse_predict(body: bytes, task: Task, *, max_items: int, query: dict[str, str] | None = None) -> list[Any]:
    """The raw inputs of a :predict body, with its `parameters` (and the query string's) applied; MalformedBody
    (400), PayloadTooLarge (413) or InvalidField (422)."""
    return parse_instances(decode_json(body), task, max_items=max_items, query=query)


def parse_instances(data: object, task: Task, *, max_items: int, query: dict[str, str] | None = None) -> list[Any]:
    """parse_predict of a body already decoded (a job's, which has more fields than instances and parameters)."""
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
    _check_count(f"instances has {len(instances)} items", len(instances), max_items, "instances")
    parameters = data.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidField(f"parameters must be an object, got {kind(parameters)}", param="parameters")
    with _as_invalid_field():
        raws = [task.instance(value, f"instances[{i}]") for i, value in enumerate(instances)]
        raws = task.parameters(raws, parameters, "parameters")
        return task.parameters(raws, query, "query") if query else raws


def parse_upload(body: bytes, content_type: str, task: Task, *, max_items: int, query: dict[str, str]) -> list[Any]:
    """The raw inputs of a multipart/form-data :predict request: one per uploaded file, in order; the form's
    plain fields and the query string are its parameters (`top_k=3`)."""
    form = parse_form(body, content_type)
    if not form.files:
        raise InvalidField("the form holds no files; upload the images as file parts", param="body")
    _check_count(f"the form has {len(form.files)} files", len(form.files), max_items, "body")
    with _as_invalid_field():
        raws = [task.upload(f.data, f"{f.name}[{i}] ({f.filename})") for i, f in enumerate(form.files)]
        return task.parameters(raws, {**form.fields, **query}, "form")


def _check_count(what: str, count: int, max_items: int, param: str) -> None:
    if count > max_items:
        raise PayloadTooLarge(f"{what}; this server takes at most {max_items} per request", param=param)


@contextmanager
def _as_invalid_field() -> Iterator[None]:
    """The task's InvalidInput as the 422 that names its field."""
    try:
        yield
    except InvalidInput as exc:
        raise InvalidField(exc.message, param=exc.field) from None


def predict_response(results: Sequence[bytes]) -> bytes:
    """`results`: each item's result, already encoded as JSON (the cache keeps them so)."""
    return b'{"predictions":[' + b",".join(results) + b"]}"
