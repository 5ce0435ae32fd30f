"""`inferopt serve`: flags (and INFEROPT_* variables) -> ServeConfig -> artifact check -> uvicorn.

Kept light to import (the CLI imports it to register the command): fastapi, uvicorn and onnxruntime are
imported only when the command runs.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from inferopt.errors import InferoptError
from inferopt.runtime.placement import DEVICE_HELP
from inferopt.serve.config import ServeConfig, env_var

if TYPE_CHECKING:
    from fastapi import FastAPI

    from inferopt.serve.access_log import AccessLog

_D = ServeConfig()
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KEEP_ALIVE_S = 75


def _opt(help_text: str, field: str) -> typer.models.OptionInfo:
    return typer.Option(help=help_text, envvar=env_var(field))


def serve_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder written by optimize", envvar=env_var("artifact"))],
    host: Annotated[str, _opt("Interface to listen on", "host")] = _D.host,
    port: Annotated[int, _opt("TCP port (0: any free one)", "port")] = _D.port,
    uds: Annotated[Path | None, _opt("Listen on this Unix socket instead of host:port", "uds")] = None,
    grpc_port: Annotated[
        int | None, _opt("Also serve Open Inference Protocol v2 over gRPC on host:PORT (0: any free one)", "grpc_port")
    ] = None,
    grpc_uds: Annotated[
        Path | None, _opt("Also serve it over gRPC on this Unix socket (unix:PATH)", "grpc_uds")
    ] = None,
    max_batch: Annotated[
        int | None, _opt("Most items per runtime batch (default: the artifact's)", "max_batch")
    ] = None,
    max_wait_ms: Annotated[float, _opt("Longest a batch waits to fill while the runtime is busy", "max_wait_ms")] = (
        _D.max_wait_ms
    ),
    max_batch_tokens: Annotated[int, _opt("Most padded tokens per batch", "max_batch_tokens")] = _D.max_batch_tokens,
    max_padding: Annotated[
        float, _opt("Most share of a batch's tokens that may be padding (1: no limit)", "max_padding")
    ] = _D.max_padding,
    max_queue: Annotated[int, _opt("Most items waiting; beyond it requests get 429", "max_queue")] = _D.max_queue,
    max_queue_ms: Annotated[
        float | None,
        _opt(
            "Refuse (429) a request predicted to wait longer than this in the queue (default: its deadline)",
            "max_queue_ms",
        ),
    ] = None,
    max_items: Annotated[
        int | None, _opt("Most inputs in one request, else 413 (default: 2048, or --max-queue if lower)", "max_items")
    ] = None,
    max_request_bytes: Annotated[
        int | None, _opt("Largest request body, else 413 (default: 4 MiB; image models 32 MiB)", "max_request_bytes")
    ] = None,
    timeout_ms: Annotated[int, _opt("Per-request deadline (else 504)", "timeout_ms")] = _D.timeout_ms,
    cache: Annotated[str, _opt("memory, off, or redis://HOST:PORT/DB (memory in front of Redis)", "cache")] = _D.cache,
    cache_ttl: Annotated[int, _opt("Seconds a cache entry lives (in memory and in Redis)", "cache_ttl")] = _D.cache_ttl,
    cache_memory_mb: Annotated[float, _opt("In-process cache size", "cache_memory_mb")] = _D.cache_memory_mb,
    sessions: Annotated[int | None, _opt("Runtime sessions (workers) (default: the artifact's)", "sessions")] = None,
    device: Annotated[str | None, _opt(DEVICE_HELP, "device")] = None,
    access_log: Annotated[bool, _opt("One JSON line per request on stderr", "access_log")] = _D.access_log,
    drain_timeout_s: Annotated[float, _opt("On SIGTERM, how long in-flight work may finish", "drain_timeout_s")] = (
        _D.drain_timeout_s
    ),
    served_model_name: Annotated[
        list[str] | None, _opt("Another name for the model (repeatable; the first is shown)", "served_model_names")
    ] = None,
    min_warm: Annotated[int, _opt("Sessions opened and warmed on every model path, at least", "min_warm")] = (
        _D.min_warm
    ),
    features: Annotated[
        str | None, _opt("postgresql://USER@HOST:PORT/DB: where requests' entity ids find their features", "features")
    ] = None,
    features_schema: Annotated[str, _opt("The schema the feature tables are in", "features_schema")] = (
        _D.features_schema
    ),
    feature_ttl: Annotated[
        list[str] | None,
        _opt("GROUP=SECONDS: a feature group's TTL (repeatable; default: the artifact's)", "feature_ttl"),
    ] = None,
    feature_max_stale_s: Annotated[
        float,
        _opt("While the store is down, how long past its TTL a cached group may be served", "feature_max_stale_s"),
    ] = _D.feature_max_stale_s,
    feature_timeout_ms: Annotated[
        float, _opt("Per feature-group read, before the store counts as down", "feature_timeout_ms")
    ] = _D.feature_timeout_ms,
    jobs: Annotated[
        str | None, _opt("redis://HOST:PORT/DB: turn on POST /v1/jobs, durable in this Redis (default: off)", "jobs")
    ] = None,
    jobs_concurrency: Annotated[int, _opt("Jobs this server runs at once", "jobs_concurrency")] = _D.jobs_concurrency,
    jobs_ttl: Annotated[int, _opt("Seconds a finished job's result is kept", "jobs_ttl")] = _D.jobs_ttl,
    jobs_max_items: Annotated[int, _opt("Most instances in one job, else 413", "jobs_max_items")] = _D.jobs_max_items,
    jobs_max_pending: Annotated[
        int, _opt("Most jobs queued or running for this model, else 429", "jobs_max_pending")
    ] = _D.jobs_max_pending,
    jobs_max_request_bytes: Annotated[
        int, _opt("Largest POST /v1/jobs body, else 413", "jobs_max_request_bytes")
    ] = _D.jobs_max_request_bytes,
    jobs_chunk_items: Annotated[
        int, _opt("Instances per runtime call of a job (progress moves per chunk)", "jobs_chunk_items")
    ] = _D.jobs_chunk_items,
    otlp_endpoint: Annotated[
        str | None,
        _opt(
            "http(s)://HOST:4318: export OpenTelemetry spans over OTLP/HTTP (or set OTEL_EXPORTER_OTLP_ENDPOINT)",
            "otlp_endpoint",
        ),
    ] = None,
    runtime_nice: Annotated[
        int,
        _opt("CPU priority steps the runtime workers run below the event loop (Linux; 0: the same)", "runtime_nice"),
    ] = _D.runtime_nice,
    drift_window: Annotated[int, _opt("Items in the live drift window (the latest)", "drift_window")] = (
        _D.drift_window
    ),
    drift_min_items: Annotated[
        int, _opt("Items the drift window needs before figures are reported", "drift_min_items")
    ] = _D.drift_min_items,
    drift_max_age_s: Annotated[
        float, _opt("Seconds after which an item leaves the drift window", "drift_max_age_s")
    ] = _D.drift_max_age_s,
    api_key: Annotated[
        list[str] | None,
        _opt("Require Authorization: Bearer KEY on every route but health and /metrics (repeatable)", "api_keys"),
    ] = None,
    api_keys_file: Annotated[
        Path | None, _opt("Also take the keys in this file, one per line (# comments)", "api_keys_file")
    ] = None,
    metrics_auth: Annotated[bool, _opt("Require a key on /metrics too", "metrics_auth")] = _D.metrics_auth,
    ssl_certfile: Annotated[
        Path | None, _opt("Serve HTTPS (and gRPC over TLS) with this certificate chain (PEM)", "ssl_certfile")
    ] = None,
    ssl_keyfile: Annotated[Path | None, _opt("The certificate's private key (PEM)", "ssl_keyfile")] = None,
    require_id: Annotated[
        str | None, _opt("Refuse to start unless the artifact's id is this (inferopt inspect shows it)", "require_id")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error", envvar="INFEROPT_LOG_LEVEL")] = "info",
) -> None:
    """Serve an artifact over HTTP with micro-batching, caching and metrics: OpenAI-compatible /v1/embeddings
    (text encoders), KServe v1 :predict and Open Inference Protocol v2 /v2/models/{name}/infer (every task), and
    the Open Inference Protocol v2 over gRPC with --grpc-port / --grpc-uds."""
    config = ServeConfig(
        artifact=artifact,
        host=host,
        port=port,
        uds=uds,
        grpc_port=grpc_port,
        grpc_uds=grpc_uds,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_batch_tokens=max_batch_tokens,
        max_padding=max_padding,
        max_queue=max_queue,
        max_queue_ms=max_queue_ms,
        max_items=max_items,
        max_request_bytes=max_request_bytes,
        timeout_ms=timeout_ms,
        cache=cache,
        cache_ttl=cache_ttl,
        cache_memory_mb=cache_memory_mb,
        sessions=sessions,
        device=device,
        access_log=access_log,
        drain_timeout_s=drain_timeout_s,
        served_model_names=tuple(served_model_name or ()),
        min_warm=min_warm,
        features=features,
        features_schema=features_schema,
        feature_ttl=tuple(feature_ttl or ()),
        feature_max_stale_s=feature_max_stale_s,
        feature_timeout_ms=feature_timeout_ms,
        jobs=jobs,
        jobs_concurrency=jobs_concurrency,
        jobs_ttl=jobs_ttl,
        jobs_max_items=jobs_max_items,
        jobs_max_pending=jobs_max_pending,
        jobs_max_request_bytes=jobs_max_request_bytes,
        jobs_chunk_items=jobs_chunk_items,
        otlp_endpoint=otlp_endpoint,
        runtime_nice=runtime_nice,
        drift_window=drift_window,
        drift_min_items=drift_min_items,
        drift_max_age_s=drift_max_age_s,
        api_keys=tuple(api_key or ()),
        api_keys_file=api_keys_file,
        metrics_auth=metrics_auth,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        require_id=require_id,
    )
    serve(config, log_level=log_level)


def serve(config: ServeConfig, *, log_level: str = "info") -> None:
    """Check the artifact (hashes) up front, so a bad one is a one-line error; then load it behind uvicorn."""
    configure_logging(log_level)
    # The tokenizer must not spawn its own thread pool: the cores belong to the runtime sessions.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app = build_app(config)
    run_server(app, config)
    state = app.state.inferopt
    if state.phase == "failed":
        raise InferoptError(f"The server stopped: {state.detail}", "check the artifact with inferopt inspect")


def build_app(config: ServeConfig, *, access_log: AccessLog | None = None) -> FastAPI:
    """The app `inferopt serve` runs, for any ASGI server (uvicorn here, a Ray Serve replica in deploy/ray.py):
    the artifact checked (hashes) and its task resolved now, so a bad one is a one-line error; the model itself
    loads when the app starts."""
    from functools import partial

    from inferopt.artifact import load_artifact
    from inferopt.serve.app import create_app
    from inferopt.serve.model import ServingModel
    from inferopt.serve.tls import check_tls
    from inferopt.tasks.registry import for_artifact

    if config.artifact is None:
        raise InferoptError("No artifact given", "pass the folder inferopt optimize wrote")
    check_tls(config.ssl_certfile, config.ssl_keyfile)
    artifact = load_artifact(config.artifact)
    config.check_artifact_id(artifact.artifact_id)
    task = for_artifact(artifact.manifest, artifact.path)  # a task this inferopt cannot serve: a one-line error now
    _check_features(config, task)
    placements = artifact.resolve_placements(config.device)  # a GPU this machine lacks: a one-line error now
    load = partial(
        ServingModel.from_artifact,
        artifact,
        sessions=config.sessions,
        aliases=config.served_model_names,
        min_warm=config.min_warm,
        placements=placements,
    )
    return create_app(config, load, access_log=access_log)


def _check_features(config: ServeConfig, task: Any) -> None:
    """The feature flags fit the artifact: --features only for a task that reads stored features, and each
    --feature-ttl names one of its groups."""
    spec = task.stored_features()
    if spec is None:
        if config.features is not None or config.feature_ttl:
            raise InferoptError(
                f"--features is for models whose requests name entities; this artifact's task ({task.name}) reads none",
                "drop --features and --feature-ttl",
            )
        return
    spec.with_ttls(config.feature_ttls)


def run_server(app: FastAPI, config: ServeConfig, *, sock: socket.socket | None = None) -> None:
    """uvicorn with httptools and uvloop. SIGTERM/SIGINT first mark the app draining (new work: 503), then
    uvicorn stops accepting, waits for in-flight responses, and the lifespan drains the batcher."""
    import uvicorn

    state = app.state.inferopt

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            state.begin_drain()
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        uds=str(config.uds) if config.uds else None,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        # Not rounded to an int as uvicorn's hint says: it reaches asyncio.wait_for, which takes fractions.
        timeout_graceful_shutdown=config.drain_timeout_s,  # type: ignore[arg-type]
        # Longer than the idle timeout of the pools and balancers in front (60 s is common): a server that
        # closes an idle connection first races the client reusing it, and that request is lost.
        timeout_keep_alive=KEEP_ALIVE_S,
        server_header=False,
        ssl_certfile=str(config.ssl_certfile) if config.ssl_certfile else None,
        ssl_keyfile=str(config.ssl_keyfile) if config.ssl_keyfile else None,
    )
    server = DrainingServer(uv_config)

    def fatal(_exc: BaseException) -> None:
        server.should_exit = True

    state.on_fatal = fatal
    server.run(sockets=[sock] if sock is not None else None)


def configure_logging(level: str) -> None:
    """Plain lines for the server's own logs (access-log lines are bare JSON, written by serve/access_log.py)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise InferoptError(f"--log-level {level!r} is not a level", "use debug, info, warning or error")
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(numeric)
