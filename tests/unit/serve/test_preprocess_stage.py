"""The preprocess stage: results in order per request, waiting requests taken as one group, failures alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from inferopt.serve.batcher import BatcherClosed
from inferopt.serve.preprocess_stage import PreprocessStage

pytestmark = pytest.mark.anyio


class Recorder:
    """A 'tokenizer' that measures lengths and records each call. While `gate` is clear it holds its thread
    (after setting `started`), so that requests pile up behind the call in progress."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, texts: list[str]) -> list[int]:
        self.started.set()
        self.gate.wait(5)
        self.calls.append(list(texts))
        if any(t == "boom" for t in texts):
            raise ValueError("cannot tokenize boom")
        return [len(t) for t in texts]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def stage(recorder: Recorder) -> Iterator[PreprocessStage[int]]:
    stage = PreprocessStage(recorder)
    yield stage
    stage.close()


async def hold_thread(stage: PreprocessStage[int], recorder: Recorder, text: str) -> asyncio.Future[list[int]]:
    """A first request that the stage's thread has taken and is now blocked on."""
    recorder.gate.clear()
    first = asyncio.ensure_future(stage.run([text]))
    assert await asyncio.to_thread(recorder.started.wait, 5)
    return first


async def test_each_request_gets_its_own_results_in_order(stage: PreprocessStage[int]) -> None:
    assert await stage.run(["a", "bbb", "cc"]) == [1, 3, 2]


async def test_requests_waiting_together_are_tokenized_in_one_call(
    stage: PreprocessStage[int], recorder: Recorder
) -> None:
    first = await hold_thread(stage, recorder, "x")
    rest = [asyncio.ensure_future(stage.run(["y" * n, "z"])) for n in (2, 3, 4)]
    await asyncio.sleep(0)  # let the three requests queue their jobs
    recorder.gate.set()
    assert await first == [1]
    assert await asyncio.gather(*rest) == [[2, 1], [3, 1], [4, 1]]
    assert recorder.calls == [["x"], ["yy", "z", "yyy", "z", "yyyy", "z"]]


async def test_a_failing_text_fails_only_its_own_request(stage: PreprocessStage[int], recorder: Recorder) -> None:
    blocker = await hold_thread(stage, recorder, "first")
    good, bad = asyncio.ensure_future(stage.run(["fine"])), asyncio.ensure_future(stage.run(["boom"]))
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await blocker == [5] and await good == [4]
    with pytest.raises(ValueError, match="cannot tokenize boom"):
        await bad
    assert recorder.calls[1:] == [["fine", "boom"], ["fine"], ["boom"]]  # the group, then one by one


async def test_a_request_that_gave_up_is_skipped_and_close_stops_the_thread(
    stage: PreprocessStage[int], recorder: Recorder
) -> None:
    gave_up = await hold_thread(stage, recorder, "gone")
    gave_up.cancel()
    recorder.gate.set()
    assert await stage.run(["next"]) == [4]  # the cancelled future was left alone, nothing raised
    assert gave_up.cancelled()
    stage.close()
    assert not stage._thread.is_alive()


async def test_after_close_a_request_is_refused_not_left_waiting(stage: PreprocessStage[int]) -> None:
    stage.close()
    with pytest.raises(BatcherClosed, match="shutting down"):
        await asyncio.wait_for(stage.run(["late"]), 5)
