"""Per-item result cache: an in-process LRU bounded in bytes, and single-flight for inputs in flight.

The key is the artifact id plus the task's canonical bytes of the input (text: the input as the model's own
tokenizer normalizer sees it; tensors: names, dtypes, shapes and data). Inputs with the same canonical form
give the same result; nothing that could change the result is normalised away. The Redis tier lives in
`cache_redis.py`.
"""

from __future__ import annotations

import asyncio
import functools
import math
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from inferopt.runtime.base import Arrays

OutputForm = tuple[str, tuple[int | None, ...]]  # an output's dtype, and one item's shape (None: dynamic)
ENTRY_OVERHEAD_BYTES = 200  # key string, dict slot and object headers per LRU entry, roughly
_HEADER = struct.Struct("<4sIBBI")  # magic, cost, truncated flag, number of outputs, bytes of JSON at the end
_MAGIC = b"ioc2"  # ioc1 entries (no JSON) read as misses and are replaced
_TENSOR = struct.Struct("<BBB")  # name length, dtype code, number of dimensions
_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


@dataclass(frozen=True)
class CachedResult:
    """One input's outputs and what the response needs of them. `json` is its postprocessed result, encoded
    once when the entry is made (off the event loop for model results): a cache hit's response then copies
    bytes instead of formatting floats again, ~10 us of a ~100 us hit on the loop for MiniLM. It makes an entry
    ~3.7x larger for MiniLM's 384 floats (~6.4 KB, all counted against --cache-memory-mb)."""

    outputs: Arrays
    cost: int  # what the item cost the batcher (tokens embedded, for text: usage.prompt_tokens)
    truncated: bool = False
    json: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def make(cls, outputs: Arrays, cost: int, truncated: bool, postprocess: Callable[[Arrays], Any]) -> CachedResult:
        encoded = orjson.dumps(postprocess(outputs), option=orjson.OPT_SERIALIZE_NUMPY)
        return cls(outputs, cost, truncated, encoded)

    @property
    def nbytes(self) -> int:
        return sum(int(v.nbytes) for v in self.outputs.values()) + len(self.json) + ENTRY_OVERHEAD_BYTES

    def to_bytes(self) -> bytes:
        """The Redis entry: header, each output (name, dtype, shape, little-endian data), then the result's JSON.
        The JSON rides along because the result may depend on what its request asked (an image's top_k), which
        a reader of the entry does not know; decoding it costs the event loop no float formatting."""
        parts = [_HEADER.pack(_MAGIC, self.cost, self.truncated, len(self.outputs), len(self.json))]
        for name, value in self.outputs.items():
            encoded = name.encode("utf-8")
            if value.dtype.name not in _DTYPES:
                raise ValueError(f"output {name!r} is {value.dtype.name}, which the Redis entry format does not hold")
            parts.append(_TENSOR.pack(len(encoded), _DTYPES.index(value.dtype.name), value.ndim) + encoded)
            parts.append(struct.pack(f"<{value.ndim}I", *value.shape))
            parts.append(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<"), copy=False).tobytes())
        parts.append(self.json)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, expected: dict[str, OutputForm]) -> CachedResult:
        """Decode what to_bytes wrote, for a model whose outputs are `expected` (name -> dtype and one item's
        shape, None for a dynamic size); ValueError for anything else (a foreign or damaged value under our key)."""
        try:
            magic, cost, truncated, count, json_size = _HEADER.unpack_from(data)
            if magic != _MAGIC:
                raise ValueError("not an inferopt cache entry")
            offset, outputs = _HEADER.size, {}
            for _ in range(count):
                name_len, code, ndim = _TENSOR.unpack_from(data, offset)
                offset += _TENSOR.size
                name = data[offset : offset + name_len].decode("utf-8")
                offset += name_len
                shape = struct.unpack_from(f"<{ndim}I", data, offset)
                offset += 4 * ndim
                dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
                size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if offset + size > len(data):
                    raise ValueError(f"not a whole entry: {len(data)} bytes, cut short")
                outputs[name] = np.frombuffer(data, dtype, int(np.prod(shape, dtype=np.int64)), offset).reshape(shape)
                outputs[name] = outputs[name].astype(dtype.newbyteorder("="))
                offset += size
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a cache entry of this model ({exc})") from None
        # A cut or padded entry is caught by its length: parsing the JSON again would cost the event loop about
        # what formatting it did.
        if len(data) - offset != json_size or not _fits(outputs, expected):
            raise ValueError(f"{len(data)} bytes that are not an entry of this model's outputs {expected}")
        return cls(outputs, cost, bool(truncated), data[offset:])


def _fits(outputs: Arrays, expected: dict[str, OutputForm]) -> bool:
    if set(outputs) != set(expected):
        return False
    for name, (dtype, shape) in expected.items():
        value = outputs[name]
        if value.dtype.name != dtype or value.ndim != len(shape):
            return False
        if any(size is not None and size != actual for size, actual in zip(shape, value.shape, strict=True)):
            return False
    return True


class CacheKeys:
    """Cache key of a raw input. The keys of recent short text inputs are remembered: computing the canonical
    form (running the tokenizer's normalizer) is most of a key's cost (~8 us of a cache hit's ~100 us on the
    event loop), and popular inputs are exactly the ones asked for again. At most `memo_entries` inputs of at
    most `memo_max_chars` characters are kept: up to ~8 MB for ASCII inputs at the defaults, ~20 MB if every
    character needs 4 bytes."""

    def __init__(
        self,
        artifact_id: str,
        key: Callable[[str, Any], str],
        *,
        memo_entries: int = 16_384,
        memo_max_chars: int = 256,
    ) -> None:
        self.prefix = f"inferopt:{artifact_id}:"
        self.key = key  # (prefix, raw) -> key: the task's cache_key
        self.memo_max_chars = memo_max_chars
        self._remembered = functools.lru_cache(maxsize=memo_entries)(self._key)

    def __call__(self, raw: Any) -> str:
        if isinstance(raw, str) and len(raw) <= self.memo_max_chars:
            return self._remembered(raw)
        return self._key(raw)

    def _key(self, raw: Any) -> str:
        return self.key(self.prefix, raw)


class MemoryLRU:
    """Least-recently-used eviction once the entries' bytes pass `max_bytes`; an entry older than `ttl_s` is a
    miss (and is dropped) however often it is read. Used from the event loop only."""

    def __init__(self, max_bytes: int, ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.nbytes = 0
        self._entries: OrderedDict[str, tuple[CachedResult, float]] = OrderedDict()  # entry, expiry time

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CachedResult | None:
        found = self._entries.get(key)
        if found is None:
            return None
        entry, expires = found
        if self.clock() >= expires:
            del self._entries[key]
            self.nbytes -= entry.nbytes
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CachedResult) -> None:
        if entry.nbytes > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old[0].nbytes
        expires = self.clock() + self.ttl_s if self.ttl_s is not None else math.inf
        self._entries[key] = (entry, expires)
        self.nbytes += entry.nbytes
        while self.nbytes > self.max_bytes:
            _, (evicted, _) = self._entries.popitem(last=False)
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
