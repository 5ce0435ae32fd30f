"""The durable side of /v1/jobs: each job, its input, its finished chunks and the queue, in Redis.

Key layout (prefix `inferopt:jobs:`; `{model}` is the served model's own name, `{id}` a URL-safe token):

    job:{id}            hash: id, model, artifact_id, status, items, done, created_at, started_at,
                        finished_at, error (timestamps: Unix seconds)
    job:{id}:input      string: {"instances": [...], "parameters": {...}} as submitted; deleted at the end
    job:{id}:results    list: one entry per finished chunk, in order: its predictions, comma-joined JSON
    job:{id}:lease      string: the token of the replica running the job, expiring unless renewed
    queue:{model}       sorted set: the ids waiting, scored by created_at (first in, first out)
    running:{model}     sorted set: the ids claimed, scored by the claim time

The claim is a Lua script (atomic on the Redis server), not LMOVE to a running list: the queue, the running
set and the lease must change together, or a replica dying between two commands would strand a job. The same
script first moves back to the queue every running job whose lease has expired (its replica died), so no
separate reaper is needed and a restart resumes at once. Appending a chunk checks, in one script, that the
caller still holds the lease and that the chunk is the next one: a replica that lost its lease (paused past
the expiry) can never duplicate or reorder items. The scripts build job keys from the prefix, so the store
needs a single Redis (not Redis Cluster). Finished jobs' keys get EXPIRE --jobs-ttl; waiting ones never expire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

PREFIX = "inferopt:jobs:"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"

_SUBMIT = """
if redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('SET', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""
_CLAIM = """
local prefix = ARGV[4]
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', prefix .. 'job:' .. id .. ':lease') == 0 then
    redis.call('ZREM', KEYS[2], id)
    local created = redis.call('HGET', prefix .. 'job:' .. id, 'created_at')
    if created then redis.call('ZADD', KEYS[1], created, id) end
  end
end
while true do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then return false end
  local id = popped[1]
  if redis.call('EXISTS', prefix .. 'job:' .. id) == 1 then
    redis.call('SET', prefix .. 'job:' .. id .. ':lease', ARGV[1], 'PX', ARGV[2])
    redis.call('ZADD', KEYS[2], ARGV[3], id)
    return id
  end
end
"""
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_APPEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[2]) then return -2 end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'done', ARGV[4])
return 1
"""
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'status', ARGV[2], 'finished_at', ARGV[3], 'error', ARGV[4])
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[5], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[4], ARGV[5])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
local created = redis.call('HGET', KEYS[4], 'created_at')
if created then redis.call('ZADD', KEYS[2], created, ARGV[2]) end
return 1
"""


@dataclass(frozen=True)
class JobRecord:
    id: str
    model: str  # the name the client used
    artifact_id: str
    status: str
    items: int
    chunk: int  # instances per chunk, fixed at submission: a resumed job's chunk index means the same items
    done: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> JobRecord:
        fields = {key.decode(): value.decode() for key, value in raw.items()}

        def moment(name: str) -> float | None:
            return float(fields[name]) if fields.get(name) else None

        return cls(
            id=fields["id"],
            model=fields["model"],
            artifact_id=fields["artifact_id"],
            status=fields["status"],
            items=int(fields["items"]),
            chunk=int(fields["chunk"]),
            done=int(fields.get("done", 0)),
            created_at=float(fields["created_at"]),
            started_at=moment("started_at"),
            finished_at=moment("finished_at"),
            error=fields.get("error") or None,
        )

    def to_fields(self) -> list[str]:
        """HSET's field, value pairs."""
        fields = {"id": self.id, "model": self.model, "artifact_id": self.artifact_id, "status": self.status}
        numbers = {"items": self.items, "chunk": self.chunk, "done": self.done, "created_at": self.created_at}
        return [item for pair in (fields | {k: repr(v) for k, v in numbers.items()}).items() for item in pair]

    def public(self) -> dict[str, Any]:
        """GET /v1/jobs/{id}'s body, less the result."""
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "status": self.status,
            "items": self.items,
            "done": self.done,
            "progress": round(self.done / self.items, 4) if self.items else 1.0,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.status == FAILED:
            body["error"] = self.error or "the job failed"
        return body


class JobStore:
    """One served model's jobs in one Redis. Every method may raise redis' errors: callers decide what an
    unreachable store means (a 503 for a request, a retry later for the runner)."""

    def __init__(self, url: str, model_name: str, *, ttl_s: int, lease_s: float = 30.0, prefix: str = PREFIX) -> None:
        import redis.asyncio as aioredis

        self.ttl_s = ttl_s
        self.lease_ms = int(lease_s * 1000)
        self.prefix = prefix
        self.queue_key = f"{prefix}queue:{model_name}"
        self.running_key = f"{prefix}running:{model_name}"
        # Any: redis-py's stubs type replies as bytes | str whatever decode_responses says (here off: bytes).
        self._client: Any = aioredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self._submit = self._client.register_script(_SUBMIT)
        self._claim = self._client.register_script(_CLAIM)
        self._renew = self._client.register_script(_RENEW)
        self._append = self._client.register_script(_APPEND)
        self._finish = self._client.register_script(_FINISH)
        self._release = self._client.register_script(_RELEASE)

    def key(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}job:{job_id}{':' + part if part else ''}"

    async def ping(self) -> None:
        await self._client.ping()

    async def submit(self, job: JobRecord, body: bytes, max_pending: int) -> bool:
        """Store and queue `job` with its input, unless `max_pending` jobs are already queued or running."""
        keys = [self.key(job.id), self.key(job.id, "input"), self.queue_key, self.running_key]
        args: list[Any] = [max_pending, job.id, repr(job.created_at), body, *job.to_fields()]
        return bool(await self._submit(keys=keys, args=args))

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self._client.hgetall(self.key(job_id))
        return JobRecord.from_hash(raw) if raw else None

    async def results(self, job_id: str) -> list[bytes]:
        chunks: list[bytes] = await self._client.lrange(self.key(job_id, "results"), 0, -1)
        return chunks

    async def input(self, job_id: str) -> bytes | None:
        body: bytes | None = await self._client.get(self.key(job_id, "input"))
        return body

    async def chunks_done(self, job_id: str) -> int:
        return int(await self._client.llen(self.key(job_id, "results")))

    async def pending(self) -> int:
        """Jobs queued or running for this model, on every replica."""
        pipe = self._client.pipeline(transaction=False)
        pipe.zcard(self.queue_key).zcard(self.running_key)
        queued, running = await pipe.execute()
        return int(queued) + int(running)

    async def claim(self, owner: str) -> str | None:
        """The oldest queued job, now leased to `owner`; None when none waits."""
        now = repr(time.time())
        claimed = await self._claim(
            keys=[self.queue_key, self.running_key], args=[owner, self.lease_ms, now, self.prefix]
        )
        return claimed.decode() if isinstance(claimed, bytes) else None

    async def mark_running(self, job_id: str, now: float) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self.key(job_id), "status", RUNNING).hsetnx(self.key(job_id), "started_at", repr(now))
        await pipe.execute()

    async def renew(self, job_id: str, owner: str) -> bool:
        return bool(await self._renew(keys=[self.key(job_id, "lease")], args=[owner, self.lease_ms]))

    async def append(self, job_id: str, owner: str, index: int, chunk: bytes, count: int) -> bool:
        """Add chunk `index` (of `count` items); False when `owner` no longer holds the job or the chunk is not
        the next one: someone else has the job now, and this replica must drop it."""
        keys = [self.key(job_id, "lease"), self.key(job_id, "results"), self.key(job_id)]
        return int(await self._append(keys=keys, args=[owner, index, chunk, count])) == 1

    async def finish(self, job_id: str, owner: str, status: str, error: str, now: float) -> bool:
        """Mark the job `status` and start its TTL; False when `owner` no longer holds it."""
        keys = [self.key(job_id, p) for p in ("lease", "", "input", "results")] + [self.running_key]
        args: list[Any] = [owner, status, repr(now), error, self.ttl_s, job_id]
        return bool(await self._finish(keys=keys, args=args))

    async def release(self, job_id: str, owner: str) -> bool:
        """Give a claimed job back to the queue (shutdown): it stays `running`, and resumes from its chunks."""
        keys = [self.key(job_id, "lease"), self.queue_key, self.running_key, self.key(job_id)]
        return bool(await self._release(keys=keys, args=[owner, job_id]))

    async def close(self) -> None:
        await self._client.aclose()
