"""The Open Inference Protocol v2 over REST (KServe v2, Triton, MLServer), for every task: health, server and
model metadata, readiness, and `POST /v2/models/{name}/infer` with named, typed, shaped tensors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

import inferopt
from inferopt.serve.http import (
    ERROR_RESPONSES,
    json_response,
    ready_model,
    serve_inference,
    server_state,
)
from inferopt.serve.inference import Rendered
from inferopt.serve.service import Computed
from inferopt.serve.state import Ready
from inferopt.serve.wire.docs import InferRequestDoc, json_body
from inferopt.serve.wire.oip_v2 import BINARY_HEADER, InferRequest, check_outputs, infer_response, parse_infer
from inferopt.tasks.base import OIP_V2

router = APIRouter()
INFER_PATH = "/v2/models/{name}/infer"


@router.get("/v2", summary="Server metadata (OIP v2)")
async def server_metadata() -> Response:
    return json_response({"name": "inferopt", "version": inferopt.__version__, "extensions": []})


@router.get("/v2/health/live", summary="200 while the process serves HTTP (OIP v2)")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/v2/health/ready", summary="200 once the model is loaded and warm (OIP v2)")
async def ready(request: Request) -> Response:
    state = server_state(request)
    is_ready = state.phase == "ready" and state.ready is not None
    return json_response({"ready": is_ready}, status=200 if is_ready else 503)


@router.get("/v2/models/{name}", summary="Model metadata: its input and output tensors (OIP v2)")
async def model_metadata(request: Request, name: str) -> Response:
    ready = ready_model(request, OIP_V2, name)
    if isinstance(ready, Response):
        return ready
    model = ready.model
    return json_response({
        "name": model.public_name,
        "versions": [model.artifact_id],
        "platform": "onnxruntime_onnx",
        "inputs": model.task.v2_inputs(),
        "outputs": model.task.v2_outputs(),
    })  # fmt: skip


@router.get("/v2/models/{name}/ready", summary="200 once this model is ready (OIP v2)")
async def model_ready(request: Request, name: str) -> Response:
    ready = ready_model(request, OIP_V2, name)
    if isinstance(ready, Response):
        return ready
    return json_response({"name": ready.model.public_name, "ready": True})


@router.post(
    INFER_PATH,
    summary="Inference on named, typed, shaped tensors (OIP v2)",
    responses=ERROR_RESPONSES,
    openapi_extra=json_body(InferRequestDoc),
)
async def infer(request: Request, name: str) -> Response:
    binary = request.headers.get(BINARY_HEADER)

    def parse(body: bytes, ready: Ready) -> tuple[InferRequest, list[Any]]:
        parsed = parse_infer(body, ready.model.task, max_items=ready.max_items, binary_header=binary)
        check_outputs(parsed, list(ready.output_shapes))
        return parsed, parsed.inputs

    return await serve_inference(request, parse, _render, protocol=OIP_V2, name=name)


def _render(ready: Ready, parsed: InferRequest, results: list[Computed]) -> Rendered:
    model = ready.model
    content = infer_response(model.public_name, model.artifact_id, parsed, [c.result.outputs for c in results])
    return Rendered(content, log={"cost": sum(c.result.cost for c in results)})
