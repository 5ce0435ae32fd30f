"""`inferopt deploy ray` and `inferopt export triton`: hand an artifact to an engine that already runs elsewhere,
Ray Serve (deploy: started from here) or Triton (export: a model repository it loads).

Kept light to import (the CLI imports it to register the commands): Ray and onnx are imported only when a command
runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from inferopt.runtime.placement import DEVICE_HELP
from inferopt.serve.config import ServeConfig, env_var

deploy_app = typer.Typer(
    help="Hand an artifact to a distributed serving engine (Ray Serve).", no_args_is_help=True, add_completion=False
)
_D = ServeConfig()


def _serve_opt(help_text: str, field: str) -> typer.models.OptionInfo:
    """A per-replica serve flag: the same name and INFEROPT_* variable as `inferopt serve`'s."""
    return typer.Option(help=help_text, envvar=env_var(field), rich_help_panel="Each replica (as inferopt serve)")


def _ray_opt(help_text: str, envvar: str | None = None) -> typer.models.OptionInfo:
    return typer.Option(help=help_text, envvar=envvar, rich_help_panel="Ray Serve")


@deploy_app.command("ray")
def ray_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder written by optimize (on every node, same path)")],
    address: Annotated[
        str | None,
        _ray_opt("An existing Ray cluster (auto, HOST:6379, ray://HOST:10001); default: start one here", "RAY_ADDRESS"),
    ] = None,
    host: Annotated[
        str, _ray_opt("Interface of Ray's HTTP proxy (when this command starts Serve) and of --metrics-port")
    ] = "127.0.0.1",
    port: Annotated[int, _ray_opt("Port of Ray's HTTP proxy (when this command starts Serve)")] = 8000,
    replicas: Annotated[int | None, _ray_opt("A fixed number of replicas (default 1)")] = None,
    min_replicas: Annotated[int | None, _ray_opt("Autoscaling: the fewest replicas (0: scale to zero)")] = None,
    max_replicas: Annotated[int | None, _ray_opt("Autoscaling: the most replicas")] = None,
    target_ongoing_requests: Annotated[
        float, _ray_opt("Autoscaling: ongoing requests per replica to aim at (about a batch in flight)")
    ] = 32.0,
    max_ongoing_requests: Annotated[
        int, _ray_opt("Most requests in one replica at once; beyond it they wait in Ray's router")
    ] = 256,
    num_cpus: Annotated[float, _ray_opt("CPUs Ray reserves for each replica")] = 1.0,
    route_prefix: Annotated[str, _ray_opt("Path the application answers under")] = "/",
    name: Annotated[str, _ray_opt("The Ray Serve application's name")] = "inferopt",
    blocking: Annotated[
        bool, _ray_opt("Stay until Ctrl-C/SIGTERM, then remove it; --no-blocking leaves it on the cluster (--address)")
    ] = True,
    metrics_port: Annotated[
        int | None, _ray_opt("Each replica's own /metrics on --host:PORT + its rank on the node (for Prometheus)")
    ] = None,
    high_throughput: Annotated[
        bool,
        _ray_opt(
            "Ray Serve's high-throughput mode on the local cluster: HAProxy ingress, gRPC data plane (Ray >= 2.55)"
        ),
    ] = False,
    max_batch: Annotated[
        int | None, _serve_opt("Most items per runtime batch (default: the artifact's)", "max_batch")
    ] = None,
    max_wait_ms: Annotated[
        float, _serve_opt("Longest a batch waits to fill while the runtime is busy", "max_wait_ms")
    ] = _D.max_wait_ms,
    max_batch_tokens: Annotated[int, _serve_opt("Most padded tokens per batch", "max_batch_tokens")] = (
        _D.max_batch_tokens
    ),
    max_padding: Annotated[float, _serve_opt("Most share of a batch's tokens that may be padding", "max_padding")] = (
        _D.max_padding
    ),
    max_queue: Annotated[int, _serve_opt("Most items waiting; beyond it requests get 429", "max_queue")] = (
        _D.max_queue
    ),
    max_queue_ms: Annotated[
        float | None, _serve_opt("Refuse (429) a request predicted to wait longer than this", "max_queue_ms")
    ] = None,
    timeout_ms: Annotated[int, _serve_opt("Per-request deadline (else 504)", "timeout_ms")] = _D.timeout_ms,
    sessions: Annotated[
        int | None, _serve_opt("Runtime sessions per replica (default: the artifact's)", "sessions")
    ] = None,
    device: Annotated[str | None, _serve_opt(DEVICE_HELP, "device")] = None,
    cache: Annotated[
        str, _serve_opt("memory, off, or redis://HOST:PORT/DB (shared by every replica)", "cache")
    ] = _D.cache,
    cache_ttl: Annotated[int, _serve_opt("Seconds a cache entry lives", "cache_ttl")] = _D.cache_ttl,
    cache_memory_mb: Annotated[float, _serve_opt("In-process cache size per replica", "cache_memory_mb")] = (
        _D.cache_memory_mb
    ),
    access_log: Annotated[bool, _serve_opt("One JSON line per request on stderr", "access_log")] = _D.access_log,
    drain_timeout_s: Annotated[
        float, _serve_opt("On removal, how long a replica's in-flight work may finish", "drain_timeout_s")
    ] = _D.drain_timeout_s,
    served_model_name: Annotated[
        list[str] | None, _serve_opt("Another name for the model (repeatable)", "served_model_names")
    ] = None,
    api_key: Annotated[
        list[str] | None,
        _serve_opt("Require Authorization: Bearer KEY on every route but health (repeatable)", "api_keys"),
    ] = None,
    api_keys_file: Annotated[
        Path | None,
        _serve_opt("Also the keys in this file (each replica reads it: one path on every node)", "api_keys_file"),
    ] = None,
    metrics_auth: Annotated[bool, _serve_opt("Require a key on /metrics too", "metrics_auth")] = _D.metrics_auth,
    require_id: Annotated[
        str | None, _serve_opt("Refuse to deploy unless the artifact's id is this", "require_id")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="inferopt's log level in each replica: debug, info, warning, error")
    ] = "info",
) -> None:
    """Serve an artifact with Ray Serve: inferopt's server in each replica, behind Ray's HTTP proxy.

    Each replica answers the routes `inferopt serve` answers, with its cache, micro-batcher and /metrics; Ray runs
    a fixed number of replicas (--replicas) or autoscales them on ongoing requests (--min/--max-replicas)."""
    from inferopt.deploy.ray import RayDeployConfig, deploy

    replica = ServeConfig(
        artifact=artifact,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_batch_tokens=max_batch_tokens,
        max_padding=max_padding,
        max_queue=max_queue,
        max_queue_ms=max_queue_ms,
        timeout_ms=timeout_ms,
        sessions=sessions,
        device=device,
        cache=cache,
        cache_ttl=cache_ttl,
        cache_memory_mb=cache_memory_mb,
        access_log=access_log,
        drain_timeout_s=drain_timeout_s,
        served_model_names=tuple(served_model_name or ()),
        api_keys=tuple(api_key or ()),
        api_keys_file=api_keys_file,
        metrics_auth=metrics_auth,
        require_id=require_id,
    )
    if api_keys_file is not None:
        replica.keys()  # an empty or unreadable file is refused here, not in every replica
    config = RayDeployConfig(
        serve=replica,
        address=address,
        host=host,
        port=port,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_ongoing_requests=target_ongoing_requests,
        max_ongoing_requests=max_ongoing_requests,
        num_cpus=num_cpus,
        route_prefix=route_prefix,
        name=name,
        blocking=blocking,
        high_throughput=high_throughput,
        metrics_port=metrics_port,
    )
    deploy(config, log_level=_level(log_level), echo=typer.echo)


def _level(text: str) -> str:
    from inferopt.errors import InputError

    if text.lower() not in ("debug", "info", "warning", "error"):
        raise InputError(f"--log-level {text!r} is not a level", "use debug, info, warning or error")
    return text.lower()


export_app = typer.Typer(
    help="Hand an artifact to another serving engine (Triton).", no_args_is_help=True, add_completion=False
)


@export_app.command("triton")
def export_triton_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder written by optimize")],
    out: Annotated[Path, typer.Argument(help="The Triton model repository to write (or add to, with --force)")],
    name: Annotated[
        str | None, typer.Option(help="Triton model name (default: the artifact's model name, made URL-safe)")
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Most rows per request and batch (default: the benchmarked batch size)")
    ] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(help="Dynamic batcher's queue delay (default: serve's --max-wait-ms default)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Write into an existing OUT, replacing only models inferopt exported there")
    ] = False,
) -> None:
    """A Triton model repository: config.pbtxt + 1/model.onnx per model path, and a README for clients."""
    from inferopt.deploy.triton import TritonOptions, export_triton

    options = TritonOptions(name=name, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
    models = export_triton(artifact, out, options, force=force)
    console = Console(soft_wrap=True, highlight=False)
    console.print(f"Triton models {', '.join(model.name for model in models)} written to {out}")
    console.print(f"What a client sends, and how to start Triton: {out / models[0].name / 'README.md'}")
