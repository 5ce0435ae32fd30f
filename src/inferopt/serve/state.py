"""The server's life: loading -> ready -> draining (or failed), and the parts that exist once it is ready.

The HTTP server listens from the first moment (so /health/live answers and /health/ready says 503 while the
model loads); loading, warm-up and the batcher start in the background. Draining (SIGTERM) refuses new
work with 503, lets what is queued finish, then stops the runtime workers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from inferopt.serve.batcher import Batcher, BatchPolicy
from inferopt.serve.cache import CacheKeys, MemoryLRU, OutputForm
from inferopt.serve.cache_redis import RedisTier
from inferopt.serve.config import ServeConfig
from inferopt.serve.drift import DriftMonitor
from inferopt.serve.errors import JobsUnavailable, NotReady, ShuttingDown
from inferopt.serve.jobs import Jobs
from inferopt.serve.metrics import ServeMetrics
from inferopt.serve.model import ServingModel, batch_policy, warm_up
from inferopt.serve.service import InferenceService
from inferopt.serve.tracing import Tracing

log = logging.getLogger("inferopt.serve")
ModelSource = ServingModel | Callable[[], ServingModel]


@dataclass(frozen=True)
class Ready:
    """Everything a request needs, built once the model is loaded and warm."""

    model: ServingModel
    policy: BatchPolicy
    output_shapes: dict[str, tuple[int, ...]]  # per item, as warm-up found them
    service: InferenceService
    max_items: int  # inputs one request may carry
    max_request_bytes: int  # the largest body read
    jobs: Jobs | None = None  # None: no --jobs
    drift: DriftMonitor | None = None  # None: the artifact carries no drift reference

    def require_jobs(self) -> Jobs:
        if self.jobs is None:
            raise JobsUnavailable("jobs are off: start the server with --jobs redis://HOST:PORT/DB")
        return self.jobs

    @property
    def dim(self) -> int:
        """The last axis of the first output: an embedding's width (0 for an output of scalars)."""
        first = next(iter(self.output_shapes.values()), ())
        return first[-1] if first else 0


def output_forms(model: ServingModel, warm: dict[str, Any]) -> dict[str, OutputForm]:
    """Each output's dtype and item shape as the warmed-up model gave them, with the io schema's dynamic axes
    left open: what a cache entry of this model must look like."""
    dynamic = {spec.name: spec.dynamic_axes() for spec in model.task.io_schema().outputs}
    return {
        name: (
            value.dtype.name,
            tuple(None if axis + 1 in dynamic.get(name, {}) else int(n) for axis, n in enumerate(value.shape[1:])),
        )
        for name, value in warm.items()
    }


def freeze_heap() -> None:
    """Move what is alive once the model is warm (the model, tokenizer, app and modules: ~120,000 objects for
    the text artifact) out of the garbage collector's generations. A full collection otherwise walks them all:
    under load that was a 50-70 ms stall of the event loop every few seconds, and the whole tail of the 429s
    (their p99 fell from 61-69 ms to 5.3 ms with it, docs/BENCHMARKS.md). Requests' objects are still collected."""
    gc.collect()
    gc.freeze()
    log.info("the heap after warm-up (%d objects) is left out of garbage collection", gc.get_freeze_count())


def _depth(batcher: Batcher) -> float:
    return batcher.depth


class ServerState:
    def __init__(
        self,
        config: ServeConfig,
        source: ModelSource,
        metrics: ServeMetrics,
        on_fatal: Callable[[BaseException], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.metrics = metrics
        self.tracing = tracing
        self.on_fatal = on_fatal
        self.phase = "loading"
        self.detail = "loading the model"
        self.ready: Ready | None = None

    def require_ready(self) -> Ready:
        if self.phase == "draining":
            raise ShuttingDown("the server is shutting down; send the request to another replica")
        if self.ready is None:
            raise NotReady(f"the server is not ready yet ({self.detail})")
        return self.ready

    def begin_drain(self) -> None:
        if self.phase == "failed":  # nothing to drain, and `inferopt serve` must still exit saying why
            return
        if self.phase != "draining":
            log.info("draining: refusing new requests, finishing the queued ones")
        self.phase = "draining"
        self.detail = "shutting down"

    def fail(self, detail: str, exc: BaseException | None = None) -> None:
        """The server cannot serve (the model did not load, an address is taken): say why, and stop it."""
        self.phase, self.detail = "failed", detail
        log.error("%s", detail, exc_info=exc)
        if self.on_fatal is not None:
            self.on_fatal(exc or RuntimeError(detail))

    async def start(self) -> None:
        try:
            self.ready = await self._build()
            freeze_heap()
        except Exception as exc:
            self.fail(f"loading failed: {exc}", exc)
            return
        if self.phase == "loading":
            self.phase, self.detail = "ready", "ready"
        ready = self.ready
        if ready.jobs is not None and self.phase == "ready":
            ready.jobs.start()  # only now: a job's chunks need the warm model
        log.info(
            "ready: %s (artifact %s), %d session(s), batches of <= %d items / %d tokens, wait <= %.1f ms, cache %s",
            ready.model.name,
            ready.model.artifact_id,
            len(ready.model.backends),
            ready.policy.max_batch,
            ready.policy.max_tokens,
            ready.policy.max_wait_s * 1000,
            self.config.cache,
        )

    async def _build(self) -> Ready:
        source = self.source
        model = await asyncio.to_thread(source) if callable(source) else source
        policy = batch_policy(self.config, model)
        self.detail = "warming up"
        warm = await asyncio.to_thread(warm_up, model, policy)
        shapes = {name: tuple(int(n) for n in value.shape[1:]) for name, value in warm.items()}
        drift = self._drift(model)
        batchers = {}
        for path, backends in model.all_paths.items():
            batcher = Batcher(
                backends,
                policy,
                model.task,
                on_batch=self.metrics.batch_observer(path),
                on_wait=self.metrics.wait_observer(path),
                on_traced=self.tracing.batch_observer(path) if self.tracing is not None else None,
                on_outputs=drift.observe if drift is not None else None,
                nice=self.config.runtime_nice,
            ).start()
            self.metrics.track_queue_depth(partial(_depth, batcher), path, policy.max_queue)
            batchers[path] = batcher
        keys, memory, redis = await self._caches(model, output_forms(model, warm))
        features = await self._features(model)
        service = InferenceService(
            model,
            batchers,
            self.metrics,
            keys=keys,
            memory=memory,
            redis=redis,
            features=features,
            max_queue_s=self.config.max_queue_ms / 1000 if self.config.max_queue_ms else math.inf,
        )
        body_limit = self.config.max_request_bytes or model.task.max_request_bytes
        jobs = await self._jobs(model, service)
        return Ready(model, policy, shapes, service, self.config.items_per_request, body_limit, jobs, drift)

    def _drift(self, model: ServingModel) -> DriftMonitor | None:
        """The live drift windows of every model path, with their gauges, when the artifact has a reference."""
        if model.drift is None:
            return None
        config = self.config
        monitor = DriftMonitor(
            model.drift,
            model.task.drift_signals,
            window=config.drift_window,
            min_items=config.drift_min_items,
            max_age_s=config.drift_max_age_s,
        )
        self.metrics.registry.register(monitor)
        return monitor

    async def _jobs(self, model: ServingModel, service: InferenceService) -> Jobs | None:
        if self.config.jobs is None:
            return None
        jobs = Jobs(self.config, model, service, self.metrics.jobs)
        try:
            await asyncio.wait_for(jobs.store.ping(), 2.0)
        except Exception as exc:  # not fatal: the runner retries, and /v1/jobs answers 503 meanwhile
            log.warning("the job store at %s does not answer yet (%s: %s)", jobs.url, type(exc).__name__, exc)
        return jobs

    async def _caches(
        self, model: ServingModel, forms: dict[str, OutputForm]
    ) -> tuple[CacheKeys | None, MemoryLRU | None, RedisTier | None]:
        config = self.config
        if not config.cache_enabled:
            return None, None, None
        keys = CacheKeys(model.artifact_id, model.task.cache_key)
        memory = MemoryLRU(int(config.cache_memory_mb * 1024 * 1024), config.cache_ttl)
        redis = None
        if config.redis_url is not None:
            redis = RedisTier(config.redis_url, config.cache_ttl, self.metrics, forms)
            await redis.check()
        return keys, memory, redis

    async def _features(self, model: ServingModel) -> Any:
        """The feature cache in front of the store, when the task reads stored features and --features names a
        store (else None: requests naming an entity get 503, naming the missing dependency)."""
        spec = model.task.stored_features()
        config = self.config
        if spec is None or config.features is None:
            return None
        from inferopt.serve.feature_cache import FeatureCache
        from inferopt.serve.metrics import FeatureMetrics
        from inferopt.sources.postgres import PostgresFeatures

        spec = spec.with_ttls(config.feature_ttls)
        store = PostgresFeatures(
            config.features, spec, schema=config.features_schema, fetch_timeout_s=config.feature_timeout_ms / 1000
        )
        await store.open()  # a store that is down now is retried on later reads: the server still comes up
        return FeatureCache(
            store,
            spec,
            namespace=f"inferopt:features:{config.features_schema}",
            redis_url=config.redis_url,
            max_stale_s=config.feature_max_stale_s,
            metrics=FeatureMetrics(self.metrics.registry),
        )

    async def stop(self) -> None:
        """After the HTTP server stopped taking requests: finish the queue, stop workers, close Redis."""
        self.begin_drain()
        ready = self.ready
        if ready is not None:
            try:
                if ready.jobs is not None:  # first, while the batcher still answers their current chunks
                    await ready.jobs.stop(self.config.drain_timeout_s)
                await asyncio.to_thread(ready.service.close_batchers, self.config.drain_timeout_s)
                if ready.service.redis is not None:
                    await ready.service.redis.close()
                if ready.service.features is not None:
                    await ready.service.features.close()
            finally:
                await asyncio.to_thread(ready.service.close)  # joins the preprocessing thread: not on the loop
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # the last spans, bounded by the exporter's timeout
