"""Prometheus metrics with the names of DESIGN.md. Histograms (not summaries) with power-of-two buckets, so
that percentiles aggregate across replicas. Each app has its own registry: two apps in one process (tests)
never share or collide."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
STAGES = ("tokenize", "queue", "inference", "postprocess")


def power_of_two_buckets(low_exp: int, high_exp: int) -> list[float]:
    return [2.0**exp for exp in range(low_exp, high_exp + 1)]


class ServeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        seconds = power_of_two_buckets(-16, 6)  # ~15 us .. 64 s
        self.request_duration = Histogram(
            "inferopt_request_duration_seconds",
            "Time from request start to response start, by route and status",
            ["route", "status"],
            buckets=seconds,
            registry=reg,
        )
        self.stage_duration = Histogram(
            "inferopt_stage_duration_seconds",
            "Time per request in each server stage (max over its items)",
            ["stage"],
            buckets=seconds,
            registry=reg,
        )
        self.batch_size = Histogram(
            "inferopt_batch_size", "Items per runtime batch", buckets=power_of_two_buckets(0, 12), registry=reg
        )
        self.batch_tokens = Histogram(
            "inferopt_batch_tokens",
            "Padded tokens (rows x longest row) per runtime batch",
            buckets=power_of_two_buckets(2, 18),
            registry=reg,
        )
        self.queue_depth = Gauge("inferopt_queue_depth", "Items waiting for a runtime worker", registry=reg)
        self.cache_requests = Counter(
            "inferopt_cache_requests",
            "Cache lookups per tier (memory, redis) and result (hit, miss, error)",
            ["tier", "result"],
            registry=reg,
        )
        self.rejected = Counter("inferopt_rejected", "Requests refused, by reason", ["reason"], registry=reg)
        self._redis_up: Gauge | None = None
        # Bound once: labels() takes a lock and builds a key on every call, on the hot path of every request.
        self._stage_children = {stage: self.stage_duration.labels(stage) for stage in STAGES}

    @property
    def redis_up(self) -> Gauge:
        """Registered on first use: a server without a Redis tier must not report Redis as down."""
        if self._redis_up is None:
            self._redis_up = Gauge(
                "inferopt_cache_redis_up",
                "1 while the Redis tier answers, 0 while it is unreachable",
                registry=self.registry,
            )
        return self._redis_up

    def track_queue_depth(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def observe_batch(self, items: int, padded_tokens: int, seconds: float) -> None:
        """The batcher's observer; called from its worker threads (prometheus_client is thread-safe)."""
        self.batch_size.observe(items)
        self.batch_tokens.observe(padded_tokens)

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, histogram in self._stage_children.items():
            histogram.observe(timings[stage])

    def cache(self, tier: str, result: str, count: int = 1) -> None:
        if count:
            self.cache_requests.labels(tier, result).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
