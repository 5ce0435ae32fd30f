"""Generated bad (and good) input against a running server, for every task's serve tests:

- `every_route`: schemathesis cases from the server's own /openapi.json, positive (what the schema allows) and
  negative (what it forbids), for every operation; the path's model name is the served one, so bodies reach the
  parsers rather than stopping at 404. No answer may be a 5xx (bar a documented 503, such as jobs that are off),
  and every call gets an answer.
- `oip_v2_bodies` / `grpc_messages`: Hypothesis tensors built around the model's real inputs (right and wrong
  names, datatypes, shapes, data), over REST and gRPC: never a 5xx, never INTERNAL or UNKNOWN.

Deterministic (derandomize): CI runs the same cases every time. INFEROPT_FUZZ_RANDOM=1 draws fresh ones (a
session hunting for bugs; a failure prints the case to add as a fixed test).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

DATATYPES = ("BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "COMPLEX", "")
GRPC_FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("INFEROPT_FUZZ_RANDOM"),
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )


Allowed = Callable[[str, int, str], bool]  # (operation "POST /path", status, body text) -> a 5xx that is right


def jobs_off(label: str, status: int, text: str) -> bool:
    """The documented 503 of the jobs routes on a server started without --jobs."""
    return "/v1/jobs" in label and status == 503 and "jobs are off" in text


def every_route(
    url: str,
    model_name: str,
    *,
    examples: int,
    headers: dict[str, str] | None = None,
    allowed: Allowed = jobs_off,
    verify: Any = True,
) -> dict[str, Counter[int]]:
    """Statuses per operation; fails on a 5xx `allowed` does not excuse, or on a call that gets no answer."""
    schema = schemathesis.openapi.from_dict(httpx.get(f"{url}/openapi.json", verify=verify).json())
    seen: dict[str, Counter[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        counts = seen.setdefault(label, Counter())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _cases(operation, mode, label, counts, examples, model_name, headers, allowed, url, verify)
            try:
                run()
            except Unsatisfiable:  # nothing to break in an operation with no inputs (GET /health/live)
                assert mode is GenerationMode.NEGATIVE
    return seen


def _cases(operation: Any, mode: Any, label: str, counts: Counter[int], examples: int, model_name: str,
           headers: dict[str, str] | None, allowed: Allowed, url: str, verify: Any) -> Callable[[], None]:  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    @_settings(examples)
    def call(case: Any) -> None:
        if case.path_parameters and "name" in case.path_parameters:
            case.path_parameters["name"] = model_name
        if label == "POST /v1/jobs" and isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = model_name  # a job names its model in the body
        if headers:
            case.headers = {**(case.headers or {}), **headers}
        response = case.call(base_url=url, timeout=60, verify=verify)
        counts[response.status_code] += 1
        if response.status_code >= 500 and not allowed(label, response.status_code, response.text):
            raise AssertionError(f"{label}: {response.status_code} {response.text[:300]} for {case.body!r}")

    return call  # type: ignore[no-any-return]


def tensors(inputs: list[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """OIP v2 input tensors near the model's own (`inputs`: its v2_inputs()): its names or others, its datatypes
    or others, shapes that fit the data or not, data of numbers, strings, nulls and nesting."""
    names = st.sampled_from([i["name"] for i in inputs] + ["", "unknown", "x" * 300])
    datatype = st.sampled_from([i["datatype"] for i in inputs] + list(DATATYPES))
    scalar = st.one_of(
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40),
        st.booleans(),
        st.none(),
    )
    data = st.recursive(st.lists(scalar, max_size=12), lambda inner: st.lists(inner, max_size=3), max_leaves=40)
    shape = st.lists(st.integers(-2, 40), min_size=0, max_size=5)
    tensor = st.fixed_dictionaries({"name": names, "datatype": datatype, "shape": shape, "data": data})
    return st.one_of(st.lists(tensor, min_size=0, max_size=3), _fitting(inputs))


ELEMENTS = {
    "BYTES": st.text(min_size=1, max_size=30).filter(str.strip),
    "BOOL": st.booleans(),
    "FP16": st.floats(-1e3, 1e3, width=16),
    "FP32": st.floats(-1e3, 1e3, width=32),
    "FP64": st.floats(-1e3, 1e3),
}


def _fitting(inputs: list[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Every input of the model with its own datatype and a shape its data fills: mostly a 200 (a recommender's
    ids or a tensor model's values may still be out of range: a 422)."""

    @st.composite
    def draw(draw_: Any) -> list[dict[str, Any]]:
        batch = draw_(st.integers(1, 3))
        out = []
        for spec in inputs:
            dims = [batch] + [draw_(st.integers(1, 3)) if d < 0 else d for d in spec["shape"][1:]]
            count = 1
            for d in dims:
                count *= d
            element = ELEMENTS.get(spec["datatype"], st.integers(0, 5))
            out.append({"name": spec["name"], "datatype": spec["datatype"], "shape": dims,
                        "data": draw_(st.lists(element, min_size=count, max_size=count))})  # fmt: skip
        return out

    return draw()


def oip_v2_bodies(url: str, model_name: str, *, examples: int, headers: dict[str, str] | None = None) -> Counter[int]:
    """POST /v2/models/{name}/infer with generated tensors: a 200 or a 4xx, never a 5xx."""
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        inputs = client.get(f"/v2/models/{model_name}").json()["inputs"]
        counts: Counter[int] = Counter()

        @given(body=tensors(inputs), parameters=st.sampled_from([{}, {"binary_data_output": True}, {"top_k": 2}]))
        @_settings(examples)
        def call(body: list[dict[str, Any]], parameters: dict[str, Any]) -> None:
            # NaN and Infinity go as JSON's non-standard literals: the server must refuse them, not crash
            content = json.dumps({"inputs": body, "parameters": parameters}).encode()
            response = client.post(
                f"/v2/models/{model_name}/infer", content=content, headers={"content-type": "application/json"}
            )
            counts[response.status_code] += 1
            assert response.status_code < 500, f"{response.status_code} {response.text[:300]} for {body!r}"

        call()
    return counts


def grpc_messages(target: str, model_name: str, inputs: list[dict[str, Any]], *, examples: int,
                  metadata: tuple[tuple[str, str], ...] = ()) -> Counter[str]:  # fmt: skip
    """ModelInfer with generated tensors, typed or raw contents of any length: never INTERNAL or UNKNOWN."""
    from inferopt.serve.grpc_client import GrpcClient
    from inferopt.serve.wire import oip_v2_grpc as wire

    names = st.sampled_from([i["name"] for i in inputs] + ["", "unknown"])
    datatype = st.sampled_from([i["datatype"] for i in inputs] + list(DATATYPES))
    tensor = st.tuples(names, datatype, st.lists(st.integers(0, 40), max_size=4), st.binary(max_size=256))
    case = st.tuples(st.lists(tensor, max_size=3), st.booleans(), st.sampled_from([model_name, "other", ""]))
    drawn: list[Any] = []

    @given(case=case)
    @_settings(examples)
    def collect(case: Any) -> None:
        drawn.append(case)

    collect()
    counts: Counter[str] = Counter()

    async def run() -> None:
        async with GrpcClient(target) as client:
            for spec, raw, name in drawn:
                request = wire.ModelInferRequest(model_name=name)
                for tensor_name, tensor_type, shape, payload in spec:
                    tensor = request.inputs.add(name=tensor_name, datatype=tensor_type, shape=shape)
                    if raw:
                        request.raw_input_contents.append(payload)
                    elif tensor_type == "BYTES":
                        tensor.contents.bytes_contents.append(payload)
                    else:
                        tensor.contents.int64_contents.extend(payload[:8])
                try:
                    await client.call("ModelInfer", request, timeout_s=60, metadata=metadata)
                    counts["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    counts[exc.code().name] += 1
                    assert exc.code() not in GRPC_FAILURES, f"{exc.code().name}: {exc.details()} for {spec!r}"

    asyncio.run(run())
    return counts


def everything(server: Any, *, examples: int) -> dict[str, Counter[Any]]:
    """every_route, oip_v2_bodies and (where the server has a gRPC port) grpc_messages on a ServerThread; the
    server still answers its health check afterwards."""
    name = server.state.ready.model.public_name
    seen: dict[str, Counter[Any]] = dict(every_route(server.url, name, examples=examples))
    seen["oip_v2"] = oip_v2_bodies(server.url, name, examples=examples * 2)
    if server.app.state.grpc is not None:
        inputs = httpx.get(f"{server.url}/v2/models/{name}").json()["inputs"]
        seen["grpc"] = grpc_messages(server.grpc_target, name, inputs, examples=examples * 2)
    assert httpx.get(f"{server.url}/health/ready").status_code == 200
    return seen
