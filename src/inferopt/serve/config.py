"""ServeConfig: the one source of truth for `inferopt serve`. Each field is a CLI flag (`--max-wait-ms`) and an
environment variable (`INFEROPT_MAX_WAIT_MS`); the flag wins over the variable.

Fields left as None take the artifact's benchmarked settings (batch size, sessions) when the model loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from inferopt.errors import InputError
from inferopt.runtime.placement import check_device

CACHE_OFF = "off"
CACHE_MEMORY = "memory"
REDIS_SCHEMES = ("redis", "rediss", "unix")
POSTGRES_SCHEMES = ("postgresql", "postgres")
OPENAI_MAX_ITEMS = 2048  # OpenAI's embeddings API takes at most this many inputs per request
JOBS_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # a job carries many inputs: its body may be larger than a request's


def env_var(field: str) -> str:
    return f"INFEROPT_{field.upper()}"


@dataclass(frozen=True)
class ServeConfig:
    artifact: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    uds: Path | None = None
    grpc_port: int | None = None  # Open Inference Protocol v2 over gRPC on host:PORT (0: any free one); None: off
    grpc_uds: Path | None = None  # ... and/or on this Unix socket (unix:PATH)
    max_batch: int | None = None  # None: the artifact's benchmarked batch size
    max_wait_ms: float = 5.0
    max_batch_tokens: int = 16384  # padded tokens (rows x longest row) per batch
    max_padding: float = 0.2  # most share of a batch's padded tokens that may be padding (1: no limit)
    max_queue: int = 4096  # items waiting for a runtime worker
    max_queue_ms: float | None = None  # longest predicted queue wait a request is admitted to (None: its deadline)
    max_items: int | None = None  # inputs in one request; None: OpenAI's own limit, 2048, or --max-queue if lower
    max_request_bytes: int | None = None  # None: the task's own limit (text 4 MiB, images 32 MiB)
    timeout_ms: int = 30_000
    cache: str = CACHE_MEMORY  # memory | off | redis://HOST:PORT/DB
    cache_ttl: int = 86_400  # seconds an entry lives, in memory and in Redis (keys carry the artifact id)
    cache_memory_mb: float = 256.0
    sessions: int | None = None  # None: the artifact's benchmarked number of runtime sessions
    device: str | None = None  # "cpu": run there whatever the artifact was benchmarked on; None: where it was
    access_log: bool = True
    drain_timeout_s: float = 30.0
    served_model_names: tuple[str, ...] = ()  # names the model also answers to (the first one is shown)
    min_warm: int = 1  # sessions opened and warmed on every model path, at least
    features: str | None = None  # postgresql://... : the store of the features that requests name by entity id
    features_schema: str = "inferopt_risk"  # the schema the feature groups' tables are read from
    feature_ttl: tuple[str, ...] = ()  # GROUP=SECONDS: a group's TTL other than the artifact's
    feature_max_stale_s: float = 60.0  # while the store is down, how far past its TTL a cached group is served
    feature_timeout_ms: float = 200.0  # per feature-group read, before the store counts as down
    jobs: str | None = None  # redis://HOST:PORT/DB: the durable job store; None: /v1/jobs answers 503
    jobs_concurrency: int = 1  # jobs one server runs at once; the rest wait queued
    jobs_ttl: int = 3600  # seconds a finished job's status and result are kept
    jobs_max_items: int = 10_000  # instances in one job
    jobs_max_pending: int = 100  # jobs queued or running (for this model, across replicas); beyond it 429
    jobs_max_request_bytes: int = JOBS_MAX_REQUEST_BYTES
    jobs_chunk_items: int = 64  # instances per service call: progress moves, and a job never fills the queue
    otlp_endpoint: str | None = None  # http(s)://collector:4318: OpenTelemetry spans go to its /v1/traces
    runtime_nice: int = 10  # CPU priority steps the runtime workers run below the event loop (Linux)
    drift_window: int = 1000  # items in the live drift window (the latest ones)
    drift_min_items: int = 100  # items the window needs before drift figures are reported
    drift_max_age_s: float = 3600.0  # items older than this leave the window, however few are left
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # Authorization: Bearer KEY on all but health
    api_keys_file: Path | None = None  # ... and/or the keys in this file, one per line (serve/auth.py)
    metrics_auth: bool = False  # /metrics needs a key too (it is open by default, for the scraper)
    ssl_certfile: Path | None = None  # TLS on HTTP and gRPC: the certificate chain (PEM) ...
    ssl_keyfile: Path | None = None  # ... and its private key (PEM)
    require_id: str | None = None  # refuse to serve any artifact but the one with this id

    def __post_init__(self) -> None:
        positive = (
            "port",
            "max_batch_tokens",
            "max_queue",
            "max_queue_ms",
            "max_items",
            "max_request_bytes",
            "timeout_ms",
        )
        features = ("min_warm", "feature_timeout_ms")
        jobs = ("jobs_concurrency", "jobs_ttl", "jobs_max_items", "jobs_max_pending", "jobs_max_request_bytes")
        drift = ("drift_window", "drift_min_items")
        for name in (*positive, *features, *jobs, *drift, "jobs_chunk_items", "max_batch", "sessions", "cache_ttl"):
            value = getattr(self, name)
            if value is not None and value < 1 and not (name == "port" and value == 0):
                raise InputError(f"{_flag(name)} {value} must be at least 1", f"set {_flag(name)} or {env_var(name)}")
        for name in ("port", "grpc_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise InputError(f"{_flag(name)} {value} is not a TCP port", "give a port from 0 to 65535")
        if self.grpc_port is not None and self.grpc_port != 0 and self.grpc_port == self.port and self.uds is None:
            raise InputError(
                f"--grpc-port {self.grpc_port} is the HTTP --port too", "give gRPC a port of its own (e.g. 8001)"
            )
        if not 0 <= self.runtime_nice <= 19:
            raise InputError(f"--runtime-nice {self.runtime_nice} is not a niceness step", "give 0 to 19")
        check_device(self.device)
        for name in ("max_wait_ms", "cache_memory_mb", "drain_timeout_s", "feature_max_stale_s"):
            if getattr(self, name) < 0:
                raise InputError(f"{_flag(name)} {getattr(self, name)} is negative", "give a value >= 0")
        if not self.drift_max_age_s > 0:
            raise InputError(f"--drift-max-age-s {self.drift_max_age_s} must be positive", "give seconds > 0")
        if self.drift_min_items > self.drift_window:
            raise InputError(
                f"--drift-min-items {self.drift_min_items} exceeds --drift-window {self.drift_window}: "
                "drift would never be reported",
                "lower --drift-min-items or raise --drift-window",
            )
        if not 0.0 <= self.max_padding <= 1.0:
            raise InputError(f"--max-padding {self.max_padding} is not a share", "give a value from 0 to 1")
        if self.max_items is not None and self.max_items > self.max_queue:
            raise InputError(
                f"--max-items {self.max_items} exceeds --max-queue {self.max_queue}: such a request could never fit",
                "lower --max-items or raise --max-queue",
            )
        parse_cache(self.cache)
        if self.features is not None and urlsplit(self.features).scheme not in POSTGRES_SCHEMES:
            raise InputError(
                f"--features {self.features!r} is not a PostgreSQL URL", "use postgresql://USER@HOST:PORT/DATABASE"
            )
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.features_schema):
            raise InputError(f"--features-schema {self.features_schema!r} is not a plain identifier", "use a-z, 0-9, _")
        _ = self.feature_ttls
        if self.jobs is not None:
            parse_redis_url(self.jobs, "--jobs")
        if self.jobs is not None and self.jobs_chunk_items > self.max_queue:
            raise InputError(
                f"--jobs-chunk-items {self.jobs_chunk_items} exceeds --max-queue {self.max_queue}: "
                "a chunk could never fit",
                "lower --jobs-chunk-items or raise --max-queue",
            )
        if self.otlp_endpoint is not None:
            parts = urlsplit(self.otlp_endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InputError(
                    f"--otlp-endpoint {self.otlp_endpoint!r} is not an http(s) URL",
                    "give the collector's OTLP/HTTP address, e.g. http://127.0.0.1:4318",
                )
        from inferopt.serve.auth import check_key

        for key in self.api_keys:
            check_key(key, "--api-key")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise InputError(
                "--ssl-certfile and --ssl-keyfile go together", "give both (the certificate and its private key)"
            )
        if self.metrics_auth and not (self.api_keys or self.api_keys_file):
            raise InputError("--metrics-auth needs API keys", "give --api-key or --api-keys-file")
        for name in self.served_model_names:
            if not name or "/" in name or not name.isprintable():
                raise InputError(
                    f"--served-model-name {name!r} cannot be a model name", "use printable characters without '/'"
                )

    @property
    def items_per_request(self) -> int:
        """The most inputs one request may carry: never more than the queue holds, or it could never fit."""
        return self.max_items if self.max_items is not None else min(OPENAI_MAX_ITEMS, self.max_queue)

    @property
    def feature_ttls(self) -> dict[str, float]:
        """--feature-ttl GROUP=SECONDS, as a dict."""
        ttls = {}
        for entry in self.feature_ttl:
            group, _, seconds = entry.partition("=")
            try:
                ttls[group.strip()] = float(seconds)
            except ValueError:
                ttls[group.strip()] = -1.0
            if not group.strip() or not ttls[group.strip()] > 0:
                raise InputError(f"--feature-ttl {entry!r} is not GROUP=SECONDS", "e.g. --feature-ttl accounts=300")
        return ttls

    def keys(self) -> tuple[str, ...]:
        """--api-key and the keys in --api-keys-file (read now: at start-up, where an empty file is refused)."""
        from inferopt.serve.auth import read_keys_file

        return self.api_keys + (read_keys_file(self.api_keys_file) if self.api_keys_file else ())

    def check_artifact_id(self, artifact_id: str) -> None:
        """--require-id: a deployment pinned to one exact artifact refuses any other (the id covers every file and
        every setting of the manifest)."""
        if self.require_id is not None and self.require_id != artifact_id:
            raise InputError(
                f"--require-id {self.require_id}: this artifact is {artifact_id}",
                "serve the artifact that id names, or update the pin",
            )

    @property
    def cache_enabled(self) -> bool:
        return self.cache != CACHE_OFF

    @property
    def redis_url(self) -> str | None:
        return self.cache if urlsplit(self.cache).scheme in REDIS_SCHEMES else None


def parse_cache(value: str) -> str:
    """Accept `memory`, `off` or a Redis URL (`redis://HOST:PORT/DB`); anything else is a one-line error."""
    if value in (CACHE_MEMORY, CACHE_OFF):
        return value
    return parse_redis_url(value, "--cache", "use memory, off, or ")


def parse_redis_url(value: str, flag: str, hint: str = "use ") -> str:
    """A Redis URL (`redis://HOST:PORT/DB`, rediss://, unix://), or a one-line error naming `flag`."""
    parts = urlsplit(value)
    if parts.scheme not in REDIS_SCHEMES:
        raise InputError(
            f"{flag} {value!r} is not understood", f"{hint}redis://HOST:PORT/DB (e.g. redis://127.0.0.1:6379/0)"
        )
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise InputError(f"{flag} {value!r}: the database {db!r} is not a number", "use redis://HOST:PORT/DB")
    return value


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")
