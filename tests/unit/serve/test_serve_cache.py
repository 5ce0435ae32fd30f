"""The in-process cache tier, cache keys, the Redis value format and single-flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from inferopt.serve.cache import ENTRY_OVERHEAD_BYTES, CachedResult, CacheKeys, MemoryLRU, SingleFlight

EMBEDDINGS = {"embeddings": ("float32", (384,))}


def vector_of(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return outputs["embeddings"]


def entry(seed: int, dim: int = 4) -> CachedResult:
    return CachedResult.make({"embeddings": np.arange(dim, dtype=np.float32) + seed}, seed + 2, False, vector_of)


def test_lru_is_bounded_in_bytes_and_evicts_least_recently_used() -> None:
    size = entry(0).nbytes
    assert size == 16 + len(b"[0.0,1.0,2.0,3.0]") + ENTRY_OVERHEAD_BYTES  # the vector, its JSON, the overhead
    lru = MemoryLRU(max_bytes=3 * size)
    for seed in range(3):
        lru.put(f"k{seed}", entry(seed))
    assert lru.get("k0") is not None  # k0 is now the most recent
    lru.put("k3", entry(3))
    assert lru.get("k1") is None  # the least recently used went
    assert [lru.get(k) is not None for k in ("k0", "k2", "k3")] == [True, True, True]
    assert len(lru) == 3 and lru.nbytes == 3 * size


def test_an_entry_carries_its_vector_as_json_that_reads_back_to_the_same_float32s() -> None:
    vector = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    made = CachedResult.make({"embeddings": vector}, 9, False, vector_of)
    assert np.array_equal(np.asarray(orjson.loads(made.json), dtype=np.float32), vector)
    assert CachedResult.from_bytes(made.to_bytes(), EMBEDDINGS).json == made.json  # Redis entries too


def test_lru_replacing_a_key_keeps_the_byte_count_right() -> None:
    lru = MemoryLRU(max_bytes=10_000)
    lru.put("k", entry(1))
    lru.put("k", entry(2))
    assert len(lru) == 1 and lru.nbytes == entry(2).nbytes
    assert lru.get("k").cost == 4


def test_lru_entries_expire_after_their_ttl_and_free_their_bytes() -> None:
    now = [100.0]
    lru = MemoryLRU(max_bytes=10_000, ttl_s=30, clock=lambda: now[0])
    lru.put("old", entry(1))
    now[0] = 120.0
    lru.put("new", entry(2))
    assert lru.get("old") is not None  # 20 s old: alive, and reading it does not extend its life
    now[0] = 130.0
    assert lru.get("old") is None and lru.get("new") is not None
    assert len(lru) == 1 and lru.nbytes == entry(2).nbytes
    now[0] = 150.0
    assert lru.get("new") is None and lru.nbytes == 0


def test_an_entry_larger_than_the_whole_cache_is_not_kept() -> None:
    lru = MemoryLRU(max_bytes=10)
    lru.put("k", entry(1))
    assert len(lru) == 0 and lru.nbytes == 0


def test_entry_bytes_round_trip_exactly() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    original = CachedResult.make({"embeddings": vector}, 17, True, vector_of)
    restored = CachedResult.from_bytes(original.to_bytes(), EMBEDDINGS)
    np.testing.assert_array_equal(vector_of(restored.outputs), vector)
    assert restored.json == original.json  # the result as made, not made again: it may depend on the request
    assert (restored.cost, restored.truncated, vector_of(restored.outputs).dtype) == (17, True, np.float32)


def test_several_outputs_of_any_shape_and_dtype_round_trip() -> None:
    outputs = {"logits": np.arange(6, dtype=np.float32).reshape(2, 3), "label": np.array(7, dtype=np.int64)}

    def plain(values: dict[str, np.ndarray]) -> dict[str, object]:
        return {name: value.tolist() for name, value in values.items()}

    made = CachedResult.make(outputs, 1, False, plain)
    assert orjson.loads(made.json) == {"logits": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], "label": 7}
    restored = CachedResult.from_bytes(made.to_bytes(), {"logits": ("float32", (2, 3)), "label": ("int64", ())})
    assert set(restored.outputs) == {"logits", "label"}
    np.testing.assert_array_equal(restored.outputs["logits"], outputs["logits"])
    assert restored.outputs["label"] == 7 and restored.outputs["label"].dtype == np.int64


@pytest.mark.parametrize("damage", [lambda b: b[:-4], lambda b: b + b"\0", lambda b: b"hello"])
def test_bytes_of_another_shape_are_refused(damage: Callable[[bytes], bytes]) -> None:
    data = CachedResult.make({"embeddings": np.ones(8, np.float32)}, 3, False, vector_of).to_bytes()
    with pytest.raises(ValueError, match=r"not .*entry"):
        CachedResult.from_bytes(damage(data), {"embeddings": ("float32", (8,))})


@pytest.mark.parametrize(
    "expected",
    [
        {"logits": ("float32", (8,))},  # another output name
        {"embeddings": ("float64", (8,))},  # another dtype
        {"embeddings": ("float32", (384,))},  # another width: a smaller model's vector under our key
        {"embeddings": ("float32", (2, 4))},  # another rank
    ],
)
def test_an_entry_of_another_model_is_refused(expected: dict) -> None:
    data = CachedResult.make({"embeddings": np.ones(8, np.float32)}, 3, False, vector_of).to_bytes()
    with pytest.raises(ValueError, match="not an entry of this model"):
        CachedResult.from_bytes(data, expected)
    assert CachedResult.from_bytes(data, {"embeddings": ("float32", (None,))}).cost == 3  # dynamic: any


def test_keys_follow_the_tokenizers_normalizer_and_the_artifact(minilm_dir: Path) -> None:
    from inferopt.serve.testing import bundled_text_task

    task = bundled_text_task()
    keys = CacheKeys("artifact-a", task.cache_key)
    # MiniLM is uncased and strips accents: these give the same tokens, so they may share an entry.
    assert keys("Café au LAIT") == keys("cafe au lait")
    assert keys("cafe au lait") != keys("cafe  au lait")  # whitespace is left alone: never guess
    assert keys("x") != CacheKeys("artifact-b", task.cache_key)("x")
    # The tokenizer matches its special tokens on the raw text, before normalizing: "[SEP]" is one token and
    # "[sep]" five ordinary ones, so these two must not share an entry though they normalize alike.
    special, plain = "[SEP] [MASK] hi", "[sep] [mask] hi"
    assert task.tokenizer.encode_ids([special]) != task.tokenizer.encode_ids([plain])
    assert keys(special) != keys(plain)
    assert keys("x").startswith("inferopt:artifact-a:")


def test_remembered_keys_are_the_computed_ones_and_long_inputs_are_not_remembered() -> None:
    calls: list[str] = []

    def key(prefix: str, text: str) -> str:
        calls.append(text)
        return prefix + text.lower()

    keys = CacheKeys("a", key, memo_entries=2, memo_max_chars=8)
    fresh = CacheKeys("a", lambda prefix, text: prefix + text.lower())
    assert [keys(t) for t in ("Short", "short", "Short")] == [fresh("Short"), fresh("short"), fresh("Short")]
    assert calls == ["Short", "short"]  # the third was remembered
    keys("A longer text"), keys("A longer text")
    assert calls.count("A longer text") == 2  # over memo_max_chars: computed each time, never stored
    keys("b"), keys("c"), keys("Short")  # two newer entries pushed "Short" out of a memo of 2
    assert calls[-1] == "Short"


def test_single_flight_shares_one_future_and_extends_its_deadline() -> None:
    class Holder:
        deadline = 0.0

        def extend_deadline(self, deadline: float) -> None:
            self.deadline = deadline

    async def scenario() -> None:
        flights = SingleFlight()
        assert flights.join("k", 1.0) is None
        leader = flights.lead("k", 1.0)
        leader.item = holder = Holder()
        follower = flights.join("k", 5.0)
        assert follower is leader and holder.deadline == 5.0
        flights.land("k", leader, "done")
        assert await leader.future == "done"
        assert flights.join("k", 1.0) is None and len(flights) == 0

    asyncio.run(scenario())


def test_single_flight_failure_reaches_waiters_and_is_not_left_unretrieved() -> None:
    async def scenario() -> None:
        flights = SingleFlight()
        flight = flights.lead("k", 1.0)
        flights.land("k", flight, error=ValueError("boom"))
        with pytest.raises(ValueError, match="boom"):
            await flight.future
        unkeyed = flights.lead(None, 1.0)  # caching off: never registered, never joined
        assert len(flights) == 0
        flights.land(None, unkeyed, error=ValueError("nobody waits"))  # must not log "never retrieved"

    asyncio.run(scenario())


def test_a_down_redis_is_probed_by_one_caller_per_retry_period() -> None:
    from inferopt.serve.cache_redis import RedisTier
    from inferopt.serve.metrics import ServeMetrics

    now = [100.0]
    tier = RedisTier("redis://127.0.0.1:1/0", 60, ServeMetrics(), EMBEDDINGS, retry_every_s=1.0, clock=lambda: now[0])
    link = tier.link
    assert link.may_try()  # up: everyone goes to Redis
    link._down(ConnectionError("refused"))
    assert not tier.up and not link.may_try()
    now[0] += 1.0
    assert [link.may_try() for _ in range(5)] == [True, False, False, False, False]
    now[0] += 1.0
    assert link.may_try()
