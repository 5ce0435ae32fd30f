"""The HTTP face: `create_app`, which takes a ready model (or a function that loads one) so that tests can serve
a FakeBackend with the real tokenizer and no artifact; the health and metrics routes; and the protocols' own
routes from serve/protocols/ (OpenAI embeddings, KServe v1, Open Inference Protocol v2).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute

import inferopt
from inferopt.serve.access_log import AccessLog
from inferopt.serve.config import ServeConfig
from inferopt.serve.http import json_response, server_state
from inferopt.serve.metrics import CONTENT_TYPE, ServeMetrics
from inferopt.serve.middleware import Receive, RequestContext, Scope, Send
from inferopt.serve.protocols import kserve_v1, oip_v2, openai_embeddings
from inferopt.serve.state import ModelSource, ServerState

log = logging.getLogger("inferopt.serve")
router = APIRouter()
EMBEDDINGS_PATH = openai_embeddings.EMBEDDINGS_PATH


def create_app(
    config: ServeConfig,
    source: ModelSource,
    *,
    metrics: ServeMetrics | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
    access_log: AccessLog | None = None,
) -> FastAPI:
    """The app. Its access log (when config.access_log) goes to `access_log`, or to stderr."""
    metrics = metrics or ServeMetrics()
    requests_log = (access_log or AccessLog()) if config.access_log else None
    state = ServerState(config, source, metrics, on_fatal)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading runs in the background: the server listens (live, not ready) while the model warms up.
        loading = asyncio.get_running_loop().create_task(state.start())
        try:
            yield
        finally:
            loading.cancel()
            await state.stop()

    app = InferoptApp(
        title="inferopt",
        version=inferopt.__version__,
        lifespan=lifespan,
        redoc_url=None,
        description=(
            "An inferopt artifact, served: OpenAI-compatible embeddings (text encoders), KServe v1 predict and "
            "the Open Inference Protocol v2 (every task)."
        ),
    )
    app.state.inferopt = state
    for routes in (router, openai_embeddings.router, kserve_v1.router, oip_v2.router):
        app.include_router(routes)
    app.add_middleware(RequestContext, metrics=metrics, access_log=requests_log)
    app.embeddings_route = next(
        r for r in openai_embeddings.router.routes if isinstance(r, APIRoute) and r.path == EMBEDDINGS_PATH
    )
    app.hot_path = RequestContext(_embeddings_asgi, metrics, requests_log)
    return app


class InferoptApp(FastAPI):
    """FastAPI, with POST /v1/embeddings dispatched straight to its handler inside RequestContext.

    Profiled under load, about 40% of the event loop's CPU went to FastAPI's and Starlette's layers around that
    handler (route matching, dependency solving, exit-stack and exception middlewares), none of which it uses:
    it parses its own body and turns every error into a response itself. The route stays registered, so /docs
    documents it; every other path takes the full stack.
    """

    embeddings_route: APIRoute
    hot_path: RequestContext

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == EMBEDDINGS_PATH and scope["method"] == "POST":
            scope["app"] = self  # what Starlette's routing would have set: the handler reads app.state
            scope["route"] = self.embeddings_route  # the metrics label
            await self.hot_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _embeddings_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    response = await openai_embeddings.create_embeddings(Request(scope, receive))
    await response(scope, receive, send)


@router.get("/health/live", summary="200 while the process serves HTTP")
async def health_live() -> Response:
    return json_response({"status": "live"})


@router.get("/health/ready", summary="200 once the model is loaded and warm; 503 while loading or draining")
async def health_ready(request: Request) -> Response:
    state = server_state(request)
    if state.phase == "ready" and state.ready is not None:
        model = state.ready.model
        return json_response({"status": "ready", "model": model.public_name, "artifact_id": model.artifact_id})
    return json_response({"status": state.phase, "detail": state.detail}, status=503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text exposition format"}},
)
async def prometheus_metrics(request: Request) -> Response:
    return Response(server_state(request).metrics.render(), media_type=CONTENT_TYPE)
