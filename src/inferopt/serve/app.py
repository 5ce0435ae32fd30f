"""The HTTP face: `create_app`, which takes a ready model (or a function that loads one) so that tests can serve
a FakeBackend with the real tokenizer and no artifact; the health and metrics routes; and the protocols' own
routes from serve/protocols/ (OpenAI embeddings, KServe v1, Open Inference Protocol v2, jobs).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute

import inferopt
from inferopt.errors import InferoptError
from inferopt.serve.access_log import AccessLog
from inferopt.serve.auth import ApiKeys
from inferopt.serve.config import ServeConfig
from inferopt.serve.errors import ModelNotFound, ServeError
from inferopt.serve.http import error_response, json_response, server_state
from inferopt.serve.metrics import CONTENT_TYPE, ServeMetrics
from inferopt.serve.middleware import Receive, RequestContext, Scope, Send, app_path
from inferopt.serve.protocols import jobs, kserve_v1, oip_v2, openai_embeddings
from inferopt.serve.state import ModelSource, ServerState
from inferopt.serve.tracing import Tracing

if TYPE_CHECKING:
    from inferopt.serve.protocols.oip_v2_grpc import GrpcListener

log = logging.getLogger("inferopt.serve")
router = APIRouter()
EMBEDDINGS_PATH = openai_embeddings.EMBEDDINGS_PATH
PREDICT_PATH = kserve_v1.PREDICT_PATH
INFER_PATH = oip_v2.INFER_PATH


def create_app(
    config: ServeConfig,
    source: ModelSource,
    *,
    metrics: ServeMetrics | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
    access_log: AccessLog | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The app. Its access log (when config.access_log) goes to `access_log`, or to stderr. Its spans go to
    `tracing`, or to the OTLP collector --otlp-endpoint (or the OTEL_ variables) name; none when neither does."""
    metrics = metrics or ServeMetrics()
    requests_log = (access_log or AccessLog()) if config.access_log else None
    tracing = tracing or Tracing.from_config(config.otlp_endpoint, metrics)
    state = ServerState(config, source, metrics, on_fatal, tracing)
    keys = ApiKeys.of(config.keys(), metrics_auth=config.metrics_auth)  # an empty keys file is refused here

    grpc = grpc_listener(config, state, requests_log, tracing, keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading runs in the background: the server listens (live, not ready) while the model warms up.
        loading = None
        try:
            if grpc is not None:
                await grpc.start()
            loading = asyncio.get_running_loop().create_task(state.start())
        except OSError as exc:  # the gRPC address is taken: fail the server as a load failure does, in one line
            state.fail(str(exc))
        try:
            yield
        finally:
            if loading is not None:
                loading.cancel()
            state.begin_drain()
            if grpc is not None:
                await grpc.stop(config.drain_timeout_s)
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
    app.state.grpc = grpc
    # Jobs take the full stack, not HotRoutes: a submission is rare and heavy, its overhead does not matter.
    for routes in (router, openai_embeddings.router, kserve_v1.router, oip_v2.router, jobs.router):
        app.include_router(routes)
    app.add_middleware(RequestContext, metrics=metrics, access_log=requests_log, tracing=tracing, keys=keys)
    app.hot_routes = HotRoutes.of(openai_embeddings.router, kserve_v1.router, oip_v2.router)
    app.hot_path = RequestContext(_hot_asgi, metrics, requests_log, tracing, keys)
    return app


def grpc_listener(
    config: ServeConfig,
    state: ServerState,
    access_log: AccessLog | None,
    tracing: Tracing | None,
    keys: ApiKeys | None = None,
) -> GrpcListener | None:
    """The gRPC face, when --grpc-port or --grpc-uds asks for it (grpcio is imported only then)."""
    if config.grpc_port is None and config.grpc_uds is None:
        return None
    try:
        from inferopt.serve.protocols.oip_v2_grpc import GrpcListener
    except ImportError as exc:
        raise InferoptError(f"--grpc-port / --grpc-uds need grpcio ({exc})", "pip install 'inferopt[grpc]'") from None
    return GrpcListener(config, state, access_log, tracing, keys)


HotHandler = Callable[..., Awaitable[Response]]
HOT = "inferopt.hot"  # scope key: the handler and its path parameters


@dataclass(frozen=True)
class HotRoutes:
    """The inference routes (POST /v1/embeddings, /v1/models/{name}:predict, /v2/models/{name}/infer) and
    their handlers, matched by hand: a string comparison or two instead of Starlette's regex walk."""

    embeddings: APIRoute
    predict: APIRoute
    infer: APIRoute

    @classmethod
    def of(cls, *routers: APIRouter) -> HotRoutes:
        routes = {r.path: r for router in routers for r in router.routes if isinstance(r, APIRoute)}
        return cls(routes[EMBEDDINGS_PATH], routes[PREDICT_PATH], routes[INFER_PATH])

    def match(self, path: str) -> tuple[APIRoute, HotHandler, dict[str, str]] | None:
        if path == EMBEDDINGS_PATH:
            return self.embeddings, openai_embeddings.create_embeddings, {}
        name = _between(path, "/v2/models/", "/infer")
        if name is not None:
            return self.infer, oip_v2.infer, {"name": name}
        name = _between(path, "/v1/models/", ":predict")
        if name is not None:
            return self.predict, kserve_v1.predict, {"name": name}
        return None


def _between(path: str, prefix: str, suffix: str) -> str | None:
    """The model name of `prefix{name}suffix`, when `path` is one (a name has no slash)."""
    if path.startswith(prefix) and path.endswith(suffix) and len(path) > len(prefix) + len(suffix):
        name = path[len(prefix) : -len(suffix)]
        return name if "/" not in name else None
    return None


class InferoptApp(FastAPI):
    """FastAPI, with the inference routes dispatched straight to their handlers inside RequestContext.

    Profiled under load, about 40% of the event loop's CPU went to FastAPI's and Starlette's layers around the
    embeddings handler (route matching, dependency solving, exit-stack and exception middlewares), none of
    which the inference handlers use: each parses its own body and turns every error into a response itself.
    The routes stay registered, so /docs documents them; every other path takes the full stack.
    """

    hot_routes: HotRoutes
    hot_path: RequestContext

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            hot = self.hot_routes.match(app_path(scope))
            if hot is not None:
                route, handler, params = hot
                scope["app"] = self  # what Starlette's routing would have set: the handler reads app.state
                scope["route"] = route  # the metrics label
                scope[HOT] = (handler, params)
                await self.hot_path(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _hot_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    handler, params = scope[HOT]
    response = await handler(Request(scope, receive), **params)
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


class PrometheusText(Response):
    """/metrics' one media type, so the schema documents that alone (not FastAPI's default JSON)."""

    media_type = CONTENT_TYPE


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PrometheusText,
    responses={200: {"description": "Prometheus text exposition format"}},
)
async def prometheus_metrics(request: Request) -> Response:
    state = server_state(request)
    if state.ready is not None and state.ready.drift is not None:
        await state.ready.drift.current()  # the drift gauges' figures, recomputed off the loop when stale
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@router.get(
    "/v1/drift",
    summary="Live drift against the artifact's reference: PSI and KS per signal, and the window they cover",
    responses={404: {"description": "The artifact carries no drift reference"}, 503: {"description": "Not ready"}},
)
async def drift(request: Request) -> Response:
    try:
        ready = server_state(request).require_ready()
        if ready.drift is None:
            raise ModelNotFound(
                "this artifact carries no drift reference (it was written before drift, or its task's outputs "
                "could not be read); re-run inferopt optimize to record one",
                param="artifact",
            )
    except ServeError as exc:
        return error_response(exc, plain=True)
    return json_response(await ready.drift.current())
