"""`inferopt deploy ray ARTIFACT`: the artifact as a Ray Serve application, inferopt's own server in each replica.

Each replica runs the app `inferopt serve` runs (`serve.app.create_app`: the same routes, task code, cache,
micro-batcher and Prometheus metrics) behind Ray Serve's ASGI ingress (ray_replica.py); Ray adds its HTTP proxy
in front, the replica count or autoscaling on ongoing requests, health checks and rolling restarts. Batching stays
inferopt's batcher inside each replica rather than `@serve.batch`: it forms batches by tokens and padding and
admits a request by its predicted wait, which `@serve.batch` (a count and a timeout) does not.

Ray is imported only inside the functions that need it, so `import inferopt` and the CLI stay light; without
it, `deploy()` is a one-line error naming `pip install 'inferopt[ray]'`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from inferopt.artifact import Artifact
from inferopt.errors import InferoptError, InputError
from inferopt.serve.config import ServeConfig

INSTALL_HINT = "pip install 'inferopt[ray]'"
DEPLOYMENT_NAME = "inferopt"
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a local Ray's services take 127.0.0.1, not the LAN IP
# Ray Serve's high-throughput mode (Ray >= 2.55): HAProxy as the HTTP ingress, straight to each replica's own HTTP
# server, and the throughput optimizations (gRPC data plane, user code on the replica's main loop). Read by every
# Ray process from its environment, so it is set before Ray starts.
HIGH_THROUGHPUT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
CONSTRUCTOR_RETRIES = 3  # a replica that cannot load the artifact fails the deployment after this many tries


@dataclass(frozen=True)
class RayDeployConfig:
    """What `inferopt deploy ray` hands Ray Serve; `serve` is what each replica serves (the artifact, batching,
    cache), as `inferopt serve` would. Replicas: a fixed `replicas`, or autoscaling between `min_replicas` and
    `max_replicas` on `target_ongoing_requests` per replica; neither: one replica."""

    serve: ServeConfig
    address: str | None = None  # an existing Ray cluster (ray://HOST:10001, HOST:6379, auto); None: a local one
    host: str = "127.0.0.1"  # Ray's HTTP proxy, when this command starts Serve
    port: int = 8000
    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 32.0  # the autoscaler's aim per replica: about a batch in flight
    max_ongoing_requests: int = 256  # beyond it Ray's router holds requests back, out of inferopt's admission
    num_cpus: float = 1.0  # Ray's CPU reservation per replica (the sessions' threads are the artifact's)
    num_gpus: float = 0.0  # Ray's GPU reservation per replica: 1 for an artifact benchmarked on a GPU
    route_prefix: str = "/"
    name: str = "inferopt"  # the Ray Serve application
    blocking: bool = True
    high_throughput: bool = False  # Ray Serve's high-throughput mode on the local cluster (HIGH_THROUGHPUT_ENV)
    metrics_port: int | None = None  # each replica's own metrics on host:PORT + its rank on the node; None: none

    def __post_init__(self) -> None:
        if self.serve.artifact is None:
            raise InputError("No artifact given", "pass the folder inferopt optimize wrote")
        scaling = self.min_replicas is not None or self.max_replicas is not None
        if self.replicas is not None and scaling:
            raise InputError(
                "--replicas is a fixed count; --min-replicas/--max-replicas ask for autoscaling",
                "pass one or the other",
            )
        if self.replicas is not None and self.replicas < 1:
            raise InputError(f"--replicas {self.replicas} must be at least 1", "give 1 or more")
        if self.min_replicas is not None and self.min_replicas < 0:
            raise InputError(f"--min-replicas {self.min_replicas} is negative", "give 0 or more")
        if scaling and self.max_replicas is None:
            raise InputError("--min-replicas needs --max-replicas", "give the most replicas autoscaling may start")
        if self.max_replicas is not None and self.max_replicas < max(1, self.min_replicas or 0):
            raise InputError(
                f"--max-replicas {self.max_replicas} is below --min-replicas {self.min_replicas or 0} (or 1)",
                "raise --max-replicas",
            )
        if not self.target_ongoing_requests > 0:
            raise InputError(f"--target-ongoing-requests {self.target_ongoing_requests:g} must be > 0", "e.g. 32")
        if self.max_ongoing_requests < 1:
            raise InputError(f"--max-ongoing-requests {self.max_ongoing_requests} must be at least 1", "e.g. 256")
        if scaling and self.target_ongoing_requests > self.max_ongoing_requests:
            raise InputError(
                f"--target-ongoing-requests {self.target_ongoing_requests:g} exceeds --max-ongoing-requests "
                f"{self.max_ongoing_requests}: no replica could ever reach it",
                "lower the target or raise --max-ongoing-requests",
            )
        if not self.num_cpus >= 0:
            raise InputError(f"--num-cpus {self.num_cpus:g} is negative", "give the CPUs Ray reserves per replica")
        if not 1 <= self.port <= 65535:
            raise InputError(f"--port {self.port} is not a TCP port", "give a port from 1 to 65535")
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535 - self.most_replicas:
            raise InputError(
                f"--metrics-port {self.metrics_port} leaves no room for {self.most_replicas} replica port(s)",
                f"give a port from 1 to {65535 - self.most_replicas}",
            )
        if self.metrics_port is not None and self.metrics_port <= self.port < self.metrics_port + self.most_replicas:
            raise InputError(
                f"--metrics-port {self.metrics_port} (and the {self.most_replicas - 1} above it) overlaps --port "
                f"{self.port}",
                "pick a metrics port range apart from the proxy's port",
            )
        prefix = self.route_prefix
        if not prefix.startswith("/") or (prefix != "/" and prefix.endswith("/")) or not prefix.isprintable():
            raise InputError(f"--route-prefix {prefix!r} is not a path prefix", "use / or /NAME, with no trailing /")
        if not self.name or "/" in self.name or not self.name.isprintable():
            raise InputError(f"--name {self.name!r} cannot name a Ray Serve application", "use printable, no '/'")
        if self.high_throughput and self.address is not None:
            raise InputError(
                "--high-throughput configures the local Ray this command starts; a running cluster has its own",
                "set RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1 on every node before ray start",
            )
        if not self.blocking and self.address is None:
            raise InputError(
                "--no-blocking needs --address: the local Ray cluster this command starts ends with it",
                "pass --address of a running cluster (ray start --head), or drop --no-blocking",
            )

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None

    @property
    def initial_replicas(self) -> int:
        if self.autoscaling:
            return max(1, self.min_replicas or 0)
        return self.replicas or 1

    @property
    def most_replicas(self) -> int:
        return self.max_replicas if self.max_replicas is not None else self.initial_replicas

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{'' if self.route_prefix == '/' else self.route_prefix}"

    def deployment_options(self) -> dict[str, Any]:
        """The options of `serve.deployment`."""
        options: dict[str, Any] = {
            "name": DEPLOYMENT_NAME,
            "ray_actor_options": {"num_cpus": self.num_cpus, **({"num_gpus": self.num_gpus} if self.num_gpus else {})},
            "max_ongoing_requests": self.max_ongoing_requests,
            # Ray stops routing to a replica, waits for what it holds, then runs the app's lifespan shutdown:
            # inferopt's drain (queued items finish, workers stop) within the same budget as `serve`'s.
            "graceful_shutdown_timeout_s": self.serve.drain_timeout_s,
            "max_constructor_retry_count": CONSTRUCTOR_RETRIES,
            # inferopt writes its own access log (--access-log); Ray's would be a second line per request.
            "logging_config": {"enable_access_log": False},
        }
        if self.autoscaling:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas or 0,
                "initial_replicas": self.initial_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.initial_replicas
        return options

    def describe(self) -> str:
        if self.autoscaling:
            replicas = (
                f"autoscaling {self.min_replicas or 0}..{self.max_replicas} replicas on "
                f"{self.target_ongoing_requests:g} ongoing requests each"
            )
        else:
            replicas = f"{self.initial_replicas} replica{'s' if self.initial_replicas > 1 else ''}"
        proxy = "HAProxy ingress (high-throughput mode)" if self.high_throughput else "Ray's HTTP proxy"
        gpus = f" and {self.num_gpus:g} GPU" if self.num_gpus else ""
        return f"{replicas}, {self.num_cpus:g} CPU{gpus} each, {proxy}"


def import_serve() -> Any:
    """`ray.serve`, or the one-line error that says how to install it."""
    try:
        from ray import serve
    except ImportError as exc:
        missing = f" ({exc.name} is missing)" if exc.name and exc.name != "ray" else ""
        raise InferoptError(
            f"inferopt deploy ray needs Ray Serve, which is not installed{missing}", INSTALL_HINT
        ) from None
    return serve


def application(config: RayDeployConfig, log_level: str = "info") -> Any:
    """The Ray Serve application (a bound deployment) of the artifact. Its class is pickled by reference: each
    replica imports inferopt.deploy.ray_replica, so inferopt must be installed where the replicas run."""
    from inferopt.deploy.ray_replica import InferoptReplica

    serve = import_serve()
    deployment = serve.deployment(serve.ingress()(InferoptReplica), **config.deployment_options())
    metrics = (config.host, config.metrics_port) if config.metrics_port is not None else None
    return deployment.bind(config.serve, log_level, metrics)


@dataclass
class RayDeployment:
    """An application `start` deployed; `stop` removes it (and the local cluster, if `start` made one)."""

    config: RayDeployConfig
    local: bool
    stopped: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        return self.config.url

    def wait(self) -> None:
        """Block until Ctrl-C (KeyboardInterrupt, raised to the caller) or SIGTERM (returns)."""
        done = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(1.0):
                pass
        finally:
            signal.signal(signal.SIGTERM, previous)

    def stop(self, *, delete: bool = True) -> None:
        """Delete the application (drained by Ray: in-flight requests finish, then each replica's lifespan
        drains inferopt's queue) and disconnect; a local cluster is shut down whole. `delete=False` leaves the
        application running on an existing cluster (--no-blocking)."""
        if self.stopped:
            return
        self.stopped = True
        import ray
        from ray import serve

        try:
            if self.local:
                serve.shutdown()
            elif delete:
                serve.delete(self.config.name)
        finally:
            ray.shutdown()

    def __enter__(self) -> RayDeployment:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start(config: RayDeployConfig, *, log_level: str = "info") -> RayDeployment:
    """Check the artifact here (a bad one is a one-line error before any Ray starts), connect to the cluster or
    start a local one (its services on loopback only), start Serve's HTTP proxy, deploy, and return once every
    replica is ready (loaded and warm)."""
    local = config.address is None
    if local:
        os.environ.setdefault(LOOPBACK_ONLY, "0")  # read when ray is imported: before the first import
    if config.high_throughput:
        os.environ.update(HIGH_THROUGHPUT_ENV)  # inherited by every process of the local cluster
    import_serve()
    config = _with_artifact(config, _checked_artifact(config.serve))
    import ray
    from ray import serve

    ray.init(address=config.address, include_dashboard=False if local else None, logging_level=logging.WARNING)
    deployment = RayDeployment(config, local)
    try:
        if local:
            _check_local_cpus(config, float(ray.cluster_resources().get("CPU", 0)))
        # Global to Serve on the cluster: where the proxy listens, and no second access line per request.
        serve.start(
            http_options={"host": config.host, "port": config.port}, logging_config={"enable_access_log": False}
        )
        try:
            serve.run(application(config, log_level), name=config.name, route_prefix=config.route_prefix)
        except RuntimeError as exc:  # what serve.run raises when the deployment fails (replicas could not start)
            raise InferoptError(
                f"Ray Serve could not start the replicas: {replica_failure(serve, config.name, exc)}",
                "see the replica logs (Ray's session logs, worker-*.err) and check the artifact with inferopt inspect",
            ) from exc
    except BaseException:
        deployment.stop()
        raise
    return deployment


def deploy(config: RayDeployConfig, *, log_level: str = "info", echo: Callable[[str], None] = print) -> None:
    """The command: deploy, say where it serves, then block until Ctrl-C or SIGTERM (and remove it), or with
    --no-blocking leave it running on the cluster."""
    deployment = start(config, log_level=log_level)
    echo(f"serving {config.serve.artifact} through Ray Serve at {deployment.url} ({config.describe()})")
    if not config.blocking:
        deployment.stop(delete=False)
        echo(f"left running on {config.address}; remove it with serve.delete({config.name!r}) from Python")
        return
    with deployment:
        echo("Ctrl-C (or SIGTERM) removes it")
        deployment.wait()


def replica_failure(serve: Any, name: str, exc: RuntimeError) -> str:
    """Why the replicas failed, in one line: the inferopt error a replica raised (Ray keeps its traceback in the
    deployment's status), else the status's or the exception's last line."""
    try:
        message = serve.status().applications[name].deployments[DEPLOYMENT_NAME].message
    except Exception:  # the status is a courtesy: the failure itself is already known
        message = ""
    lines = [line.strip() for line in f"{exc}\n{message}".splitlines() if line.strip()]
    ours = [line.partition(": ")[2] for line in lines if line.startswith("inferopt.errors.")]
    return ours[-1] if ours else (lines[-1] if lines else type(exc).__name__)


def _checked_artifact(config: ServeConfig) -> Artifact:
    """The artifact, after the same checks `inferopt serve` makes (its placement is checked by each replica, on
    the node it lands on)."""
    from inferopt.artifact import load_artifact
    from inferopt.tasks.registry import for_artifact

    if config.artifact is None:
        raise InferoptError("No artifact given", "pass the folder inferopt optimize wrote")
    artifact = load_artifact(config.artifact)
    config.check_artifact_id(artifact.artifact_id)
    for_artifact(artifact.manifest, artifact.path)
    return artifact


def _with_artifact(config: RayDeployConfig, artifact: Artifact) -> RayDeployConfig:
    """The artifact's absolute path (replicas run elsewhere), and a GPU per replica where it was benchmarked on
    one and is to run there (not with --device cpu)."""
    from dataclasses import replace

    placements = [artifact.placement, *artifact.path_placements.values()]
    on_gpu = any(p.on_gpu for p in placements) and config.serve.device is None
    return replace(
        config,
        serve=replace(config.serve, artifact=Path(artifact.path).resolve()),
        num_gpus=config.num_gpus or (1.0 if on_gpu else 0.0),
    )


def _check_local_cpus(config: RayDeployConfig, cpus: float) -> None:
    """On the local cluster the replicas must fit at once, or serve.run would wait for CPUs that never come."""
    needed = config.initial_replicas * config.num_cpus
    if needed > cpus:
        raise InputError(
            f"{config.initial_replicas} replica(s) x --num-cpus {config.num_cpus:g} need {needed:g} CPUs; "
            f"the local Ray cluster has {cpus:g}",
            "lower --num-cpus or the replica count, or pass --address of a larger cluster",
        )
