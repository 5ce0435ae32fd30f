"""Prometheus metrics with the names of DESIGN.md. Histograms (not summaries) with power-of-two buckets, so
that percentiles aggregate across replicas. Each app has its own registry: two apps in one process (tests)
never share or collide."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = CONTENT_TYPE_LATEST
STAGES = ("preprocess", "queue", "inference", "postprocess")


def power_of_two_buckets(low_exp: int, high_exp: int) -> list[float]:
    return [2.0**exp for exp in range(low_exp, high_exp + 1)]


class LoopHistogram:
    """One histogram series, observed from the event loop only: a bisect into plain lists, no lock.
    prometheus_client's Histogram takes a lock per value and walks its buckets in Python, about 0.8 us per
    observation; a request makes five (its duration and four stages)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # first bound >= value: its `le` bucket
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        buckets, total = [], 0
        for bound, count in zip([*self.bounds, math.inf], self.counts, strict=True):
            total += count
            buckets.append((floatToGoString(bound), float(total)))
        return buckets


class LoopHistograms:
    """A labelled family of LoopHistograms, exposed through the registry like any Histogram: the same
    `_bucket`, `_count` and `_sum` series (prometheus_client's own Histogram adds a `_created` gauge too)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], bounds: list[float]) -> None:
        self.name, self.documentation, self.labelnames, self.bounds = name, documentation, labelnames, bounds
        self._series: dict[tuple[str, ...], LoopHistogram] = {}

    def labels(self, *values: str) -> LoopHistogram:
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            series = self._series[values] = LoopHistogram(self.bounds)
        return series

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in list(self._series.items()):
            family.add_metric(list(values), series.cumulative(), series.sum)
        yield family


class ServeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        seconds = power_of_two_buckets(-16, 6)  # ~15 us .. 64 s
        # Observed on the event loop only, several times per request: see LoopHistograms.
        self.request_duration = LoopHistograms(
            "inferopt_request_duration_seconds",
            "Time from request start to response start, by route and status",
            ("route", "status"),
            seconds,
        )
        self.stage_duration = LoopHistograms(
            "inferopt_stage_duration_seconds",
            "Time per request in each server stage (max over its items)",
            ("stage",),
            seconds,
        )
        reg.register(self.request_duration)
        reg.register(self.stage_duration)
        self.batch_size = Histogram(
            "inferopt_batch_size",
            "Items per runtime batch, by model path and priority lane",
            ["model_path", "lane"],
            buckets=power_of_two_buckets(0, 12),
            registry=reg,
        )
        self.queue_wait = Histogram(
            "inferopt_queue_wait_seconds",
            "Time each item waited in the queue before its batch started, by model path and priority lane",
            ["model_path", "lane"],
            buckets=power_of_two_buckets(-16, 6),
            registry=reg,
        )
        self.batch_tokens = Histogram(
            "inferopt_batch_tokens",
            "Padded tokens (rows x longest row) per runtime batch, by model path",
            ["model_path"],
            buckets=power_of_two_buckets(2, 18),
            registry=reg,
        )
        self.queue_depth = Gauge(
            "inferopt_queue_depth", "Items waiting for a runtime worker, by model path", ["model_path"], registry=reg
        )
        self.queue_limit = Gauge(
            "inferopt_queue_limit",
            "Most items the queue takes (--max-queue), by model path: what queue saturation is measured against",
            ["model_path"],
            registry=reg,
        )
        self.cache_requests = Counter(
            "inferopt_cache_requests",
            "Cache lookups per tier (memory, redis) and result (hit, miss, error)",
            ["tier", "result"],
            registry=reg,
        )
        self.rejected = Counter("inferopt_rejected", "Requests refused, by reason", ["reason"], registry=reg)
        self.trace_spans_dropped = Counter(
            "inferopt_trace_spans_dropped",
            "Spans not delivered to the OTLP collector: export_failed (it did not take them) or queue_full",
            ["reason"],
            registry=reg,
        )
        self._redis_up: Gauge | None = None
        self._jobs: JobMetrics | None = None
        self._stage_children = {stage: self.stage_duration.labels(stage) for stage in STAGES}
        self._children: dict[tuple[object, ...], Any] = {}

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

    @property
    def jobs(self) -> JobMetrics:
        """Registered on first use, like redis_up: a server without --jobs reports no jobs."""
        if self._jobs is None:
            self._jobs = JobMetrics(self.registry)
        return self._jobs

    def track_queue_depth(self, depth: Callable[[], float], path: str = "default", limit: int | None = None) -> None:
        self.queue_depth.labels(path).set_function(depth)
        if limit is not None:
            self.queue_limit.labels(path).set(limit)

    def batch_observer(self, path: str = "default") -> Callable[[int, int, float], None]:
        """The observer of one model path's batcher; called from its worker threads (prometheus_client is
        thread-safe)."""
        tokens = self.batch_tokens.labels(path)

        def observe(items: int, padded_tokens: int, seconds: float) -> None:
            tokens.observe(padded_tokens)

        return observe

    def wait_observer(self, path: str = "default") -> Callable[[str, list[float]], None]:
        """Per batch of one model path's batcher: its size and each item's queue wait, by lane."""
        children: dict[str, tuple[Any, Any]] = {}

        def observe(lane: str, waits: list[float]) -> None:
            pair = children.get(lane)
            if pair is None:
                pair = children[lane] = (self.batch_size.labels(path, lane), self.queue_wait.labels(path, lane))
            pair[0].observe(len(waits))
            for wait in waits:
                pair[1].observe(wait)

        return observe

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, histogram in self._stage_children.items():
            histogram.observe(timings[stage])
        if "features" in timings:
            self.stage_duration.labels("features").observe(timings["features"])

    def cache(self, tier: str, result: str, count: int = 1) -> None:
        if count:
            self._child(self.cache_requests, tier, result).inc(count)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.request_duration.labels(route, str(status)).observe(seconds)

    def _child(self, metric: Counter, *labels: object) -> Any:
        """metric.labels(*labels), remembered: labels() takes a lock and builds a key on every call, and the
        label sets in use are few (tiers and results)."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*(str(label) for label in labels))
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.finished = Counter(
            "inferopt_jobs", "Jobs finished, by status (succeeded, failed)", ["status"], registry=registry
        )
        self.pending = Gauge(
            "inferopt_jobs_pending",
            "Jobs queued or running for this model (all replicas), as last read",
            registry=registry,
        )
        self.duration = Histogram(
            "inferopt_job_duration_seconds",
            "Time from a job's submission to its end",
            buckets=power_of_two_buckets(-4, 14),  # ~60 ms .. 4.5 h
            registry=registry,
        )


FEATURE_SOURCES = ("memory", "redis", "postgres", "stale", "error")


class FeatureMetrics:
    """The stored-feature reads (serve/feature_cache.py), on the registry of the app that serves them. Observed
    on the event loop only, a few times per request (per group): LoopHistograms, and counter children kept."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "inferopt_feature_requests",
            "Feature group reads, by group and where the values came from (memory, redis, postgres, stale, error)",
            ["group", "source"],
            registry=registry,
        )
        self.age = LoopHistograms(
            "inferopt_feature_age_seconds",
            "How long ago the store was read for the feature values served, by group",
            ("group",),
            power_of_two_buckets(-10, 14),  # ~1 ms .. ~4.5 h
        )
        self.fetch = LoopHistograms(
            "inferopt_feature_fetch_seconds",
            "Time of one feature store query, by group (failures included)",
            ("group",),
            power_of_two_buckets(-16, 4),  # ~15 us .. 16 s
        )
        registry.register(self.age)
        registry.register(self.fetch)
        self.redis_errors = Counter(
            "inferopt_feature_redis_errors",
            "Redis calls of the feature cache that failed (the read went on to the store)",
            registry=registry,
        )
        self.store_up = Gauge(
            "inferopt_feature_store_up", "1 while the feature store answers, 0 while it is down", registry=registry
        )
        self._children: dict[tuple[str, str], Any] = {}

    def served(self, group: str, source: str, age_s: float | None) -> None:
        key = (group, source)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(group, source)
        child.inc()
        if age_s is not None:
            self.age.labels(group).observe(age_s)

    def fetched(self, group: str, seconds: float) -> None:
        self.fetch.labels(group).observe(seconds)
