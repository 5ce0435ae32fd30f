"""Async jobs for heavy work (`POST /v1/jobs`): validated whole at submission, stored in Redis (jobs_store.py),
run in the background on the server's own InferenceService, one chunk of instances per call.

Chunks keep a job from filling the batcher's queue (requests keep being answered between them) and make its
progress durable: each finished chunk is appended to Redis before the next starts, so a job interrupted by a
restart resumes at its first missing chunk on whichever replica claims it next. A chunk that fails on the
server's side (deadline, full queue, a runtime error) is retried with backoff before the job fails; a job's
failure is its own and never reaches other jobs or requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from typing import Any

import orjson

from inferopt.serve.batcher import LOW, BatcherClosed, DeadlineExceeded, QueueFull
from inferopt.serve.config import ServeConfig
from inferopt.serve.errors import InvalidField, JobNotFound, JobsUnavailable, Overloaded, PayloadTooLarge
from inferopt.serve.jobs_store import FAILED, QUEUED, SUCCEEDED, JobRecord, JobStore
from inferopt.serve.metrics import JobMetrics
from inferopt.serve.model import ServingModel
from inferopt.serve.redis_link import redacted
from inferopt.serve.service import InferenceService
from inferopt.serve.wire.json_body import decode_json, kind
from inferopt.serve.wire.kserve_v1 import parse_instances
from inferopt.tasks.base import Task

log = logging.getLogger("inferopt.serve")
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what token_urlsafe makes; anything else never reaches Redis
RETRY_AFTER_S = 10  # a full job queue drains at the pace of whole jobs: seconds, not milliseconds
CHUNK_ATTEMPTS = 4
BACKOFF_S = 0.5  # doubled after each failed attempt of a chunk


class ChunkFailed(Exception):
    """A chunk failed CHUNK_ATTEMPTS times; the message is the job's error, safe to show the client."""


class Stopping(Exception):
    """The server is shutting down: the job goes back to the queue, unfinished but not failed."""


def parse_job(body: bytes) -> tuple[str, dict[str, Any]]:
    """The model name and the decoded body of a POST /v1/jobs; 400 or 422 as :predict gives them."""
    data = decode_json(body)
    if not isinstance(data, dict):
        raise InvalidField(f"the request body must be a JSON object, got {kind(data)}", param="body")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        got = "nothing" if model is None else kind(model)
        raise InvalidField(f'the body needs "model": the name of the model to run (a string), got {got}', param="model")
    return model, data


def validate_job(data: dict[str, Any], task: Task, max_items: int) -> int:
    """Parse every instance now, so a job never fails halfway on bad input. Returns their count."""
    instances = data.get("instances")
    if isinstance(instances, list) and len(instances) > max_items:
        raise PayloadTooLarge(
            f"the job has {len(instances)} instances; this server takes at most {max_items} per job "
            "(--jobs-max-items): split it into several jobs",
            param="instances",
        )
    return len(parse_instances(data, task, max_items=max_items))


class Jobs:
    """The job store and the runner of one server: what the /v1/jobs routes call, and the background workers
    (at most --jobs-concurrency jobs at once) that claim queued jobs and run them chunk by chunk."""

    def __init__(
        self,
        config: ServeConfig,
        model: ServingModel,
        service: InferenceService,
        metrics: JobMetrics,
        *,
        lease_s: float = 30.0,
        poll_s: float = 0.5,
        backoff_s: float | None = None,
    ) -> None:
        assert config.jobs is not None
        self.config = config
        self.model = model
        self.service = service
        self.metrics = metrics
        self.url = redacted(config.jobs)
        self.store = JobStore(config.jobs, model.name, ttl_s=config.jobs_ttl, lease_s=lease_s)
        self.poll_s = poll_s
        self.backoff_s = BACKOFF_S if backoff_s is None else backoff_s  # read late: tests shorten it
        self.owner = secrets.token_hex(8)  # this process's lease token
        self._stopping = False
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._claimed: set[str] = set()
        self._store_up = True

    # --- the routes' side -------------------------------------------------------------------------------

    async def submit(self, model_name: str, data: dict[str, Any]) -> JobRecord:
        """Validate (in a thread: a job may hold thousands of instances) and queue a job; 413, 422, 429, 503."""
        items = await asyncio.to_thread(validate_job, data, self.model.task, self.config.jobs_max_items)
        job = JobRecord(
            id=secrets.token_urlsafe(16),
            model=model_name,
            artifact_id=self.model.artifact_id,
            status=QUEUED,
            items=items,
            chunk=self.config.jobs_chunk_items,
            created_at=round(time.time(), 3),
        )
        body = orjson.dumps({"instances": data["instances"], "parameters": data.get("parameters", {})})
        limit = self.config.jobs_max_pending
        if not await self._call(self.store.submit(job, body, limit)):
            raise Overloaded(
                f"{limit} jobs are already queued or running (--jobs-max-pending); retry after {RETRY_AFTER_S} s",
                retry_after_s=RETRY_AFTER_S,
            )
        self.metrics.pending.inc()
        self._wake_workers()
        return job

    async def status(self, job_id: str) -> bytes:
        """GET /v1/jobs/{id}'s JSON body; 404 for an id that is malformed, unknown or expired."""
        gone = JobNotFound(
            f"job {job_id} does not exist (or its result expired after {self.config.jobs_ttl} s)", param="id"
        )
        if not JOB_ID.fullmatch(job_id):
            raise gone
        job = await self._call(self.store.get(job_id))
        if job is None:
            raise gone
        meta = orjson.dumps(job.public())
        if job.status != SUCCEEDED:
            return meta
        chunks = await self._call(self.store.results(job_id))
        # The predictions are stored as JSON already: spliced in, not decoded and encoded again.
        return meta[:-1] + b',"result":{"predictions":[' + b",".join(chunks) + b"]}}"

    async def _call(self, pending: Any) -> Any:
        try:
            return await pending
        except Exception as exc:  # redis' ConnectionError, TimeoutError, ResponseError
            raise JobsUnavailable(
                f"the job store at {self.url} does not answer ({type(exc).__name__}); retry later"
            ) from exc

    # --- the runner ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._workers = [
            asyncio.get_running_loop().create_task(self._work(), name=f"inferopt-job-{i}")
            for i in range(self.config.jobs_concurrency)
        ]

    async def stop(self, timeout_s: float) -> None:
        """Take no new chunks; let the running ones finish (up to `timeout_s`); give unfinished jobs back to
        the queue, still `running`, so that the next server to start resumes them from their last chunk."""
        self._stopping = True
        self._wake_workers()
        if self._workers:
            _, late = await asyncio.wait(self._workers, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for job_id in list(self._claimed):  # those a cancelled worker left
            await self._release(job_id)
        await self.store.close()

    def _wake_workers(self) -> None:
        # Every idle worker waits on the current event; a fresh one is armed for the next wake-up.
        self._wake.set()
        self._wake = asyncio.Event()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _work(self) -> None:
        while not self._stopping:
            try:
                job_id = await self.store.claim(self.owner)
                if job_id is None:
                    self.metrics.pending.set(await self.store.pending())
                self._mark_store(None)
            except Exception as exc:
                self._mark_store(exc)
                await self._idle(self.poll_s * 4)
                continue
            if job_id is None:
                await self._idle(self.poll_s)
                continue
            self._claimed.add(job_id)
            try:
                await self._run(job_id)
            except Exception as exc:  # Redis failed mid-job: the lease expires and some replica resumes it
                log.warning(
                    "job %s: interrupted (%s: %s); it resumes once its lease expires", job_id, type(exc).__name__, exc
                )
            self._claimed.discard(job_id)

    async def _run(self, job_id: str) -> None:
        job = await self.store.get(job_id)
        if job is None:
            return  # its keys are gone (flushed): the claim script drops it once the lease expires
        if job.artifact_id != self.model.artifact_id:
            error = (
                f"job {job_id} was submitted for artifact {job.artifact_id}; this server serves artifact "
                f"{self.model.artifact_id}, whose results may differ: submit the job again"
            )
            await self._end(job, FAILED, error)
            return
        body = await self.store.input(job_id)
        submitted = orjson.loads(body) if body is not None else {}
        first = await self.store.chunks_done(job_id)
        await self.store.mark_running(job_id, round(time.time(), 3))
        lost = asyncio.Event()
        renewing = asyncio.get_running_loop().create_task(self._keep_lease(job_id, lost))
        try:
            outcome = await self._chunks(job, submitted, first, lost)
        finally:
            renewing.cancel()
        if outcome is None:
            if not lost.is_set():
                await self._release(job_id)
            return
        await self._end(job, *outcome)

    async def _chunks(
        self, job: JobRecord, submitted: dict[str, Any], first: int, lost: asyncio.Event
    ) -> tuple[str, str] | None:
        """Run the chunks from `first` on: the (status, error) the job ends with, or None when it stops unfinished
        (shutdown, or its lease went to another replica)."""
        instances, parameters = submitted.get("instances", []), submitted.get("parameters", {})
        for index in range(first, -(-job.items // job.chunk)):
            if self._stopping or lost.is_set():
                return None
            part = {"instances": instances[index * job.chunk : (index + 1) * job.chunk], "parameters": parameters}
            try:
                raws = parse_instances(part, self.model.task, max_items=job.chunk)
                predictions = await self._chunk(job, index, raws)
            except Stopping:
                return None
            except ChunkFailed as exc:
                return FAILED, str(exc)
            except Exception as exc:  # the input validated at submission no longer parses: another task's job
                return FAILED, f"chunk {index} of job {job.id} does not parse for this model: {exc}"
            if not await self.store.append(job.id, self.owner, index, predictions, len(raws)):
                lost.set()
                return None
        return SUCCEEDED, ""

    async def _chunk(self, job: JobRecord, index: int, raws: list[Any]) -> bytes:
        """One chunk's predictions (comma-joined JSON), each attempt with its own --timeout-ms deadline."""
        error: Exception | None = None
        for attempt in range(CHUNK_ATTEMPTS):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            if self._stopping:
                raise Stopping()
            try:
                results = await self.service.infer(raws, time.monotonic() + self.config.timeout_ms / 1000, LOW)
                return b",".join(c.result.json for c in results)
            except BatcherClosed as exc:
                raise Stopping() from exc
            except Exception as exc:
                error = exc
                log.warning(
                    "job %s: chunk %d failed (attempt %d of %d): %r", job.id, index, attempt + 1, CHUNK_ATTEMPTS, exc
                )
        raise ChunkFailed(self._failure(job, index, len(raws), error))

    def _failure(self, job: JobRecord, index: int, count: int, error: Exception | None) -> str:
        where = f"chunk {index} (instances {index * job.chunk}..{index * job.chunk + count - 1})"
        if isinstance(error, DeadlineExceeded):
            why = f"missed its {self.config.timeout_ms} ms deadline (--timeout-ms) each time: the server is overloaded"
        elif isinstance(error, QueueFull):
            why = "found the batcher's queue full each time: the server is overloaded"
        else:
            log.error("job %s: %s failed for good", job.id, where, exc_info=error)
            why = f"failed in the model; the server log has the details under job id {job.id}"
        return f"{where} {why} ({CHUNK_ATTEMPTS} attempts); submit the job again later"

    async def _keep_lease(self, job_id: str, lost: asyncio.Event) -> None:
        """Renew the lease at a third of its life; a renewal refused means another replica has the job."""
        while True:
            await asyncio.sleep(self.store.lease_ms / 3000)
            try:
                if not await self.store.renew(job_id, self.owner):
                    log.warning("job %s: its lease went to another replica; dropping it here", job_id)
                    lost.set()
                    return
            except Exception as exc:
                log.warning("job %s: the lease could not be renewed (%s)", job_id, exc)

    async def _end(self, job: JobRecord, status: str, error: str) -> None:
        now = time.time()
        if await self.store.finish(job.id, self.owner, status, error, round(now, 3)):
            self.metrics.finished.labels(status).inc()
            self.metrics.duration.observe(max(0.0, now - job.created_at))
            self.metrics.pending.dec()
            log.info("job %s: %s (%d items)%s", job.id, status, job.items, f": {error}" if error else "")

    async def _release(self, job_id: str) -> None:
        try:
            await self.store.release(job_id, self.owner)
            log.info("job %s: left unfinished for the next server (shutting down)", job_id)
        except Exception as exc:
            log.warning("job %s: not given back (%s); it resumes once its lease expires", job_id, exc)

    def _mark_store(self, exc: Exception | None) -> None:
        """One warning per outage of the job store, not one per poll."""
        if exc is not None and self._store_up:
            log.warning("the job store at %s does not answer (%s: %s); retrying", self.url, type(exc).__name__, exc)
        elif exc is None and not self._store_up:
            log.warning("the job store at %s is back", self.url)
        self._store_up = exc is None
