"""Per-item embedding cache: an in-process LRU bounded in bytes, and single-flight for inputs in flight.

The key is the artifact id plus the input as the model's own tokenizer normalizer sees it (for MiniLM:
lower-cased, accents stripped, control characters dropped). Inputs with the same normal form get the same
tokens and so the same embedding; nothing that could change the result is normalised away. The Redis tier
lives in `cache_redis.py`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import orjson

_HEADER = struct.Struct("<IB")  # tokens embedded, truncated flag
ENTRY_OVERHEAD_BYTES = 200  # key string, dict slot and object headers per LRU entry, roughly


@dataclass(frozen=True)
class CachedEmbedding:
    """One input's embedding. `json` is its vector as a JSON array, encoded once when the entry is made (off
    the event loop for model results): a cache hit's response then copies bytes instead of formatting the
    floats again, ~10 us of a ~100 us hit on the loop for MiniLM. It makes an entry ~3.7x larger (~6.4 KB for
    MiniLM's 384 dimensions, all counted against --cache-memory-mb)."""

    vector: np.ndarray  # float32, 1-D
    tokens: int  # tokens actually embedded (after truncation), for usage.prompt_tokens
    truncated: bool = False
    json: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.json:
            object.__setattr__(self, "json", orjson.dumps(self.vector, option=orjson.OPT_SERIALIZE_NUMPY))

    @property
    def nbytes(self) -> int:
        return int(self.vector.nbytes) + len(self.json) + ENTRY_OVERHEAD_BYTES

    def to_bytes(self) -> bytes:
        return _HEADER.pack(self.tokens, self.truncated) + self.vector.astype("<f4", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, dim: int) -> CachedEmbedding:
        """Decode what to_bytes wrote; ValueError for anything else (a foreign or damaged value under our key)."""
        if len(data) != _HEADER.size + 4 * dim:
            raise ValueError(f"{len(data)} bytes, not the {_HEADER.size + 4 * dim} of a {dim}-dim entry")
        tokens, truncated = _HEADER.unpack_from(data)
        vector = np.frombuffer(data, dtype="<f4", offset=_HEADER.size).astype(np.float32)
        return cls(vector, tokens, bool(truncated))


def tokenizer_normalizer(tokenizer_file: Path) -> Callable[[str], str]:
    """The model tokenizer's own normalizer, or identity when it has none."""
    from tokenizers import Tokenizer

    normalizer = Tokenizer.from_file(str(tokenizer_file)).normalizer
    if normalizer is None:
        return lambda text: text
    return normalizer.normalize_str


class CacheKeys:
    """Cache key of an input. The keys of recent short inputs are remembered: running the tokenizer's
    normalizer is most of a key's cost (~8 us of a cache hit's ~100 us on the event loop), and popular inputs
    are exactly the ones asked for again. At most `memo_entries` inputs of at most `memo_max_chars` characters
    are kept: up to ~8 MB for ASCII inputs at the defaults, ~20 MB if every character needs 4 bytes."""

    def __init__(
        self,
        artifact_id: str,
        normalize: Callable[[str], str],
        *,
        memo_entries: int = 16_384,
        memo_max_chars: int = 256,
    ) -> None:
        self.prefix = f"inferopt:{artifact_id}:"
        self.normalize = normalize
        self.memo_max_chars = memo_max_chars
        self._remembered = functools.lru_cache(maxsize=memo_entries)(self._key)

    def __call__(self, text: str) -> str:
        return self._remembered(text) if len(text) <= self.memo_max_chars else self._key(text)

    def _key(self, text: str) -> str:
        # Texts come from orjson, which refuses lone surrogates (a 400), so every text encodes to UTF-8.
        digest = hashlib.blake2b(self.normalize(text).encode("utf-8"), digest_size=16)
        return self.prefix + digest.hexdigest()


class MemoryLRU:
    """Least-recently-used eviction once the entries' bytes pass `max_bytes`. Used from the event loop only."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[str, CachedEmbedding] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CachedEmbedding | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CachedEmbedding) -> None:
        if entry.nbytes > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes
        self._entries[key] = entry
        self.nbytes += entry.nbytes
        while self.nbytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= evicted.nbytes


class DeadlineHolder(Protocol):
    def extend_deadline(self, deadline: float) -> None: ...


class Flight:
    """One input being computed. Later requests for the same input wait on `future` instead of queueing it
    again, and push its deadline out to theirs so the first requester's deadline does not fail them."""

    __slots__ = ("deadline", "future", "item")

    def __init__(self, future: asyncio.Future[object], deadline: float) -> None:
        self.future = future
        self.deadline = deadline
        self.item: DeadlineHolder | None = None  # the queued item, once it is in the batcher

    def extend(self, deadline: float) -> None:
        if deadline > self.deadline:
            self.deadline = deadline
            if self.item is not None:
                self.item.extend_deadline(deadline)


class SingleFlight:
    """Identical inputs in flight at once are computed once. Used from the event loop only."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str, deadline: float) -> Flight | None:
        flight = self._flights.get(key)
        if flight is not None:
            flight.extend(deadline)
        return flight

    def lead(self, key: str | None, deadline: float) -> Flight:
        """A new flight; registered under `key` unless key is None (caching off: nothing is shared)."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        # Mark the exception retrieved: every waiter may have given up (deadline) before a failure lands.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        flight = Flight(future, deadline)
        if key is not None:
            self._flights[key] = flight
        return flight

    def land(self, key: str | None, flight: Flight, result: object = None, error: BaseException | None = None) -> None:
        if key is not None and self._flights.get(key) is flight:
            del self._flights[key]
        if flight.future.done():
            return
        if error is not None:
            flight.future.set_exception(error)
        else:
            flight.future.set_result(result)
