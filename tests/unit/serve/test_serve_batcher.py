"""The micro-batcher without HTTP: batches form under concurrency, the window is honoured, a failing item fails
alone, results keep their order, the token budget and the queue bound hold, expired items never run."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from inferopt.runtime.fake import FakeBackend
from inferopt.serve.batcher import (
    HIGH,
    LOW,
    Batcher,
    BatcherClosed,
    BatchPolicy,
    DeadlineExceeded,
    QueueFull,
    WaitTooLong,
    lower_priority,
)
from inferopt.tasks.base import Item, Task
from inferopt.tasks.text_embedding.tokenizer import pad_batch

DIM = 8


class TokenIds:
    """The text task's batch codec without a tokenizer: items of token ids, padded to the longest."""

    def collate(self, items: list[Item]) -> dict[str, np.ndarray]:
        return pad_batch([item.data for item in items])

    split = Task.split


CODEC = TokenIds()


def token_item(row: list[int]) -> Item:
    return Item(row, len(row))


def ids(n_tokens: int, seed: int = 0) -> Item:
    """[CLS] + n-2 distinct-ish ids + [SEP], like a real tokenizer's output."""
    return token_item([101, *[1000 + seed * 7 + i for i in range(n_tokens - 2)], 102])


def expected(item: Item) -> np.ndarray:
    return FakeBackend(DIM).run(pad_batch([item.data]))["embeddings"][0]


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


@contextmanager
def running(backends: list[FakeBackend], **policy: float) -> Iterator[tuple[Batcher, list[tuple[int, int]]]]:
    seen: list[tuple[int, int]] = []
    batcher = Batcher(backends, BatchPolicy(**policy), CODEC, on_batch=lambda n, tokens, _s: seen.append((n, tokens)))
    batcher.start()
    try:
        yield batcher, seen
    finally:
        batcher.close(timeout=10)


def occupy(batcher: Batcher, *backends: FakeBackend) -> FakeBackend:
    """Start one item and return the backend running it, once it runs: that worker is busy."""
    before = [len(b.calls) for b in backends]
    batcher.submit([ids(3, seed=99)])
    wait_for(lambda: any(len(b.calls) > n for b, n in zip(backends, before, strict=True)))
    return next(b for b, n in zip(backends, before, strict=True) if len(b.calls) > n)


def test_idle_batcher_dispatches_at_once_not_after_the_window() -> None:
    backend = FakeBackend(DIM)
    with running([backend], max_wait_s=2.0) as (batcher, _):
        (item,) = batcher.submit([ids(4)])
        result = item.future.result(timeout=1.0)
    assert result.queue_s < 0.5  # far below the 2 s window
    np.testing.assert_array_equal(result.outputs["embeddings"], expected(ids(4)))


def test_items_arriving_while_the_worker_is_busy_form_one_batch() -> None:
    backend = FakeBackend(DIM, delay_s=0.2)
    with running([backend]) as (batcher, _):
        occupy(batcher, backend)
        items = [batcher.submit([ids(5, seed=s)])[0] for s in range(3)]  # three separate requests
        results = [item.future.result(timeout=5) for item in items]
    assert backend.calls == [1, 3]
    for seed, result in enumerate(results):
        np.testing.assert_array_equal(result.outputs["embeddings"], expected(ids(5, seed=seed)))


def test_with_a_busy_peer_a_free_worker_waits_for_the_window() -> None:
    first, second = FakeBackend(DIM, delay_s=0.6), FakeBackend(DIM, delay_s=0.6)
    with running([first, second], max_wait_s=0.1, max_batch=32) as (batcher, _):
        busy = occupy(batcher, first, second)
        free = second if busy is first else first
        (a,) = batcher.submit([ids(4, seed=1)])
        time.sleep(0.03)
        (b,) = batcher.submit([ids(4, seed=2)])
        result_a = a.future.result(timeout=5)
        b.future.result(timeout=5)
    assert free.calls == [2]  # both waited in the window and left together
    assert busy.calls == [1]
    assert 0.095 <= result_a.queue_s < 0.5  # held for the window, not until the busy worker finished


def test_a_full_batch_leaves_without_waiting_for_the_window() -> None:
    first, second = FakeBackend(DIM, delay_s=0.5), FakeBackend(DIM, delay_s=0.5)
    with running([first, second], max_wait_s=5.0, max_batch=3) as (batcher, _):
        occupy(batcher, first, second)
        items = batcher.submit([ids(4, seed=s) for s in range(3)])
        results = [item.future.result(timeout=3) for item in items]
    assert max(r.queue_s for r in results) < 0.4


def test_results_map_to_their_own_inputs_whatever_the_batching() -> None:
    backend = FakeBackend(DIM)
    rows = [ids(n, seed=n) for n in (3, 40, 7, 12, 3, 90, 5, 33, 8, 61)]
    with running([backend], max_batch=3) as (batcher, _):
        items = batcher.submit(rows)
        results = [item.future.result(timeout=5) for item in items]
    for row, result in zip(rows, results, strict=True):
        np.testing.assert_array_equal(result.outputs["embeddings"], expected(row))
    assert sum(backend.calls) == len(rows) and max(backend.calls) <= 3


def test_a_failing_item_fails_alone() -> None:
    backend = FakeBackend(DIM, delay_s=0.05, fail_on_token=999)
    good_a, bad, good_b = ids(4, seed=1), token_item([101, 999, 1, 102]), ids(4, seed=2)  # one length: no padding limit
    with running([backend]) as (batcher, _):
        occupy(batcher, backend)
        items = [batcher.submit([row])[0] for row in (good_a, bad, good_b)]
        with pytest.raises(RuntimeError, match="told to fail"):
            items[1].future.result(timeout=5)
        np.testing.assert_array_equal(items[0].future.result(timeout=5).outputs["embeddings"], expected(good_a))
        np.testing.assert_array_equal(items[2].future.result(timeout=5).outputs["embeddings"], expected(good_b))
    assert backend.calls == [1, 3, 1, 1, 1]  # the batch failed, then each item ran on its own


def test_batches_group_items_by_length() -> None:
    backend = FakeBackend(DIM, delay_s=0.1)
    with running([backend], max_batch=2) as (batcher, seen):
        occupy(batcher, backend)
        items = [batcher.submit([ids(n, seed=n)])[0] for n in (5, 50, 6, 51)]
        for item in items:
            item.future.result(timeout=5)
    # Arrival order would pad to 50 twice (200 tokens); grouped, it is 2x6 + 2x51.
    assert seen[1:] == [(2, 12), (2, 102)]


def test_token_budget_caps_padded_tokens_per_batch() -> None:
    backend = FakeBackend(DIM, delay_s=0.1)
    with running([backend], max_batch=32, max_tokens=100) as (batcher, seen):
        occupy(batcher, backend)
        for item in batcher.submit([ids(40, seed=s) for s in range(5)]):
            item.future.result(timeout=5)
    assert seen[1:] == [(2, 80), (2, 80), (1, 40)]


@pytest.mark.parametrize(
    ("max_padding", "batches"),
    [
        # 10, 11, 9, 12 pad to 48 tokens with 6 of padding (12.5%); with 40 in, 160 tokens would be 74% padding.
        (0.2, [(4, 48), (2, 82)]),
        (1.0, [(6, 246)]),  # no limit: whatever is queued leaves together
    ],
)
def test_an_item_that_would_make_the_batch_mostly_padding_waits_for_the_next(
    max_padding: float, batches: list[tuple[int, int]]
) -> None:
    backend = FakeBackend(DIM, delay_s=0.1)
    with running([backend], max_batch=32, max_padding=max_padding) as (batcher, seen):
        occupy(batcher, backend)
        items = [batcher.submit([ids(n, seed=n)])[0] for n in (10, 11, 40, 9, 12, 41)]
        for item in items:
            item.future.result(timeout=5)
    assert seen[1:] == batches


def test_full_queue_refuses_a_whole_request_with_retry_after() -> None:
    backend = FakeBackend(DIM, delay_s=0.3)
    with running([backend], max_queue=3) as (batcher, _):
        occupy(batcher, backend)
        batcher.submit([ids(4, seed=1), ids(4, seed=2)])
        with pytest.raises(QueueFull) as refused:
            batcher.submit([ids(4, seed=3), ids(4, seed=4)])  # 2 + 2 > 3: none of it enters
        assert batcher.depth == 2
        assert refused.value.retry_after_s >= 1
        batcher.submit([ids(4, seed=5)])  # exactly fills the queue
        assert batcher.depth == 3


def test_an_item_whose_deadline_passes_in_the_queue_never_runs() -> None:
    backend = FakeBackend(DIM, delay_s=0.3)
    with running([backend]) as (batcher, _):
        occupy(batcher, backend)
        (late,) = batcher.submit([ids(4, seed=1)], deadline=time.monotonic() + 0.05)
        (kept,) = batcher.submit([ids(4, seed=2)], deadline=time.monotonic() + 0.05)
        kept.extend_deadline(math.inf)  # a second waiter with no deadline keeps it alive
        with pytest.raises(DeadlineExceeded):
            late.future.result(timeout=5)
        kept.future.result(timeout=5)
    assert backend.calls == [1, 1]


def test_close_finishes_queued_work_then_refuses_new() -> None:
    backend = FakeBackend(DIM, delay_s=0.1)
    batcher = Batcher([backend], BatchPolicy(), CODEC).start()
    occupy(batcher, backend)
    items = batcher.submit([ids(4, seed=s) for s in range(3)])
    batcher.close(timeout=5)
    assert all(item.future.result(timeout=0).outputs["embeddings"].shape == (DIM,) for item in items)
    with pytest.raises(BatcherClosed):
        batcher.submit([ids(4)])


def test_a_cancelled_item_is_dropped_before_the_runtime() -> None:
    backend = FakeBackend(DIM, delay_s=0.2)
    with running([backend]) as (batcher, _):
        occupy(batcher, backend)
        dropped, kept = batcher.submit([ids(4, seed=1), ids(9, seed=2)])
        assert dropped.future.cancel()
        kept.future.result(timeout=5)
    assert backend.calls == [1, 1]


def test_drain_rate_counts_finished_items() -> None:
    backend = FakeBackend(DIM)
    with running([backend]) as (batcher, _):
        for item in batcher.submit([ids(4, seed=s) for s in range(20)]):
            item.future.result(timeout=5)
        assert batcher._completions.items == 20
        assert batcher.drain_rate() > 0


def test_retry_after_is_the_time_the_queue_takes_to_drain_at_the_recent_rate() -> None:
    now = [1000.0]
    batcher = Batcher([FakeBackend(DIM)], BatchPolicy(max_queue=100), CODEC, clock=lambda: now[0])  # no workers started
    batcher.submit([ids(4, seed=s) for s in range(100)])
    batcher._completions.add(998.0, 20)  # 40 items finished over the last 2 s: 20 items/s
    batcher._completions.add(999.0, 20)
    assert batcher.drain_rate() == pytest.approx(20.0)
    with pytest.raises(QueueFull) as refused:
        batcher.submit([ids(4)])
    assert refused.value.retry_after_s == 5  # 100 queued / 20 per s
    now[0] += 10.0  # nothing finished for 10 s: no rate to go by, so the shortest honest answer
    with pytest.raises(QueueFull) as refused:
        batcher.submit([ids(4)])
    assert refused.value.retry_after_s == 1


def test_close_waits_at_most_its_timeout_in_all_not_per_worker() -> None:
    backends = [FakeBackend(DIM, delay_s=2.0) for _ in range(5)]
    batcher = Batcher(backends, BatchPolicy(max_batch=1), CODEC).start()
    batcher.submit([ids(4, seed=s) for s in range(5)])
    wait_for(lambda: all(b.calls for b in backends))
    started = time.monotonic()
    batcher.close(timeout=0.2)
    assert time.monotonic() - started < 0.6  # five workers, each busy for 2 s: 0.2 s in all, not 5 x 0.2 s


def test_each_item_of_a_request_can_carry_its_own_deadline() -> None:
    """An input that other requests wait for too is queued with the last of their deadlines, not the first."""
    backend = FakeBackend(DIM, delay_s=0.3)
    with running([backend]) as (batcher, _):
        occupy(batcher, backend)
        late, kept = batcher.submit([ids(4, seed=1), ids(4, seed=2)], [time.monotonic() + 0.05, math.inf])
        with pytest.raises(DeadlineExceeded):
            late.future.result(timeout=5)
        kept.future.result(timeout=5)
    assert backend.calls == [1, 1]


def _measured(batcher: Batcher, now: float, items_per_s: float) -> None:
    """As if the workers had been busy for the last second, finishing `items_per_s` items per worker-second."""
    batcher._service.add(now - 0.5, int(items_per_s / 2), 0.5)
    batcher._service.add(now - 0.1, int(items_per_s / 2), 0.5)


def test_a_request_predicted_to_wait_past_its_deadline_is_refused_at_once() -> None:
    now = [1000.0]
    policy = BatchPolicy(max_queue=10_000)
    batcher = Batcher([FakeBackend(DIM)], policy, CODEC, clock=lambda: now[0])  # no workers: nothing drains
    _measured(batcher, now[0], 1000.0)  # one worker, 1,000 items per busy second
    batcher._running = {1: now[0] - 60.0}  # that worker is running a batch (long past the mean batch time)
    batcher.submit([ids(4, seed=s) for s in range(400)], now[0] + 10.0)  # 0.4 s of work ahead
    assert batcher.expected_wait(HIGH, 1) == pytest.approx(0.401)
    (ok,) = batcher.submit([ids(4)], now[0] + 0.5)  # 0.401 s predicted, 0.5 s left: admitted
    with pytest.raises(WaitTooLong) as refused:
        batcher.submit([ids(4)], now[0] + 0.3)  # 0.402 s predicted, 0.3 s left
    assert refused.value.expected_s == pytest.approx(0.402) and refused.value.limit_s == pytest.approx(0.3)
    assert isinstance(refused.value, QueueFull) and refused.value.retry_after_s >= 1
    with pytest.raises(WaitTooLong):
        batcher.submit([ids(4)], now[0] + 10.0, max_wait_s=0.2)  # --max-queue-ms 200
    with pytest.raises(WaitTooLong):
        batcher.admit(1, now[0] + 0.3)  # the same check, before the items exist
    batcher.admit(1, now[0] + 0.5)
    assert batcher.depth == 401  # the refused requests left nothing behind, and admit queues nothing
    assert ok.deadline == now[0] + 0.5


def test_an_idle_server_with_little_traffic_predicts_no_wait() -> None:
    now = [1000.0]
    batcher = Batcher([FakeBackend(DIM)], BatchPolicy(), CODEC, clock=lambda: now[0])
    _measured(batcher, now[0], 10.0)  # a slow model that has seen little traffic: 10 items per busy second
    assert batcher.expected_wait(HIGH, 1) == 0.0  # the queue is empty and the worker free: it starts at once
    batcher.submit([ids(4)], now[0] + 0.01)  # a 10 ms deadline is still admitted
    batcher._running = {1: now[0] - 60.0}
    assert batcher.expected_wait(HIGH, 1) == pytest.approx(0.2)  # now one item ahead, and the worker busy


def test_a_high_request_counts_only_the_high_lane_ahead_of_it() -> None:
    now = [1000.0]
    batcher = Batcher([FakeBackend(DIM)], BatchPolicy(max_queue=10_000), CODEC, clock=lambda: now[0])
    _measured(batcher, now[0], 1000.0)
    batcher._running = {1: now[0] - 60.0}
    batcher.submit([ids(4, seed=s) for s in range(900)], lane=LOW)  # a bulk job's backlog
    batcher.submit([ids(4, seed=s) for s in range(50)], lane=HIGH)
    assert batcher.expected_wait(HIGH, 1) == pytest.approx(0.051)
    assert batcher.expected_wait(LOW, 1) == pytest.approx(0.951)
    with pytest.raises(WaitTooLong):
        batcher.submit([ids(4)], now[0] + 0.5, lane=LOW)
    batcher.submit([ids(4)], now[0] + 0.5, lane=HIGH)


def test_under_contention_high_priority_items_run_before_low_ones() -> None:
    backend = FakeBackend(DIM, delay_s=0.3)
    order: list[str] = []
    with running([backend], max_batch=4, max_wait_s=0.0) as (batcher, _):
        batcher.on_wait = lambda lane, waits: order.extend([lane] * len(waits))
        occupy(batcher, backend)  # the worker is busy: what follows queues
        low = batcher.submit([ids(4, seed=s) for s in range(8)], lane=LOW)
        high = batcher.submit([ids(4, seed=s) for s in range(8, 12)], lane=HIGH)
        for item in low + high:
            item.future.result(timeout=10)
    # The occupying item (high), then the high batch that queued after the low items, then the low ones.
    assert order == [HIGH] * 5 + [LOW] * 8
    assert backend.calls == [1, 4, 4, 4]


def test_the_rate_windows_keep_only_the_last_seconds_even_when_nothing_asks() -> None:
    now = [1000.0]
    backend = FakeBackend(DIM)
    batcher = Batcher([backend], BatchPolicy(), CODEC, clock=lambda: now[0]).start()
    try:
        for step in range(30):  # 30 s of traffic, one item a second, never refused
            now[0] = 1000.0 + step
            batcher.submit([ids(4, seed=step)])[0].future.result(timeout=5)
        wait_for(lambda: len(batcher._completions.entries) > 0 and batcher.depth == 0)
        assert len(batcher._service.entries) <= 6 and len(batcher._completions.entries) <= 7  # the last 5 s, not all 30
    finally:
        batcher.close(timeout=5)


def test_when_every_worker_is_busy_the_wait_counts_the_rest_of_the_running_batch() -> None:
    now = [1000.0]
    batcher = Batcher([FakeBackend(DIM)], BatchPolicy(), CODEC, clock=lambda: now[0])
    batcher._service.add(now[0] - 1.0, 10, 0.1)  # batches of 10 items in 0.1 s: 100 items per busy second
    batcher._service.add(now[0] - 0.5, 10, 0.1)
    batcher._running = {1: now[0] - 0.03}  # its batch started 30 ms ago: ~70 ms to go
    assert batcher.expected_wait(HIGH, 1) == pytest.approx(0.07 + 0.01)
    now[0] += 0.2  # running past the mean: it may end any moment
    assert batcher.expected_wait(HIGH, 1) == pytest.approx(0.01)


def test_runtime_workers_run_below_the_event_loop_when_asked() -> None:
    seen: list[int] = []

    def worker() -> None:
        lower_priority(3)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [os.getpriority(os.PRIO_PROCESS, 0) + 3]  # that thread only: this one is where it was
