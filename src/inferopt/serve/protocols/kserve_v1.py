"""KServe v1 / TF-Serving predict, for every task: `POST /v1/models/{name}:predict` with
`{"instances": [...]}` -> `{"predictions": [...]}` (or a multipart/form-data upload of image files), and
`GET /v1/models/{name}` (is it ready). Query parameters (`?top_k=3`) are request parameters too."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from inferopt.serve.http import (
    ERROR_RESPONSES,
    json_response,
    ready_model,
    serve_inference,
)
from inferopt.serve.inference import Rendered
from inferopt.serve.service import Computed
from inferopt.serve.state import Ready
from inferopt.serve.wire.docs import PredictRequestDoc, json_body
from inferopt.serve.wire.kserve_v1 import parse_predict, parse_upload, predict_response
from inferopt.serve.wire.multipart import is_multipart
from inferopt.tasks.base import KSERVE_V1

router = APIRouter()
PREDICT_PATH = "/v1/models/{name}:predict"


@router.post(
    PREDICT_PATH,
    summary="Predict (KServe v1 / TF-Serving): instances in, predictions out",
    responses=ERROR_RESPONSES,
    openapi_extra=json_body(PredictRequestDoc, multipart=True),
)
async def predict(request: Request, name: str) -> Response:
    content_type = request.headers.get("content-type")
    query = dict(request.query_params) if request.scope.get("query_string") else {}

    def parse(body: bytes, ready: Ready) -> tuple[None, list[Any]]:
        task, limit = ready.model.task, ready.max_items
        if is_multipart(content_type):
            return None, parse_upload(body, content_type, task, max_items=limit, query=query)  # type: ignore[arg-type]
        return None, parse_predict(body, task, max_items=limit, query=query)

    return await serve_inference(request, parse, _render, protocol=KSERVE_V1, name=name)


def _render(ready: Ready, parsed: None, results: list[Computed]) -> Rendered:
    return Rendered(
        predict_response([_with_debug(c) for c in results]), log={"cost": sum(c.result.cost for c in results)}
    )


def _with_debug(computed: Computed) -> bytes:
    """The prediction, with `debug.features` (each stored feature group's age and source) spliced into it when
    the input named an entity: the cached prediction is shared, its debug is this request's own."""
    encoded = computed.result.json
    if computed.features is None or not encoded.endswith(b"}"):
        return encoded
    debug = b'"debug":{"features":' + orjson.dumps(computed.features) + b"}}"
    return encoded[:-1] + (b"," if len(encoded) > 2 else b"") + debug


@router.get("/v1/models/{name}", summary="Model status (KServe v1)")
async def model_status(request: Request, name: str) -> Response:
    ready = ready_model(request, KSERVE_V1, name)
    if isinstance(ready, Response):
        return ready
    return json_response({"name": ready.model.public_name, "ready": True})
