"""Preprocessing off the event loop: one thread that takes every request queued for it at once.

A thread-pool call per request (`run_in_executor`) costs the event loop a concurrent Future with its own
Condition, a wrapped asyncio Future, and one wake-up of the loop per request when the result comes back.
Here a request costs one queue put and one asyncio Future; the thread preprocesses all the inputs waiting
for it in one call (for text, tokenizers does the batch in Rust) and hands all the results back in one loop
wake-up. Under load that is one hop for many requests, and when idle it is one hop for one.

If a group fails, its requests are retried one by one, so an input that breaks preprocessing fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from inferopt.serve.batcher import BatcherClosed

log = logging.getLogger("inferopt.serve")

Result = TypeVar("Result")
# A request: its raw inputs and the future its caller awaits; None tells the thread to stop.
_Job = tuple[list[Any], "asyncio.Future[list[Result]]"]


class PreprocessStage(Generic[Result]):
    def __init__(self, preprocess: Callable[[list[Any]], list[Result]], *, name: str = "inferopt-preprocess") -> None:
        """`preprocess` maps inputs to one result per input, in order; it runs in this stage's thread only."""
        self.preprocess = preprocess
        self._queue: queue.SimpleQueue[_Job[Result] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def run(self, inputs: list[Any]) -> list[Result]:
        """On the event loop: the results for `inputs`, computed in the stage's thread. BatcherClosed once the
        stage is closed (the server is shutting down)."""
        if self._closed:
            raise BatcherClosed("preprocessing has stopped: the server is shutting down")
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queue.put((inputs, future))
        if self._closed:  # closed between the check and the put: nobody else may be left to answer
            self._fail_leftovers()
        return await future

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after the jobs already queued; any job that still slips in is failed, not lost."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        leftovers = []
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._queue.get_nowait()
                if job is not None:
                    leftovers.append(job)
        closed = BatcherClosed("preprocessing has stopped: the server is shutting down")
        self._deliver(leftovers, [closed] * len(leftovers))

    def _work(self) -> None:
        while True:
            jobs, stop = self._take()
            if jobs:
                try:
                    results = self._results(jobs)
                except BaseException as exc:  # a bug here must not kill the thread and strand every later miss
                    log.exception("preprocess stage error")
                    results = [exc] * len(jobs)
                self._deliver(jobs, results)
            if stop:
                return

    def _take(self) -> tuple[list[_Job[Result]], bool]:
        """Block for one job, then take every other job already waiting."""
        jobs: list[_Job[Result]] = []
        job = self._queue.get()
        while job is not None:
            jobs.append(job)
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs, False
        return jobs, True

    def _results(self, jobs: Sequence[_Job[Result]]) -> list[list[Result] | BaseException]:
        try:
            flat = self.preprocess([raw for inputs, _ in jobs for raw in inputs])
        except Exception as exc:
            return [exc] if len(jobs) == 1 else [self._alone(inputs) for inputs, _ in jobs]
        results: list[list[Result] | BaseException] = []
        start = 0
        for inputs, _ in jobs:
            results.append(flat[start : start + len(inputs)])
            start += len(inputs)
        return results

    def _alone(self, inputs: list[Any]) -> list[Result] | BaseException:
        try:
            return self.preprocess(inputs)
        except Exception as exc:
            return exc

    @staticmethod
    def _deliver(jobs: Sequence[_Job[Result]], results: Sequence[list[Result] | BaseException]) -> None:
        """One hand-back per event loop (there is one, except in tests that run several)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[Result]], object]]] = {}
        for (_, future), result in zip(jobs, results, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, result))
        for loop, settled in by_loop.items():
            # RuntimeError: the loop closed during shutdown, and nobody is left to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[list[Result]], object]]) -> None:
    """On the event loop. A future whose request gave up (cancelled) is left alone."""
    for future, result in settled:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)  # type: ignore[arg-type]
